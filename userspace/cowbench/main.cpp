// cowbench: what fork and copy-on-write cost. A thin front end over the
// cowcore library (cowscope/bench.hpp, cowscope/sweep.hpp).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fmt/format.h>
#include <iostream>
#include <map>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/base/stats.hpp"
#include "cowscope/bench/sweep.hpp"
#include "cowscope/base/units.hpp"
#include "cowscope/base/version.hpp"

using namespace cowscope;

namespace {

// SIGINT/SIGTERM: the first stops the run after its repetition (every
// destructor runs: children reaped, --folio's sysfs controls restored); a
// second restores the controls at once and dies of the signal.
void install_sigint()
{
	install_folio_signal_handlers(&request_stop);
}

struct Opts {
	std::map<std::string, std::string> values;
	bool read = false;
	std::string json, csv, out;
	bool quiet = false;
};

void add_bench_options(CLI::App &app, Opts &o, bool lists)
{
	const char *l = lists ? " (a comma-separated list sweeps it)" : "";
	auto opt = [&](const std::string &name, const std::string &help) {
		app.add_option_function<std::string>(
			   "--" + name, [&o, name](const std::string &v) { o.values[name] = v; }, help)
			->type_name("");
	};
	opt("heap", fmt::format("private anonymous heap, SIZE like 64M (K/M/G/T){}", l));
	opt("write-ratio", fmt::format("share of pages written after fork, 0..1{}", l));
	opt("writer", fmt::format("who writes after fork: child|parent|both{}", l));
	opt("pattern", fmt::format("write order: seq|random|stride:N{}", l));
	opt("children", fmt::format("concurrent children{}", l));
	opt("thp", fmt::format("never|madvise|always (MADV_NOHUGEPAGE/MADV_HUGEPAGE) or system{}", l));
	opt("folio", fmt::format("heap folio size 4K|16K|32K|64K|128K|256K|512K|1M|2M (root except 4K; sets "
				 "the per-size THP controls for the run, restores them after; instead of --thp){}",
				 l));
	opt("spawn", fmt::format("fork|vfork|posix_spawn|fork-exec{}", l));
	opt("repeat", "measured repetitions (after the warm-up)");
	opt("warmup", "unmeasured warm-up repetitions (default 1)");
	opt("pte-state", "writable (rewrite the heap before each fork, default) or readonly");
	opt("timeout", "seconds a child may take per phase before it is killed (default 60)");
	opt("seed", "seed for --pattern random and --populate random");
	opt("populate", "first-touch order of the heap: seq (default) or random (physically scattered pages, as "
			"in a long-running process)");
	opt("settle", "idle SECONDS between preparing the heap and each timed fork (default 0: at once), as a "
		      "long-running process's memory is rarely all just touched");
	app.add_flag("--read", o.read, "the writer also reads the pages it does not write");
	app.add_flag("-q,--quiet", o.quiet, "no progress output");
}

void progress_bar(unsigned done, unsigned total, const std::string &label)
{
	if (!::isatty(2))
		return;
	unsigned width = 30;
	unsigned fill = total ? done * width / total : width;
	std::string bar(fill, '#');
	bar.resize(width, ' ');
	std::fprintf(stderr, "\r[%s] %u/%u %s\x1b[K", bar.c_str(), done, total, label.c_str());
	if (done == total)
		std::fprintf(stderr, "\r\x1b[K");
	std::fflush(stderr);
}

int cmd_run(const Opts &o)
{
	auto values = o.values;
	if (o.read)
		values["read"] = "1";
	BenchConfig cfg = config_from_options(values);
	BenchResult r = run_bench(cfg, [&](unsigned d, unsigned t) {
		if (!o.quiet)
			progress_bar(d, t, "repetitions");
	});
	// --json -: the JSON alone on standard output (for pipes), the table on standard error.
	const bool json_stdout = o.json == "-";
	if (!o.json.empty() && !json_stdout)
		write_file_atomic(o.json, to_json(r).dump(2) + "\n");
	if (!o.csv.empty())
		write_file_atomic(o.csv, to_csv(r));
	(json_stdout ? std::cerr : std::cout) << to_table(r);
	if (json_stdout)
		std::cout << to_json(r).dump(2) << "\n" << std::flush;
	if (r.interrupted) {
		std::cerr << fmt::format("cowbench: interrupted; {} finished repetitions written\n",
					 r.repetitions.size());
		return 130;
	}
	if (r.timeouts) {
		std::cerr << fmt::format("cowbench: {} repetition(s) timed out; their children were killed and reaped\n",
					 r.timeouts);
		return 1;
	}
	return 0;
}

int cmd_sweep(const Opts &o)
{
	auto values = o.values;
	if (o.read)
		values["read"] = "1";
	auto points = expand_sweep(values);
	auto out = run_sweep(points, o.out, [&](const SweepProgress &p) {
		if (o.quiet)
			return;
		std::string label;
		if (p.current)
			label = fmt::format("heap={} ratio={} writer={} pattern={} thp={}{} children={} spawn={}",
					    format_size(p.current->heap), p.current->write_ratio,
					    to_string(p.current->writer), to_string(p.current->pattern),
					    to_string(p.current->thp),
					    p.current->folio ? " folio=" + folio_name(p.current->folio) : "",
					    p.current->children, to_string(p.current->spawn));
		progress_bar(p.done, p.total, label);
	});
	std::cout << fmt::format("cowbench sweep: {} points, {} run, {} already in {}{}\n", out.total, out.ran,
				 out.skipped, o.out, out.interrupted ? " (interrupted: rerun to resume)" : "");
	return out.interrupted ? 130 : 0;
}

// `make bench`: the driver's own overhead and the cost of a COW fault
// beside its floors. name=value lines with their targets.
int cmd_selftest(unsigned rounds)
{
	std::vector<double> plain, driver, cycle;
	BenchConfig empty;
	empty.heap = 0;
	empty.write_ratio = 0;
	empty.repeat = 100;
	for (unsigned i = 0; i < rounds; i++) {
		auto p = plain_fork_loop(100, &cycle);
		plain.insert(plain.end(), p.begin(), p.end());
		auto r = run_bench(empty);
		for (const auto &rep : r.repetitions)
			driver.push_back(rep.fork_us);
	}
	Summary sp = summarize(plain), sd = summarize(driver), sc = summarize(cycle);
	double ratio = sd.median / sp.median;
	std::cout << fmt::format("latproc_fork_us={:.1f} (min {:.1f} max {:.1f}, n={})\n", sp.median, sp.min, sp.max, sp.n);
	std::cout << fmt::format("latproc_cycle_us={:.1f} (fork+_exit+waitpid)\n", sc.median);
	std::cout << fmt::format("cowbench_empty_fork_us={:.1f} (min {:.1f} max {:.1f}, n={})\n", sd.median, sd.min, sd.max, sd.n);
	std::cout << fmt::format("driver_overhead_ratio={:.3f} target<=1.15 {}\n", ratio,
				 ratio <= 1.15 && ratio >= 0.85 ? "OK" : "MISSED");

	for (Thp thp : {Thp::never, Thp::always}) {
		BenchConfig c;
		c.heap = 64ull << 20;
		c.write_ratio = 1;
		c.thp = thp;
		c.repeat = 5;
		auto r = run_bench(c);
		auto med = [&](const char *k) {
			std::vector<double> v;
			for (const auto &rep : r.repetitions)
				v.push_back(repetition_value(rep, k));
			return summarize(v);
		};
		std::string tag = thp == Thp::never ? "4k" : "thp";
		auto nf = med("ns_per_cow_fault"), pc = med("ns_per_page_copy"), cf = med("cow_faults"),
		     ratio2 = med("cow_eager_ratio");
		std::cout << fmt::format("{}_heap_huge_kb={} (thp advice {}, system {})\n", tag, r.setup.anon_huge_kb,
					 r.setup.thp_advice, r.setup.thp_system);
		std::cout << fmt::format("{}_ns_per_cow_fault={:.0f} (min {:.0f} max {:.0f})\n", tag, nf.median, nf.min, nf.max);
		std::cout << fmt::format("{}_ns_per_4k_memcpy={:.0f} (min {:.0f} max {:.0f}) floor of the copy\n", tag,
					 pc.median, pc.min, pc.max);
		std::cout << fmt::format("{}_ns_per_first_touch_fault={:.0f}\n", tag, r.setup.ns_per_first_touch_fault);
		std::cout << fmt::format("{}_cow_faults={:.0f} for {} pages written\n", tag, cf.median, r.setup.pages_written);
		std::cout << fmt::format("{}_cow_eager_ratio={:.2f} (min {:.2f} max {:.2f})\n", tag, ratio2.median,
					 ratio2.min, ratio2.max);
	}
	for (PteState st : {PteState::writable, PteState::readonly}) {
		BenchConfig c;
		c.heap = 256ull << 20;
		c.write_ratio = 0;
		c.thp = Thp::never;
		c.pte_state = st;
		c.repeat = 5;
		auto r = run_bench(c);
		std::vector<double> v;
		for (const auto &rep : r.repetitions)
			v.push_back(rep.fork_us);
		auto s = summarize(v);
		std::cout << fmt::format("fork_256m_{}_us={:.0f} (min {:.0f} max {:.0f})\n", to_string(st), s.median,
					 s.min, s.max);
	}
	return 0;
}

struct ProbeOpts {
	std::string heap = "16M", folio = "64K", ratio = "0.5", json;
	unsigned per_folio = 1;
};

int cmd_probe(const ProbeOpts &o)
{
	FolioProbeConfig c;
	c.heap = parse_size(o.heap, "--heap");
	c.folio = parse_folio(o.folio);
	c.write_ratio = parse_ratio(o.ratio, "--write-ratio");
	c.pages_per_folio = o.per_folio;
	FolioProbeResult r = run_folio_probe(c);
	if (!o.json.empty())
		write_file_atomic(o.json, r.to_json().dump() + "\n"); // one line: JSON-lines friendly
	std::cout << r.to_text();
	return stop_requested() ? 130 : 0;
}

// `cowbench calibrate`: fit the fork/COW model of this machine and kernel
// (cowscope/forecast.hpp), print the held-out check, save it.
struct CalOpts {
	std::string file, json, settle;
	unsigned repeat = 7;
	bool quick = false, quiet = false;
};

int cmd_calibrate(const CalOpts &o)
{
	forecast::CalibrateConfig cfg;
	cfg.repeat = o.repeat;
	if (!o.settle.empty())
		cfg.settle_s = cli::parse_idle_seconds(o.settle, "--settle");
	if (o.quick)
		cfg.heaps = {8ull << 20, 32ull << 20, 96ull << 20}, cfg.extra_vmas = {0, 2000}, cfg.boot_rounds = 100;
	std::string path = o.file.empty() ? forecast::default_calibration_path() : o.file;
	auto cal = forecast::run_calibration(cfg, [&](unsigned d, unsigned t, const std::string &label) {
		if (!o.quiet)
			progress_bar(d, t, label);
	});
	forecast::save_calibration(cal, path);
	if (!o.json.empty())
		write_file_atomic(o.json, cal.to_json().dump(1) + "\n");
	std::cout << forecast::calibration_report(cal) << "saved " << path << "\n";
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc == 2 && std::string_view(argv[1]) == "--exec-noop")
		_exit(0);
	CLI::App app{"cowbench: what fork() and copy-on-write cost, by heap size and write ratio"};
	app.set_version_flag("--version", version_line("cowbench"));
	app.set_help_all_flag("--help-all", "Print help for every subcommand and exit");
	app.require_subcommand(0, 1);
	Opts run, sw;
	add_bench_options(app, run, false);
	app.add_option("--json", run.json, "write every parameter and repetition as JSON to FILE (-: standard output)");
	app.add_option("--csv", run.csv, "write one CSV row per repetition to FILE");
	auto *sweep = app.add_subcommand("sweep", "run every combination of the listed values");
	add_bench_options(*sweep, sw, true);
	sweep->add_option("-o,--out", sw.out, "JSON-lines results file (appended; a rerun resumes)")->required();
	auto *self = app.add_subcommand("selftest", "driver overhead and COW fault cost (make bench)");
	ProbeOpts probe;
	auto *fp = app.add_subcommand("folio-probe",
				      "page by page (root): does a fork child's write copy 4 KiB or the whole folio, "
				      "and does the parent reuse its large folios in place after the child exits?");
	fp->add_option("--heap", probe.heap, "heap SIZE (a whole number of folios; default 16M)");
	fp->add_option("--folio", probe.folio, "folio size 4K..2M (default 64K)");
	fp->add_option("--write-ratio", probe.ratio, "share of the folios the child writes in (default 0.5)");
	fp->add_option("--pages-per-folio", probe.per_folio, "pages the child writes in each (default 1)");
	fp->add_option("--json", probe.json, "write the result as JSON to FILE");
	CalOpts cal;
	auto *calib = app.add_subcommand("calibrate", "fit this machine's fork/COW cost model for `cowscope forecast` "
						      "(a few minutes; saved per machine and kernel)");
	calib->add_option("--calibration", cal.file, "write the model to FILE instead of the default place");
	calib->add_option("--json", cal.json, "also write it to FILE");
	calib->add_option("--repeat", cal.repeat, "repetitions per point (default 7)")->check(CLI::Range(3, 1000));
	calib->add_option("--settle", cal.settle,
			  "idle SECONDS before each timed fork (default 0.25: a forecast process's memory has rarely "
			  "just been touched; 0: fork at once)");
	calib->add_flag("--quick", cal.quick, "smaller heaps and fewer VMAs (tests)");
	calib->add_flag("-q,--quiet", cal.quiet, "no progress output");
	unsigned rounds = 3;
	self->add_option("--rounds", rounds, "rounds of 100 forks each");
	return cli::run_main("cowbench", app, [&] {
		app.parse(argc, argv);
		install_sigint();
		if (*sweep)
			return cmd_sweep(sw);
		if (*self)
			return cmd_selftest(rounds);
		if (*fp)
			return cmd_probe(probe);
		if (*calib)
			return cmd_calibrate(cal);
		return cmd_run(run);
	});
}
