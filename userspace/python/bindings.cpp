// cowscope._core: the Python face of cowcore. Plain C++ functions first;
// the PYBIND11_MODULE block at the end only names them. The package
// cowscope/__init__.py re-exports what is public.
//
// Errors: cowscope::UsageError -> cowscope.UsageError (a ValueError),
// cowscope::SysError -> cowscope.SysError (an OSError, errno set),
// cowscope::Error -> cowscope.Error (a RuntimeError); all three derive from
// cowscope.Error and str(e) is exactly the message the CLI prints after
// "cowbench: ". read_view() without the module raises
// cowscope.ModuleNotLoadedError (a cowscope.Error).
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/trace/trace.hpp"
#include "cowscope/view/view.hpp"

namespace py = pybind11;
using namespace cowscope;

namespace {

// read_view() when /proc/cowscope is missing.
class ModuleNotLoaded : public Error {
public:
	using Error::Error;
};

// ---- JSON -> Python ---------------------------------------------------------

py::object to_python(const nlohmann::json &j)
{
	switch (j.type()) {
	case nlohmann::json::value_t::null:
		return py::none();
	case nlohmann::json::value_t::boolean:
		return py::bool_(j.get<bool>());
	case nlohmann::json::value_t::number_integer:
		return py::int_(j.get<std::int64_t>());
	case nlohmann::json::value_t::number_unsigned:
		return py::int_(j.get<std::uint64_t>());
	case nlohmann::json::value_t::number_float: {
		double d = j.get<double>();
		if (std::isnan(d))
			return py::none();
		return py::float_(d);
	}
	case nlohmann::json::value_t::string:
		return py::str(j.get<std::string>());
	case nlohmann::json::value_t::array: {
		py::list l;
		for (const auto &e : j)
			l.append(to_python(e));
		return l;
	}
	case nlohmann::json::value_t::object: {
		py::dict d;
		for (auto it = j.begin(); it != j.end(); ++it)
			d[py::str(it.key())] = to_python(it.value());
		return d;
	}
	default:
		return py::none();
	}
}

// ---- bench ------------------------------------------------------------------

// An option value as typed on the command line: "64M", "0.25", "true".
std::string option_text(py::handle v)
{
	if (py::isinstance<py::bool_>(v))
		return v.cast<bool>() ? "true" : "false";
	return py::str(v).cast<std::string>();
}

std::atomic<bool> g_sigint{false};

extern "C" void on_sigint(int)
{
	g_sigint.store(true);
	request_stop();
}

// While a bench runs in the main thread, SIGINT asks run_bench to stop after
// the current repetition (Python's own handler could not run: the GIL is
// released and the thread sits in waitpid). The old handler comes back after.
class SigintGuard {
public:
	explicit SigintGuard(bool active) : active_(active)
	{
		if (!active_)
			return;
		struct sigaction sa {};
		sa.sa_handler = on_sigint;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old_);
	}
	~SigintGuard()
	{
		if (active_)
			sigaction(SIGINT, &old_, nullptr);
	}
	SigintGuard(const SigintGuard &) = delete;
	SigintGuard &operator=(const SigintGuard &) = delete;

private:
	bool active_;
	struct sigaction old_ {};
};

bool in_main_thread()
{
	auto threading = py::module_::import("threading");
	return threading.attr("current_thread")().is(threading.attr("main_thread")());
}

std::mutex g_bench_mutex; // run_bench's stop flag is process-wide: one at a time

BenchConfig make_config(py::handle heap, py::handle write_ratio, py::handle writer, py::handle pattern,
			py::handle thp, py::handle children, py::handle repeat, const py::kwargs &more)
{
	BenchConfig cfg;
	// A Python process cannot exec itself with --exec-noop: the exec'ing
	// spawn modes run /bin/true instead.
	cfg.exec_path = "/bin/true";
	cfg.exec_args.clear();
	set_option(cfg, "heap", option_text(heap));
	set_option(cfg, "write-ratio", option_text(write_ratio));
	set_option(cfg, "writer", option_text(writer));
	set_option(cfg, "pattern", option_text(pattern));
	// thp=None: "never", unless folio= is given (folio sets the advice itself).
	if (!thp.is_none())
		set_option(cfg, "thp", option_text(thp));
	else if (!more.contains("folio"))
		set_option(cfg, "thp", "never");
	set_option(cfg, "children", option_text(children));
	set_option(cfg, "repeat", option_text(repeat));
	for (auto item : more)
		set_option(cfg, py::str(item.first).cast<std::string>(), option_text(item.second));
	validate(cfg);
	return cfg;
}

