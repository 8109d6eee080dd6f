// cowbench: options, validation, memory check and the output formats.
#include "cowscope/bench/bench.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope {

namespace {

[[noreturn]] void bad(std::string_view what, std::string_view form, std::string_view text)
{
	cli::usage_error(what, form, text);
}

std::string canon(std::string_view name)
{
	while (name.starts_with("-"))
		name.remove_prefix(1);
	std::string s(name);
	std::replace(s.begin(), s.end(), '_', '-');
	return s;
}

std::uint64_t page_size()
{
	static const auto p = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
	return p;
}

// The names of an option's values, one table each, that its parser takes
// (the name, or an alias) and to_string gives (the name); the parser's
// error lists the names in this order.
template <class E> struct Named {
	E value;
	std::string_view name, alias = {};
};

constexpr Named<Writer> kWriters[] = {{Writer::child, "child"}, {Writer::parent, "parent"}, {Writer::both, "both"}};
constexpr Named<Thp> kThps[] = {
	{Thp::never, "never"}, {Thp::madvise, "madvise"}, {Thp::always, "always"}, {Thp::system, "system"}};
constexpr Named<Spawn> kSpawns[] = {{Spawn::fork, "fork"},
				    {Spawn::vfork, "vfork"},
				    {Spawn::posix_spawn, "posix_spawn", "posix-spawn"},
				    {Spawn::fork_exec, "fork-exec", "fork_exec"}};
constexpr Named<PteState> kPteStates[] = {{PteState::writable, "writable"},
					  {PteState::readonly, "readonly", "read-only"}};

template <class E, std::size_t N> E parse_named(const Named<E> (&names)[N], std::string_view t, std::string_view what)
{
	for (const Named<E> &n : names)
		if (t == n.name || (!n.alias.empty() && t == n.alias))
			return n.value;
	std::string form; // "a, b or c"
	for (std::size_t i = 0; i < N; i++)
		form += fmt::format("{}{}", i == 0 ? "" : i + 1 == N ? " or " : ", ", names[i].name);
	bad(what, form, t);
}

template <class E, std::size_t N> std::string name_of(const Named<E> (&names)[N], E v)
{
	for (const Named<E> &n : names)
		if (n.value == v)
			return std::string(n.name);
	return "?";
}

} // namespace

Writer parse_writer(std::string_view t, std::string_view what)
{
	return parse_named(kWriters, t, what);
}

Thp parse_thp(std::string_view t, std::string_view what)
{
	return parse_named(kThps, t, what);
}

Spawn parse_spawn(std::string_view t, std::string_view what)
{
	return parse_named(kSpawns, t, what);
}

PteState parse_pte_state(std::string_view t, std::string_view what)
{
	return parse_named(kPteStates, t, what);
}

unsigned parse_count(std::string_view t, std::string_view what, unsigned min, unsigned max)
{
	return static_cast<unsigned>(cli::parse_count(t, what, min, max));
}

bool parse_bool(std::string_view t, std::string_view what)
{
	if (t == "1" || t == "true" || t == "yes" || t == "on" || t == "True")
		return true;
	if (t == "0" || t == "false" || t == "no" || t == "off" || t == "False")
		return false;
	bad(what, "true or false", t);
}

std::string to_string(Writer w)
{
	return name_of(kWriters, w);
}

std::string to_string(Thp t)
{
	return name_of(kThps, t);
}

std::string to_string(Spawn s)
{
	return name_of(kSpawns, s);
}

std::string to_string(PteState p)
{
	return name_of(kPteStates, p);
}

void set_option(BenchConfig &cfg, std::string_view name, std::string_view value)
{
	std::string n = canon(name);
	std::string what = "--" + n;
	if (n == "heap")
		cfg.heap = parse_size(value, what);
	else if (n == "write-ratio")
		cfg.write_ratio = parse_ratio(value, what);
	else if (n == "writer")
		cfg.writer = parse_writer(value, what);
	else if (n == "pattern")
		cfg.pattern = parse_pattern(value, what);
	else if (n == "read")
		cfg.read = parse_bool(value, what);
	else if (n == "children")
		cfg.children = parse_count(value, what, 1, 1024);
	else if (n == "thp")
		cfg.thp = parse_thp(value, what);
	else if (n == "folio")
		cfg.folio = value.empty() || value == "none" ? 0 : parse_folio(value, what);
	else if (n == "spawn")
		cfg.spawn = parse_spawn(value, what);
	else if (n == "repeat")
		cfg.repeat = parse_count(value, what, 1, 1000000);
	else if (n == "warmup")
		cfg.warmup = parse_count(value, what, 0, 1000);
	else if (n == "pte-state")
		cfg.pte_state = parse_pte_state(value, what);
	else if (n == "populate") {
		if (value != "seq" && value != "random")
			bad(what, "seq or random", value);
		cfg.scattered = value == "random";
	}
	else if (n == "settle") {
		cfg.settle_s = cli::parse_idle_seconds(value, what);
	} else if (n == "timeout") {
		cfg.timeout_s = cli::parse_seconds(value, what, 86400);
	} else if (n == "seed") {
		cfg.seed = cli::parse_count(value, what, 0, UINT64_MAX, "a whole number");
	} else if (n == "exec") {
		if (value.empty())
			bad(what, "a program path", value);
		cfg.exec_path = std::string(value);
		cfg.exec_args.clear();
	} else
		throw UsageError(fmt::format("unknown option \"{}\"; expected one of heap, write-ratio, "
					     "writer, pattern, read, children, thp, spawn, repeat, "
					     "warmup, pte-state, timeout, seed, exec, folio, populate, settle",
					     name));
}

