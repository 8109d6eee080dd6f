// Child processes and pipes that clean up after themselves: one module for
// every program (cowbench's fork driver, cowtrace's traced command, cowdemo,
// snapdemo) and the tests.
//
//   Pipe p;                       // both ends O_CLOEXEC, closed on destruction
//   pid_t pid = ::fork();
//   if (pid == 0) { ... p.write_end ... _exit(0); }
//   Child kid(pid);               // SIGKILLed and reaped on destruction
//   p.write_end.reset();          // the parent's copy: EOF when the child exits
//   int st;
//   if (kid.wait_until(monotonic_ns() + 5'000'000'000, st) == Child::Wait::timeout) ...
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowscope {

// CLOCK_MONOTONIC in nanoseconds: the clock of every deadline here.
std::int64_t monotonic_ns() noexcept;

// pipe2(O_CLOEXEC): both ends owned. Close one early with its reset().
struct Pipe {
	UniqueFd read_end, write_end;

	Pipe();	// throws SysError("pipe")

	// All n bytes to write_end (EINTR retried); throws SysError.
	void send(const void *p, std::size_t n) const;
	// Exactly n bytes from read_end (EINTR retried); false at end of file.
	bool recv(void *p, std::size_t n) const;
	template <class T> void put(const T &v) const { send(&v, sizeof(v)); }
	// One T, or throw Error when the writer went away.
	template <class T> T get() const
	{
		T v{};
		if (!recv(&v, sizeof(v)))
			throw Error("the other process went away (pipe closed)");
		return v;
	}
};

// A forked child: SIGKILLed and reaped on destruction unless reaped before.
class Child {
public:
	Child() noexcept = default;
	// Adopt a child of this process (opens a pidfd to wait on where the
	// kernel has them).
	explicit Child(pid_t pid) noexcept;
	Child(Child &&o) noexcept;
	Child &operator=(Child &&o) noexcept;
	Child(const Child &) = delete;
	Child &operator=(const Child &) = delete;
	~Child() { kill_and_reap(); }

	pid_t pid() const noexcept { return pid_; }
	// Not reaped yet.
	explicit operator bool() const noexcept { return pid_ > 0; }

	void kill_and_reap() noexcept;
	// Reaped now (WNOHANG)? Fills the wait status when it was. Both throw
	// Error once the child was reaped (a second wait has no status).
	bool try_wait(int &status);
	// Block until it exits (EINTR retried); its wait status.
	int wait();

	enum class Wait { exited, timeout, stopped };
	// Wait until `deadline` (monotonic_ns()); `stop`, when given, is asked
	// at least once a second and ends the wait early (Wait::stopped) when
	// it says so. On timeout or stop the child is still running.
	Wait wait_until(std::int64_t deadline, int &status, bool (*stop)() = nullptr);

private:
	pid_t pid_ = -1;
	UniqueFd pidfd_;
};

} // namespace cowscope