py::dict bench(py::handle heap, py::handle write_ratio, py::handle writer, py::handle pattern, py::handle thp,
	       py::handle children, py::handle repeat, const py::kwargs &more)
{
	BenchConfig cfg = make_config(heap, write_ratio, writer, pattern, thp, children, repeat, more);
	BenchResult r;
	bool main = in_main_thread();
	{
		py::gil_scoped_release nogil;
		std::lock_guard<std::mutex> lock(g_bench_mutex);
		SigintGuard guard(main);
		g_sigint.store(false);
		clear_stop();
		r = run_bench(cfg);
		clear_stop();
	}
	if (r.interrupted && g_sigint.exchange(false)) {
		// Ctrl-C: the children are reaped; behave like any interrupted call.
		PyErr_SetNone(PyExc_KeyboardInterrupt);
		throw py::error_already_set();
	}
	nlohmann::json j = to_json(r);
	py::dict d = to_python(j).cast<py::dict>();
	// The figures' medians at the top level: d["fork_us"] is
	// d["summary"]["fork_us"]["median"].
	if (j.contains("summary"))
		for (auto it = j["summary"].begin(); it != j["summary"].end(); ++it)
			d[py::str(it.key())] = to_python(it.value().value("median", nlohmann::json()));
	return d;
}

py::dict metadata()
{
	return to_python(machine_metadata()).cast<py::dict>();
}

// ---- the module's views -----------------------------------------------------

std::vector<view::PageRecord> read_view(pid_t pid, std::optional<std::uint64_t> start,
					std::optional<std::uint64_t> end)
{
	if (!view::module_loaded()) {
		try {
			view::require_module();
		} catch (const Error &e) {
			throw ModuleNotLoaded(e.what());
		}
		throw ModuleNotLoaded(std::string(view::kRoot) + " not found: the cowscope kernel module is not loaded");
	}
	if (start.has_value() != end.has_value())
		throw UsageError("read_view: give both start and end, or neither");
	bool was_tracked = view::tracked(pid);
	if (!was_tracked)
		view::track(pid);
	struct Untrack {
		pid_t pid;
		bool on;
		~Untrack()
		{
			if (on) {
				try {
					view::untrack(pid);
				} catch (...) {
				}
			}
		}
	} untrack{pid, !was_tracked};
	if (start)
		return view::read_records(pid, *start, *end);
	std::vector<view::PageRecord> all;
	for (const auto &m : view::read_maps(pid)) {
		auto part = view::read_records(pid, m.start, m.end);
		all.insert(all.end(), part.begin(), part.end());
	}
	return all;
}

// A getter of one field of the record's struct cowscope_rec.
template <auto Field> auto rec_field()
{
	return [](const view::PageRecord &r) { return r.rec.*Field; };
}

std::string record_repr(const view::PageRecord &r)
{
	char buf[240];
	std::snprintf(buf, sizeof buf, "PageRecord(vaddr=0x%llx, pfn=0x%llx, flags='%s', refcount=%u, mapcount=%u, folio_size=%llu, segment='%s')",
		      static_cast<unsigned long long>(r.vaddr), static_cast<unsigned long long>(r.rec.pfn),
		      r.flags().c_str(), r.rec.refcount, r.rec.mapcount,
		      static_cast<unsigned long long>(r.folio_bytes()), r.segment().c_str());
	return buf;
}

// ---- errors -----------------------------------------------------------------

struct PyErrors {
	py::object error, usage, sys, not_loaded;
};

PyErrors *g_errors = nullptr;

