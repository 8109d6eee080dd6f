// cowtrace: count copy-on-write page faults per process, live.
//
//   cowtrace [-p PID] [--children] [--json FILE|-] [-i SECONDS [COUNT]]
//            [-m auto|fentry|kprobe|vmevent|tracepoint] [-v]
//            [--by-mapping] [--sites [N]] [--folded FILE] [-- CMD ARGS...]
//   cowtrace --serve [ADDR:]PORT (-p PID [--children] | --comm NAME | --all)
//            [--max-series N] [--grace SECONDS] [--web-config FILE]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/proc/stat.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/trace/serve.hpp"
#include "cowscope/trace/trace.hpp"
#include "cowscope/base/version.hpp"

using cowscope::Error;
using cowscope::UsageError;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Args {
	std::string pid_s;		// -p: parse_pid()'d into pid
	pid_t pid = 0;
	bool children = false;
	std::string json;
	std::vector<std::string> interval;
	std::string method = "auto";
	bool verbose = false;
	bool bpf_stats = false;
	bool by_mapping = false;
	std::string sites;		// --sites [N]: N ("" for the default)
	std::size_t top = 0;		// 0: no --sites
	std::string unwind;		// --unwind [N]: N ("" for the default)
	unsigned unwind_period = 0;	// 0: no --unwind
	std::string unwind_stack = "8K";	// --unwind-stack SIZE
	unsigned unwind_bytes = 8192;
	bool per_process = false;
	std::string folded;
	std::vector<std::string> cmd;
	double seconds = 0;
	long count = -1;
	// --serve (exporter.hpp, serve.hpp)
	std::string serve, comm, max_series = "1000", grace = "60", web_config;
	bool all = false;
};

// Tgid, PPid and comm of a live process (or of a thread's process), or
// throw naming -p.
struct ProcFacts {
	pid_t tgid = 0, ppid = 0;
	std::string comm;
};
ProcFacts proc_facts(pid_t pid)
{
	auto status = cowscope::proc::read_status(pid);
	if (!status)
		throw Error(fmt::format("-p {}: no such process", pid));
	if (status->gone())
		throw Error(fmt::format("-p {}: the process has already exited (zombie)", pid));
	auto stat = cowscope::proc::read_stat(status->tgid);
	if (!stat)
		throw Error(fmt::format("-p {}: no such process", pid));
	return {status->tgid, status->ppid, stat->comm};
}

// Processes listed one by one (beside their families) without --per-process.
constexpr std::size_t kShownProcesses = 20;

// Attribution (--by-mapping, --sites) only in the final dump: symbolizing
// is not free, and it happens after the run, never in the fault path.
void emit(const Args &a, cowtrace::Tracer &t, bool final_dump, bool stamp)
{
	std::optional<cowtrace::Attribution> attr;
	if (final_dump && (a.by_mapping || a.top)) {
		t.refresh_memory();
		attr = t.attribution();
	}
	auto procs = t.snapshot();
	auto folding = t.folding();
	// many processes: one row per family, the top ones by copies one by one
	cowtrace::Grouping g;
	g.families = cowtrace::families(procs, 2, &folding);
	g.folding = &folding;
	auto shown = cowtrace::shown_processes(procs, g.families, a.per_process, kShownProcesses);
	for (const auto &p : shown)
		g.detailed.push_back(p.pid);
	std::sort(g.detailed.begin(), g.detailed.end());
	g.sites_top = a.per_process ? 0 : a.top;
	if (attr && !a.folded.empty())
		cowscope::write_file_atomic(a.folded, cowtrace::folded(*attr, procs));
	if (!a.json.empty()) {
		auto j = cowtrace::report_json(procs, t.plan(), attr ? &*attr : nullptr, g);
		if (a.json == "-") {
			std::cout << (final_dump && a.interval.empty() ? j.dump(2) : j.dump()) << std::endl;
			return;	// stdout is the JSON
		}
		cowscope::write_file_atomic(a.json, j.dump(2) + "\n");
	}
	if (stamp) {
		std::time_t now = std::time(nullptr);
		char buf[16];
		std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&now));
		std::cout << buf << "\n";
	}
	std::cout << cowtrace::format_table(shown, t.plan());
	std::cout << cowtrace::format_families(g.families, t.plan(), procs, shown);
	if (attr && a.by_mapping)
		std::cout << cowtrace::format_mappings(*attr, shown);
	if (attr && a.top) {
		std::cout << cowtrace::format_sites(*attr, shown, a.top);
		std::cout << cowtrace::format_family_sites(*attr, g.families, a.top);
	}
	std::cout << std::flush;
}

