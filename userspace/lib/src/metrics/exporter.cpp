// cowtrace --serve without BPF: exposition formats and series bookkeeping
// (see exporter.hpp).
#include "cowscope/metrics/exporter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

// ---- series ---------------------------------------------------------------

namespace {

Counts counts_of(const ProcStats &s)
{
	return {s.wp_faults, s.cow_copies, s.cow_reuses, s.zero_fills};
}

void subtract(Counts &a, const Counts &b)
{
	a.wp_faults -= std::min(a.wp_faults, b.wp_faults);
	a.cow_copies -= std::min(a.cow_copies, b.cow_copies);
	a.cow_reuses -= std::min(a.cow_reuses, b.cow_reuses);
	a.zero_fills -= std::min(a.zero_fills, b.zero_fills);
}

bool nonzero(const Counts &c)
{
	return c.wp_faults || c.cow_copies || c.cow_reuses || c.zero_fills;
}

} // namespace

bool pid_reused(const ProcStats &old, const ProcStats &now)
{
	return (old.exited && !now.exited) || now.wp_faults < old.wp_faults || now.cow_copies < old.cow_copies ||
	       now.cow_reuses < old.cow_reuses || now.zero_fills < old.zero_fills;
}

void FamilySet::update(const std::vector<ProcStats> &procs, double now)
{
	std::map<pid_t, const ProcStats *> by_pid;
	std::set<pid_t> parents;
	for (const ProcStats &s : procs) {
		by_pid[s.pid] = &s;
		parents.insert(s.ppid);
	}
	// processes the tracer no longer lists: freed; their roots stay while
	// a tracked process names one as its parent (so that its family is
	// found through it), the others go: the map is the size of the live
	// tree, not of the churn
	for (auto it = procs_.begin(); it != procs_.end();) {
		if (by_pid.count(it->first)) {
			++it;
			continue;
		}
		gone_[it->first] = it->second.root;
		it = procs_.erase(it);
	}
	std::erase_if(gone_, [&](const auto &e) { return !parents.count(e.first) || by_pid.count(e.first); });

	std::vector<pid_t> roots = family_roots(procs, &gone_);
	for (auto &[r, f] : families_)
		f.alive = 0;
	std::set<pid_t> wanted;	// roots of the processes listed now
	for (std::size_t i = 0; i < procs.size(); i++) {
		const ProcStats &s = procs[i];
		pid_t r = roots[i];
		wanted.insert(r);
		auto m = procs_.find(s.pid);
		bool fresh = m == procs_.end() || pid_reused(m->second.last, s);
		bool joined = fresh || m->second.root != r;
		Counts delta = counts_of(s);
		if (!fresh)
			subtract(delta, counts_of(m->second.last));
		auto f = families_.find(r);
		// a new root under the pid of a family whose members all exited:
		// that family is over
		if (fresh && r == s.pid && f != families_.end() && f->second.gone_at) {
			dropped_exited_++;
			families_.erase(f);
			f = families_.end();
		}
		if (f == families_.end() && (joined || nonzero(delta))) {
			if (families_.size() < limit_) {
				auto root = by_pid.find(r);	// a root no longer listed: its member's comm
				f = families_.emplace(r, Family{}).first;
				f->second.root_comm = root != by_pid.end() ? root->second->comm : s.comm;
				refused_.erase(r);
			} else if (refused_.insert(r).second) {
				dropped_limit_++;
			}
		}
		if (f != families_.end()) {
			f->second.counts += delta;
			f->second.processes_seen += joined;
			f->second.alive += !s.exited;
		}
		procs_[s.pid] = Member{s, r};
	}
	for (auto it = families_.begin(); it != families_.end();) {
		Family &f = it->second;
		if (f.alive) {
			f.gone_at.reset();
		} else if (!f.gone_at) {
			f.gone_at = now;
		}
		if (f.gone_at && now - *f.gone_at >= grace_) {
			dropped_exited_++;
			it = families_.erase(it);
		} else {
			++it;
		}
	}
	std::erase_if(refused_, [&](pid_t r) { return !wanted.count(r); });
}

void SeriesSet::retire(const ProcStats &s)
{
	retired_ += counts_of(s);
}

