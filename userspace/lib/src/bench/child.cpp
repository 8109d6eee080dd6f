// The forked child of a cowbench repetition (see child.hpp): only
// async-signal-safe calls from fork to _exit.
#include "child.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "cowscope/base/process.hpp"

namespace cowscope::fork_child {

namespace {

// Minor faults of the process (RUSAGE_SELF) or thread (RUSAGE_THREAD);
// async-signal-safe.
std::int64_t raw_minflt(int who) noexcept
{
	struct rusage ru;
	if (::syscall(SYS_getrusage, who, &ru) < 0)
		return -1;
	return ru.ru_minflt;
}

} // namespace


// The timed writes after fork, the same in the children and the parent:
// write `val` to each page of `w`, then read each page of `r`; the faults
// of the writes as `who` counts them. Async-signal-safe (children run it).
Timed timed_write(char *heap, std::size_t psz, const std::uint32_t *w, std::size_t nw,
		  const std::uint32_t *r, std::size_t nr, char val, int who) noexcept
{
	volatile char *h = heap;
	// Fault in, before counting, what the counting itself touches: the
	// stack page getrusage() writes its result to (after fork it is
	// shared, and where it falls depends on the randomised stack top: one
	// run in about 40 counted one fault too many) and the vDSO's data.
	(void)raw_minflt(who);
	(void)monotonic_ns();
	std::int64_t f0 = raw_minflt(who);
	std::int64_t t0 = monotonic_ns();
	for (std::size_t i = 0; i < nw; i++)
		h[static_cast<std::size_t>(w[i]) * psz] = val;
	std::int64_t t1 = monotonic_ns();
	std::int64_t f1 = raw_minflt(who);
	char sum = 0;
	for (std::size_t i = 0; i < nr; i++)
		sum = static_cast<char>(sum + h[static_cast<std::size_t>(r[i]) * psz]);
	std::int64_t t2 = monotonic_ns();
	asm volatile("" ::"r"(sum));
	return {t1 - t0, t2 - t1, f1 - f0};
}

bool raw_write(int fd, const void *p, std::size_t n) noexcept
{
	const char *c = static_cast<const char *>(p);
	while (n) {
		ssize_t r = ::write(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		c += r;
		n -= static_cast<std::size_t>(r);
	}
	return true;
}

char raw_read_byte(int fd) noexcept
{
	char c;
	for (;;) {
		ssize_t r = ::read(fd, &c, 1);
		if (r == 1)
			return c;
		if (r < 0 && errno == EINTR)
			continue;
		return 0;
	}
}

// Only async-signal-safe calls from here to _exit.
[[noreturn]] void child_main(const ChildCtx &c) noexcept
{
	Msg m;
	m.kind = 1;
	m.start_ns = monotonic_ns();
	::prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (::getppid() != c.parent)
		::_exit(3);
	for (std::size_t i = 0; i < c.nfds; i++)
		if (c.all_fds[i] != c.res_fd && c.all_fds[i] != c.go_fd)
			::close(c.all_fds[i]);
	if (!raw_write(c.res_fd, &m, sizeof(m)))
		::_exit(4);
	if (raw_read_byte(c.go_fd) != 'g')
		::_exit(0);
	if (c.hang)
		for (;;)
			::pause();
	Msg r;
	r.kind = 2;
	if (c.write) {
		Timed t = timed_write(c.heap, c.psz, c.wpages, c.nw, c.rpages, c.nr, c.val, RUSAGE_SELF);
		r.write_ns = t.write_ns;
		r.read_ns = t.read_ns;
		r.faults = t.faults;
	}
	if (!raw_write(c.res_fd, &r, sizeof(r)))
		::_exit(4);
	raw_read_byte(c.go_fd); // 'x' or EOF: exit
	::_exit(0);
}

} // namespace cowscope::fork_child
