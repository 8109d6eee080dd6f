// process.cpp - child processes and pipes with RAII (cowscope/process.hpp).
#include "cowscope/base/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fmt/format.h>

namespace cowscope {

std::int64_t monotonic_ns() noexcept
{
	struct timespec ts;
	::clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Pipe::Pipe()
{
	int fd[2];
	if (::pipe2(fd, O_CLOEXEC) != 0)
		throw SysError("pipe");
	read_end.reset(fd[0]);
	write_end.reset(fd[1]);
}

void Pipe::send(const void *p, std::size_t n) const
{
	const char *c = static_cast<const char *>(p);
	while (n) {
		ssize_t k = ::write(write_end.get(), c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			throw SysError("pipe write", k < 0 ? errno : EPIPE);
		c += k;
		n -= static_cast<std::size_t>(k);
	}
}

bool Pipe::recv(void *p, std::size_t n) const
{
	std::size_t got = 0;
	while (got < n) {
		ssize_t k = ::read(read_end.get(), static_cast<char *>(p) + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			throw SysError("pipe read");
		if (k == 0)
			return false;
		got += static_cast<std::size_t>(k);
	}
	return true;
}

Child::Child(pid_t pid) noexcept : pid_(pid)
{
	int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
	if (fd >= 0)
		pidfd_.reset(fd);
}

Child::Child(Child &&o) noexcept : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)) {}

Child &Child::operator=(Child &&o) noexcept
{
	if (this != &o) {
		kill_and_reap();
		pid_ = std::exchange(o.pid_, -1);
		pidfd_ = std::move(o.pidfd_);
	}
	return *this;
}

void Child::kill_and_reap() noexcept
{
	if (pid_ <= 0)
		return;
	::kill(pid_, SIGKILL);
	int st;
	while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
	}
	pid_ = -1;
	pidfd_.reset();
}

bool Child::try_wait(int &status)
{
	if (pid_ <= 0)	// waitpid(-1) would reap any child
		throw Error("waitpid: no child (already reaped)");
	for (;;) {
		pid_t r = ::waitpid(pid_, &status, WNOHANG);
		if (r == pid_) {
			pid_ = -1;
			pidfd_.reset();
			return true;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			throw SysError(fmt::format("waitpid {}", pid_));
		return false;
	}
}

int Child::wait()
{
	if (pid_ <= 0)
		throw Error("waitpid: no child (already reaped)");
	int st = 0;
	for (;;) {
		pid_t r = ::waitpid(pid_, &st, 0);
		if (r == pid_)
			break;
		if (errno != EINTR)
			throw SysError(fmt::format("waitpid {}", pid_));
	}
	pid_ = -1;
	pidfd_.reset();
	return st;
}

Child::Wait Child::wait_until(std::int64_t deadline, int &status, bool (*stop)())
{
	for (;;) {
		if (try_wait(status))
			return Wait::exited;
		if (stop && stop())
			return Wait::stopped;
		std::int64_t left = deadline - monotonic_ns();
		if (left <= 0)
			return Wait::timeout;
		if (pidfd_) {
			// readable once the child exits; a signal or a second passes too
			struct pollfd p = {pidfd_.get(), POLLIN, 0};
			::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left / 1000000 + 1, 1000)));
		} else {
			// no pidfd (kernel < 5.3): poll waitpid every 100 us
			struct timespec ts = {0, 100000};
			::nanosleep(&ts, nullptr);
		}
	}
}

} // namespace cowscope