std::vector<pid_t> SeriesSet::update(const std::vector<ProcStats> &procs, double now)
{
	std::vector<pid_t> done;
	Counts current;
	std::set<pid_t> seen;
	for (const ProcStats &s : procs) {
		seen.insert(s.pid);
		current += counts_of(s);
		auto it = series_.find(s.pid);
		if (it != series_.end()) {
			const ProcStats &old = it->second.last;
			if (!pid_reused(old, s)) {
				it->second.last = s;
				if (s.exited && !it->second.exited_at)
					it->second.exited_at = now;
				continue;
			}
			// a new process under an old pid: the old one is gone
			retire(old);
			dropped_exited_++;
			series_.erase(it);
		}
		if (series_.size() < limit_) {
			series_[s.pid] = Series{s, s.exited ? std::optional<double>(now) : std::nullopt};
			refused_.erase(s.pid);
			unkept_.erase(s.pid);
			unkept_exit_.erase(s.pid);
			continue;
		}
		unkept_[s.pid] = s;
		if (refused_.insert(s.pid).second)
			dropped_limit_++;
	}
	current_ = current;
	// series past their grace period, or gone from the tracer
	for (auto it = series_.begin(); it != series_.end();) {
		const Series &x = it->second;
		bool gone = !seen.count(it->first);
		if (gone || (x.exited_at && now - *x.exited_at >= grace_)) {
			retire(x.last);
			if (!gone) {
				subtract(current_, counts_of(x.last));
				done.push_back(it->first);
			}
			dropped_exited_++;
			it = series_.erase(it);
		} else {
			++it;
		}
	}
	// processes without a series: untracked as soon as they exit
	for (auto it = unkept_.begin(); it != unkept_.end();) {
		bool gone = !seen.count(it->first);
		if (gone || it->second.exited) {
			retire(it->second);
			if (!gone) {
				subtract(current_, counts_of(it->second));
				done.push_back(it->first);
			}
			refused_.erase(it->first);
			it = unkept_.erase(it);
		} else {
			++it;
		}
	}
	families_.update(procs, now);
	return done;
}

Counts SeriesSet::totals() const
{
	Counts c = retired_;
	c += current_;
	return c;
}

// ---- formats --------------------------------------------------------------

namespace {

std::string lower(std::string_view s)
{
	std::string out(s);
	for (char &c : out)
		c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	return out;
}

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
		s.remove_suffix(1);
	return s;
}