// --serve: the exporter; the other output options do not apply.
int run_serve(const Args &a, cowtrace::Method method)
{
	if (!a.cmd.empty() || !a.json.empty() || !a.interval.empty() || a.by_mapping || a.top)
		throw UsageError("--serve takes -p PID [--children], --comm NAME or --all; not -- CMD, --json, -i, "
				 "--by-mapping or --sites");
	if (a.children && a.pid <= 0)
		throw UsageError("--children goes with -p PID");
	cowtrace::ServeConfig cfg;
	cfg.addr = cowtrace::parse_listen(a.serve);
	cfg.pid = a.pid;
	cfg.comm = a.comm;
	cfg.all = a.all;
	cfg.max_series = static_cast<std::size_t>(cowscope::cli::parse_count(a.max_series, "--max-series", 1, 1000000));
	cfg.grace_s = cowscope::cli::parse_real(a.grace, "--grace", 0, 86400, false, "SECONDS from 0 to 86400 like 60 or 2.5");
	if (!a.web_config.empty())
		cfg.web = cowtrace::load_web_config(a.web_config);
	cowtrace::Options opts;
	opts.follow_children = a.children;
	opts.verbose = a.verbose;
	opts.method = method;
	struct sigaction sa{};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	return cowtrace::serve(cfg, opts, &g_stop);
}

// How the tracing ended: the command exited (its wait status), the -p
// process exited, a signal, or -i's COUNT was reached.
struct Outcome {
	bool cmd_done = false, stopped_by_count = false;
	int status = 0;
	std::string ended;
};

// Trace until the command or the process exits, printing every -i SECONDS.
Outcome follow(const Args &a, cowtrace::Tracer &tracer, cowtrace::Command *child, pid_t root)
{
	using clock = std::chrono::steady_clock;
	auto next = clock::now() + std::chrono::duration<double>(a.seconds);
	long printed = 0;
	Outcome o;
	for (;;) {
		if (g_stop)
			return o;
		// exited members of families into their family rows: no table
		// fills under a server's churn
		tracer.fold_exited();
		if (child && child->done(o.status)) {
			o.cmd_done = true;
			return o;
		}
		if (!child) {
			auto s = tracer.stats(root);
			if (s && s->exited) {
				o.ended = fmt::format("pid {} exited during tracing", root);
				return o;
			}
		}
		if (a.seconds > 0 && clock::now() >= next) {
			emit(a, tracer, false, true);
			next += std::chrono::duration<double>(a.seconds);
			if (a.count > 0 && ++printed >= a.count) {
				o.stopped_by_count = true;
				return o;
			}
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
}

void print_bpf_stats(const cowtrace::Tracer &tracer)
{
	for (const auto &p : tracer.prog_stats())
		std::fprintf(stderr, "cowtrace: prog %s runs=%llu ns=%llu ns_per_run=%.1f missed=%llu\n",
			     p.name.c_str(), static_cast<unsigned long long>(p.run_cnt),
			     static_cast<unsigned long long>(p.run_time_ns),
			     p.run_cnt ? static_cast<double>(p.run_time_ns) / p.run_cnt : 0.0,
			     static_cast<unsigned long long>(p.missed));
	auto [ns, cnt] = tracer.run_stats();
	std::fprintf(stderr, "cowtrace: bpf_run_time_ns=%llu bpf_run_cnt=%llu%s\n", static_cast<unsigned long long>(ns),
		     static_cast<unsigned long long>(cnt), ns ? "" : " (sysctl kernel.bpf_stats_enabled=1 to measure)");
}

// 1 when the -p process exited or the command failed (said on stderr).
int exit_status(const Args &a, const Outcome &o)
{
	if (!o.ended.empty()) {
		std::fprintf(stderr, "cowtrace: %s\n", o.ended.c_str());
		return 1;
	}
	if (!o.cmd_done)
		return 0;
	if (WIFSIGNALED(o.status)) {
		std::fprintf(stderr, "cowtrace: %s killed by signal %d\n", a.cmd[0].c_str(), WTERMSIG(o.status));
		return 1;
	}
	if (WEXITSTATUS(o.status) != 0) {
		std::fprintf(stderr, "cowtrace: %s exited with status %d\n", a.cmd[0].c_str(), WEXITSTATUS(o.status));
		return 1;
	}
	return 0;
}

int run(const Args &a)
{
	auto method = cowtrace::parse_method(a.method);
	if (!method)
		throw UsageError(fmt::format("--method: expected auto, fentry, kprobe, vmevent or tracepoint, got \"{}\"",
					     a.method));
	// CLI11 takes the "--" that starts the command as the option's value
	for (const auto &[name, value] : {std::pair<const char *, const std::string &>{"--json", a.json},
					  {"--folded", a.folded}})
		if (value == "--")
			throw UsageError(fmt::format("{}: expected FILE (or - for stdout), got \"--\": give the "
						     "file before the command, as {} FILE -- CMD", name, name));
	if (!a.serve.empty())
		return run_serve(a, *method);
	if (!a.comm.empty() || a.all || !a.web_config.empty())
		throw UsageError("--comm, --all and --web-config go with --serve");
	if (a.pid == 0 && a.cmd.empty())
		throw UsageError("give -p PID (a running process) or -- CMD ARGS... (a command to run)");
	if (a.pid != 0 && !a.cmd.empty())
		throw UsageError("-p PID and -- CMD are exclusive: give one of them");

	ProcFacts target;
	if (a.pid > 0)
		target = proc_facts(a.pid);

	cowtrace::Options opts;
	opts.follow_children = a.children || !a.cmd.empty();
	opts.verbose = a.verbose;
	opts.method = *method;
	opts.by_mapping = a.by_mapping;
	opts.sites = a.top > 0;
	opts.unwind_period = a.unwind_period;
	opts.unwind_bytes = a.unwind_bytes;

	struct sigaction sa{};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);

	cowtrace::Tracer tracer(opts);
	std::fprintf(stderr, "cowtrace: %s\n", tracer.plan().describe().c_str());

	std::optional<cowtrace::Command> child;
	pid_t root;
	if (a.cmd.empty()) {
		root = target.tgid;
		tracer.track(root, target.ppid, target.comm);
		proc_facts(a.pid);	// still there after tracking began?
	} else {
		child.emplace(a.cmd);
		root = child->pid();
		std::string base = a.cmd[0].substr(a.cmd[0].rfind('/') + 1);
		tracer.track(root, getpid(), base.substr(0, 15));
		child->start();
	}

	Outcome o = follow(a, tracer, child ? &*child : nullptr, root);
	if (o.stopped_by_count)
		return 0;
	emit(a, tracer, true, a.seconds > 0);
	if (a.bpf_stats)
		print_bpf_stats(tracer);
	if (auto d = tracer.dropped())
		std::fprintf(stderr, "cowtrace: %llu child processes not tracked: all process slots taken\n",
			     static_cast<unsigned long long>(d));
	return exit_status(a, o);
}

} // namespace

