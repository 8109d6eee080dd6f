// cowtrace --serve without BPF: exposition formats, Accept negotiation,
// escaping, the series rules (grace, bound, dropped counters, tree totals),
// --serve addresses, HTTP request parsing and a real loopback round trip.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cowscope/base/error.hpp"
#include "cowscope/metrics/exporter.hpp"
#include "cowscope/metrics/http.hpp"

using namespace cowtrace;

namespace {

ProcStats proc(pid_t pid, std::uint64_t copies, bool exited = false, std::string comm = "worker")
{
	ProcStats s;
	s.pid = pid;
	s.ppid = 1;
	s.comm = std::move(comm);
	s.exited = exited;
	s.wp_faults = copies + 1;
	s.cow_copies = copies;
	s.cow_reuses = 1;
	return s;
}

Exposition expo()
{
	Exposition e;
	e.method = "vmevent";
	e.copies_by = "vm events";
	e.reuses_by = "PGREUSE";
	e.target = "--all";
	return e;
}

std::size_t count(const std::string &hay, const std::string &needle)
{
	std::size_t n = 0;
	for (std::size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1))
		n++;
	return n;
}

} // namespace

TEST(ExporterFormat, EscapesLabelValues)
{
	EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
	EXPECT_EQ(escape_help("a\"b\\c\nd"), "a\"b\\\\c\\nd");	// HELP keeps quotes
	EXPECT_EQ(escape_label("caf\xc3\xa9"), "caf\xc3\xa9");	// valid UTF-8 kept
	EXPECT_EQ(escape_label("x\xff" "y"), "x\xef\xbf\xbdy");	// a stray byte: U+FFFD
	EXPECT_EQ(escape_label("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");	// overlong '/'
	EXPECT_EQ(escape_label("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");	// surrogate
}

TEST(ExporterFormat, NegotiatesLikePrometheus)
{
	// what Prometheus 2.42 sends
	EXPECT_EQ(negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
			    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
		  Format::openmetrics);
	EXPECT_EQ(negotiate(""), Format::prometheus);
	EXPECT_EQ(negotiate("*/*"), Format::prometheus);
	EXPECT_EQ(negotiate("text/plain;version=0.0.4"), Format::prometheus);
	EXPECT_EQ(negotiate("text/plain;q=1, application/openmetrics-text;q=0.5"), Format::prometheus);
	EXPECT_EQ(negotiate("Application/OpenMetrics-Text; version=1.0.0"), Format::openmetrics);
	EXPECT_EQ(negotiate("application/openmetrics-text;version=0.0.1"), Format::prometheus);	// not ours
	EXPECT_EQ(negotiate("application/openmetrics-text;q=0"), Format::prometheus);
	EXPECT_STREQ(content_type(Format::openmetrics), "application/openmetrics-text; version=1.0.0; charset=utf-8");
	EXPECT_STREQ(content_type(Format::prometheus), "text/plain; version=0.0.4; charset=utf-8");
}

TEST(ExporterFormat, PrometheusText)
{
	SeriesSet set(10, 60);
	set.update({proc(42, 7, false, "re\"dis\\x\ny")}, 0);
	Exposition e = expo();
	std::string t = format_metrics(set, e, Format::prometheus);
	EXPECT_NE(t.find("# HELP cowtrace_cow_copies_total "), std::string::npos) << t;
	EXPECT_NE(t.find("# TYPE cowtrace_cow_copies_total counter\n"), std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_cow_copies_total{pid=\"42\",ppid=\"1\",comm=\"re\\\"dis\\\\x\\ny\"} 7\n"),
		  std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_cow_copied_bytes_total{pid=\"42\",ppid=\"1\",comm=\"re\\\"dis\\\\x\\ny\"} 28672\n"),
		  std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_wp_faults_total{pid=\"42\""), std::string::npos);
	EXPECT_NE(t.find("cowtrace_cow_reuses_total{pid=\"42\""), std::string::npos);
	EXPECT_NE(t.find("# TYPE cowtrace_method_info gauge\ncowtrace_method_info{method=\"vmevent\""),
		  std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_series 1\n"), std::string::npos);
	EXPECT_NE(t.find("cowtrace_series_dropped_total{reason=\"exited\"} 0\n"), std::string::npos);
	EXPECT_EQ(t.find("# EOF"), std::string::npos);
	EXPECT_EQ(t.find("cowtrace_bpf_run"), std::string::npos);	// bpf_stats off
	EXPECT_EQ(t.find("cowtrace_tree_"), std::string::npos);	// not --children
	// one sample per line, nothing but names, labels and numbers
	EXPECT_EQ(t.back(), '\n');
}

TEST(ExporterFormat, OpenMetrics)
{
	SeriesSet set(10, 60);
	set.update({proc(42, 7)}, 0);
	Exposition e = expo();
	e.bpf_stats = true;
	e.bpf_progs = {{"vme_fault_user", 1500000000, 3}, {"on_fork", 2000, 1}};
	e.tree = true;
	e.root_pid = 42;
	e.root_comm = "worker";
	std::string t = format_metrics(set, e, Format::openmetrics);
	EXPECT_NE(t.find("# TYPE cowtrace_cow_copies counter\n# HELP cowtrace_cow_copies "), std::string::npos) << t;
	EXPECT_NE(t.find("# TYPE cowtrace_cow_copied_bytes counter\n# UNIT cowtrace_cow_copied_bytes bytes\n"),
		  std::string::npos) << t;
	EXPECT_NE(t.find("# TYPE cowtrace_method info\n"), std::string::npos);
	EXPECT_NE(t.find("cowtrace_method_info{method=\"vmevent\""), std::string::npos);
	EXPECT_NE(t.find("cowtrace_bpf_run_time_seconds_total{program=\"vme_fault_user\"} 1.500000000\n"),
		  std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_bpf_run_time_seconds_total{program=\"on_fork\"} 0.000002000\n"),
		  std::string::npos) << t;
	EXPECT_NE(t.find("cowtrace_bpf_runs_total{program=\"vme_fault_user\"} 3\n"), std::string::npos);
	EXPECT_NE(t.find("cowtrace_tree_cow_copies_total{root_pid=\"42\",root_comm=\"worker\"} 7\n"),
		  std::string::npos) << t;
	EXPECT_EQ(t.size() - t.rfind("# EOF\n"), 6u);	// ends with # EOF
	EXPECT_EQ(count(t, "# EOF"), 1u);
	EXPECT_EQ(t.find("_total counter"), std::string::npos);	// family names have no _total
}

TEST(ExporterSeries, ExitedProcessesLeaveAfterTheGracePeriod)
{
	SeriesSet set(100, 5);
	EXPECT_TRUE(set.update({proc(1, 10), proc(2, 20)}, 0).empty());
	EXPECT_TRUE(set.update({proc(1, 11), proc(2, 25, true)}, 1).empty());	// 2 exits at t=1
	EXPECT_EQ(set.series().size(), 2u);
	EXPECT_TRUE(set.update({proc(1, 11), proc(2, 25, true)}, 5.9).empty());	// still in grace
	auto done = set.update({proc(1, 12), proc(2, 25, true)}, 6);
	ASSERT_EQ(done, std::vector<pid_t>{2});
	EXPECT_EQ(set.series().size(), 1u);
	EXPECT_EQ(set.dropped_exited(), 1u);
	// the totals keep the dropped process (monotonic)
	EXPECT_EQ(set.totals().cow_copies, 37u);
	set.update({proc(1, 12)}, 7);	// the caller untracked 2
	EXPECT_EQ(set.totals().cow_copies, 37u);
}

TEST(ExporterSeries, BoundedUnderAForkingLoad)
{
	SeriesSet set(50, 2);
	std::uint64_t expect_total = 0;
	std::vector<ProcStats> live;
	double t = 0;
	std::set<pid_t> tracked;	// what the tracer holds
	std::map<pid_t, ProcStats> state;
	// 1000 short-lived children, 20 at a time, each 3 copies
	for (pid_t pid = 100; pid < 1100; pid++) {
		state[pid] = proc(pid, 3);
		expect_total += 3;
		if (pid >= 120)
			state[pid - 20].exited = true;
		std::vector<ProcStats> snap;
		for (const auto &[p, s] : state)
			snap.push_back(s);
		for (pid_t gone : set.update(snap, t))
			state.erase(gone);
		EXPECT_LE(set.series().size(), 50u);
		t += 0.1;
	}
	EXPECT_LE(state.size(), 50u + 20u);	// the tracer's processes stay bounded too
	EXPECT_EQ(set.totals().cow_copies, expect_total);
	EXPECT_GT(set.dropped_exited(), 900u);
}

TEST(ExporterSeries, LimitRefusesNewSeriesAndCountsThemOnce)
{
	SeriesSet set(2, 60);
	set.update({proc(1, 1), proc(2, 2), proc(3, 3)}, 0);
	EXPECT_EQ(set.series().size(), 2u);
	EXPECT_EQ(set.dropped_limit(), 1u);
	EXPECT_EQ(set.series().count(3), 0u);
	set.update({proc(1, 1), proc(2, 2), proc(3, 4)}, 1);
	EXPECT_EQ(set.dropped_limit(), 1u);	// once per process
	EXPECT_EQ(set.totals().cow_copies, 7u);
	// an unkept process that exits is untracked at once
	auto done = set.update({proc(1, 1), proc(2, 2), proc(3, 4, true)}, 2);
	EXPECT_EQ(done, std::vector<pid_t>{3});
	EXPECT_EQ(set.totals().cow_copies, 7u);
	EXPECT_EQ(set.refused(), 0u);
}

TEST(ExporterSeries, PidReuseStartsANewSeries)
{
	SeriesSet set(10, 60);
	set.update({proc(5, 100)}, 0);
	set.update({proc(5, 100, true)}, 1);
	set.update({proc(5, 2)}, 2);	// a new process under pid 5
	ASSERT_EQ(set.series().count(5), 1u);
	EXPECT_EQ(set.series().at(5).last.cow_copies, 2u);
	EXPECT_FALSE(set.series().at(5).exited_at);
	EXPECT_EQ(set.dropped_exited(), 1u);
	EXPECT_EQ(set.totals().cow_copies, 102u);
}

TEST(ExporterListen, ParsesAddresses)
{
	auto a = parse_listen("9477");
	EXPECT_EQ(a.host, "127.0.0.1");
	EXPECT_EQ(a.port, 9477);
	EXPECT_EQ(parse_listen(":9477").text(), "127.0.0.1:9477");
	EXPECT_EQ(parse_listen("localhost:1").text(), "127.0.0.1:1");
	EXPECT_EQ(parse_listen("0.0.0.0:80").text(), "0.0.0.0:80");
	EXPECT_EQ(parse_listen("[::1]:9477").text(), "[::1]:9477");
	EXPECT_TRUE(parse_listen("[::1]:9477").v6);
	for (const char *bad : {"", "x", "host.example:80", "1.2.3.4:65536", "1.2.3.4:", "[::1]", "::1:80",
				"1.2.3.4:-1"})
		EXPECT_THROW(parse_listen(bad), cowscope::UsageError) << bad;
	try {
		parse_listen("banana");
	} catch (const cowscope::UsageError &e) {
		EXPECT_NE(std::string(e.what()).find("--serve: expected ADDR:PORT"), std::string::npos) << e.what();
	}
}

TEST(ExporterHttp, ParsesRequests)
{
	auto r = HttpListener::parse_request("GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT:  text/plain \r\n\r\n");
	EXPECT_TRUE(r.ok);
	EXPECT_EQ(r.method, "GET");
	EXPECT_EQ(r.path, "/metrics");
	EXPECT_EQ(r.accept, "text/plain");
	EXPECT_FALSE(HttpListener::parse_request("hello\r\n\r\n").ok);
	EXPECT_FALSE(HttpListener::parse_request("GET /metrics SPDY/3\r\n\r\n").ok);
}

namespace {

std::string http_get(std::uint16_t port, const std::string &request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
		close(fd);
		return "connect failed";
	}
	(void)!write(fd, request.data(), request.size());
	std::string out;
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<std::size_t>(n));
	close(fd);
	return out;
}

} // namespace

TEST(ExporterHttp, ServesMetricsOnLoopbackAndRefusesAPortInUse)
{
	HttpListener http(parse_listen("127.0.0.1:0"));
	ASSERT_GT(http.port(), 0);
	auto handler = [](const std::string &accept) {
		return HttpListener::Response{content_type(negotiate(accept)), "body " + accept + "\n"};
	};
	auto get = std::async(std::launch::async, http_get, http.port(),
			      std::string("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n"));
	ASSERT_TRUE(http.serve_one(5000, handler));
	std::string r = get.get();
	EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
	EXPECT_NE(r.find("Content-Type: application/openmetrics-text; version=1.0.0"), std::string::npos) << r;
	EXPECT_NE(r.find("Content-Length: 34\r\n"), std::string::npos) << r;
	EXPECT_NE(r.find("\r\n\r\nbody application/openmetrics-text\n"), std::string::npos) << r;

	auto missing = std::async(std::launch::async, http_get, http.port(), std::string("GET /x HTTP/1.1\r\n\r\n"));
	ASSERT_TRUE(http.serve_one(5000, handler));
	EXPECT_EQ(missing.get().rfind("HTTP/1.1 404", 0), 0u);
	auto post = std::async(std::launch::async, http_get, http.port(), std::string("POST /metrics HTTP/1.1\r\n\r\n"));
	ASSERT_TRUE(http.serve_one(5000, handler));
	EXPECT_EQ(post.get().rfind("HTTP/1.1 405", 0), 0u);
	EXPECT_FALSE(http.serve_one(10, handler));	// nobody came

	try {
		HttpListener again(parse_listen(fmt::format("127.0.0.1:{}", http.port())));
		FAIL() << "a second listener bound the same port";
	} catch (const cowscope::Error &e) {
		EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
	}
}
