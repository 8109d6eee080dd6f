// The forked child of a cowbench repetition (fork_repetition.cpp is the
// parent's side): the messages on its pipes and what it runs between fork
// and _exit. Private to bench/; everything here is async-signal-safe, so
// that a child forked from a threaded host (the Python interpreter) may
// run it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace cowscope::fork_child {

struct Msg {
	std::int64_t kind = 0; // 1 ready, 2 report
	std::int64_t start_ns = 0;
	std::int64_t write_ns = 0;
	std::int64_t read_ns = 0;
	std::int64_t faults = 0;
};

// Everything a forked child needs, prepared before fork.
struct ChildCtx {
	char *heap = nullptr;
	std::size_t psz = 0;
	const std::uint32_t *wpages = nullptr;
	std::size_t nw = 0;
	const std::uint32_t *rpages = nullptr;
	std::size_t nr = 0;
	bool write = false;
	bool hang = false;
	int res_fd = -1, go_fd = -1;
	const int *all_fds = nullptr;
	std::size_t nfds = 0;
	pid_t parent = 0;
	char val = 0;
};

struct Timed {
	std::int64_t write_ns = 0, read_ns = 0, faults = 0;
};

// The timed writes after fork, the same in the children and the parent:
// write `val` to each page of `w`, then read each page of `r`; the faults
// of the writes as `who` (RUSAGE_SELF, RUSAGE_THREAD) counts them.
Timed timed_write(char *heap, std::size_t psz, const std::uint32_t *w, std::size_t nw,
		  const std::uint32_t *r, std::size_t nr, char val, int who) noexcept;
// All of `n` bytes, retrying EINTR; false on error or EOF.
bool raw_write(int fd, const void *p, std::size_t n) noexcept;
// One byte, retrying EINTR; 0 on error or EOF.
char raw_read_byte(int fd) noexcept;
// The child: say it started, wait for 'g', write (and read), report, wait
// for 'x' or EOF, _exit.
[[noreturn]] void child_main(const ChildCtx &c) noexcept;

} // namespace cowscope::fork_child
