// cowscope/process.hpp: children are killed and reaped, pipes closed, waits
// end at their deadline.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "cowscope/base/process.hpp"
#include "run_command.hpp"

using namespace cowscope;

namespace {

int open_fds()
{
	int n = 0;
	DIR *d = ::opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (::readdir(d))
		n++;
	::closedir(d);
	return n;
}

pid_t sleeper()
{
	pid_t pid = ::fork();
	if (pid == 0) {
		::pause();
		::_exit(0);
	}
	return pid;
}

// Reaped: no such child any more (waitpid ECHILD), not a zombie.
bool reaped(pid_t pid)
{
	return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

} // namespace

TEST(Child, DestructionKillsAndReaps)
{
	pid_t pid = sleeper();
	ASSERT_GT(pid, 0);
	{
		Child kid(pid);
		EXPECT_TRUE(kid);
		EXPECT_EQ(::kill(pid, 0), 0);
	}
	EXPECT_TRUE(reaped(pid));
}

TEST(Child, MovedFromOwnsNothing)
{
	pid_t pid = sleeper();
	ASSERT_GT(pid, 0);
	Child a(pid);
	Child b(std::move(a));
	EXPECT_FALSE(a);
	EXPECT_EQ(b.pid(), pid);
	a.kill_and_reap();	// nothing to do
	EXPECT_EQ(::kill(pid, 0), 0);
	b = Child();		// kills and reaps
	EXPECT_TRUE(reaped(pid));
}

TEST(Child, WaitUntilTimesOutThenSeesTheExit)
{
	Pipe go;
	pid_t pid = ::fork();
	if (pid == 0) {
		char c;
		(void)!::read(go.read_end.get(), &c, 1);
		::_exit(7);
	}
	ASSERT_GT(pid, 0);
	Child kid(pid);
	go.read_end.reset();
	int st = 0;
	std::int64_t t0 = monotonic_ns();
	EXPECT_EQ(kid.wait_until(t0 + 50'000'000, st), Child::Wait::timeout);
	std::int64_t waited = monotonic_ns() - t0;
	EXPECT_GE(waited, 50'000'000);
	EXPECT_TRUE(kid);
	go.put<char>('g');
	EXPECT_EQ(kid.wait_until(monotonic_ns() + 10'000'000'000, st), Child::Wait::exited);
	EXPECT_TRUE(WIFEXITED(st));
	EXPECT_EQ(WEXITSTATUS(st), 7);
	EXPECT_FALSE(kid);
	EXPECT_TRUE(reaped(pid));
}

TEST(Child, WaitUntilStopsWhenAsked)
{
	Child kid(sleeper());
	int st = 0;
	EXPECT_EQ(kid.wait_until(monotonic_ns() + 10'000'000'000, st, [] { return true; }),
		  Child::Wait::stopped);
	EXPECT_TRUE(kid);
}

TEST(Child, TryWaitAndWait)
{
	pid_t pid = ::fork();
	if (pid == 0)
		::_exit(3);
	Child kid(pid);
	int st = kid.wait();
	EXPECT_EQ(WEXITSTATUS(st), 3);
	EXPECT_FALSE(kid);
	EXPECT_THROW(kid.try_wait(st), Error);	// never waitpid(-1): another child's status
	EXPECT_THROW(kid.wait(), Error);
}

TEST(Pipe, ClosesBothEnds)
{
	int before = open_fds();
	{
		Pipe p;
		EXPECT_EQ(open_fds(), before + 2);
		p.put<int>(42);
		EXPECT_EQ(p.get<int>(), 42);
	}
	EXPECT_EQ(open_fds(), before);
}

TEST(Pipe, EndOfFileWhenTheWriterCloses)
{
	Pipe p;
	p.put<char>('a');
	p.write_end.reset();
	char c = 0;
	EXPECT_TRUE(p.recv(&c, 1));
	EXPECT_EQ(c, 'a');
	EXPECT_FALSE(p.recv(&c, 1));
	EXPECT_THROW(p.get<char>(), Error);
}

// The tests' command runner (tests/common/run_command.hpp), over Pipe and Child.
TEST(RunCommand, OutputAndExitStatus)
{
	auto [out, rc] = cowscope::testing::run_command("echo one; echo two >&2; exit 3");
	EXPECT_EQ(out, "one\n");	// stdout only: a test redirects 2>&1 when it wants both
	EXPECT_EQ(rc, 3);
	EXPECT_EQ(cowscope::testing::run_command("kill -9 $$").second, -1);
}

TEST(RunCommand, KillsACommandPastItsDeadline)
{
	int before = open_fds();
	std::int64_t t0 = monotonic_ns();
	auto [out, rc] = cowscope::testing::run_command("echo started; exec sleep 30", 1);
	double s = static_cast<double>(monotonic_ns() - t0) / 1e9;
	EXPECT_EQ(rc, -1);
	EXPECT_NE(out.find("started"), std::string::npos) << out;
	EXPECT_NE(out.find("killed after 1 s"), std::string::npos) << out;
	EXPECT_LT(s, 5.0);
	EXPECT_EQ(open_fds(), before);
}
