// cowtrace_core: a command run under the tracer (trace_command: its JSON).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/trace/trace.hpp"

namespace cowtrace {

Command::Command(const std::vector<std::string> &argv)
{
	if (argv.empty())
		throw cowscope::UsageError("no command to run");
	pid_ = fork();
	if (pid_ < 0)
		throw cowscope::SysError("failed to fork");
	if (pid_ == 0) {
		char c;
		go_.write_end.reset();
		if (read(go_.read_end.get(), &c, 1) != 1)
			_exit(127);	// the tracer gave up
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execvp(args[0], args.data());	// err_'s ends close on success (O_CLOEXEC)
		int e = errno;
		(void)!write(err_.write_end.get(), &e, sizeof(e));
		_exit(127);
	}
	child_ = cowscope::Child(pid_);
	go_.read_end.reset();
	err_.write_end.reset();
	name_ = argv[0];
}

void Command::start()
{
	char c = 'x';
	if (write(go_.write_end.get(), &c, 1) != 1)
		throw cowscope::SysError("failed to start " + name_);
	go_.write_end.reset();
	int e = 0;
	bool failed = err_.recv(&e, sizeof(e));	// end of file: exec succeeded
	err_.read_end.reset();
	if (failed) {
		status_ = child_.wait();
		reaped_ = true;
		throw cowscope::Error(fmt::format("failed to run '{}': {}", name_, std::strerror(e)));
	}
}

bool Command::done(int &status)
{
	if (!reaped_ && child_.try_wait(status_))
		reaped_ = true;
	if (reaped_)
		status = status_;
	return reaped_;
}

int Command::wait()
{
	if (!reaped_) {
		status_ = child_.wait();
		reaped_ = true;
	}
	return status_;
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
	j["method"] = method_name(tracer.plan().method);
	j["plan"] = tracer.plan().describe();
	j["exit_status"] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return j;
}

} // namespace cowtrace
