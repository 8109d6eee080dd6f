// report/: cowtrace's JSON (json.hpp): the writer and the typed reader, side
// by side so that they cannot drift apart (tests/unit/test_report.cpp reads
// back what is written).
#include "cowscope/report/json.hpp"

#include <algorithm>
#include <bit>
#include <cstdlib>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

using json = nlohmann::json;

namespace cowtrace {

namespace {

// What one copy or reuse is, large folios included (checked against pagemap
// on 64 KiB folios by Cowtrace.Folio64K* on 6.12, 7.3, 6.18).
constexpr const char *kCowUnit = "4 KiB page: a write to a page of a shared large folio (mTHP, or THP after its "
				 "split) copies or reuses that one page";

std::string hex(std::uint64_t v) { return fmt::format("0x{:x}", v); }

json frame_json(const Frame &f)
{
	json j = {{"ip", hex(f.ip)}, {"func", f.func}, {"offset", f.offset}, {"module", f.module},
		  {"file", f.file}, {"line", f.line}, {"guess", f.guess}};
	if (!f.source.empty())
		j["source"] = f.source;
	return j;
}

json site_json(const Site &s)
{
	json fr = json::array();
	for (const Frame &f : s.frames)
		fr.push_back(frame_json(f));
	json j = {{"comm", s.comm}, {"copies", s.copies}, {"reuses", s.reuses}, {"zero_fills", s.zero_fills},
		  {"stack", s.stackid >= 0},
		  {"stack_id", s.stackid}, {"frames", fr}, {"unwound", s.unwound}};
	if (s.pid)
		j["pid"] = s.pid;
	else
		j["processes"] = s.pids;
	if (s.samples)
		j["unwind"] = {{"samples", s.samples}, {"stop", s.unwind_stop}, {"why", s.unwind_why}};
	return j;
}

json mapping_json(const MappingStats &x)
{
	return {{"pid", x.pid}, {"start", hex(x.start)}, {"end", hex(x.end)}, {"label", x.label}, {"path", x.path},
		{"wp_faults", x.wp_faults}, {"copies", x.copies}, {"reuses", x.reuses}, {"zero_fills", x.zero_fills}};
}

json errors_json(const AttrErrors &e)
{
	return {{"vma_not_found", e.vma_fail},	 {"vma_table_full", e.vma_full}, {"no_stack", e.stack_fail},
		{"site_table_full", e.site_full}, {"maps_not_read", e.no_maps},	 {"stack_collisions", e.stack_collisions}};
}

} // namespace

json to_json(const ProcStats &s, const Plan &plan)
{
	json j = {
		{"pid", s.pid}, {"ppid", s.ppid}, {"comm", s.comm}, {"exited", s.exited},
		{"wp_faults", s.wp_faults}, {"cow_copies", s.cow_copies}, {"cow_reuses", s.cow_reuses},
		{"wp_unclassified", s.unclassified}, {"zero_fills", s.zero_fills}, {"execs", s.execs},
		{"method", method_name(plan.method)},
		{"cow_copies_by", plan.copies_by()}, {"cow_reuses_by", plan.reuses_by()},
		{"zero_fills_by", plan.zero_fills_by() ? json(plan.zero_fills_by()) : json(nullptr)},
		{"cow_unit", kCowUnit},
	};
	if (plan.huge_hook) {
		j["thp_wp_faults"] = s.thp_wp_faults;
		j["thp_fallbacks"] = s.thp_fallbacks;
	}
	if (plan.latency) {
		// {"<lo>": count} for each non-empty bucket [2^i, 2^(i+1)) ns
		json h = json::object();
		for (int i = 0; i < kHistSlots; i++)
			if (s.latency_log2_ns[i])
				h[std::to_string(i ? 1ULL << i : 0)] = s.latency_log2_ns[i];
		j["wp_latency_ns_log2"] = h;
	}
	return j;
}

json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a)
{
	Grouping all;
	for (const ProcStats &p : procs)
		all.detailed.push_back(p.pid);
	std::sort(all.detailed.begin(), all.detailed.end());
	return report_json(procs, plan, a, all);
}