void validate(const BenchConfig &cfg)
{
	if (cfg.children < 1 || cfg.children > 1024)
		throw UsageError(fmt::format("--children: expected a whole number from 1 to 1024, got \"{}\"",
					     cfg.children));
	if (cfg.repeat < 1)
		throw UsageError("--repeat: expected a whole number from 1 to 1000000, got \"0\"");
	if (!(cfg.write_ratio >= 0 && cfg.write_ratio <= 1))
		throw UsageError(fmt::format("--write-ratio: expected a ratio from 0 to 1 like 0.25, got \"{}\"",
					     cfg.write_ratio));
	if (cfg.pattern.kind == PatternKind::stride && cfg.pattern.stride == 0)
		throw UsageError("--pattern: expected seq, random or stride:N (N >= 1 pages), got \"stride:0\"");
	if (!(cfg.timeout_s > 0))
		throw UsageError("--timeout: expected SECONDS greater than 0, like 60 or 0.5");
	std::uint64_t pages = (cfg.heap + page_size() - 1) / page_size();
	if (pages > UINT32_MAX)
		throw UsageError(fmt::format("--heap: {} is more than the {} pages cowbench supports",
					     format_size(cfg.heap), UINT32_MAX));
	if (cfg.folio && cfg.thp != Thp::system)
		throw UsageError(fmt::format("--folio {} and --thp {}: give one of them; --folio sets the heap's THP "
					     "advice itself (--folio 4K: MADV_NOHUGEPAGE; larger: MADV_HUGEPAGE with "
					     "only that size enabled)",
					     folio_name(cfg.folio), to_string(cfg.thp)));
	if (cfg.spawn != Spawn::fork && cfg.exec_path.empty())
		throw UsageError(fmt::format("--spawn {}: needs a program to exec", to_string(cfg.spawn)));
}

BenchConfig config_from_options(const std::map<std::string, std::string> &options)
{
	BenchConfig cfg;
	for (const auto &[k, v] : options)
		set_option(cfg, k, v);
	validate(cfg);
	return cfg;
}

static unsigned writers(const BenchConfig &cfg)
{
	if (cfg.spawn != Spawn::fork)
		return 0;
	switch (cfg.writer) {
	case Writer::child: return cfg.children;
	case Writer::parent: return 1;
	case Writer::both: return cfg.children + 1;
	}
	return 0;
}

std::uint64_t bench_memory_needed(const BenchConfig &cfg)
{
	std::uint64_t ps = page_size();
	std::uint64_t pages = (cfg.heap + ps - 1) / ps;
	std::uint64_t written = (cfg.spawn == Spawn::fork ? pages_for_ratio(pages, cfg.write_ratio) : 0) * ps;
	return pages * ps + written * writers(cfg) + written;
}

void check_memory_fits(const BenchConfig &cfg, std::uint64_t available)
{
	std::uint64_t need = bench_memory_needed(cfg);
	if (need <= available)
		return;
	std::uint64_t ps = page_size();
	std::uint64_t written = pages_for_ratio((cfg.heap + ps - 1) / ps, cfg.write_ratio) * ps;
	throw UsageError(fmt::format(
		"--heap: {} heap plus {} of copy-on-write copies (write ratio {} x {} writing "
		"process{}) and a {} eager-copy buffer needs {}, but only {} is available "
		"(MemAvailable); lower --heap, --write-ratio or --children",
		format_size(cfg.heap), format_size(written * writers(cfg)), cfg.write_ratio,
		writers(cfg), writers(cfg) == 1 ? "" : "es", format_size(written), format_size(need),
		format_size(available)));
}