// cowscope.trace(): the tracer of the cowtrace program (cowtrace_core).
py::object trace(const std::vector<std::string> &cmd, bool by_mapping, bool sites, const std::string &method)
{
	auto m = cowtrace::parse_method(method);
	if (!m)
		throw UsageError(fmt::format("method: expected auto, fentry, kprobe, vmevent or tracepoint, got \"{}\"",
					     method));
	if (cmd.empty())
		throw UsageError("cmd: expected a command, like [\"python3\", \"-c\", \"pass\"]");
	cowtrace::Options o;
	o.method = *m;
	o.by_mapping = by_mapping;
	o.sites = sites;
	nlohmann::json j;
	{
		py::gil_scoped_release nogil;
		j = cowtrace::trace_command(cmd, o);
	}
	return to_python(j);
}

py::object make_class(py::module_ &m, const char *name, py::tuple bases, const char *doc)
{
	py::dict ns;
	ns["__doc__"] = doc;
	ns["__module__"] = "cowscope";
	py::object cls = py::module_::import("builtins").attr("type")(name, bases, ns);
	m.attr(name) = cls;
	return cls;
}

void raise(const py::object &cls, const std::string &msg)
{
	PyErr_SetString(cls.ptr(), msg.c_str());
}

void translate(std::exception_ptr p)
{
	try {
		if (p)
			std::rethrow_exception(p);
	} catch (const UsageError &e) {
		raise(g_errors->usage, e.what());
	} catch (const ModuleNotLoaded &e) {
		raise(g_errors->not_loaded, e.what());
	} catch (const SysError &e) {
		py::object ex = g_errors->sys(e.what());
		ex.attr("errno") = e.code();
		PyErr_SetObject(g_errors->sys.ptr(), ex.ptr());
	} catch (const Error &e) {
		raise(g_errors->error, e.what());
	}
}

} // namespace