namespace {

json family_json(const Family &f, const Attribution *a, std::size_t sites_top)
{
	json j = {{"root", f.root}, {"root_comm", f.root_comm}, {"comm", f.comm}, {"processes", f.processes},
		  {"folded", f.folded}, {"exited", f.exited}, {"wp_faults", f.counts.wp_faults}, {"cow_copies", f.counts.cow_copies},
		  {"cow_reuses", f.counts.cow_reuses}, {"zero_fills", f.counts.zero_fills},
		  {"wp_unclassified", f.counts.unclassified},
		  {"copies_per_process",
		   {{"mean", f.copies_mean}, {"p50", f.copies_p50}, {"p99", f.copies_p99}, {"max", f.copies_max}}},
		  {"members", f.members}};
	if (a && a->sites) {
		j["sites"] = json::array();
		for (const Site &s : family_sites(*a, f)) {
			if (sites_top && j["sites"].size() >= sites_top)
				break;
			j["sites"].push_back(site_json(s));
		}
	}
	return j;
}

// One family's folded members: counts, the per-process distribution of
// copies ({"copies": processes}), and their mappings and sites.
json folded_json(const Folded &f, const Attribution *a)
{
	json dist = json::object();
	for (const auto &[n, k] : f.copies)
		dist[std::to_string(n)] = k;
	json j = {{"root", f.root}, {"root_comm", f.root_comm}, {"comm", f.comm}, {"processes", f.processes},
		  {"wp_faults", f.counts.wp_faults}, {"cow_copies", f.counts.cow_copies},
		  {"cow_reuses", f.counts.cow_reuses}, {"zero_fills", f.counts.zero_fills},
		  {"wp_unclassified", f.counts.unclassified}, {"copies_per_process", dist}};
	if (a && a->by_mapping) {
		j["mappings"] = json::array();
		for (const MappingStats &m : a->folded_mappings)
			if (m.pid == f.root)
				j["mappings"].push_back(mapping_json(m));
	}
	if (a && a->sites) {
		j["sites"] = json::array();
		for (const Site &s : a->folded_sites)
			if (s.pid == f.root)
				j["sites"].push_back(site_json(s));
	}
	return j;
}

} // namespace

json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a, const Grouping &g)
{
	if (a && !a->by_mapping && !a->sites)
		a = nullptr;
	json arr = json::array();
	for (const ProcStats &p : procs) {
		json j = to_json(p, plan);
		if (!std::binary_search(g.detailed.begin(), g.detailed.end(), p.pid)) {
			arr.push_back(std::move(j));
			continue;
		}
		if (a && a->by_mapping) {
			j["mappings"] = json::array();
			for (const MappingStats &m : a->mappings_of(p.pid))
				j["mappings"].push_back(mapping_json(m));
		}
		if (a && a->sites) {
			j["sites"] = json::array();
			for (const Site &s : a->sites_of(p.pid))
				j["sites"].push_back(site_json(s));
		}
		arr.push_back(std::move(j));
	}
	json out = {{"schema", kSchema}, {"processes", std::move(arr)}};
	if (!g.families.empty()) {
		out["families"] = json::array();
		for (const Family &f : g.families)
			out["families"].push_back(family_json(f, a, g.sites_top));
	}
	if (g.folding && !g.folding->families.empty()) {
		out["folded"] = json::array();
		for (const auto &[root, f] : g.folding->families)
			out["folded"].push_back(folded_json(f, a));
	}
	if (!a)
		return out;
	out["attribution_errors"] = errors_json(a->errors);
	out["notes"] = json::array();
	for (const Note &n : a->notes)
		out["notes"].push_back(n.text());
	if (a->sites) {
		out["merged_sites"] = json::array();
		for (const Site &s : a->merged) {
			if (g.sites_top && out["merged_sites"].size() >= g.sites_top)
				break;
			out["merged_sites"].push_back(site_json(s));
		}
		out["symbolize_ms"] = a->symbolize_ms;
		out["symbolized_addresses"] = a->addresses;
		const Unwinding &u = a->unwinding;
		if (u.period)
			out["unwinding"] = {{"period", u.period},   {"stack_bytes", u.stack_bytes},
					    {"samples", u.samples}, {"lost", u.lost},
					    {"no_stack", u.no_stack}, {"short_stack", u.short_stack},
					    {"no_maps", u.no_maps},
					    {"chains_dropped", u.chains_dropped}, {"unwind_ms", u.unwind_ms},
					    {"python", {{"processes", u.py_processes}, {"frames", u.py_frames},
							{"unresolved", u.py_unresolved}, {"note", u.py_note}}}};
	}
	return out;
}

