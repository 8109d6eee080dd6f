// cowtrace_core: a command run under the tracer, and the session's JSON.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/error.hpp"
#include "cowscope/trace.hpp"

namespace cowtrace {

Command::Command(const std::vector<std::string> &argv)
{
	if (argv.empty())
		throw cowscope::UsageError("no command to run");
	int go[2], err[2];
	if (pipe2(go, O_CLOEXEC))
		throw cowscope::SysError("failed to create pipe");
	if (pipe2(err, O_CLOEXEC)) {
		int e = errno;
		close(go[0]);
		close(go[1]);
		errno = e;
		throw cowscope::SysError("failed to create pipe");
	}
	pid_ = fork();
	if (pid_ < 0) {
		int e = errno;
		for (int fd : {go[0], go[1], err[0], err[1]})
			close(fd);
		errno = e;
		throw cowscope::SysError("failed to fork");
	}
	if (pid_ == 0) {
		close(go[1]);
		close(err[0]);
		char c;
		if (read(go[0], &c, 1) != 1)
			_exit(127);	// the tracer gave up
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execvp(args[0], args.data());
		int e = errno;
		(void)!write(err[1], &e, sizeof(e));
		_exit(127);
	}
	close(go[0]);
	close(err[1]);
	go_ = go[1];
	err_ = err[0];
	name_ = argv[0];
}

Command::~Command()
{
	if (go_ >= 0)
		close(go_);
	if (err_ >= 0)
		close(err_);
	if (pid_ > 0 && !reaped_) {
		kill(pid_, SIGKILL);
		waitpid(pid_, nullptr, 0);
	}
}

void Command::start()
{
	char c = 'x';
	if (write(go_, &c, 1) != 1)
		throw cowscope::SysError("failed to start " + name_);
	close(go_);
	go_ = -1;
	int e = 0;
	ssize_t n;
	do
		n = read(err_, &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(err_);
	err_ = -1;
	if (n == sizeof(e)) {
		waitpid(pid_, nullptr, 0);
		reaped_ = true;
		throw cowscope::Error(fmt::format("failed to run '{}': {}", name_, std::strerror(e)));
	}
}

bool Command::done(int &status)
{
	if (!reaped_ && waitpid(pid_, &status_, WNOHANG) == pid_)
		reaped_ = true;
	if (reaped_)
		status = status_;
	return reaped_;
}

int Command::wait()
{
	while (!reaped_) {
		if (waitpid(pid_, &status_, 0) == pid_)
			reaped_ = true;
		else if (errno != EINTR)
			throw cowscope::SysError("failed to wait for " + name_);
	}
	return status_;
}

nlohmann::json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a)
{
	nlohmann::json arr = to_json(procs, plan);
	if (!a || (!a->by_mapping && !a->sites))
		return arr;
	nlohmann::json all = to_json(*a);
	for (nlohmann::json &p : arr) {
		pid_t pid = p["pid"].get<pid_t>();
		if (a->by_mapping) {
			nlohmann::json m = nlohmann::json::array();
			for (const auto &x : all["mappings"])
				if (x["pid"].get<pid_t>() == pid)
					m.push_back(x);
			p["mappings"] = m;
		}
		if (a->sites) {
			nlohmann::json s = nlohmann::json::array();
			for (const auto &x : all["sites"])
				if (x["pid"].get<pid_t>() == pid)
					s.push_back(x);
			p["sites"] = s;
		}
	}
	nlohmann::json j = {{"processes", arr}, {"attribution_errors", all["attribution_errors"]}};
	if (a->sites) {
		j["merged_sites"] = all["merged_sites"];
		j["symbolize_ms"] = all["symbolize_ms"];
		j["notes"] = all["notes"];
	}
	return j;
}

nlohmann::json trace_command(const std::vector<std::string> &argv, Options opts)
{
	opts.follow_children = true;
	Tracer tracer(opts);
	Command cmd(argv);
	std::string base = argv[0].substr(argv[0].rfind('/') + 1);
	tracer.track(cmd.pid(), getpid(), base.substr(0, 15));
	cmd.start();
	int status = cmd.wait();
	auto procs = tracer.snapshot();
	Attribution a = tracer.attribution();
	nlohmann::json j = report_json(procs, tracer.plan(), &a);
	if (j.is_array())
		j = {{"processes", j}};
	j["method"] = method_name(tracer.plan().method);
	j["plan"] = tracer.plan().describe();
	j["exit_status"] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return j;
}

} // namespace cowtrace
