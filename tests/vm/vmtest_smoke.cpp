// The VM lab's first smoke test: inside the guest kernel, fork() shares a
// private anonymous page between parent and child (same PFN in both
// /proc/PID/pagemap views), and the child's first write gives it a page of
// its own. Needs no module: it proves the harness, the static build and the
// kernel's own ground truth work before anything else is trusted.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/proc/pagemap.hpp"

using namespace cowscope;

namespace {

// Exactly n bytes, or an assertion failure the caller must check
// (ASSERT_* in a void helper would only return from the helper).
::testing::AssertionResult transfer(ssize_t got, size_t n, const char *what)
{
	if (got == static_cast<ssize_t>(n))
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure()
	       << what << ": " << got << " of " << n << " bytes"
	       << (got < 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string());
}

// A pipe whose ends close with it (a failed assertion returns early: the
// child then reads EOF and exits instead of waiting for ever).
struct Pipe {
	UniqueFd r, w;
	Pipe()
	{
		int fds[2];
		if (pipe2(fds, O_CLOEXEC))
			throw SysError("pipe2");
		r = UniqueFd(fds[0]);
		w = UniqueFd(fds[1]);
	}
};

} // namespace

TEST(Smoke, ForkSharesThenCopiesOnWrite)
{
	const long psz = sysconf(_SC_PAGESIZE);
	Mapping m = Mapping::anonymous(static_cast<size_t>(psz));
	std::memset(m.data(), 0x5a, static_cast<size_t>(psz));
	auto addr = reinterpret_cast<std::uintptr_t>(m.data());
	const std::uint64_t parent_pfn = Pagemap(getpid()).at(addr).pfn();
	ASSERT_NE(parent_pfn, 0u) << "pagemap hides PFNs: not running as root?";

	Pipe to_child, to_parent;
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		// Child: report the PFN before and after its first write.
		std::uint64_t pfns[2];
		char go;
		close(to_child.w.get());	// EOF when the parent is gone
		pfns[0] = Pagemap(getpid()).at(addr).pfn();
		m.data()[0] = 1;
		pfns[1] = Pagemap(getpid()).at(addr).pfn();
		if (write(to_parent.w.get(), pfns, sizeof(pfns)) != sizeof(pfns))
			_exit(3);
		if (read(to_child.r.get(), &go, 1) != 1)
			_exit(4);
		_exit(0);
	}
	to_parent.w = UniqueFd();	// EOF when the child dies
	std::uint64_t pfns[2] = {0, 0};
	ASSERT_TRUE(transfer(read(to_parent.r.get(), pfns, sizeof(pfns)), sizeof(pfns),
			     "read the child's PFNs"));
	EXPECT_EQ(pfns[0], parent_pfn) << "right after fork the child maps the parent's page";
	EXPECT_NE(pfns[1], parent_pfn) << "the child's write must give it a copy";
	EXPECT_EQ(Pagemap(getpid()).at(addr).pfn(), parent_pfn) << "the parent keeps its page";
	EXPECT_EQ(static_cast<unsigned char>(m.data()[0]), 0x5a) << "the child's write leaked";
	ASSERT_TRUE(transfer(write(to_child.w.get(), "g", 1), 1, "tell the child to exit"));
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
}
