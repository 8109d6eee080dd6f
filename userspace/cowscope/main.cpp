// cowscope: read the cowscope.ko views of a process, and diff a parent
// against its forked child.
//
//   cowscope maps PID [--json FILE]
//   cowscope ptes PID [--range START-END] [--json FILE]
//   cowscope summary PID [--json FILE]
//   cowscope diff PARENT CHILD [--range START-END] [--width N] [--pages] [--json FILE]
//   cowscope watch PID [CHILD] [-i SECONDS] [-n COUNT]
//
// Exit status: 0 ok, 1 runtime error (module not loaded, no such process,
// the process exited), 2 usage error, 130 interrupted.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cowscope/base/cli.hpp"
#include "cowscope/view/diff.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/base/units.hpp"
#include "cowscope/view/view.hpp"
#include "cowscope/base/version.hpp"

using namespace cowscope;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_sigint(int) { g_stop = 1; }

// ---- maps -------------------------------------------------------------

int cmd_maps(pid_t pid, const std::string &json_file)
{
	ensure_tracked(pid);
	std::vector<view::MapsEntry> maps;
	try {
		maps = view::read_maps(pid);
	} catch (const SysError &e) {
		throw_if_gone(pid, e);
	}
	nlohmann::json arr = nlohmann::json::array();
	for (const auto &m : maps)
		arr.push_back({{"start", m.start}, {"end", m.end}, {"size", m.end - m.start},
			       {"perms", m.perms}, {"label", m.label}, {"present", m.present},
			       {"writable", m.writable}, {"cow", m.cow}, {"shared", m.shared}});
	std::string out;
	out += fmt::format("pid {}: {} VMAs (present/writable/cow/shared in 4 KiB pages)\n",
				 pid, maps.size());
	out += fmt::format("{:>18}  {:>18} {:>10}  {:<5} {:<10} {:>8} {:>8} {:>8} {:>8}\n",
				 "start", "end", "size", "perms", "label", "present", "writable",
				 "cow", "shared");
	view::MapsEntry tot;
	for (const auto &m : maps) {
		out += fmt::format("{:>#18x}  {:>#18x} {:>10}  {:<5} {:<10} {:>8} {:>8} {:>8} {:>8}\n",
					 m.start, m.end, format_size(m.end - m.start), m.perms,
					 m.label, m.present, m.writable, m.cow, m.shared);
		tot.end += m.end - m.start;
		tot.present += m.present;
		tot.writable += m.writable;
		tot.cow += m.cow;
		tot.shared += m.shared;
	}
	out += fmt::format("{:>18}  {:>18} {:>10}  {:<5} {:<10} {:>8} {:>8} {:>8} {:>8}\n", "",
				 "total", format_size(tot.end), "", "", tot.present, tot.writable,
				 tot.cow, tot.shared);
	out += fmt::format("present {}, of which cow-pending {} and shared {}\n",
				 format_size(tot.present * COWSCOPE_PAGE_SIZE),
				 format_size(tot.cow * COWSCOPE_PAGE_SIZE),
				 format_size(tot.shared * COWSCOPE_PAGE_SIZE));
	cli::emit(json_file, out, nlohmann::json{{"pid", pid}, {"maps", arr}}.dump(2) + "\n");
	return 0;
}

// ---- ptes -------------------------------------------------------------