// ---- the reader ----------------------------------------------------------------

namespace {

// Where in the record a value is, for the error messages.
struct Reader {
	const std::string &what;

	[[noreturn]] void fail(const std::string &where, const std::string &why) const
	{
		throw cowscope::Error(fmt::format("{}: {}{}{}", what, where, where.empty() ? "" : ": ", why));
	}
	const json &at(const json &o, const char *key, const std::string &where) const
	{
		if (!o.is_object() || !o.contains(key))
			fail(where, fmt::format("no \"{}\"", key));
		return o.at(key);
	}
	template <class T> T get(const json &o, const char *key, const std::string &where) const
	{
		const json &v = at(o, key, where);
		try {
			return v.get<T>();
		} catch (const json::exception &) {
			fail(where, fmt::format("\"{}\" is {}, not the expected type", key, v.dump()));
		}
	}
	template <class T> T get_or(const json &o, const char *key, T dflt, const std::string &where) const
	{
		return o.is_object() && o.contains(key) ? get<T>(o, key, where) : dflt;
	}
	std::uint64_t hexnum(const json &o, const char *key, const std::string &where) const
	{
		std::string s = get<std::string>(o, key, where);
		char *end = nullptr;
		std::uint64_t v = s.starts_with("0x") ? std::strtoull(s.c_str() + 2, &end, 16) : 0;
		if (!s.starts_with("0x") || s.size() < 3 || *end)
			fail(where, fmt::format("\"{}\" is \"{}\", not a hexadecimal address like 0x7f00", key, s));
		return v;
	}

	ProcStats process(const json &p, const std::string &where) const
	{
		ProcStats s;
		s.pid = get<pid_t>(p, "pid", where);
		s.ppid = get<pid_t>(p, "ppid", where);
		s.comm = get<std::string>(p, "comm", where);
		s.exited = get_or<bool>(p, "exited", false, where);
		s.wp_faults = get<std::uint64_t>(p, "wp_faults", where);
		s.cow_copies = get<std::uint64_t>(p, "cow_copies", where);
		s.cow_reuses = get<std::uint64_t>(p, "cow_reuses", where);
		s.unclassified = get_or<std::uint64_t>(p, "wp_unclassified", 0, where);
		s.zero_fills = get_or<std::uint64_t>(p, "zero_fills", 0, where);	// since 0.4.0
		s.execs = get_or<std::uint32_t>(p, "execs", 0, where);	// since 0.4.0
		s.thp_wp_faults = get_or<std::uint64_t>(p, "thp_wp_faults", 0, where);
		s.thp_fallbacks = get_or<std::uint64_t>(p, "thp_fallbacks", 0, where);
		if (p.contains("wp_latency_ns_log2")) {
			for (const auto &[k, v] : at(p, "wp_latency_ns_log2", where).items()) {
				char *end = nullptr;
				unsigned long long lo = std::strtoull(k.c_str(), &end, 10);
				int slot = lo ? std::countr_zero(lo) : 0;
				if (k.empty() || *end || (lo && !std::has_single_bit(lo)) || slot >= kHistSlots)
					fail(where, fmt::format("wp_latency_ns_log2: \"{}\" is not a bucket (0, 2, 4, ...)", k));
				s.latency_log2_ns[static_cast<std::size_t>(slot)] = v.get<std::uint64_t>();
			}
		}
		return s;
	}