PYBIND11_MODULE(_core, m)
{
	m.doc() = "cowscope's compiled core (private: import cowscope instead).";
	m.attr("__version__") = COWSCOPE_VERSION; // the top-level VERSION file

	static PyErrors errors;
	py::object runtime = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
	errors.error = make_class(m, "Error", py::make_tuple(runtime),
				  "A cowscope failure; str(e) is the message the command-line tools print.");
	errors.usage = make_class(m, "UsageError",
				  py::make_tuple(errors.error, py::reinterpret_borrow<py::object>(PyExc_ValueError)),
				  "A bad option or value; the message names the cowbench option (\"--heap: ...\").");
	errors.sys = make_class(m, "SysError",
				py::make_tuple(errors.error, py::reinterpret_borrow<py::object>(PyExc_OSError)),
				"A failed system call: \"<what>: <strerror>\", with .errno set.");
	errors.not_loaded = make_class(m, "ModuleNotLoadedError", py::make_tuple(errors.error),
				       "The cowscope kernel module is not loaded (/proc/cowscope is missing).");
	g_errors = &errors;
	py::register_exception_translator(translate);

	m.def("bench", &bench, py::arg("heap") = "64M", py::arg("write_ratio") = 0.25, py::arg("writer") = "child",
	      py::arg("pattern") = "seq", py::arg("thp") = py::none(), py::arg("children") = 1, py::arg("repeat") = 3,
	      R"doc(Run cowbench's fork/copy-on-write benchmark in this process; return its result.

Arguments take what cowbench's options take: heap="64M" (or bytes as an
int), write_ratio 0..1, writer "child"|"parent"|"both", pattern
"seq"|"random"|"stride:N", thp "never"|"madvise"|"always"|"system"
(default "never"), children, repeat; further keyword options as in
cowbench: spawn ("fork"|"vfork"|"posix_spawn"|"fork-exec"; the exec modes
run /bin/true), warmup, read, pte_state, timeout, seed, folio ("4K".."2M":
the heap's folio size, root except "4K"; not with thp=; the result's
setup has folio_observed, what the heap really got).

Returns a dict with the keys of `cowbench --json` (tool, params, machine,
pte_state, setup, repetitions, summary, status, interrupted, timeouts) and,
for every figure, its median at the top level: fork_us, child_start_us,
child_write_us, cow_faults, ns_per_cow_fault, cow_private_dirty_kb,
eager_copy_us, ns_per_page_copy, cow_eager_ratio, ... (None = not measured).

Raises UsageError (a ValueError) with cowbench's message for bad options,
Error/SysError for failures. The GIL is released while it runs; Ctrl-C stops
it after the current repetition (children reaped) and raises
KeyboardInterrupt. One bench runs at a time per process.)doc");
	m.def("request_stop", &request_stop,
	      "Ask a bench() running in another thread to stop after its current repetition; it then returns "
	      "the finished repetitions with result['interrupted'] True.");
	m.def("machine_metadata", &metadata,
	      "The machine metadata recorded with every result: kernel, cpu_model, cores, page_size, thp, "
	      "hostname, commit, version, virtualized, timestamp, ...");
	m.def("thp_mode", &thp_mode,
	      "The system THP setting (\"always\", \"madvise\", \"never\" or \"unavailable\").");
	m.def("repetition_keys", &repetition_keys, "The per-repetition figure names, in cowbench's output order.");
	m.def("module_loaded", &view::module_loaded, "True when the cowscope kernel module is loaded (/proc/cowscope/track exists).");

	py::class_<view::PageRecord>(m, "PageRecord",
				     "One virtual page of the module's binary view (struct cowscope_rec).")
		.def_readonly("vaddr", &view::PageRecord::vaddr, "Virtual address of the page.")
		.def_property_readonly("pfn", rec_field<&cowscope_rec::pfn>(), "Page frame number (0 when not present).")
		.def_property_readonly("flags", rec_field<&cowscope_rec::flags>(), "COWSCOPE_F_* bits.")
		.def_property_readonly("letters", &view::PageRecord::flags,
				       "The flags as the ptes view's letters (W D A U H a x z k f s), '-' for none.")
		.def_property_readonly("refcount", rec_field<&cowscope_rec::refcount>(), "page_count() of the page.")
		.def_property_readonly("mapcount", rec_field<&cowscope_rec::mapcount>(),
				       "The page's mapcount, as /proc/kpagecount reports it.")
		.def_property_readonly("folio_size", &view::PageRecord::folio_bytes,
				       "Bytes of the folio this page belongs to (4096, 65536, 2097152...).")
		.def_property_readonly("segment", &view::PageRecord::segment,
				       "The VMA's label: text, data, bss, heap, stack, mmap-anon, ...")
		.def_property_readonly("present", &view::PageRecord::present, "The page is mapped.")
		.def_property_readonly("writable", &view::PageRecord::writable, "Writable in the page table.")
		.def_property_readonly("cow", &view::PageRecord::cow_pending,
				       "Present, anonymous, read-only in a writable VMA: a write would COW-fault.")
		.def_property_readonly("anon_exclusive", &view::PageRecord::anon_exclusive, "PageAnonExclusive.")
		.def("__repr__", &record_repr, "PageRecord(vaddr=..., pfn=..., ...).");

	m.def("trace", &trace, py::arg("cmd"), py::arg("by_mapping") = false, py::arg("sites") = false,
	      py::arg("method") = "auto",
	      R"doc(Run `cmd` (a list: program and arguments) under cowtrace until it exits.

Every process it forks is followed. Returns what `cowtrace --json` writes
(schema 2, bpf/README.md: {"schema": 2, "processes": [...], ...}) plus
"method", "plan" and "exit_status": each process with wp_faults,
cow_copies, cow_reuses, ...; by_mapping=True adds its "mappings" (label,
start, end, path, copies, reuses), sites=True its user "sites" (frames
symbolized after the run: func, offset, module, file, line, guess) and
"merged_sites" over the process tree; either adds "attribution_errors" and
"notes". Needs root (BPF).)doc");

	m.def("read_view", &read_view, py::arg("pid"), py::arg("start") = py::none(), py::arg("end") = py::none(),
	      R"doc(The module's binary per-page view of process `pid` as a list of PageRecord.

Every mapped page of every VMA, or only [start, end) when both are given
(page-aligned outward). The pid is tracked for the read (and untracked after
unless it already was). Raises ModuleNotLoadedError, saying how to get the
module, when /proc/cowscope does not exist (it exists only inside the VM lab,
`scripts/vm --kernel 6.12 run ...`, or after `make load`).)doc");
}