int cmd_ptes(pid_t pid, const std::string &range, const std::string &json_file)
{
	auto [lo, hi] = cli::parse_range(range, "--range");
	PageList pages = read_present(pid, lo, hi);
	nlohmann::json arr = nlohmann::json::array();
	for (const auto &p : pages)
		arr.push_back({{"vaddr", p.vaddr}, {"pfn", p.rec.pfn}, {"flags", p.flags()},
			       {"refcount", p.rec.refcount}, {"mapcount", p.rec.mapcount},
			       {"mapcount_is_folio_average", p.map_average()},
			       {"folio_size", p.folio_bytes()},
			       {"cow", p.cow_pending()}, {"segment", p.segment()}});
	std::string out = fmt::format("pid {}: {} present pages{}\n", pid, pages.size(),
				 hi > lo ? fmt::format(" in {:#x}-{:#x}", lo, hi) : "");
	out += fmt::format("{:>18} {:>10} {:<11} {:>4} {:>4} {:>5} {:<3} {}\n", "vaddr", "pfn",
				 "flags", "ref", "map", "folio", "cow", "segment");
	bool avg = false;
	for (const auto &p : pages) {
		avg |= p.map_average();
		out += fmt::format("{:>#18x} {:>10x} {:<11} {:>4} {:>4} {:>5} {:<3} {}\n", p.vaddr,
				   p.rec.pfn, p.flags(), p.rec.refcount,
				   fmt::format("{}{}", p.map_average() ? "~" : "", p.rec.mapcount),
				   view::folio_size_name(p.folio_order()),
				   p.cow_pending() ? "C" : "-", p.segment());
	}
	out += "flags: " + view::flag_legend() +
	       "; cow C = write-protected anon in a writable VMA; folio: size of the page's folio\n";
	if (avg)
		out += "map ~N: this kernel keeps no per-page mapcount for large folios "
			     "(CONFIG_NO_PAGE_MAPCOUNT): N is the folio's average, as /proc/kpagecount "
			     "gives it\n";
	cli::emit(json_file, out, nlohmann::json{{"pid", pid}, {"ptes", arr}}.dump(2) + "\n");
	return 0;
}

// ---- summary ----------------------------------------------------------

std::vector<view::SummaryRow> summary_of(pid_t pid)
{
	ensure_tracked(pid);
	try {
		return view::read_summary(pid);
	} catch (const SysError &e) {
		throw_if_gone(pid, e);
	}
}

std::string format_summary(pid_t pid, const std::vector<view::SummaryRow> &rows)
{
	std::string out = fmt::format("pid {}: pages by segment (4 KiB pages)\n", pid);
	out += fmt::format("{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}  {:>10}\n", "segment",
			   "present", "writable", "cow", "shared", "exclusive", "huge", "present");
	for (const auto &r : rows) {
		if (r.present == 0 && r.label != "total")
			continue;
		out += fmt::format("{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}  {:>10}\n", r.label,
				   r.present, r.writable, r.cow, r.shared, r.exclusive, r.huge,
				   format_size(r.present * COWSCOPE_PAGE_SIZE));
	}
	// Present pages by folio size: only the sizes some segment has.
	std::vector<unsigned> orders;
	for (unsigned o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++)
		for (const auto &r : rows)
			if (r.folio[o]) {
				orders.push_back(o);
				break;
			}
	if (orders.empty())
		return out;
	out += fmt::format("present pages by folio size\n{:<10}", "segment");
	for (unsigned o : orders)
		out += fmt::format(" {:>8}", view::folio_size_name(o));
	out += "\n";
	for (const auto &r : rows) {
		if (r.present == 0 && r.label != "total")
			continue;
		out += fmt::format("{:<10}", r.label);
		for (unsigned o : orders)
			out += fmt::format(" {:>8}", r.folio[o]);
		out += "\n";
	}
	return out;
}

nlohmann::json summary_json(pid_t pid, const std::vector<view::SummaryRow> &rows)
{
	nlohmann::json segs = nlohmann::json::object();
	for (const auto &r : rows) {
		nlohmann::json by_size = nlohmann::json::object();
		for (unsigned o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++)
			by_size[std::to_string(std::uint64_t(COWSCOPE_PAGE_SIZE) << o)] = r.folio[o];
		segs[r.label] = {{"present", r.present}, {"writable", r.writable}, {"cow", r.cow},
				 {"shared", r.shared}, {"exclusive", r.exclusive}, {"huge", r.huge},
				 {"present_by_folio_size", by_size}};
	}
	return {{"pid", pid}, {"page_size", COWSCOPE_PAGE_SIZE}, {"segments", segs}};
}

int cmd_summary(pid_t pid, const std::string &json_file)
{
	auto rows = summary_of(pid);
	cli::emit(json_file, format_summary(pid, rows), summary_json(pid, rows).dump(2) + "\n");
	return 0;
}

// ---- diff -------------------------------------------------------------