int main(int argc, char **argv)
{
	Args a;
	CLI::App app{"cowtrace: count copy-on-write page faults per process (eBPF)"};
	app.set_version_flag("--version", cowscope::version_line("cowtrace"));
	app.add_option("-p,--pid", a.pid_s, "trace this running process")->type_name("PID");
	app.add_flag("--children", a.children, "with -p: also every process it forks from now on");
	app.add_option("--json", a.json, "write the table as JSON to FILE, or stdout for -")
		->type_name("FILE|-");
	app.add_option("-i,--interval", a.interval, "print every SECONDS, COUNT times")
		->expected(1, 2)
		->type_name("SECONDS [COUNT]");
	app.add_option("-m,--method", a.method, "attach method: auto, fentry, kprobe, vmevent, tracepoint");
	app.add_flag("-v,--verbose", a.verbose, "print what the kernel probes found");
	app.add_flag("--bpf-stats", a.bpf_stats, "at exit, print run_time_ns and run_cnt summed over the programs");
	app.add_flag("--per-process", a.per_process,
		     "list every process one by one (default: the 20 with the most copies, and a row per family of "
		     "processes forked without exec)");
	app.add_flag("--by-mapping", a.by_mapping,
		     "split copies and reuses of each process by mapping (heap, stack, data, bss, mmap-anon, "
		     "file-private PATH, ...)");
	app.add_option("--sites", a.sites, "show the top N user stacks that caused copies and reuses "
					   "(default 10), symbolized after the run")
		->type_name("[N]");
	app.add_option("--unwind", a.unwind, "unwind the user stack of 1 in N write-protect faults, at random "
					     "(default 1: every one) from its registers and a slice of its stack "
					     "through the CFI (.eh_frame, .debug_frame) of its files, after capture: "
					     "call chains through code built without frame pointers; implies --sites")
		->type_name("[N]");
	app.add_option("--unwind-stack", a.unwind_stack, "with --unwind: bytes of user stack captured per "
							 "sample from the page of the stack pointer up: 4K, 8K (the "
							 "default), 12K or 16K; deeper chains need more")
		->type_name("SIZE");
	app.add_option("--folded", a.folded, "write the copy stacks as folded stacks (flame graphs, "
					     "speedscope) to FILE; implies --sites")
		->type_name("FILE");
	app.add_option("--serve", a.serve, "serve /metrics for Prometheus (OpenMetrics when asked) on ADDR:PORT, "
					   "loopback unless ADDR says otherwise (another address needs TLS: --web-config); "
					   "with -p PID [--children], --comm or --all")
		->type_name("[ADDR:]PORT");
	app.add_option("--comm", a.comm, "with --serve: every process with this command name, also later ones")
		->type_name("NAME");
	app.add_flag("--all", a.all, "with --serve: every process");
	app.add_option("--max-series", a.max_series,
		       "with --serve: most process series kept, and most family series (default 1000)")
		->type_name("N");
	app.add_option("--grace", a.grace,
		       "with --serve: seconds an exited process's series stays, and a family's after its last "
		       "member exited (default 60)")
		->type_name("SECONDS");
	app.add_option("--web-config", a.web_config,
		       "with --serve: TLS and basic auth from FILE, a YAML file with the keys of Prometheus "
		       "exporter-toolkit's web config: tls_server_config (cert_file, key_file, client_auth_type, "
		       "client_ca_file) and basic_auth_users (NAME: bcrypt or yescrypt hash); see cowtrace(1)")
		->type_name("FILE");
	app.add_option("command", a.cmd, "the command to run and trace, after --")->type_name("CMD ARGS...");
	// --sites and --unwind take an optional N: "--sites N" -> "--sites=N",
	// a bare "--sites" -> "--sites=10" (CLI11's optional values upset "--"
	// here)
	std::vector<std::string> args(argv + 1, argv + argc);
	for (std::size_t i = 0; i < args.size() && args[i] != "--"; i++) {
		if (args[i] != "--sites" && args[i] != "--unwind")
			continue;
		const std::string next = i + 1 < args.size() ? args[i + 1] : "";
		bool value = !next.empty() && (next[0] != '-' || (next.size() > 1 && std::isdigit(
										       static_cast<unsigned char>(next[1]))));
		if (value) {	// N, or a bad one ("-3") that cli::parse_count() reports
			args[i] += "=" + args[i + 1];
			args.erase(args.begin() + static_cast<std::ptrdiff_t>(i) + 1);
		} else {
			args[i] += args[i] == "--sites" ? "=10" : "=1";	// the defaults
		}
	}
	std::reverse(args.begin(), args.end());	// CLI11 takes them last first
	app.name("cowtrace");	// parse(vector) takes no argv[0] for --help's usage line
	return cowscope::cli::run_main("cowtrace", app, [&] {
		app.parse(args);
		namespace cli = cowscope::cli;
		if (!a.pid_s.empty() || app.count("--pid"))
			a.pid = cli::parse_pid(a.pid_s, "-p");
		if (!a.interval.empty()) {
			a.seconds = cli::parse_seconds(a.interval[0], "-i", 1e6, "SECONDS > 0 like 1 or 0.5");
			if (a.interval.size() > 1)
				a.count = static_cast<long>(cli::parse_count(a.interval[1], "-i", 1, LONG_MAX,
									     "COUNT, a whole number > 0"));
		}
		if (app.count("--sites"))
			a.top = a.sites.empty() ? 10
						: cli::parse_count(a.sites, "--sites", 1, 100000,
								   "N, how many stacks to show, a whole number > 0");
		if (app.count("--unwind")) {
			a.unwind_period = static_cast<unsigned>(
				cli::parse_count(a.unwind, "--unwind", 1, 1000000,
						 "N, unwind 1 in N faults, a whole number > 0"));
			std::uint64_t b = cli::parse_size(a.unwind_stack, "--unwind-stack");
			if (b < cowtrace::kUnwindPage || b > cowtrace::kUnwindStackMax || b % cowtrace::kUnwindPage)
				throw UsageError(fmt::format(
					"--unwind-stack: expected 4K, 8K, 12K or 16K (whole pages), got \"{}\"",
					a.unwind_stack));
			a.unwind_bytes = static_cast<unsigned>(b);
		} else if (app.count("--unwind-stack")) {
			throw UsageError("--unwind-stack: only with --unwind");
		}
		if ((!a.folded.empty() || a.unwind_period) && !a.top)
			a.top = 10;
		return run(a);
	}, "usage: cowtrace [-p PID] [--children] [--json FILE|-] [-i SECONDS [COUNT]] [--by-mapping] "
	   "[--sites [N]] [--unwind [N]] [--folded FILE] [-- CMD ARGS...]\n"
	   "       cowtrace --serve [ADDR:]PORT (-p PID [--children] | --comm NAME | --all) [--web-config FILE]");
}
