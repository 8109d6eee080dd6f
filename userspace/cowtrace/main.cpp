// cowtrace: count copy-on-write page faults per process, live.
//
//   cowtrace [-p PID] [--children] [--json FILE|-] [-i SECONDS [COUNT]]
//            [-m auto|fentry|kprobe|vmevent|tracepoint] [-v] [-- CMD ARGS...]
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cowscope/error.hpp"
#include "cowscope/fd.hpp"
#include "cowscope/version.hpp"
#include "tracer.hpp"

using cowscope::Error;
using cowscope::UsageError;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Args {
	pid_t pid = 0;
	bool children = false;
	std::string json;
	std::vector<std::string> interval;
	std::string method = "auto";
	bool verbose = false;
	bool bpf_stats = false;
	std::vector<std::string> cmd;
	double seconds = 0;
	long count = -1;
};

double parse_seconds(const std::string &s)
{
	try {
		std::size_t used = 0;
		double v = std::stod(s, &used);
		if (used == s.size() && v > 0 && v < 1e6)
			return v;
	} catch (const std::exception &) {
	}
	throw UsageError(fmt::format("-i: expected SECONDS > 0 like 1 or 0.5, got \"{}\"", s));
}

long parse_count(const std::string &s)
{
	try {
		std::size_t used = 0;
		long v = std::stol(s, &used);
		if (used == s.size() && v > 0)
			return v;
	} catch (const std::exception &) {
	}
	throw UsageError(fmt::format("-i: expected COUNT, a whole number > 0, got \"{}\"", s));
}

std::string trim(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

// Tgid, PPid and comm of a live process, or throw naming -p.
struct ProcFacts {
	pid_t tgid = 0, ppid = 0;
	std::string comm;
};
ProcFacts proc_facts(pid_t pid)
{
	ProcFacts f;
	std::string status;
	try {
		status = cowscope::read_file(fmt::format("/proc/{}/status", pid));
		f.comm = trim(cowscope::read_file(fmt::format("/proc/{}/comm", pid)));
	} catch (const Error &) {
		throw Error(fmt::format("-p {}: no such process", pid));
	}
	std::size_t at;
	if ((at = status.find("\nTgid:")) != std::string::npos)
		f.tgid = std::atoi(status.c_str() + at + 6);
	if ((at = status.find("\nPPid:")) != std::string::npos)
		f.ppid = std::atoi(status.c_str() + at + 6);
	if (status.find("\nState:\tZ") != std::string::npos)
		throw Error(fmt::format("-p {}: the process has already exited (zombie)", pid));
	if (f.tgid <= 0)
		throw Error(fmt::format("-p {}: cannot read its Tgid", pid));
	return f;
}

// Fork CMD held at a barrier so that it is tracked before it runs a single
// instruction of its own; exec failures come back through a CLOEXEC pipe.
class Child {
public:
	explicit Child(const std::vector<std::string> &cmd)
	{
		int go[2], err[2];
		if (pipe2(go, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
			throw cowscope::SysError("failed to create pipe");
		pid_ = fork();
		if (pid_ < 0)
			throw cowscope::SysError("failed to fork");
		if (pid_ == 0) {
			close(go[1]);
			close(err[0]);
			char c;
			if (read(go[0], &c, 1) != 1)
				_exit(127);	// the tracer gave up
			std::vector<char *> argv;
			for (const auto &a : cmd)
				argv.push_back(const_cast<char *>(a.c_str()));
			argv.push_back(nullptr);
			execvp(argv[0], argv.data());
			int e = errno;
			(void)!write(err[1], &e, sizeof(e));
			_exit(127);
		}
		close(go[0]);
		close(err[1]);
		go_ = cowscope::UniqueFd(go[1]);
		err_ = cowscope::UniqueFd(err[0]);
		name_ = cmd[0];
	}
	~Child()
	{
		if (pid_ > 0 && !reaped_) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
		}
	}
	pid_t pid() const { return pid_; }
	// Let it exec; throw if exec failed.
	void start()
	{
		char c = 'x';
		if (write(go_.get(), &c, 1) != 1)
			throw cowscope::SysError("failed to start " + name_);
		go_.reset();
		int e = 0;
		ssize_t n;
		do
			n = read(err_.get(), &e, sizeof(e));
		while (n < 0 && errno == EINTR);
		if (n == sizeof(e)) {
			waitpid(pid_, nullptr, 0);
			reaped_ = true;
			throw Error(fmt::format("failed to run '{}': {}", name_, std::strerror(e)));
		}
	}
	// True once it has exited; status in `status`.
	bool done(int &status)
	{
		if (reaped_)
			return true;
		pid_t r = waitpid(pid_, &status, WNOHANG);
		if (r == pid_)
			reaped_ = true;
		return reaped_;
	}

private:
	pid_t pid_ = -1;
	bool reaped_ = false;
	cowscope::UniqueFd go_, err_;
	std::string name_;
};

void emit(const Args &a, const cowtrace::Tracer &t, bool final_dump, bool stamp)
{
	auto procs = t.snapshot();
	if (!a.json.empty()) {
		auto j = cowtrace::to_json(procs, t.plan());
		if (a.json == "-") {
			std::cout << (final_dump && a.interval.empty() ? j.dump(2) : j.dump()) << std::endl;
			return;
		}
		cowscope::write_file_atomic(a.json, j.dump(2) + "\n");
	}
	if (stamp) {
		std::time_t now = std::time(nullptr);
		char buf[16];
		std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&now));
		std::cout << buf << "\n";
	}
	std::cout << cowtrace::format_table(procs, t.plan()) << std::flush;
}