int cmd_diff(pid_t parent, pid_t child, const std::string &range, unsigned width, bool pages,
	     const std::string &json_file)
{
	auto [lo, hi] = cli::parse_range(range, "--range");
	Diff d = diff_pids(parent, child, lo, hi);
	std::string out = format_diff(d, width);
	if (pages) {
		out += fmt::format("{:>18} {:<11} {:>10} {:>10} {:<9} {:<9} {:>7} {:>7} {}\n",
					 "vaddr", "state", "parent pfn", "child pfn", "p flags",
					 "c flags", "p folio", "c folio", "segment");
		for (const auto &p : d.pages)
			out += fmt::format(
				"{:>#18x} {:<11} {:>10x} {:>10x} {:<9} {:<9} {:>7} {:>7} {}\n", p.vaddr,
				to_string(p.state), p.parent_pfn, p.child_pfn,
				view::flag_letters(p.parent_flags), view::flag_letters(p.child_flags),
				p.parent_pfn ? view::folio_size_name(p.parent_order) : "-",
				p.child_pfn ? view::folio_size_name(p.child_order) : "-",
				cowscope_segment_name(p.segment));
	}
	cli::emit(json_file, out, diff_json(d, pages).dump(2) + "\n");
	return 0;
}

// ---- watch ------------------------------------------------------------

int cmd_watch(pid_t pid, pid_t child, double interval, long count, unsigned width)
{
	const bool tty = ::isatty(STDOUT_FILENO);
	struct sigaction sa {};
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: nanosleep returns
	for (long i = 0; count < 0 || i < count; i++) {
		std::string body;
		if (child)
			body = format_diff(diff_pids(pid, child), width);
		else
			body = format_summary(pid, summary_of(pid));
		time_t now = ::time(nullptr);
		char stamp[32];
		std::strftime(stamp, sizeof(stamp), "%H:%M:%S", std::localtime(&now));
		std::cout << (tty ? "\033[H\033[2J" : "")
			  << fmt::format("cowscope watch {}{}  every {}s  {}  (Ctrl-C stops)\n", pid,
					 child ? fmt::format(" {}", child) : "", interval, stamp)
			  << body << (tty ? "" : "\n") << std::flush;
		if (count >= 0 && i + 1 >= count)
			break;
		struct timespec ts;
		ts.tv_sec = static_cast<time_t>(interval);
		ts.tv_nsec = static_cast<long>((interval - std::floor(interval)) * 1e9);
		if (g_stop || (::nanosleep(&ts, nullptr) != 0 && errno == EINTR && g_stop))
			return 130;
		if (g_stop)
			return 130;
	}
	return 0;
}

// ---- forecast (cowscope/forecast.hpp) ---------------------------------

struct ForecastOpts {
	std::string window, snapshot, calibration;
	std::vector<std::string> from_trace, trace_seconds;
	std::string json;
	bool no_module = false;
};