// Length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8_len(std::string_view s, std::size_t i)
{
	auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
	unsigned char c = b(i);
	std::size_t n;
	std::uint32_t cp;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		n = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (i + n > s.size())
		return 0;
	for (std::size_t k = 1; k < n; k++) {
		if ((b(i + k) & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (b(i + k) & 0x3f);
	}
	static const std::uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

std::string escape(std::string_view v, bool quote)
{
	std::string out;
	out.reserve(v.size());
	for (std::size_t i = 0; i < v.size();) {
		char c = v[i];
		if (c == '\\') {
			out += "\\\\";
		} else if (c == '\n') {
			out += "\\n";
		} else if (c == '"' && quote) {
			out += "\\\"";
		} else {
			std::size_t n = utf8_len(v, i);
			if (n == 0) {
				out += "\xef\xbf\xbd";	// U+FFFD
				i++;
				continue;
			}
			out.append(v.substr(i, n));
			i += n;
			continue;
		}
		i++;
	}
	return out;
}

} // namespace

std::string escape_label(std::string_view v) { return escape(v, true); }
std::string escape_help(std::string_view v) { return escape(v, false); }

Format negotiate(std::string_view accept)
{
	double om = -1, text = -1;
	while (!accept.empty()) {
		std::size_t comma = accept.find(',');
		std::string_view item = accept.substr(0, comma);
		accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
		std::size_t semi = item.find(';');
		std::string type = lower(trim(item.substr(0, semi)));
		double q = 1;
		std::string version;
		while (semi != std::string_view::npos) {
			item = item.substr(semi + 1);
			semi = item.find(';');
			std::string_view p = trim(item.substr(0, semi));
			std::size_t eq = p.find('=');
			if (eq == std::string_view::npos)
				continue;
			std::string key = lower(trim(p.substr(0, eq)));
			std::string val(trim(p.substr(eq + 1)));
			if (key == "q") {
				try {
					q = std::stod(val);
				} catch (const std::exception &) {
					q = 0;
				}
			} else if (key == "version") {
				version = val;
			}
		}
		if (type == "application/openmetrics-text" && (version.empty() || version == "1.0.0"))
			om = std::max(om, q);
		else if ((type == "text/plain" && (version.empty() || version == "0.0.4")) || type == "text/*" ||
			 type == "*/*")
			text = std::max(text, q);
	}
	return om > 0 && om >= text ? Format::openmetrics : Format::prometheus;
}

const char *content_type(Format f)
{
	return f == Format::openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
					: "text/plain; version=0.0.4; charset=utf-8";
}

namespace {

enum class Kind { counter, gauge, info };

// One metric family; header() then the samples through sample().
struct Writer {
	Format f;
	std::string out;
	std::string name;	// the sample name
	void header(const char *base, Kind k, const char *unit, const char *help)
	{
		const char *suffix = k == Kind::counter ? "_total" : k == Kind::info ? "_info" : "";
		name = fmt::format("{}{}", base, suffix);
		if (f == Format::openmetrics) {
			const char *t = k == Kind::counter ? "counter" : k == Kind::info ? "info" : "gauge";
			out += fmt::format("# TYPE {} {}\n", base, t);
			if (*unit)
				out += fmt::format("# UNIT {} {}\n", base, unit);
			out += fmt::format("# HELP {} {}\n", base, escape_help(help));
		} else {
			out += fmt::format("# HELP {} {}\n", name, escape_help(help));
			out += fmt::format("# TYPE {} {}\n", name, k == Kind::counter ? "counter" : "gauge");
		}
	}
	template <class V> void sample(const std::string &labels, V v)
	{
		if (labels.empty())
			out += fmt::format("{} {}\n", name, v);
		else
			out += fmt::format("{}{{{}}} {}\n", name, labels, v);
	}
};

std::string proc_labels(const ProcStats &s)
{
	return fmt::format("pid=\"{}\",ppid=\"{}\",comm=\"{}\"", s.pid, s.ppid, escape_label(s.comm));
}

} // namespace

namespace {

// The counters of each process with a series, then the tree's totals.
void write_processes(Writer &w, const SeriesSet &set, const Exposition &e)
{
	struct PerProc {
		const char *base;
		const char *unit;
		const char *help;
		std::uint64_t (*value)(const ProcStats &);
	};
	static const PerProc per_proc[] = {
		{"cowtrace_wp_faults", "",
		 "Write faults by the process on present, write-protected pages (each becomes a COW copy or "
		 "reuse).",
		 [](const ProcStats &s) { return s.wp_faults; }},
		{"cowtrace_cow_copies", "", "Copy-on-write faults by the process that copied a 4 KiB page.",
		 [](const ProcStats &s) { return s.cow_copies; }},
		{"cowtrace_cow_reuses", "",
		 "Copy-on-write faults by the process that reused the page in place (no other user left).",
		 [](const ProcStats &s) { return s.cow_reuses; }},
		{"cowtrace_zero_fills", "",
		 "Write faults by the process on the shared zero page: a fresh zeroed page, nothing copied or "
		 "shared (not in cowtrace_cow_copies; there when cowtrace_method's zero_fills_by is \"\").",
		 [](const ProcStats &s) { return s.zero_fills; }},
		{"cowtrace_cow_copied_bytes", "bytes", "Bytes copied by the process's copy-on-write faults "
						       "(4096 per copy).",
		 [](const ProcStats &s) { return s.cow_copies * kPageBytes; }},
	};
	for (const PerProc &m : per_proc) {
		w.header(m.base, Kind::counter, m.unit, m.help);
		for (const auto &[pid, x] : set.series())
			w.sample(proc_labels(x.last), m.value(x.last));
	}
	if (e.tree) {
		Counts t = set.totals();
		std::string l = fmt::format("root_pid=\"{}\",root_comm=\"{}\"", e.root_pid, escape_label(e.root_comm));
		w.header("cowtrace_tree_wp_faults", Kind::counter, "",
			 "Write-protect faults of the traced process tree (the root and every descendant since "
			 "tracing began, exited ones included).");
		w.sample(l, t.wp_faults);
		w.header("cowtrace_tree_cow_copies", Kind::counter, "", "COW copies of the traced process tree.");
		w.sample(l, t.cow_copies);
		w.header("cowtrace_tree_cow_reuses", Kind::counter, "", "COW reuses of the traced process tree.");
		w.sample(l, t.cow_reuses);
		w.header("cowtrace_tree_zero_fills", Kind::counter, "",
			 "Zero-page fills of the traced process tree (not copies).");
		w.sample(l, t.zero_fills);
		w.header("cowtrace_tree_cow_copied_bytes", Kind::counter, "bytes",
			 "Bytes copied by COW faults of the traced process tree.");
		w.sample(l, t.cow_copies * kPageBytes);
	}
}

// The counters of each family with a series (FamilySet), its processes.
void write_families(Writer &w, const FamilySet &fams)
{
	using Family = FamilySet::Family;
	struct PerFamily {
		const char *base;
		Kind kind;
		const char *unit;
		const char *help;
		std::uint64_t (*value)(const Family &);
	};
	static const PerFamily per_family[] = {
		{"cowtrace_family_wp_faults", Kind::counter, "",
		 "Write-protect faults of a process family: its root (a process that exec'd, or whose parent "
		 "is not traced) and the processes forked from it without exec, exited ones included.",
		 [](const Family &f) { return f.counts.wp_faults; }},
		{"cowtrace_family_cow_copies", Kind::counter, "", "COW copies of a process family.",
		 [](const Family &f) { return f.counts.cow_copies; }},
		{"cowtrace_family_cow_reuses", Kind::counter, "", "COW reuses of a process family.",
		 [](const Family &f) { return f.counts.cow_reuses; }},
		{"cowtrace_family_zero_fills", Kind::counter, "",
		 "Zero-page fills of a process family (not copies).",
		 [](const Family &f) { return f.counts.zero_fills; }},
		{"cowtrace_family_cow_copied_bytes", Kind::counter, "bytes",
		 "Bytes copied by COW faults of a process family (4096 per copy).",
		 [](const Family &f) { return f.counts.cow_copies * kPageBytes; }},
		{"cowtrace_family_processes_seen", Kind::counter, "",
		 "Processes that joined a process family since its series began (the root included; a member "
		 "that exec()s leaves for a family of its own).",
		 [](const Family &f) { return f.processes_seen; }},
		{"cowtrace_family_processes_alive", Kind::gauge, "",
		 "Members of a process family not exited (the family's series goes --grace seconds after this "
		 "is 0).",
		 [](const Family &f) { return static_cast<std::uint64_t>(f.alive); }},
	};
	for (const PerFamily &m : per_family) {
		w.header(m.base, m.kind, m.unit, m.help);
		for (const auto &[root, f] : fams.families())
			w.sample(fmt::format("root_pid=\"{}\",root_comm=\"{}\"", root, escape_label(f.root_comm)),
				 m.value(f));
	}
}

// How the tracer counts, and its BPF programs' cost where the kernel keeps it.
void write_tracer(Writer &w, const Exposition &e)
{
	w.header("cowtrace_method", Kind::info, "", "How cowtrace counts: the attach method and its sources.");
	w.sample(fmt::format("method=\"{}\",copies_by=\"{}\",reuses_by=\"{}\",zero_fills_by=\"{}\",target=\"{}\"",
			     escape_label(e.method), escape_label(e.copies_by), escape_label(e.reuses_by),
			     escape_label(e.zero_fills_by), escape_label(e.target)),
		 1);
	if (e.bpf_stats) {
		w.header("cowtrace_bpf_run_time_seconds", Kind::counter, "seconds",
			 "Time the kernel spent in each of cowtrace's BPF programs (kernel.bpf_stats_enabled=1 "
			 "only; counted from when it was turned on).");
		for (const auto &p : e.bpf_progs)
			w.sample(fmt::format("program=\"{}\"", escape_label(p.name)),
				 fmt::format("{:.9f}", static_cast<double>(p.run_time_ns) / 1e9));
		w.header("cowtrace_bpf_runs", Kind::counter, "", "Runs of each of cowtrace's BPF programs "
								  "(kernel.bpf_stats_enabled=1 only).");
		for (const auto &p : e.bpf_progs)
			w.sample(fmt::format("program=\"{}\"", escape_label(p.name)), p.run_cnt);
	}
}

// The exporter's own health: its series, slots, memory and scrapes.
void write_health(Writer &w, const SeriesSet &set, const Exposition &e)
{
	w.header("cowtrace_series", Kind::gauge, "", "Process series exported now.");
	w.sample("", set.series().size());
	w.header("cowtrace_series_limit", Kind::gauge, "", "Most process series kept at once (--max-series).");
	w.sample("", set.limit());
	w.header("cowtrace_series_grace_seconds", Kind::gauge, "seconds",
		 "How long the series of an exited process is kept (--grace).");
	w.sample("", set.grace());
	w.header("cowtrace_series_dropped", Kind::counter, "",
		 "Process series dropped: reason=exited after the grace period (or pid reused); reason=limit: "
		 "processes that found --max-series series when seen (once each; one may get a series later).");
	w.sample("reason=\"exited\"", set.dropped_exited());
	w.sample("reason=\"limit\"", set.dropped_limit());
	w.header("cowtrace_family_series", Kind::gauge, "",
		 "Process family series exported now (at most --max-series, counted apart from the process "
		 "series).");
	w.sample("", set.families().families().size());
	w.header("cowtrace_family_series_dropped", Kind::counter, "",
		 "Process family series dropped: reason=exited --grace seconds after every member had exited "
		 "(or the root's pid reused); reason=limit: families that found --max-series family series when "
		 "seen (once until their processes are gone; one may get a series later).");
	w.sample("reason=\"exited\"", set.families().dropped_exited());
	w.sample("reason=\"limit\"", set.families().dropped_limit());
	w.header("cowtrace_untracked_processes", Kind::counter, "",
		 "Processes not traced at all because every BPF process slot was taken.");
	w.sample("", e.untracked);
	w.header("cowtrace_tracked_processes", Kind::gauge, "",
		 "Processes in the tracer's BPF map now (with or without a series, exited ones in their grace "
		 "period included).");
	w.sample("", e.tracked);
	w.header("cowtrace_bpf_map_entries", Kind::gauge, "",
		 "Entries in the tracer's per-process BPF maps (procs: tgid to slot, infos: comm, ppid).");
	w.sample("map=\"procs\"", e.tracked);
	w.sample("map=\"infos\"", e.infos);
	w.header("cowtrace_bpf_slots_used", Kind::gauge, "",
		 "BPF process slots handed out so far (exited processes' slots are reused: the most tracked at "
		 "once).");
	w.sample("", e.slots_used);
	w.header("cowtrace_bpf_slots", Kind::gauge, "", "BPF process slots in all.");
	w.sample("", e.slots_max);
	w.header("process_resident_memory_bytes", Kind::gauge, "bytes", "Resident memory size of the exporter.");
	w.sample("", e.rss_bytes);
	w.header("cowtrace_scrapes", Kind::counter, "", "Scrapes of /metrics served.");
	w.sample("", e.scrapes);
	w.header("cowtrace_scrape_duration_seconds", Kind::gauge, "seconds",
		 "Time taken to serve the previous scrape (reading the BPF maps and formatting).");
	w.sample("", fmt::format("{:.6f}", e.scrape_seconds_last));
}

} // namespace

std::string format_metrics(const SeriesSet &set, const Exposition &e, Format f)
{
	Writer w{f, {}, {}};
	w.out.reserve(256 + (set.series().size() + set.families().families().size()) * 4 * 96);
	write_processes(w, set, e);
	write_families(w, set.families());
	write_tracer(w, e);
	write_health(w, set, e);
	if (f == Format::openmetrics)
		w.out += "# EOF\n";
	return std::move(w.out);
}

} // namespace cowtrace