int run(const Args &a)
{
	auto method = cowtrace::parse_method(a.method);
	if (!method)
		throw UsageError(fmt::format("--method: expected auto, fentry, kprobe, vmevent or tracepoint, got \"{}\"",
					     a.method));
	if (a.pid == 0 && a.cmd.empty())
		throw UsageError("give -p PID (a running process) or -- CMD ARGS... (a command to run)");
	if (a.pid != 0 && !a.cmd.empty())
		throw UsageError("-p PID and -- CMD are exclusive: give one of them");
	if (a.pid < 0)
		throw UsageError(fmt::format("-p: expected a process id > 0, got {}", a.pid));

	ProcFacts target;
	if (a.pid > 0)
		target = proc_facts(a.pid);

	cowtrace::Options opts;
	opts.follow_children = a.children || !a.cmd.empty();
	opts.verbose = a.verbose;
	opts.method = *method;

	struct sigaction sa{};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);

	cowtrace::Tracer tracer(opts);
	std::fprintf(stderr, "cowtrace: %s\n", tracer.plan().describe().c_str());

	std::optional<Child> child;
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

	using clock = std::chrono::steady_clock;
	auto next = clock::now() + std::chrono::duration<double>(a.seconds);
	long printed = 0;
	int status = 0;
	std::string ended;
	bool cmd_done = false;
	for (;;) {
		if (g_stop)
			break;
		if (child && child->done(status)) {
			cmd_done = true;
			break;
		}
		if (!child) {
			auto s = tracer.stats(root);
			if (s && s->exited) {
				ended = fmt::format("pid {} exited during tracing", root);
				break;
			}
		}
		if (a.seconds > 0 && clock::now() >= next) {
			emit(a, tracer, false, true);
			next += std::chrono::duration<double>(a.seconds);
			if (a.count > 0 && ++printed >= a.count)
				return 0;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	emit(a, tracer, true, a.seconds > 0);
	if (a.bpf_stats) {
		for (const auto &p : tracer.prog_stats())
			std::fprintf(stderr, "cowtrace: prog %s runs=%llu ns=%llu ns_per_run=%.1f\n", p.name.c_str(),
				     static_cast<unsigned long long>(p.run_cnt),
				     static_cast<unsigned long long>(p.run_time_ns),
				     p.run_cnt ? static_cast<double>(p.run_time_ns) / p.run_cnt : 0.0);
		auto [ns, cnt] = tracer.run_stats();
		std::fprintf(stderr, "cowtrace: bpf_run_time_ns=%llu bpf_run_cnt=%llu%s\n",
			     static_cast<unsigned long long>(ns), static_cast<unsigned long long>(cnt),
			     ns ? "" : " (sysctl kernel.bpf_stats_enabled=1 to measure)");
	}
	if (auto d = tracer.dropped())
		std::fprintf(stderr, "cowtrace: %llu child processes not tracked: all process slots taken\n",
			     static_cast<unsigned long long>(d));
	if (!ended.empty()) {
		std::fprintf(stderr, "cowtrace: %s\n", ended.c_str());
		return 1;
	}
	if (cmd_done) {
		if (WIFSIGNALED(status)) {
			std::fprintf(stderr, "cowtrace: %s killed by signal %d\n", a.cmd[0].c_str(), WTERMSIG(status));
			return 1;
		}
		if (WEXITSTATUS(status) != 0) {
			std::fprintf(stderr, "cowtrace: %s exited with status %d\n", a.cmd[0].c_str(),
				     WEXITSTATUS(status));
			return 1;
		}
	}
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	Args a;
	CLI::App app{"cowtrace: count copy-on-write page faults per process (eBPF)"};
	app.set_version_flag("--version", cowscope::version_line("cowtrace"));
	app.add_option("-p,--pid", a.pid, "trace this running process")->type_name("PID");
	app.add_flag("--children", a.children, "with -p: also every process it forks from now on");
	app.add_option("--json", a.json, "write the table as JSON to FILE, or stdout for -")
		->type_name("FILE|-");
	app.add_option("-i,--interval", a.interval, "print every SECONDS, COUNT times")
		->expected(1, 2)
		->type_name("SECONDS [COUNT]");
	app.add_option("-m,--method", a.method, "attach method: auto, fentry, kprobe, vmevent, tracepoint");
	app.add_flag("-v,--verbose", a.verbose, "print what the kernel probes found");
	app.add_flag("--bpf-stats", a.bpf_stats, "at exit, print run_time_ns and run_cnt summed over the programs");
	app.add_option("command", a.cmd, "the command to run and trace, after --")->type_name("CMD ARGS...");
	try {
		app.parse(argc, argv);
		if (!a.interval.empty()) {
			a.seconds = parse_seconds(a.interval[0]);
			if (a.interval.size() > 1)
				a.count = parse_count(a.interval[1]);
		}
		return run(a);
	} catch (const CLI::CallForVersion &e) {
		return app.exit(e);
	} catch (const CLI::CallForHelp &e) {
		return app.exit(e);
	} catch (const CLI::CallForAllHelp &e) {
		return app.exit(e);
	} catch (const CLI::ParseError &e) {
		std::fprintf(stderr, "cowtrace: %s\nusage: cowtrace [-p PID] [--children] [--json FILE|-] "
				     "[-i SECONDS [COUNT]] [-- CMD ARGS...]\n", e.what());
		return 2;
	} catch (const UsageError &e) {
		std::fprintf(stderr, "cowtrace: %s\n", e.what());
		return 2;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "cowtrace: %s\n", e.what());
		return 1;
	}
}
