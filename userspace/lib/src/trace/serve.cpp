// cowtrace --serve: the exporter loop (serve.hpp).
#include "cowscope/trace/serve.hpp"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/stat.hpp"
#include <linux/types.h>

#include "cowtrace.h"

namespace cowtrace {

namespace {

double now_s()
{
	using namespace std::chrono;
	return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// pid, ppid and comm of a live process (proc/'s one stat reader; nullopt
// when it is gone, a zombie included).
std::optional<cowscope::proc::Stat> read_live(pid_t pid)
{
	auto st = cowscope::proc::read_stat(pid);
	if (st && st->gone())
		return std::nullopt;
	return st;
}

// Processes running now (tgids: /proc lists no threads at its top level).
std::vector<pid_t> all_pids()
{
	std::vector<pid_t> out;
	DIR *d = opendir("/proc");
	if (!d)
		throw cowscope::SysError("failed to list /proc");
	while (dirent *e = readdir(d)) {
		char *end;
		long v = std::strtol(e->d_name, &end, 10);
		if (*end == '\0' && v > 0)
			out.push_back(static_cast<pid_t>(v));
	}
	closedir(d);
	return out;
}

std::uint64_t rss_bytes()
{
	std::ifstream in("/proc/self/statm");
	std::uint64_t size = 0, rss = 0;
	in >> size >> rss;
	return rss * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

bool bpf_stats_enabled()
{
	std::ifstream in("/proc/sys/kernel/bpf_stats_enabled");
	int v = 0;
	return (in >> v) && v == 1;
}

// The usage errors of a --serve configuration.
void check_config(const ServeConfig &cfg)
{
	int modes = (cfg.pid > 0) + !cfg.comm.empty() + cfg.all;
	if (modes != 1)
		throw cowscope::UsageError("--serve: give exactly one target: -p PID [--children], --comm NAME or --all");
	if (cfg.comm.size() > 15)
		throw cowscope::UsageError(fmt::format("--comm: a command name has at most 15 bytes (the kernel's comm), "
						       "got \"{}\" ({} bytes)", cfg.comm, cfg.comm.size()));
	if (cfg.max_series == 0)
		throw cowscope::UsageError("--max-series: expected a whole number > 0");
}

// Track the target (the -p process, or the processes already running that
// --all or --comm take: new ones the BPF hooks track); how it is named.
std::string track_target(Tracer &tracer, const ServeConfig &cfg, const std::optional<cowscope::proc::Stat> &root,
			 const Options &opts)
{
	if (root) {
		tracer.track(root->pid, root->ppid, root->comm);
		return fmt::format("-p {}{}", root->pid, opts.follow_children ? " --children" : "");
	}
	for (pid_t p : all_pids()) {
		if (tracer.stats(p))
			continue;	// tracked by the hooks meanwhile
		auto f = read_live(p);
		if (!f || (!cfg.all && f->comm != cfg.comm))
			continue;
		try {
			tracer.track(f->pid, f->ppid, f->comm);
		} catch (const cowscope::Error &e) {
			std::fprintf(stderr, "cowtrace: %s\n", e.what());
			break;	// every slot taken
		}
	}
	return cfg.all ? "--all" : "--comm " + cfg.comm;
}

// What every scrape says of the session (the rest is filled per scrape).
Exposition exposition_of(const Tracer &tracer, const std::string &target,
			 const std::optional<cowscope::proc::Stat> &root, const Options &opts)
{
	Exposition e;
	e.method = method_name(tracer.plan().method);
	e.copies_by = tracer.plan().copies_by();
	e.reuses_by = tracer.plan().reuses_by();
	e.zero_fills_by = tracer.plan().zero_fills_by() ? tracer.plan().zero_fills_by() : "";
	e.target = target;
	e.tree = root && opts.follow_children;
	if (root) {
		e.root_pid = root->pid;
		e.root_comm = root->comm;
	}
	e.slots_max = COWTRACE_MAX_PROCS;
	return e;
}

} // namespace

int serve(const ServeConfig &cfg, Options opts, volatile sig_atomic_t *stop)
{
	check_config(cfg);
	std::optional<cowscope::proc::Stat> root;
	if (cfg.pid > 0) {
		root = read_live(cfg.pid);
		if (!root)
			throw cowscope::Error(fmt::format("-p {}: no such process", cfg.pid));
	}
	std::string warn = check_exposure(cfg.addr, cfg.web);	// refuses plain HTTP beyond loopback
	// bind first: a port in use fails before anything is traced
	HttpServer http(cfg.addr, cfg.web, cfg.limits);
	if (!warn.empty())
		std::fprintf(stderr, "cowtrace: warning: %s\n", warn.c_str());

	opts.track_all = cfg.all;
	opts.match_comm = cfg.comm;
	opts.long_running = true;
	if (cfg.pid <= 0)
		opts.follow_children = false;
	Tracer tracer(opts);

	std::string target = track_target(tracer, cfg, root, opts);
	std::fprintf(stderr, "cowtrace: %s\ncowtrace: serving %s (%s; %s; at most %u connections, %u s idle)\n",
		     tracer.plan().describe().c_str(), http.url().c_str(), target.c_str(), cfg.web.describe().c_str(),
		     http.limits().connections, http.limits().timeout_s);

	SeriesSet set(cfg.max_series, cfg.grace_s);
	Exposition e = exposition_of(tracer, target, root, opts);
	bool root_gone = false;

	Tracer::Usage usage;
	auto refresh = [&] {
		for (pid_t p : set.update(tracer.snapshot_batch(&usage), now_s()))
			tracer.untrack(p);
		tracer.recycle();
		if (root && !root_gone) {
			auto s = tracer.stats(root->pid);
			if (!s || s->exited) {
				root_gone = true;
				std::fprintf(stderr, "cowtrace: pid %d exited; its series stays for %g s, the tree "
						     "totals stay\n", root->pid, cfg.grace_s);
			}
		}
	};

	double next_refresh = 0;
	while (!*stop) {
		unsigned served = http.run(200, [&](const std::string &accept) {
			double t0 = now_s();
			refresh();
			next_refresh = t0 + 1;
			e.bpf_stats = bpf_stats_enabled();
			e.bpf_progs.clear();
			if (e.bpf_stats)
				for (const auto &p : tracer.prog_stats())
					e.bpf_progs.push_back({p.name, p.run_time_ns, p.run_cnt});
			e.untracked = tracer.dropped();
			e.tracked = usage.procs;	// as refresh() read them
			e.infos = usage.infos;
			e.slots_used = usage.slots_used;
			e.rss_bytes = rss_bytes();
			e.scrapes++;
			Format f = negotiate(accept);
			HttpServer::Response r{content_type(f), format_metrics(set, e, f)};
			e.scrape_seconds_last = now_s() - t0;
			return r;
		});
		// without scrapes, exited processes still leave after their grace
		if (!served && now_s() >= next_refresh) {
			refresh();
			next_refresh = now_s() + 1;
		}
	}
	std::fprintf(stderr, "cowtrace: stopping (%llu scrapes served)\n", static_cast<unsigned long long>(e.scrapes));
	return 0;
}

} // namespace cowtrace