	Plan plan(const json &p, const std::string &where) const
	{
		Plan pl;
		auto m = parse_method(get<std::string>(p, "method", where));
		if (!m || *m == Method::automatic)
			fail(where, fmt::format("\"method\" is {}, not a method", p.at("method").dump()));
		pl.method = *m;
		pl.huge_hook = p.contains("thp_wp_faults");
		pl.latency = p.contains("wp_latency_ns_log2");
		// the hooks, from how the figures were obtained
		pl.copy_hook = hooked(p, "cow_copies_by", pl, &Plan::copy_hook, &Plan::copies_by, where);
		pl.reuse_hook = hooked(p, "cow_reuses_by", pl, &Plan::reuse_hook, &Plan::reuses_by, where);
		// null: zero fills not told apart (before 0.4.0: absent, likewise)
		if (p.contains("zero_fills_by") && !p.at("zero_fills_by").is_null()) {
			Plan told = pl;
			told.zero_hook = true;
			const std::string got = get<std::string>(p, "zero_fills_by", where);
			if (got != told.zero_fills_by())
				fail(where, fmt::format("\"zero_fills_by\" is \"{}\", not how the {} method tells them",
							got, method_name(pl.method)));
			pl.zero_hook = true;
		}
		return pl;
	}

	// Was the figure `key` counted by its hook (plan.*hook)? From its text:
	// the plan's with the hook, or without it.
	bool hooked(const json &p, const char *key, Plan plan, bool Plan::*hook, const char *(Plan::*by)() const,
		    const std::string &where) const
	{
		plan.*hook = true;
		const std::string with = (plan.*by)();
		plan.*hook = false;
		const std::string without = (plan.*by)();
		const std::string got = get_or<std::string>(p, key, without, where);
		if (got != with && got != without)
			fail(where, fmt::format("\"{}\" is \"{}\", not how the {} method counts", key, got,
						method_name(plan.method)));
		return got == with && with != without;
	}

	Frame frame(const json &f, const std::string &where) const
	{
		Frame x;
		x.ip = hexnum(f, "ip", where);
		x.func = get<std::string>(f, "func", where);
		x.offset = get<std::uint64_t>(f, "offset", where);
		x.module = get<std::string>(f, "module", where);
		x.file = get<std::string>(f, "file", where);
		x.line = get<int>(f, "line", where);
		x.guess = get<bool>(f, "guess", where);
		x.source = get_or<std::string>(f, "source", "", where);
		return x;
	}

	Site site(const json &s, const std::string &where) const
	{
		Site x;
		x.pid = get_or<pid_t>(s, "pid", 0, where);
		x.pids = get_or<std::uint32_t>(s, "processes", 1, where);
		x.comm = get<std::string>(s, "comm", where);
		x.copies = get<std::uint64_t>(s, "copies", where);
		x.reuses = get<std::uint64_t>(s, "reuses", where);
		x.zero_fills = get_or<std::uint64_t>(s, "zero_fills", 0, where);
		x.stackid = get_or<std::int32_t>(s, "stack_id", get<bool>(s, "stack", where) ? 0 : -1, where);
		const json &fr = at(s, "frames", where);
		for (std::size_t i = 0; i < fr.size(); i++)
			x.frames.push_back(frame(fr[i], fmt::format("{}, frame {}", where, i)));
		x.unwound = get<std::size_t>(s, "unwound", where);
		if (s.contains("unwind")) {
			const json &u = at(s, "unwind", where);
			x.samples = get<std::uint64_t>(u, "samples", where + ", unwind");
			x.unwind_stop = get<std::string>(u, "stop", where + ", unwind");
			x.unwind_why = get<std::string>(u, "why", where + ", unwind");
		}
		return x;
	}