int cmd_forecast(pid_t pid, const ForecastOpts &o)
{
	forecast::ForecastRequest req;
	req.pid = pid;
	if (!o.window.empty())
		req.window_s = cli::parse_seconds(o.window, "--window");
	for (const auto &t : o.trace_seconds)
		req.trace_seconds.push_back(cli::parse_seconds(t, "--trace-seconds"));
	if (!o.snapshot.empty())
		req.snapshot_s = cli::parse_seconds(o.snapshot, "--snapshot");
	req.from_trace = o.from_trace;
	req.calibration = o.calibration;
	req.use_module = !o.no_module;
	const bool tty = ::isatty(STDERR_FILENO);
	auto f = forecast::forecast_pid(req, [&](double t) {
		if (tty)
			std::fprintf(stderr, "\rsoft-dirty window: %.1f / %.1f s\x1b[K", t, req.window_s);
	});
	if (tty && req.window_s > 0)
		std::fprintf(stderr, "\r\x1b[K");
	cli::emit(o.json, f.to_text(), f.to_json().dump(2) + "\n");
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"cowscope: see fork()'s copy-on-write through the cowscope.ko /proc views.\n"
		     "Needs the cowscope kernel module (/proc/cowscope): `modprobe cowscope` once the\n"
		     "cowscope-dkms package has built it; in a clone, make load or the VM lab (make vm)."};
	app.set_version_flag("--version", version_line("cowscope"));
	app.set_help_all_flag("--help-all", "Print help for every subcommand and exit");
	app.require_subcommand(1);
	std::string pid_s, child_s, range, interval_s = "1", json;
	bool pages = false;
	unsigned width = 64;
	long count = -1;

	auto *maps = app.add_subcommand("maps", "VMAs with their segment label and page counts");
	maps->add_option("PID", pid_s, "process id")->required();
	cli::add_json_option(*maps, json, "the VMAs");
	auto *ptes = app.add_subcommand("ptes", "every present page: PFN, PTE flags, refcount, mapcount");
	ptes->add_option("PID", pid_s, "process id")->required();
	ptes->add_option("--range", range, "only START-END (hex)");
	cli::add_json_option(*ptes, json, "the pages");
	auto *summary = app.add_subcommand("summary", "page counts per segment");
	summary->add_option("PID", pid_s, "process id")->required();
	cli::add_json_option(*summary, json, "the counts");
	auto *diff = app.add_subcommand("diff", "join a parent and its forked child by address: "
						"shared, cow-pending, copied, exclusive pages");
	diff->add_option("PARENT", pid_s, "parent process id")->required();
	diff->add_option("CHILD", child_s, "child process id")->required();
	diff->add_option("--range", range, "only START-END (hex)");
	diff->add_option("--width", width, "heap strip width in characters (0: no strip)");
	diff->add_flag("--pages", pages, "also list every page");
	cli::add_json_option(*diff, json, "the diff (with --pages, every page)");
	auto *watch = app.add_subcommand("watch", "refresh summary PID (or diff PID CHILD) until Ctrl-C");
	watch->add_option("PID", pid_s, "process id (the parent)")->required();
	watch->add_option("CHILD", child_s, "child process id: watch the diff");
	watch->add_option("-i,--interval", interval_s, "seconds between refreshes (default 1)");
	watch->add_option("-n,--count", count, "stop after COUNT refreshes");
	watch->add_option("--width", width, "heap strip width");

	ForecastOpts fo;
	auto *fc = app.add_subcommand("forecast", "predict PID's fork stall and its snapshot's COW memory "
						  "before it forks (calibrate first: cowbench calibrate)");
	fc->add_option("PID", pid_s, "process id")->required();
	fc->add_option("--window", fo.window, "measure the distinct pages written over SECONDS (soft-dirty)");
	fc->add_option("--from-trace", fo.from_trace,
		       "copy side from a cowtrace JSON record of an earlier snapshot (repeatable: several records)")
		->allow_extra_args(false)
		->take_all();
	fc->add_option("--trace-seconds", fo.trace_seconds,
		       "length of each snapshot in the records (once, or once per --from-trace)")
		->allow_extra_args(false)
		->take_all();
	fc->add_option("--snapshot", fo.snapshot,
		       "the coming snapshot lasts SECONDS: the copy side projected to it (default: as measured)");
	fc->add_option("--calibration", fo.calibration, "the model FILE (default: this machine's)");
	fc->add_flag("--no-module", fo.no_module, "ignore the module even when loaded");
	cli::add_json_option(*fc, fo.json, "the forecast");

	return cli::run_main("cowscope", app, [&] {
		cli::refuse_bare_json(argc, argv);
		app.parse(argc, argv);
		pid_t pid = cli::parse_pid(pid_s, "PID");
		if (*maps)
			return cmd_maps(pid, json);
		if (*ptes)
			return cmd_ptes(pid, range, json);
		if (*summary)
			return cmd_summary(pid, json);
		if (*fc)
			return cmd_forecast(pid, fo);
		pid_t child = child_s.empty() ? 0 : cli::parse_pid(child_s, "CHILD");
		if (*diff)
			return cmd_diff(pid, child, range, width, pages, json);
		double interval = cli::parse_seconds(interval_s, "--interval", 86400,
						     "SECONDS > 0 like 1 or 0.5");
		return cmd_watch(pid, child, interval, count, width);
	});
}
