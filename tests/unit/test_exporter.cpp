// cowtrace --serve without BPF: exposition formats, Accept negotiation,
// escaping, the series rules (grace, bound, dropped counters, tree totals),
// --serve addresses; the HTTP server (libmicrohttpd) on loopback: routes,
// head limits, basic auth; --web-config's parser and password checks.
#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cowscope/base/error.hpp"
#include "cowscope/metrics/exporter.hpp"
#include "cowscope/metrics/http.hpp"
#include "cowscope/metrics/web_config.hpp"

using namespace cowtrace;

namespace {

ProcStats proc(pid_t pid, std::uint64_t copies, bool exited = false, std::string comm = "worker")
{
	ProcStats s;
	s.pid = pid;
	s.ppid = 1;
	s.comm = std::move(comm);
	s.exited = exited;
	s.wp_faults = copies + 3;
	s.cow_copies = copies;
	s.cow_reuses = 1;
	s.zero_fills = 2;
	return s;
}

Exposition expo()
{
	Exposition e;
	e.method = "vmevent";
	e.copies_by = "vm events";
	e.reuses_by = "PGREUSE";
	e.zero_fills_by = "rss_stat";
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

// One update of `set` with the processes the tracer holds (`state`) at time
// `t`; the ones the set untracked leave `state`, as the tracer frees them.
void update_from(SeriesSet &set, std::map<pid_t, ProcStats> &state, double t)
{
	std::vector<ProcStats> snap;
	for (const auto &[p, s] : state)
		snap.push_back(s);
	for (pid_t gone : set.update(snap, t))
		state.erase(gone);
}

// Every one of `parts` somewhere in the exposition `t`.
void expect_in(const std::string &t, std::initializer_list<std::string_view> parts)
{
	for (std::string_view p : parts)
		EXPECT_NE(t.find(p), std::string::npos) << "missing \"" << p << "\" in:\n" << t;
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
	expect_in(t, {"# HELP cowtrace_cow_copies_total ",
		      "# TYPE cowtrace_cow_copies_total counter\n",
		      "cowtrace_cow_copies_total{pid=\"42\",ppid=\"1\",comm=\"re\\\"dis\\\\x\\ny\"} 7\n",
		      "cowtrace_cow_copied_bytes_total{pid=\"42\",ppid=\"1\",comm=\"re\\\"dis\\\\x\\ny\"} 28672\n",
		      "cowtrace_wp_faults_total{pid=\"42\"",
		      "cowtrace_cow_reuses_total{pid=\"42\"",
		      // zero fills: their own counter, not in the copies or the copied bytes
		      "# TYPE cowtrace_zero_fills_total counter\n",
		      "cowtrace_zero_fills_total{pid=\"42\",ppid=\"1\",comm=\"re\\\"dis\\\\x\\ny\"} 2\n",
		      "# TYPE cowtrace_method_info gauge\ncowtrace_method_info{method=\"vmevent\"",
		      "zero_fills_by=\"rss_stat\",target=\"--all\"} 1\n",
		      "cowtrace_series 1\n",
		      "cowtrace_series_dropped_total{reason=\"exited\"} 0\n"});
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
	expect_in(t, {"# TYPE cowtrace_cow_copies counter\n# HELP cowtrace_cow_copies ",
		      "# TYPE cowtrace_cow_copied_bytes counter\n# UNIT cowtrace_cow_copied_bytes bytes\n",
		      "# TYPE cowtrace_method info\n",
		      "cowtrace_method_info{method=\"vmevent\"",
		      "cowtrace_bpf_run_time_seconds_total{program=\"vme_fault_user\"} 1.500000000\n",
		      "cowtrace_bpf_run_time_seconds_total{program=\"on_fork\"} 0.000002000\n",
		      "cowtrace_bpf_runs_total{program=\"vme_fault_user\"} 3\n",
		      "cowtrace_tree_cow_copies_total{root_pid=\"42\",root_comm=\"worker\"} 7\n",
		      "cowtrace_tree_zero_fills_total{root_pid=\"42\",root_comm=\"worker\"} 2\n"});
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
		update_from(set, state, t);
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

// Families (FamilySet, fed by SeriesSet::update): the report's rule, the
// root a member of its own family.
namespace {

ProcStats fproc(pid_t pid, pid_t ppid, std::uint64_t copies, std::uint32_t execs = 0, const char *comm = "postgres",
		bool exited = false)
{
	ProcStats s = proc(pid, copies, exited, comm);
	s.ppid = ppid;
	s.execs = execs;
	return s;
}

// The family counters of `set` summed over the families.
Counts family_sum(const SeriesSet &set)
{
	Counts c;
	for (const auto &[root, f] : set.families().families())
		c += f.counts;
	return c;
}

void expect_sum_is_tree(const SeriesSet &set)
{
	Counts f = family_sum(set), t = set.totals();
	EXPECT_EQ(f.wp_faults, t.wp_faults);
	EXPECT_EQ(f.cow_copies, t.cow_copies);
	EXPECT_EQ(f.cow_reuses, t.cow_reuses);
	EXPECT_EQ(f.zero_fills, t.zero_fills);
}

} // namespace

TEST(ExporterFamilies, TheReportsRuleWithTheRootInItsFamily)
{
	// as tests/unit/test_report.cpp's: 10 exec'd (parent 1 untraced) forks
	// 11..15, 12 forks 16; 20 was exec'd by 10 and forks 21
	std::vector<ProcStats> procs = {fproc(10, 1, 5, 1),  fproc(11, 10, 10), fproc(12, 10, 20),
					fproc(13, 10, 30),    fproc(14, 10, 40), fproc(15, 10, 100),
					fproc(16, 12, 1, 0, "helper"), fproc(20, 10, 7, 1, "sh"), fproc(21, 20, 3, 0, "sh")};
	EXPECT_EQ(family_roots(procs), (std::vector<pid_t>{10, 10, 10, 10, 10, 10, 10, 20, 20}));
	SeriesSet set(100, 60);
	set.update(procs, 0);
	const auto &fams = set.families().families();
	ASSERT_EQ(fams.size(), 2u);
	EXPECT_EQ(fams.at(10).root_comm, "postgres");
	EXPECT_EQ(fams.at(10).counts.cow_copies, 206u);
	EXPECT_EQ(fams.at(10).counts.wp_faults, 206u + 7 * 3);
	EXPECT_EQ(fams.at(10).processes_seen, 7u);
	EXPECT_EQ(fams.at(10).alive, 7u);
	EXPECT_EQ(fams.at(20).root_comm, "sh");
	EXPECT_EQ(fams.at(20).counts.cow_copies, 10u);
	EXPECT_EQ(fams.at(20).processes_seen, 2u);
	expect_sum_is_tree(set);
	// the exposition
	Exposition e = expo();
	std::string t = format_metrics(set, e, Format::prometheus);
	expect_in(t, {"# HELP cowtrace_family_cow_copies_total ", "# TYPE cowtrace_family_cow_copies_total counter\n",
		      "cowtrace_family_cow_copies_total{root_pid=\"10\",root_comm=\"postgres\"} 206\n",
		      "cowtrace_family_cow_copies_total{root_pid=\"20\",root_comm=\"sh\"} 10\n",
		      "cowtrace_family_wp_faults_total{root_pid=\"10\",root_comm=\"postgres\"} 227\n",
		      "cowtrace_family_cow_reuses_total{root_pid=\"10\",root_comm=\"postgres\"} 7\n",
		      "cowtrace_family_zero_fills_total{root_pid=\"10\",root_comm=\"postgres\"} 14\n",
		      "cowtrace_family_cow_copied_bytes_total{root_pid=\"20\",root_comm=\"sh\"} 40960\n",
		      "# TYPE cowtrace_family_processes_seen_total counter\n",
		      "cowtrace_family_processes_seen_total{root_pid=\"10\",root_comm=\"postgres\"} 7\n",
		      "# TYPE cowtrace_family_processes_alive gauge\n",
		      "cowtrace_family_processes_alive{root_pid=\"20\",root_comm=\"sh\"} 2\n", "cowtrace_family_series 2\n",
		      "cowtrace_family_series_dropped_total{reason=\"exited\"} 0\n",
		      "cowtrace_family_series_dropped_total{reason=\"limit\"} 0\n"});
	std::string om = format_metrics(set, e, Format::openmetrics);
	expect_in(om, {"# TYPE cowtrace_family_processes_seen counter\n", "# TYPE cowtrace_family_processes_alive gauge\n",
		       "# UNIT cowtrace_family_cow_copied_bytes bytes\n",
		       "cowtrace_family_processes_seen_total{root_pid=\"10\",root_comm=\"postgres\"} 7\n"});
	// a root's comm escaped as the process series' are
	SeriesSet odd(10, 60);
	odd.update({fproc(7, 1, 1, 1, "a\"b\\c")}, 0);
	expect_in(format_metrics(odd, e, Format::prometheus),
		  {"cowtrace_family_cow_copies_total{root_pid=\"7\",root_comm=\"a\\\"b\\\\c\"} 1\n"});
}

// A member that exits is untracked (its process series gone); its counts
// stay in its family; a child of an untracked member still finds the family.
TEST(ExporterFamilies, CountsStayWhenMembersExitAndAreUntracked)
{
	SeriesSet set(100, 2);
	std::map<pid_t, ProcStats> state;	// what the tracer holds
	double t = 0;
	std::uint64_t last = 0;
	auto step = [&] {
		update_from(set, state, t);
		t += 1;
		ASSERT_EQ(set.families().families().count(10), 1u);
		std::uint64_t now = set.families().families().at(10).counts.cow_copies;
		EXPECT_GE(now, last);	// monotonic
		last = now;
		expect_sum_is_tree(set);
	};
	state[10] = fproc(10, 1, 5, 1);
	state[11] = fproc(11, 10, 3);
	state[12] = fproc(12, 10, 2);
	step();
	state[11] = fproc(11, 10, 4, 0, "postgres", true);
	state[13] = fproc(13, 12, 6);	// forked by 12 without exec
	step();
	state[12] = fproc(12, 10, 2, 0, "postgres", true);
	for (int i = 0; i < 4; i++)
		step();	// 11 and 12 past their grace: untracked
	EXPECT_EQ(state.count(11) + state.count(12), 0u);
	state[14] = fproc(14, 13, 1);	// 13's parent 12 is gone: its root found through it
	state[13].cow_copies = 7;
	step();
	step();
	const auto &f = set.families().families().at(10);
	EXPECT_EQ(f.counts.cow_copies, 5u + 4 + 2 + 7 + 1);
	EXPECT_EQ(f.processes_seen, 5u);
	EXPECT_EQ(f.alive, 3u);	// 10, 13, 14
	EXPECT_EQ(set.families().families().size(), 1u);
	EXPECT_EQ(set.families().gone_roots(), 1u);	// 12: 13's parent
	EXPECT_EQ(set.families().processes(), 3u);
	state.erase(13);
	state.erase(14);
	step();
	step();
	EXPECT_EQ(set.families().gone_roots(), 0u);	// no tracked process names 12 any more
	EXPECT_EQ(set.families().processes(), 1u);
	EXPECT_EQ(set.families().families().at(10).counts.cow_copies, 19u);
}

TEST(ExporterFamilies, ExecMovesAMemberToAFamilyOfItsOwn)
{
	SeriesSet set(100, 60);
	set.update({fproc(10, 1, 5, 1), fproc(11, 10, 3)}, 0);
	EXPECT_EQ(set.families().families().at(10).counts.cow_copies, 8u);
	set.update({fproc(10, 1, 5, 1), fproc(11, 10, 9, 1, "sh")}, 1);	// 11 exec'd sh, then copied 6 more
	const auto &fams = set.families().families();
	EXPECT_EQ(fams.at(10).counts.cow_copies, 8u);	// kept
	EXPECT_EQ(fams.at(11).counts.cow_copies, 6u);
	EXPECT_EQ(fams.at(11).root_comm, "sh");
	EXPECT_EQ(fams.at(11).processes_seen, 1u);
	EXPECT_EQ(fams.at(10).processes_seen, 2u);	// a counter: 11 joined it once
	EXPECT_EQ(fams.at(10).alive, 1u);
	expect_sum_is_tree(set);
}

TEST(ExporterFamilies, DroppedAGraceAfterEveryMemberExited)
{
	SeriesSet set(100, 5);
	set.update({fproc(10, 1, 5, 1), fproc(11, 10, 3)}, 0);
	set.update({fproc(10, 1, 5, 1), fproc(11, 10, 3, 0, "postgres", true)}, 1);
	EXPECT_FALSE(set.families().families().at(10).gone_at);	// the root lives on
	set.update({fproc(10, 1, 6, 1, "postgres", true), fproc(11, 10, 3, 0, "postgres", true)}, 2);
	set.update({fproc(10, 1, 6, 1, "postgres", true), fproc(11, 10, 3, 0, "postgres", true)}, 6.9);
	ASSERT_EQ(set.families().families().count(10), 1u);
	EXPECT_EQ(set.families().families().at(10).alive, 0u);
	EXPECT_EQ(set.families().families().at(10).counts.cow_copies, 9u);
	set.update({fproc(10, 1, 6, 1, "postgres", true), fproc(11, 10, 3, 0, "postgres", true)}, 7);
	EXPECT_EQ(set.families().families().count(10), 0u);
	EXPECT_EQ(set.families().dropped_exited(), 1u);
	// a new root under pid 10 in a later family's place
	set.update({fproc(10, 1, 1, 1, "redis")}, 8);
	ASSERT_EQ(set.families().families().count(10), 1u);
	EXPECT_EQ(set.families().families().at(10).root_comm, "redis");
	EXPECT_EQ(set.families().families().at(10).counts.cow_copies, 1u);
}

TEST(ExporterFamilies, ARootsPidReusedStartsANewFamily)
{
	SeriesSet set(100, 60);
	set.update({fproc(5, 1, 100, 1, "old")}, 0);
	set.update({fproc(5, 1, 100, 1, "old", true)}, 1);
	set.update({fproc(5, 1, 2, 1, "new")}, 2);	// within the old family's grace
	ASSERT_EQ(set.families().families().count(5), 1u);
	EXPECT_EQ(set.families().families().at(5).root_comm, "new");
	EXPECT_EQ(set.families().families().at(5).counts.cow_copies, 2u);
	EXPECT_EQ(set.families().dropped_exited(), 1u);
}

TEST(ExporterFamilies, LimitRefusesNewFamiliesAndCountsThemOnce)
{
	SeriesSet set(2, 60);
	set.update({fproc(1, 0, 1, 1), fproc(2, 0, 2, 1), fproc(3, 0, 3, 1)}, 0);
	EXPECT_EQ(set.families().families().size(), 2u);
	EXPECT_EQ(set.families().dropped_limit(), 1u);
	set.update({fproc(1, 0, 1, 1), fproc(2, 0, 2, 1), fproc(3, 0, 4, 1)}, 1);
	EXPECT_EQ(set.families().dropped_limit(), 1u);	// once per family
	EXPECT_EQ(set.families().families().count(3), 0u);
	// the tree keeps 3's counts; the families what they had room for
	EXPECT_EQ(set.totals().cow_copies, 7u);
	EXPECT_EQ(family_sum(set).cow_copies, 3u);
}

// A fork-per-connection server for a long time: one family, bounded memory.
TEST(ExporterFamilies, BoundedUnderAForkingLoad)
{
	SeriesSet set(50, 2);
	std::map<pid_t, ProcStats> state;
	state[100] = fproc(100, 1, 10, 1, "server");
	std::uint64_t expect = 10;
	double t = 0;
	std::size_t most = 0;
	for (pid_t pid = 1000; pid < 6000; pid++) {
		state[pid] = fproc(pid, 100, 3, 0, "server");	// each connection copies 3 pages
		expect += 3;
		if (pid >= 1020)
			state[pid - 20].exited = true;
		update_from(set, state, t);
		most = std::max(most, set.families().processes() + set.families().gone_roots());
		t += 0.1;
	}
	ASSERT_EQ(set.families().families().size(), 1u);
	const auto &f = set.families().families().at(100);
	EXPECT_EQ(f.counts.cow_copies, expect);
	EXPECT_EQ(f.processes_seen, 5001u);
	EXPECT_EQ(set.totals().cow_copies, expect);
	EXPECT_LE(most, 50u + 20u + 1);	// the live tree, not the churn
	EXPECT_EQ(set.families().gone_roots(), 0u);
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

TEST(ExporterListen, TellsLoopback)
{
	EXPECT_TRUE(parse_listen("9477").loopback());
	EXPECT_TRUE(parse_listen("127.1.2.3:1").loopback());
	EXPECT_TRUE(parse_listen("[::1]:1").loopback());
	EXPECT_FALSE(parse_listen("0.0.0.0:1").loopback());
	EXPECT_FALSE(parse_listen("[::]:1").loopback());
	EXPECT_FALSE(parse_listen("10.0.0.1:1").loopback());
}

TEST(ExporterListen, LoopbackOnlyWithoutTls)
{
	WebConfig plain, tls, tls_auth, tls_certs, auth_only;
	tls.cert_file = tls.key_file = "x";
	tls_auth = tls;
	tls_auth.users["p"] = "$2b$04$x";
	tls_certs = tls;
	tls_certs.client_auth = ClientAuth::RequireAndVerify;
	auth_only.users["p"] = "$2b$04$x";
	for (const char *a : {"0.0.0.0:9477", "[::]:9477", "10.1.2.3:80"}) {
		EXPECT_THROW(check_exposure(parse_listen(a), plain), cowscope::UsageError) << a;
		EXPECT_THROW(check_exposure(parse_listen(a), auth_only), cowscope::UsageError) << a;
		EXPECT_NE(check_exposure(parse_listen(a), tls).find("without authentication"), std::string::npos);
		EXPECT_EQ(check_exposure(parse_listen(a), tls_auth), "");
		EXPECT_EQ(check_exposure(parse_listen(a), tls_certs), "");
	}
	try {
		check_exposure(parse_listen("0.0.0.0:9477"), plain);
	} catch (const cowscope::UsageError &e) {
		EXPECT_NE(std::string(e.what()).find("--serve 0.0.0.0:9477: not a loopback address"), std::string::npos)
			<< e.what();
	}
	EXPECT_EQ(check_exposure(parse_listen("9477"), plain), "");
	EXPECT_EQ(check_exposure(parse_listen("[::1]:9477"), tls), "");
	EXPECT_NE(check_exposure(parse_listen("9477"), auth_only).find("in clear"), std::string::npos);
}

TEST(ExporterHttp, ThrottlesPasswordGuessesPerAddress)
{
	AuthThrottle t(3, 60, 2);
	for (int i = 0; i < 3; i++) {
		EXPECT_TRUE(t.allowed("10.0.0.1", 100 + i));
		t.failed("10.0.0.1", 100 + i);
	}
	EXPECT_FALSE(t.allowed("10.0.0.1", 103));
	EXPECT_DOUBLE_EQ(t.retry_after("10.0.0.1", 103), 57);
	EXPECT_TRUE(t.allowed("10.0.0.2", 103));	// another address is not held
	EXPECT_FALSE(t.allowed("10.0.0.1", 159.9));
	EXPECT_TRUE(t.allowed("10.0.0.1", 160));	// its window is over
	EXPECT_EQ(t.retry_after("10.0.0.1", 160), 0);
	// bounded: a third address pushes out the one whose window began first
	t.failed("a", 200);
	t.failed("b", 201);
	t.failed("c", 202);
	EXPECT_EQ(t.size(), 2u);
}

TEST(ExporterHttp, Routes)
{
	EXPECT_EQ(route("GET", "/metrics"), Route::Metrics);
	EXPECT_EQ(route("HEAD", "/metrics?x=1"), Route::Metrics);
	EXPECT_EQ(route("GET", "/"), Route::Index);
	EXPECT_EQ(route("GET", "/metricsx"), Route::NotFound);
	EXPECT_EQ(route("GET", ""), Route::NotFound);
	EXPECT_EQ(route("POST", "/metrics"), Route::MethodNotAllowed);
	EXPECT_EQ(route("get", "/metrics"), Route::MethodNotAllowed);	// methods are case-sensitive
}

namespace {

// One request over a fresh loopback connection; what came back until the
// server closed it (a 10 s receive timeout bounds a server that does not).
std::string http_get(std::uint16_t port, const std::string &request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	timeval tv{10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
		close(fd);
		return "connect failed";
	}
	std::size_t off = 0;
	while (off < request.size()) {
		ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;	// the server may close before reading a request it refuses
		off += static_cast<std::size_t>(n);
	}
	std::string out;
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<std::size_t>(n));
	close(fd);
	return out;
}

HttpServer::Response echo_accept(const std::string &accept)
{
	return HttpServer::Response{content_type(negotiate(accept)), "body " + accept + "\n"};
}

// The server answers on this thread while a client sends `request`
// (bounded: 10 s).
std::string roundtrip(HttpServer &http, const std::string &request, unsigned *served = nullptr)
{
	auto got = std::async(std::launch::async, http_get, http.port(), request);
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	unsigned n = 0;
	while (got.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
	       std::chrono::steady_clock::now() < deadline)
		n += http.run(50, echo_accept);
	if (served)
		*served = n;
	return got.get();
}

int status_of(const std::string &reply)
{
	if (reply.rfind("HTTP/1.1 ", 0) != 0)
		return -1;
	return std::atoi(reply.c_str() + 9);
}

std::string crypt_hash(const char *prefix, const char *password)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (!crypt_gensalt_rn(prefix, prefix[1] == '2' ? 4 : 0, nullptr, 0, salt, sizeof salt))
		return "";
	crypt_data data{};
	const char *h = crypt_rn(password, salt, &data, sizeof data);
	return h ? h : "";
}

} // namespace

TEST(ExporterHttp, ServesMetricsOnLoopbackAndRefusesAPortInUse)
{
	HttpServer http(parse_listen("127.0.0.1:0"), WebConfig{});
	ASSERT_GT(http.port(), 0);
	EXPECT_EQ(http.url(), fmt::format("http://127.0.0.1:{}/metrics", http.port()));
	unsigned served = 0;
	std::string r = roundtrip(http, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
				       "Accept: application/openmetrics-text\r\n\r\n", &served);
	EXPECT_EQ(status_of(r), 200) << r;
	EXPECT_EQ(served, 1u);
	EXPECT_NE(r.find("Content-Type: application/openmetrics-text; version=1.0.0"), std::string::npos) << r;
	EXPECT_NE(r.find("Content-Length: 34\r\n"), std::string::npos) << r;
	EXPECT_NE(r.find("\r\n\r\nbody application/openmetrics-text\n"), std::string::npos) << r;

	r = roundtrip(http, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	EXPECT_EQ(status_of(r), 200) << r;
	EXPECT_EQ(r.substr(r.find("\r\n\r\n")), "\r\n\r\n") << "a body after HEAD: " << r;
	EXPECT_EQ(status_of(roundtrip(http, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 404);
	r = roundtrip(http, "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
	EXPECT_EQ(status_of(r), 405) << r;
	EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos) << r;
	r = roundtrip(http, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
	EXPECT_EQ(status_of(r), 400) << r;
	// two requests on one connection: kept alive, both answered
	r = roundtrip(http, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
			    "Connection: close\r\n\r\n", &served);
	EXPECT_EQ(served, 2u) << r;
	EXPECT_EQ(r.find("Connection: close"), r.rfind("Connection: close")) << "the first one closed: " << r;
	EXPECT_NE(r.find("HTTP/1.1 200", r.find("body") + 1), std::string::npos) << r;
	// not HTTP: closed, with a 400 or without an answer
	r = roundtrip(http, "hello\r\n\r\n");
	EXPECT_TRUE(r.empty() || status_of(r) == 400) << r;
	EXPECT_EQ(http.run(10, echo_accept), 0u);	// nobody came

	try {
		HttpServer again(parse_listen(fmt::format("127.0.0.1:{}", http.port())), WebConfig{});
		FAIL() << "a second server bound the same port";
	} catch (const cowscope::Error &e) {
		EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
	}
}

TEST(ExporterHttp, CapsTheRequestHead)
{
	HttpServer http(parse_listen("127.0.0.1:0"), WebConfig{});
	EXPECT_EQ(http.limits().head_bytes, 8192u);
	std::string many = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
	for (int i = 0; i < 100; i++)
		many += fmt::format("X-{}: y\r\n", i);
	std::string r = roundtrip(http, many + "\r\n");
	EXPECT_EQ(status_of(r), 431) << r;
	EXPECT_NE(r.find("more than 64 header fields"), std::string::npos) << r;
	// a header larger than the head's memory
	r = roundtrip(http, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
	EXPECT_EQ(status_of(r), 431) << r;
	// a request line larger than it
	r = roundtrip(http, "GET /" + std::string(64 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
	EXPECT_EQ(status_of(r), 414) << r;
	// and the server still answers
	EXPECT_EQ(status_of(roundtrip(http, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 200);
}

TEST(ExporterHttp, BasicAuth)
{
	WebConfig web;
	std::string hash = crypt_hash("$2b$", "s3cret");
	ASSERT_EQ(hash.rfind("$2b$04$", 0), 0u) << hash;
	web.users["prometheus"] = hash;
	HttpServer http(parse_listen("127.0.0.1:0"), web);
	const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
	unsigned served = 1;
	std::string r = roundtrip(http, get + "\r\n", &served);
	EXPECT_EQ(status_of(r), 401) << r;
	EXPECT_EQ(served, 0u);
	EXPECT_NE(r.find("WWW-Authenticate: Basic realm=\"cowtrace\""), std::string::npos) << r;
	// "prometheus:wrong", "nobody:s3cret", "prometheus:s3cret" in base64
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n\r\n")), 401);
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic bm9ib2R5OnMzY3JldA==\r\n\r\n")), 401);
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n\r\n")), 200);
	// again: from the cache of checked passwords; a wrong one still fails
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n\r\n")), 200);
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n\r\n")), 401);
	// every path needs it
	EXPECT_EQ(status_of(roundtrip(http, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 401);
	// guessing: after 10 wrong passwords from one address, 429 without a
	// crypt run (3 above, 7 here); the password already checked right
	// still gets in
	for (int i = 0; i < 7; i++)
		EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n\r\n")), 401);
	r = roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n\r\n");
	EXPECT_EQ(status_of(r), 429) << r;
	EXPECT_NE(r.find("Retry-After: "), std::string::npos) << r;
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic bm9ib2R5OnMzY3JldA==\r\n\r\n")), 429);
	EXPECT_EQ(status_of(roundtrip(http, get + "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n\r\n")), 200);
}

TEST(WebConfig, PasswordsThroughLibcrypt)
{
	for (const char *prefix : {"$2b$", "$y$"}) {
		std::string h = crypt_hash(prefix, "correct horse");
		ASSERT_EQ(h.rfind(prefix, 0), 0u) << h;
		EXPECT_TRUE(password_matches("correct horse", h)) << h;
		EXPECT_FALSE(password_matches("correct horsf", h)) << h;
		EXPECT_FALSE(password_matches("", h)) << h;
		EXPECT_FALSE(password_matches(std::string_view("correct horse\0x", 15), h)) << h;
	}
	EXPECT_FALSE(password_matches("x", "not a hash"));
	EXPECT_FALSE(password_matches("x", ""));
}

TEST(WebConfig, ParsesExporterToolkitKeys)
{
	std::string hash = crypt_hash("$2b$", "pw");
	WebConfig c = parse_web_config("# exporter-toolkit's keys\n"
				       "tls_server_config:\n"
				       "  cert_file: tls/server.crt\n"
				       "  key_file: \"/etc/cowscope/tls/server.key\"\n"
				       "  client_auth_type: RequireAndVerifyClientCert\n"
				       "  client_ca_file: ca.crt\n"
				       "basic_auth_users:\n"
				       "  prometheus: '" + hash + "'\n"
				       "  grafana: " + hash + "\n",
				       "web.yml");
	EXPECT_TRUE(c.tls());
	EXPECT_EQ(c.cert_file, "tls/server.crt");
	EXPECT_EQ(c.key_file, "/etc/cowscope/tls/server.key");
	EXPECT_EQ(c.client_ca_file, "ca.crt");
	EXPECT_EQ(c.client_auth, ClientAuth::RequireAndVerify);
	ASSERT_EQ(c.users.size(), 2u);
	EXPECT_EQ(c.users.at("prometheus"), hash);
	EXPECT_EQ(c.describe(), "TLS, client certificates required, basic auth (2 users)");
	EXPECT_TRUE(c.cert_pem.empty());	// parse reads no file

	// each client_auth_type cowtrace takes, to its ClientAuth
	const struct {
		const char *type;
		ClientAuth auth;
		const char *ca;
	} auths[] = {{"NoClientCert", ClientAuth::None, ""},
		     {"VerifyClientCertIfGiven", ClientAuth::VerifyIfGiven, "  client_ca_file: ca.crt\n"},
		     {"RequireAndVerifyClientCert", ClientAuth::RequireAndVerify, "  client_ca_file: ca.crt\n"}};
	for (const auto &a : auths)
		EXPECT_EQ(parse_web_config(fmt::format("tls_server_config:\n  cert_file: c\n  key_file: k\n"
							"  client_auth_type: {}\n{}",
							a.type, a.ca),
					   "web.yml")
				  .client_auth,
			  a.auth)
			<< a.type;

	WebConfig empty = parse_web_config("", "web.yml");
	EXPECT_FALSE(empty.tls());
	EXPECT_TRUE(empty.users.empty());
	EXPECT_EQ(parse_web_config("basic_auth_users:\n", "w").users.size(), 0u);
}

TEST(WebConfig, RefusesWhatItDoesNotTakeNamingTheLine)
{
	std::string hash = crypt_hash("$2b$", "pw");
	struct Case {
		std::string text, says;
	};
	const Case cases[] = {
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  keyfile: c\n", "web.yml:4: tls_server_config: "
										     "unknown key \"keyfile\""},
		{"basic_auth_users:\n  a: " + hash + "\n  a: " + hash + "\n", "web.yml:3: basic_auth_users: \"a\" given twice"},
		{"tls_server_config:\n  cert_file: a\n", "web.yml:1: tls_server_config: both cert_file and key_file"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
		 "web.yml:4: client_auth_type: expected NoClientCert"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
		 "RequireAnyClientCert is not supported"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n",
		 "web.yml:4: client_auth_type: VerifyClientCertIfGiven needs client_ca_file"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
		 "web.yml:4: client_ca_file is set but client_auth_type is NoClientCert"},
		{"\n\nbasic_auth_users:\n  a: $1$abcdefgh$WsL2UNoSgEu2brdPxw/sj/\n", "web.yml:4: basic_auth_users: a: a legacy hash"},
		{"basic_auth_users:\n  a: hunter2\n", "web.yml:2: basic_auth_users: a: not a crypt(5) hash"},
		{"basic_auth_users:\n  a: abJnggxhB/yWI\n", "web.yml:2: basic_auth_users: a: not a crypt(5) hash"},
		{"basic_auth_users:\n  a: $9$abcdefghijklmnop\n", "web.yml:2: basic_auth_users: a: not a crypt(5) hash"},
		{"basic_auth_users:\n  'a:b': " + hash + "\n", "web.yml:2: basic_auth_users: a user name is not empty and "
								"has no ':'"},
		{"basic_auth_users:\n  - a\n", "web.yml:2: basic_auth_users: expected a mapping"},
		{"http_server_config:\n  http2: false\n", "web.yml:1: http_server_config is not supported by cowtrace"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n",
		 "web.yml:4: tls_server_config: min_version is not supported"},
		{"users: {}\n", "web.yml:1: unknown key \"users\""},
		{"- a\n- b\n", "web.yml:1: the top level: expected a mapping"},
		{"tls_server_config: [\n", "web.yml:2: not valid YAML"},
		{"tls_server_config:\n  cert_file: [a]\n  key_file: b\n", "web.yml:2: cert_file: expected a string"},
	};
	for (const Case &c : cases) {
		try {
			parse_web_config(c.text, "web.yml");
			ADD_FAILURE() << "accepted: " << c.text;
		} catch (const cowscope::UsageError &e) {
			EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos)
				<< "got: " << e.what() << "\nwanted: " << c.says;
			EXPECT_EQ(std::string(e.what()).rfind("--web-config ", 0), 0u) << e.what();
		}
	}
}

TEST(WebConfig, LoadsItsFilesRelativeToItsFolder)
{
	char dir[] = "/tmp/cowtrace-webconfig-XXXXXX";
	ASSERT_TRUE(mkdtemp(dir));
	std::string d = dir;
	auto put = [&](const std::string &name, const std::string &text) {
		FILE *f = std::fopen((d + "/" + name).c_str(), "w");
		ASSERT_TRUE(f);
		std::fputs(text.c_str(), f);
		std::fclose(f);
	};
	put("web.yml", "tls_server_config:\n  cert_file: c.pem\n  key_file: " + d + "/k.pem\n");
	put("c.pem", "CERT");
	put("k.pem", "KEY");
	WebConfig c = load_web_config(d + "/web.yml");
	EXPECT_EQ(c.cert_file, d + "/c.pem");
	EXPECT_EQ(c.cert_pem, "CERT");
	EXPECT_EQ(c.key_pem, "KEY");
	put("web.yml", "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n");
	try {
		load_web_config(d + "/web.yml");
		ADD_FAILURE() << "a missing cert_file was accepted";
	} catch (const cowscope::Error &e) {
		EXPECT_NE(std::string(e.what()).find("cannot read cert_file " + d + "/missing.pem"), std::string::npos)
			<< e.what();
	}
	EXPECT_THROW(load_web_config(d + "/nothing.yml"), cowscope::Error);
	for (const char *f : {"web.yml", "c.pem", "k.pem"})
		unlink((d + "/" + f).c_str());
	rmdir(dir);
}
