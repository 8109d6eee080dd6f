// The VM lab's first smoke test: inside the guest kernel, fork() shares a
// private anonymous page between parent and child (same PFN in both
// /proc/PID/pagemap views), and the child's first write gives it a page of
// its own. Needs no module: it proves the harness, the static build and the
// kernel's own ground truth work before anything else is trusted.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "cowscope/fd.hpp"
#include "cowscope/proc.hpp"

using namespace cowscope;

namespace {

void must_write(int fd, const void *p, size_t n)
{
	ASSERT_EQ(write(fd, p, n), static_cast<ssize_t>(n));
}

void must_read(int fd, void *p, size_t n)
{
	ASSERT_EQ(read(fd, p, n), static_cast<ssize_t>(n));
}

} // namespace

TEST(Smoke, ForkSharesThenCopiesOnWrite)
{
	const long psz = sysconf(_SC_PAGESIZE);
	Mapping m = Mapping::anonymous(static_cast<size_t>(psz));
	std::memset(m.data(), 0x5a, static_cast<size_t>(psz));
	auto addr = reinterpret_cast<std::uintptr_t>(m.data());
	const std::uint64_t parent_pfn = Pagemap(getpid()).at(addr).pfn();
	ASSERT_NE(parent_pfn, 0u) << "pagemap hides PFNs: not running as root?";

	int to_child[2], to_parent[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(to_parent), 0);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		// Child: report the PFN before and after its first write.
		std::uint64_t pfns[2];
		char go;
		pfns[0] = Pagemap(getpid()).at(addr).pfn();
		m.data()[0] = 1;
		pfns[1] = Pagemap(getpid()).at(addr).pfn();
		if (write(to_parent[1], pfns, sizeof(pfns)) != sizeof(pfns))
			_exit(3);
		if (read(to_child[0], &go, 1) != 1)
			_exit(4);
		_exit(0);
	}
	std::uint64_t pfns[2] = {0, 0};
	must_read(to_parent[0], pfns, sizeof(pfns));
	EXPECT_EQ(pfns[0], parent_pfn) << "right after fork the child maps the parent's page";
	EXPECT_NE(pfns[1], parent_pfn) << "the child's write must give it a copy";
	EXPECT_EQ(Pagemap(getpid()).at(addr).pfn(), parent_pfn) << "the parent keeps its page";
	EXPECT_EQ(static_cast<unsigned char>(m.data()[0]), 0x5a) << "the child's write leaked";
	must_write(to_child[1], "g", 1);
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
	for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
		close(fd);
}