	MappingStats mapping(const json &m, const std::string &where) const
	{
		MappingStats x;
		x.pid = get<pid_t>(m, "pid", where);
		x.start = hexnum(m, "start", where);
		x.end = hexnum(m, "end", where);
		x.label = get<std::string>(m, "label", where);
		x.path = get<std::string>(m, "path", where);
		x.wp_faults = get<std::uint64_t>(m, "wp_faults", where);
		x.copies = get<std::uint64_t>(m, "copies", where);
		x.reuses = get<std::uint64_t>(m, "reuses", where);
		x.zero_fills = get_or<std::uint64_t>(m, "zero_fills", 0, where);
		return x;
	}

	AttrErrors errors(const json &e) const
	{
		const std::string where = "attribution_errors";
		AttrErrors x;
		x.vma_fail = get<std::uint64_t>(e, "vma_not_found", where);
		x.vma_full = get<std::uint64_t>(e, "vma_table_full", where);
		x.stack_fail = get<std::uint64_t>(e, "no_stack", where);
		x.site_full = get<std::uint64_t>(e, "site_table_full", where);
		x.no_maps = get<std::uint64_t>(e, "maps_not_read", where);
		x.stack_collisions = get<std::uint64_t>(e, "stack_collisions", where);
		return x;
	}

	// One entry of "folded": the family's folded counts (into `fo`), its
	// mappings and sites (into `a`, when there is an attribution).
	void folded(const json &f, const std::string &where, Folding &fo, Attribution *a) const
	{
		Folded x;
		x.root = get<pid_t>(f, "root", where);
		x.root_comm = get<std::string>(f, "root_comm", where);
		x.comm = get<std::string>(f, "comm", where);
		x.processes = get<std::size_t>(f, "processes", where);
		x.counts.pid = x.root;
		x.counts.wp_faults = get<std::uint64_t>(f, "wp_faults", where);
		x.counts.cow_copies = get<std::uint64_t>(f, "cow_copies", where);
		x.counts.cow_reuses = get<std::uint64_t>(f, "cow_reuses", where);
		x.counts.zero_fills = get<std::uint64_t>(f, "zero_fills", where);
		x.counts.unclassified = get<std::uint64_t>(f, "wp_unclassified", where);
		std::uint64_t procs = 0;
		for (const auto &[n, k] : at(f, "copies_per_process", where).items()) {
			char *end = nullptr;
			std::uint64_t copies = std::strtoull(n.c_str(), &end, 10);
			if (n.empty() || *end || !k.is_number_unsigned())
				fail(where, fmt::format("\"copies_per_process\" has \"{}\": {}, not COPIES: PROCESSES", n,
							k.dump()));
			x.copies[copies] = k.get<std::uint64_t>();
			procs += x.copies[copies];
		}
		if (procs != x.processes)
			fail(where, fmt::format("\"copies_per_process\" counts {} processes, \"processes\" says {}", procs,
						x.processes));
		if (a && a->by_mapping && f.contains("mappings"))
			for (const json &m : at(f, "mappings", where))
				a->folded_mappings.push_back(mapping(m, where + ", mappings"));
		if (a && a->sites && f.contains("sites"))
			for (const json &s : at(f, "sites", where))
				a->folded_sites.push_back(site(s, where + ", sites"));
		fo.families[x.root] = std::move(x);
	}

