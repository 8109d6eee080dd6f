// cowtrace --serve: a Prometheus / OpenMetrics exporter over a Tracer
// (cowtrace_core). The formats and the series rules are in exporter.hpp.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <string>

#include "cowscope/metrics/exporter.hpp"
#include "cowscope/metrics/http.hpp"
#include "cowscope/trace/trace.hpp"

namespace cowtrace {

struct ServeConfig {
	ListenAddr addr;
	// targets: one of
	pid_t pid = 0;	// -p PID (opts.follow_children: --children)
	std::string comm;	// --comm NAME
	bool all = false;	// --all
	std::size_t max_series = 1000;	// --max-series
	double grace_s = 60;	// --grace
	WebConfig web;	// --web-config (load_web_config): TLS, basic auth
	HttpLimits limits;
};

// Bind (a port in use fails here, before any BPF is loaded), load the
// tracer, track the targets and serve GET /metrics until *stop is set.
// Prints "cowtrace: serving http://ADDR:PORT/metrics" (https:// with
// TLS) on stderr once listening; warns when a non-loopback address is
// served without TLS and basic auth. Returns the exit status (0); throws cowscope::Error.
int serve(const ServeConfig &cfg, Options opts, volatile sig_atomic_t *stop);

} // namespace cowtrace