namespace {

// The per-repetition figures, in cowbench's output order: repetition_keys
// and repetition_value read them from here, so a new figure is one line.
constexpr std::pair<std::string_view, double Repetition::*> kRepetitionFigures[] = {
	{"fork_us", &Repetition::fork_us},
	{"child_start_us", &Repetition::child_start_us},
	{"child_write_us", &Repetition::child_write_us},
	{"child_read_us", &Repetition::child_read_us},
	{"cow_faults", &Repetition::cow_faults},
	{"ns_per_cow_fault", &Repetition::ns_per_cow_fault},
	{"cow_private_dirty_kb", &Repetition::cow_private_dirty_kb},
	{"eager_copy_us", &Repetition::eager_copy_us},
	{"ns_per_page_copy", &Repetition::ns_per_page_copy},
	{"cow_eager_ratio", &Repetition::cow_eager_ratio},
	{"parent_write_us", &Repetition::parent_write_us},
	{"parent_cow_faults", &Repetition::parent_cow_faults},
	{"exec_total_us", &Repetition::exec_total_us},
};

} // namespace

const std::vector<std::string> &repetition_keys()
{
	static const std::vector<std::string> keys = [] {
		std::vector<std::string> k;
		for (const auto &[name, field] : kRepetitionFigures)
			k.emplace_back(name);
		return k;
	}();
	return keys;
}

double repetition_value(const Repetition &r, std::string_view k)
{
	for (const auto &[name, field] : kRepetitionFigures)
		if (name == k)
			return r.*field;
	return NAN;
}

// Figure k over the repetitions that ran to the end.
static Summary summarize_ok(const BenchResult &r, std::string_view k)
{
	std::vector<double> v;
	for (const auto &rep : r.repetitions)
		if (rep.status == "ok")
			v.push_back(repetition_value(rep, k));
	return summarize(v);
}

static nlohmann::json num(double v)
{
	if (!std::isfinite(v))
		return nullptr;
	if (v == std::floor(v) && std::fabs(v) < 9e15)
		return static_cast<std::int64_t>(v);
	return std::round(v * 1000) / 1000; // ns/us resolution is plenty
}

nlohmann::json params_json(const BenchConfig &cfg)
{
	nlohmann::json j = {
		{"heap", format_size(cfg.heap)},
		{"heap_bytes", cfg.heap},
		{"write_ratio", cfg.write_ratio},
		{"writer", to_string(cfg.writer)},
		{"pattern", to_string(cfg.pattern)},
		{"read", cfg.read},
		{"children", cfg.children},
		{"thp", to_string(cfg.thp)},
		{"spawn", to_string(cfg.spawn)},
		{"repeat", cfg.repeat},
		{"warmup", cfg.warmup},
		{"pte_state", to_string(cfg.pte_state)},
		{"timeout_s", cfg.timeout_s},
		{"seed", cfg.seed},
	};
	if (cfg.folio) // only when set: older results keep their point keys
		j["folio"] = folio_name(cfg.folio);
	if (cfg.scattered)
		j["populate"] = "random";
	if (cfg.settle_s > 0)
		j["settle_s"] = cfg.settle_s;
	return j;
}

nlohmann::json to_json(const BenchResult &r)
{
	nlohmann::json reps = nlohmann::json::array();
	for (const auto &rep : r.repetitions) {
		nlohmann::json j = {{"index", rep.index}, {"status", rep.status}};
		for (const auto &k : repetition_keys())
			j[k] = num(repetition_value(rep, k));
		if (rep.fork_us_children.size() > 1) {
			nlohmann::json a = nlohmann::json::array();
			for (double v : rep.fork_us_children)
				a.push_back(num(v));
			j["fork_us_children"] = a;
		}
		reps.push_back(j);
	}
	nlohmann::json summary = nlohmann::json::object();
	for (const auto &k : repetition_keys()) {
		Summary s = summarize_ok(r, k);
		if (s.n)
			summary[k] = {{"median", num(s.median)}, {"min", num(s.min)}, {"max", num(s.max)},
				      {"mean", num(s.mean)}, {"n", s.n}};
	}
	const BenchSetup &s = r.setup;
	std::string status = r.interrupted ? "interrupted" : r.timeouts ? "timeouts" : "ok";
	nlohmann::json out = {
		{"tool", "cowbench"},
		{"status", status},
		{"interrupted", r.interrupted},
		{"timeouts", r.timeouts},
		{"params", params_json(r.config)},
		{"machine", r.machine},
		{"pte_state", r.pte_state},
		{"setup",
		 {{"pages", s.pages},
		  {"pages_written", s.pages_written},
		  {"page_size", s.page_size},
		  {"populate_us", num(s.populate_us)},
		  {"first_touch_faults", num(s.first_touch_faults)},
		  {"ns_per_first_touch_fault", num(s.ns_per_first_touch_fault)},
		  {"anon_huge_kb", s.anon_huge_kb},
		  {"thp_system", s.thp_system},
		  {"thp_advice", s.thp_advice}}},
		{"repetitions", reps},
		{"summary", summary},
	};
	if (r.config.folio) {
		auto &j = out["setup"];
		j["folio_requested"] = folio_name(r.config.folio);
		j["folio_observed"] = s.folio_observed;
		j["folio_fraction"] = num(s.folio_fraction);
		j["folio_observed_end"] = s.folio_observed_end;
		j["folio_fraction_end"] = num(s.folio_fraction_end);
		j["folio_counters"] = s.folio_counters;
		j["folio_controls_changed"] = s.folio_controls_changed;
	}
	return out;
}

