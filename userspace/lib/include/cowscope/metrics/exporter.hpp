// cowtrace --serve, the parts that need no BPF (in cowcore, unit-tested):
// the Prometheus text exposition (0.0.4) and OpenMetrics 1.0.0, chosen from
// the request's Accept header; the series bookkeeping (exited processes
// kept for a grace period, then dropped; a bound on how many process series
// are kept; counters of dropped series; process-tree totals that stay
// monotonic across dropped children; family series, monotonic too, bounded
// like the process series). The HTTP side is http.hpp beside
// this file; serve.cpp (src/trace/) joins them to a Tracer. It reads the
// tracer's ProcStats (report/model.hpp) as they are.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cowscope/report/model.hpp"

namespace cowtrace {

inline constexpr std::uint64_t kPageBytes = 4096;	// one COW copy copies one 4 KiB page

struct Counts {
	std::uint64_t wp_faults = 0, cow_copies = 0, cow_reuses = 0, zero_fills = 0;
	Counts &operator+=(const Counts &o)
	{
		wp_faults += o.wp_faults;
		cow_copies += o.cow_copies;
		cow_reuses += o.cow_reuses;
		zero_fills += o.zero_fills;
		return *this;
	}
};

// The family series of one exporter (SeriesSet::update() feeds it). A family
// is named by its root (report/model.hpp's family_roots(): a process that
// exec'd, or whose parent is not traced, is a root; one forked without exec
// belongs to its parent's family). Unlike report/'s Family, the root is a
// member of its own family, so every process is in exactly one family and
// the families sum to the tree totals.
//
// Rules (the documented limits):
//  - a family's counters are the sums of its members' increases since the
//    family's series began (each update adds what each member counted since
//    the previous one): they never decrease, also when a member exits, is
//    untracked, or exec()s (then it becomes the root of a family of its
//    own, and its later counts go there);
//  - a family whose members (root included) have all exited is dropped
//    `grace_s` after the last one was seen exited (dropped_exited += 1); a
//    new process that takes the root's pid as a root of its own then
//    starts a new family (the old one, if all gone, is dropped at once);
//  - at most `limit` family series exist at once (the --max-series bound,
//    counted apart from the process series); a family seen while the set
//    is full gets no series (dropped_limit += 1, once until its processes
//    are gone) and its members' counts go only to the tree totals until a
//    place frees up: then its series starts counting from there;
//  - memory: one entry per tracked process (freed when the tracer no
//    longer lists it), the roots of untracked processes only while a
//    tracked process names one as its parent, and the families.
// So, while no family was refused or dropped, the sum over families of each
// counter equals the tree total (SeriesSet::totals()).
class FamilySet {
public:
	struct Family {
		std::string root_comm;	// the root's comm when the series began
		Counts counts;
		std::uint64_t processes_seen = 0;	// processes that joined it
		std::size_t alive = 0;	// members not exited, at the last update
		std::optional<double> gone_at;	// when every member was first seen exited
	};
	FamilySet(std::size_t limit, double grace_s) : limit_(limit), grace_(grace_s) {}
	void update(const std::vector<ProcStats> &procs, double now);
	const std::map<pid_t, Family> &families() const { return families_; }
	std::uint64_t dropped_exited() const { return dropped_exited_; }
	std::uint64_t dropped_limit() const { return dropped_limit_; }
	// bookkeeping sizes (bounded memory): process entries, untracked roots
	std::size_t processes() const { return procs_.size(); }
	std::size_t gone_roots() const { return gone_.size(); }

private:
	struct Member {
		ProcStats last;	// the counts and exited flag at the last update
		pid_t root = 0;
	};
	std::size_t limit_;
	double grace_;
	std::map<pid_t, Member> procs_;
	std::map<pid_t, pid_t> gone_;	// untracked pid -> its root, while a tracked process is its child
	std::map<pid_t, Family> families_;
	std::set<pid_t> refused_;	// roots counted in dropped_limit_, not yet gone
	std::uint64_t dropped_exited_ = 0, dropped_limit_ = 0;
};

// A pid seen again with lower counts than `old`, or alive after `old` had
// exited: a new process under a reused pid.
bool pid_reused(const ProcStats &old, const ProcStats &now);

// The process series of one exporter. update() takes a snapshot of every
// tracked process (all of them, also those not exported) at time `now`
// (seconds, any monotonic origin) and returns the pids whose tracking can
// end (exited, their series dropped or never kept): the caller untracks
// them, which frees their BPF slots.
//
// Rules (the documented limits):
//  - an exited process keeps its series for `grace_s` after it was first
//    seen exited, then the series is dropped (dropped_exited += 1);
//  - at most `limit` process series exist at once; a process seen while
//    the set is full gets no series (dropped_limit += 1, once per process)
//    until a place frees up; its counts still go to the tree totals;
//  - a pid seen again with lower counts, or alive after it had exited, is a
//    new process (pid reuse): the old series is dropped (dropped_exited).
//  - tree totals (--children) are the sum over every process ever tracked,
//    dropped ones included, so they never decrease.
class SeriesSet {
public:
	struct Series {
		ProcStats last;
		std::optional<double> exited_at;
	};
	SeriesSet(std::size_t limit, double grace_s) : limit_(limit), grace_(grace_s), families_(limit, grace_s) {}
	std::vector<pid_t> update(const std::vector<ProcStats> &procs, double now);
	const std::map<pid_t, Series> &series() const { return series_; }
	std::size_t limit() const { return limit_; }
	double grace() const { return grace_; }
	std::uint64_t dropped_exited() const { return dropped_exited_; }
	std::uint64_t dropped_limit() const { return dropped_limit_; }
	// every process ever tracked: the retired ones plus the current snapshot
	Counts totals() const;
	std::size_t refused() const { return refused_.size(); }	// processes now without a series
	// the family series, updated from the same snapshots
	const FamilySet &families() const { return families_; }

private:
	std::size_t limit_;
	double grace_;
	std::map<pid_t, Series> series_;
	std::map<pid_t, ProcStats> unkept_;	// tracked, no series (limit)
	std::set<pid_t> refused_;		// counted in dropped_limit_, not yet gone
	std::map<pid_t, double> unkept_exit_;	// when an unkept process was seen exited
	Counts retired_, current_;
	std::uint64_t dropped_exited_ = 0, dropped_limit_ = 0;
	FamilySet families_;
	void retire(const ProcStats &s);
};

enum class Format { prometheus, openmetrics };

// From an Accept header: OpenMetrics 1.0.0 when the client ranks it at
// least as high as text/plain (Prometheus 2.x asks for it first), else the
// 0.0.4 text format (also for an empty or unknown Accept).
Format negotiate(std::string_view accept);
// "text/plain; version=0.0.4; charset=utf-8" or
// "application/openmetrics-text; version=1.0.0; charset=utf-8".
const char *content_type(Format f);

// A label value or HELP text as the exposition formats want it: backslash,
// double quote (label values) and newline escaped; bytes that are not
// valid UTF-8 become U+FFFD (a comm is any 15 bytes but NUL).
std::string escape_label(std::string_view v);
std::string escape_help(std::string_view v);

// Everything one scrape shows, gathered by serve.cpp.
struct Exposition {
	std::string method;	// the Plan's method name
	std::string copies_by, reuses_by;	// how the Plan counts them
	std::string zero_fills_by;	// "" when zero fills are not told apart (in copies)
	std::string target;	// "-p 1234 --children", "--comm redis-server", "--all"
	bool tree = false;	// --children: emit the tree totals
	pid_t root_pid = 0;
	std::string root_comm;
	bool bpf_stats = false;	// kernel.bpf_stats_enabled was 1: emit run time and count
	struct Prog {
		std::string name;
		std::uint64_t run_time_ns = 0, run_cnt = 0;
	};
	std::vector<Prog> bpf_progs;	// per loaded program
	std::uint64_t untracked = 0;	// processes not tracked: every BPF slot taken
	std::uint64_t tracked = 0;	// entries in the BPF map of tracked processes (procs)
	std::uint64_t infos = 0;	// entries in the BPF map of their facts (infos)
	std::uint64_t slots_used = 0;	// BPF process slots ever handed out (high-water mark)
	std::uint64_t slots_max = 0;
	std::uint64_t rss_bytes = 0;	// the exporter's resident memory
	std::uint64_t scrapes = 0;
	double scrape_seconds_last = 0;	// time taken to serve the previous scrape
};

std::string format_metrics(const SeriesSet &set, const Exposition &e, Format f);

} // namespace cowtrace