	// The attribution parts of the record, `procs` its "processes".
	Attribution attribution(const json &j, const json &procs) const
	{
		Attribution a;
		a.errors = errors(at(j, "attribution_errors", ""));
		for (const json &n : at(j, "notes", "")) {
			auto note = n.is_string() ? Note::parse(n.get<std::string>()) : std::nullopt;
			if (!note)
				fail("notes", fmt::format("{} is not a note this reader knows", n.dump()));
			a.notes.push_back(*note);
		}
		a.sites = j.contains("merged_sites");
		a.by_mapping = std::any_of(procs.begin(), procs.end(),
					   [](const json &p) { return p.is_object() && p.contains("mappings"); });
		// a process grouped in a family (not shown one by one) has its
		// counts without mappings or sites
		for (std::size_t i = 0; i < procs.size(); i++) {
			std::string where = fmt::format("processes[{}]", i);
			if (a.by_mapping && procs[i].contains("mappings"))
				for (const json &m : at(procs[i], "mappings", where))
					a.mappings.push_back(mapping(m, where + ", mappings"));
			if (a.sites && procs[i].contains("sites"))
				for (const json &s : at(procs[i], "sites", where))
					a.sites_by_pid.push_back(site(s, where + ", sites"));
		}
		if (a.sites) {
			for (const json &s : at(j, "merged_sites", ""))
				a.merged.push_back(site(s, "merged_sites"));
			a.symbolize_ms = get<double>(j, "symbolize_ms", "");
			a.addresses = get_or<std::size_t>(j, "symbolized_addresses", 0, "");
			if (j.contains("unwinding")) {
				const json &u = at(j, "unwinding", "");
				const std::string w = "unwinding";
				a.unwinding = {.period = get<unsigned>(u, "period", w),
					       .stack_bytes = get<unsigned>(u, "stack_bytes", w),
					       .samples = get<std::uint64_t>(u, "samples", w),
					       .lost = get<std::uint64_t>(u, "lost", w),
					       .no_stack = get<std::uint64_t>(u, "no_stack", w),
					       // not in cowtrace 0.6.0's JSON
					       .short_stack = get_or<std::uint64_t>(u, "short_stack", 0, w),
					       .no_maps = get<std::uint64_t>(u, "no_maps", w),
					       .chains_dropped = get<std::uint64_t>(u, "chains_dropped", w),
					       .unwind_ms = get<double>(u, "unwind_ms", w),
					       .py_processes = 0,
					       .py_frames = 0,
					       .py_unresolved = 0,
					       .py_note = ""};
				if (u.contains("python")) {
					const json &py = at(u, "python", w);
					const std::string pw = w + ", python";
					a.unwinding.py_processes = get<std::uint64_t>(py, "processes", pw);
					a.unwinding.py_frames = get<std::uint64_t>(py, "frames", pw);
					a.unwinding.py_unresolved = get<std::uint64_t>(py, "unresolved", pw);
					a.unwinding.py_note = get<std::string>(py, "note", pw);
				}
			}
		}
		return a;
	}
};

} // namespace

Report read_report(const json &j, const std::string &what)
{
	Reader r{what};
	if (j.is_array())
		r.fail("", fmt::format("a bare array of processes is cowtrace's JSON before schema {} (cowscope 0.2.0): "
				       "record it again with this cowtrace, which writes {{\"schema\": {}, \"processes\": "
				       "[...]}}", kSchema, kSchema));
	if (!j.is_object())
		r.fail("", "not a cowtrace JSON record (expected an object with \"schema\" and \"processes\")");
	if (!j.contains("schema"))
		r.fail("", fmt::format("no \"schema\": written before schema {} (cowscope 0.2.0); record it again with "
				       "this cowtrace", kSchema));
	Report rep;
	rep.schema = r.get<int>(j, "schema", "");
	if (rep.schema != kSchema)
		r.fail("", fmt::format("schema {}, this reader knows schema {} only", rep.schema, kSchema));
	const json &procs = r.at(j, "processes", "");
	if (!procs.is_array())
		r.fail("processes", "not an array");
	for (std::size_t i = 0; i < procs.size(); i++) {
		std::string where = fmt::format("processes[{}]", i);
		rep.processes.push_back(r.process(procs[i], where));
		if (i == 0)
			rep.plan = r.plan(procs[i], where);
	}
	if (j.contains("attribution_errors"))
		rep.attribution = r.attribution(j, procs);
	if (j.contains("folded")) {
		const json &f = r.at(j, "folded", "");
		if (!f.is_array())
			r.fail("folded", "not an array");
		for (std::size_t i = 0; i < f.size(); i++)
			r.folded(f[i], fmt::format("folded[{}]", i), rep.folding,
				 rep.attribution ? &*rep.attribution : nullptr);
	}
	return rep;
}

} // namespace cowtrace