std::string to_csv(const BenchResult &r)
{
	std::string out = "heap_bytes,write_ratio,writer,pattern,read,children,thp,spawn,pte_state,index,status";
	for (const auto &k : repetition_keys())
		out += "," + k;
	out += "\n";
	const BenchConfig &c = r.config;
	for (const auto &rep : r.repetitions) {
		out += fmt::format("{},{},{},{},{},{},{},{},{},{},\"{}\"", c.heap, c.write_ratio,
				   to_string(c.writer), to_string(c.pattern), c.read ? 1 : 0, c.children,
				   to_string(c.thp), to_string(c.spawn), r.pte_state, rep.index, rep.status);
		for (const auto &k : repetition_keys()) {
			double v = repetition_value(rep, k);
			out += std::isfinite(v) ? fmt::format(",{}", v) : std::string(",");
		}
		out += "\n";
	}
	return out;
}

std::string to_table(const BenchResult &r)
{
	const BenchConfig &c = r.config;
	const BenchSetup &s = r.setup;
	unsigned ok = 0;
	for (const auto &rep : r.repetitions)
		ok += rep.status == "ok";
	std::string out = fmt::format(
		"cowbench: heap {} ({} pages of {}), write ratio {} ({} pages), writer {}, pattern {}{}, "
		"{} child{}, spawn {}\n"
		"          thp {} ({}; system setting {}; {} kB in huge pages), PTEs {} before each fork, "
		"{} of {} repetitions ok{}\n",
		format_size(c.heap), s.pages, format_size(s.page_size), c.write_ratio, s.pages_written,
		to_string(c.writer), to_string(c.pattern), c.read ? ", others read" : "", c.children,
		c.children == 1 ? "" : "ren", to_string(c.spawn), to_string(c.thp), s.thp_advice,
		s.thp_system, s.anon_huge_kb, r.pte_state, ok, r.repetitions.size(),
		r.interrupted ? " (interrupted)" : "");
	if (c.folio) {
		auto line = [](const nlohmann::json &o) {
			if (!o.is_object() || o.value("source", "none") == "none")
				return std::string("unknown");
			std::string t;
			for (const auto &[k, v] : o["pages_by_folio_size"].items())
				t += fmt::format("{}{} {}", t.empty() ? "" : ", ", k, v.get<std::uint64_t>());
			return t + " pages (" + o.value("source", "") + ")";
		};
		out += fmt::format("          folio {} requested: {:.1f}% of the heap got it after populating, "
				   "{:.1f}% after the run\n"
				   "          after populating: {}\n          after the run: {}\n",
				   folio_name(c.folio), 100 * s.folio_fraction, 100 * s.folio_fraction_end,
				   line(s.folio_observed), line(s.folio_observed_end));
	}
	if (std::isfinite(s.ns_per_first_touch_fault))
		out += fmt::format("          populate: {:.0f} us, {:.0f} first-touch faults, {:.0f} ns per fault\n",
				   s.populate_us, s.first_touch_faults, s.ns_per_first_touch_fault);
	out += fmt::format("{:<22}{:>14}{:>14}{:>14}\n", "figure", "median", "min", "max");
	for (const auto &k : repetition_keys()) {
		Summary sm = summarize_ok(r, k);
		if (!sm.n)
			continue;
		auto f = [](double x) { return x == std::floor(x) ? fmt::format("{:.0f}", x) : fmt::format("{:.2f}", x); };
		out += fmt::format("{:<22}{:>14}{:>14}{:>14}\n", k, f(sm.median), f(sm.min), f(sm.max));
	}
	for (const auto &rep : r.repetitions)
		if (rep.status != "ok")
			out += fmt::format("repetition {}: {}\n", rep.index, rep.status);
	return out;
}

} // namespace cowscope
