// proc/: the one parser of each /proc file (maps, smaps, smaps_rollup,
// stat), on recorded text with the kernel's corner cases, then on this
// process and its children against what they are known to hold.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/stat.hpp"

namespace proc = cowscope::proc;

TEST(Maps, LineFields)
{
	auto m = proc::parse_maps_line("7f12a000-7f12c000 r-xp 0001b000 fd:01 1835219                    /usr/lib/x86_64-linux-gnu/libc.so.6");
	ASSERT_TRUE(m);
	EXPECT_EQ(m->start, 0x7f12a000u);
	EXPECT_EQ(m->end, 0x7f12c000u);
	EXPECT_EQ(m->perms, "r-xp");
	EXPECT_EQ(m->offset, 0x1b000u);
	EXPECT_EQ(m->dev, makedev(0xfd, 0x01));
	EXPECT_EQ(m->ino, 1835219u);
	EXPECT_EQ(m->path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
	EXPECT_EQ(m->head, "7f12a000-7f12c000 r-xp 0001b000 fd:01 1835219                    ");
	EXPECT_TRUE(m->is_private());
	EXPECT_FALSE(m->writable());
	EXPECT_TRUE(m->contains(0x7f12bfff));
	EXPECT_FALSE(m->contains(0x7f12c000));
}

TEST(Maps, PathsAsTheKernelWritesThem)
{
	// anonymous: no path, and the line may end right after the inode
	auto anon = proc::parse_maps_line("55d0c000-55d2d000 rw-p 00000000 00:00 0");
	ASSERT_TRUE(anon);
	EXPECT_EQ(anon->path, "");
	EXPECT_TRUE(anon->writable());
	// spaces inside a path, a deleted file, a bracketed name
	auto sp = proc::parse_maps_line("1000-2000 rw-s 00000000 00:05 42 /dev/shm/my file (deleted)");
	ASSERT_TRUE(sp);
	EXPECT_EQ(sp->path, "/dev/shm/my file (deleted)");
	EXPECT_FALSE(sp->is_private());
	auto heap = proc::parse_maps_line("01c1e000-01c3f000 rw-p 00000000 00:00 0                                  [heap]");
	ASSERT_TRUE(heap);
	EXPECT_EQ(heap->path, "[heap]");
	// a 64-bit address
	auto vsys = proc::parse_maps_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]");
	ASSERT_TRUE(vsys);
	EXPECT_EQ(vsys->start, 0xffffffffff600000ull);
}

TEST(Maps, NotAVmaLine)
{
	for (const char *bad : {"", "Rss:                   4 kB", "1000-2000", "1000-2000 rw-p", "1000-2000 rwxpq 0 0:0 0",
				"1000-2000 rw-p 0 00:00", "2000-1000 rw-p 0 00:00 0", "1000-2000 rw-p 0 zz:00 0",
				"1000-2000 rw-p 0 00:00 12x /a", "x1000-2000 rw-p 0 00:00 0"})
		EXPECT_FALSE(proc::parse_maps_line(bad)) << "\"" << bad << "\"";
	// a whole text: lines that start like a VMA but break the format throw,
	// naming the line; other lines are passed over
	EXPECT_THROW(proc::parse_maps("1000-2000 rw-p 0 0:0 0\n5600-zz00 rw-p 0 0:0 0\n"), cowscope::Error);
	EXPECT_EQ(proc::parse_maps("garbage\n1000-2000 rw-p 0 0:0 0\n").size(), 1u);
	// no final newline, blank lines
	EXPECT_EQ(proc::parse_maps("1000-2000 rw-p 0 0:0 0\n\n3000-4000 r--p 0 0:0 0").size(), 2u);
}

TEST(Smaps, FieldsAndFlagsPerVma)
{
	const char *text =
		"00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
		"Size:                328 kB\n"
		"Rss:                 300 kB\n"
		"Anonymous:             0 kB\n"
		"THPeligible:    0\n"
		"ProtectionKey:         0\n"
		"VmFlags: rd ex mr mw me dw\n"
		"7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
		"Rss:                4096 kB\n"
		"Anonymous:          4096 kB\n"
		"AnonHugePages:      2048 kB\n"
		"Swap:                 12 kB\n"
		"VmFlags: rd wr mr mw me ac dc hg\n";
	auto v = proc::parse_smaps(text);
	ASSERT_EQ(v.size(), 2u);
	EXPECT_EQ(v[0].vma.path, "/usr/bin/dbus-daemon");
	EXPECT_EQ(v[0].field("Rss"), 300u);
	EXPECT_EQ(v[0].field("THPeligible"), 0u) << "not a kB field";
	EXPECT_EQ(v[0].kb.count("THPeligible"), 0u);
	EXPECT_TRUE(v[0].has_flag("ex"));
	EXPECT_FALSE(v[0].has_flag("dc"));
	EXPECT_EQ(v[1].vma.path, "");
	EXPECT_EQ(v[1].field("AnonHugePages"), 2048u);
	EXPECT_EQ(v[1].field("Swap"), 12u);
	EXPECT_EQ(v[1].field("Nothing"), 0u);
	EXPECT_TRUE(v[1].has_flag("dc"));
	EXPECT_TRUE(v[1].has_flag("hg"));
	EXPECT_EQ(v[1].vm_flags.size(), 8u);
	// fields before any VMA are passed over
	EXPECT_TRUE(proc::parse_smaps("Rss: 4 kB\nVmFlags: rd\n").empty());
	auto r = proc::parse_kb_fields("55d0-55e0 ---p 00000000 00:00 0 [rollup]\nRss:  12 kB\nPss_Anon: 3 kB\nBad: x kB\n");
	EXPECT_EQ(r.size(), 2u);
	EXPECT_EQ(r["Pss_Anon"], 3u);
}

// This process's own mapping, against what mmap gave it.
TEST(Maps, LiveMappingAsMapped)
{
	const std::size_t len = 16 * 4096;
	void *p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(p, MAP_FAILED);
	std::memset(p, 1, len);	// present: Rss = 64 kB unless THP grew it
	auto a = reinterpret_cast<std::uint64_t>(p);
	bool found = false;
	for (const auto &m : proc::read_maps(::getpid()))
		if (m.contains(a)) {
			found = true;
			EXPECT_LE(m.start, a);
			EXPECT_GE(m.end, a + len);
			EXPECT_EQ(m.perms, "rw-p");
		}
	EXPECT_TRUE(found) << "no maps line covers the mapping at " << p;
	found = false;
	for (const auto &s : proc::read_smaps(::getpid()))
		if (s.vma.contains(a)) {
			found = true;
			EXPECT_GE(s.field("Rss"), len / 1024) << "smaps Rss of the VMA";
			EXPECT_GE(s.field("Anonymous"), len / 1024);
			EXPECT_TRUE(s.has_flag("wr"));
		}
	EXPECT_TRUE(found);
	auto rollup = proc::smaps_rollup(::getpid());
	EXPECT_GE(rollup["Rss"], len / 1024);
	::munmap(p, len);
	EXPECT_THROW(proc::read_maps(0x7ffffff0), cowscope::SysError) << "no such process";
}

TEST(Stat, CommWithSpacesAndParentheses)
{
	auto st = proc::parse_stat("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0\n");
	ASSERT_TRUE(st);
	EXPECT_EQ(st->pid, 4242);
	EXPECT_EQ(st->comm, "a) b (c)");
	EXPECT_EQ(st->state, 'S');
	EXPECT_EQ(st->ppid, 1);
	EXPECT_EQ(st->flags, 4194560u);
	EXPECT_FALSE(st->gone());
	EXPECT_FALSE(st->kernel_thread());
	auto k = proc::parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0");
	ASSERT_TRUE(k);
	EXPECT_TRUE(k->kernel_thread());
	auto z = proc::parse_stat("77 (x) Z 1 77 77 0 -1 4227084 0");
	ASSERT_TRUE(z);
	EXPECT_TRUE(z->gone());
	for (const char *bad : {"", "12 (x", "x (y) S 1 1 1 0 -1 0", "12 (y) S", "12 (y) SS 1 1 1 0 -1 0",
				"12 (y) S 1 1 1 0 -1", "12 (y) S one 1 1 0 -1 0", "12 (y) S 1 1 1 0 -1 0x4"})
		EXPECT_FALSE(proc::parse_stat(bad)) << "\"" << bad << "\"";
}

// The one zombie rule: a child that exited but is not reaped is there
// (stat reads) and gone (alive() is false); reaped, it is not there.
TEST(Stat, LiveZombieAndReapedChild)
{
	auto self = proc::read_stat(::getpid());
	ASSERT_TRUE(self);
	EXPECT_EQ(self->pid, ::getpid());
	EXPECT_EQ(self->ppid, ::getppid());
	EXPECT_TRUE(proc::alive(::getpid()));

	int go[2];
	ASSERT_EQ(::pipe(go), 0);
	pid_t c = ::fork();
	ASSERT_GE(c, 0);
	if (c == 0) {
		::prctl(PR_SET_NAME, "proc test )(");
		char b;
		::close(go[1]);
		(void)!::read(go[0], &b, 1);	// wait for the parent's look
		_exit(0);
	}
	::close(go[0]);
	// running: the name it gave itself may not be set yet when we look, so
	// only what fork fixed is checked here
	auto running = proc::read_stat(c);
	ASSERT_TRUE(running);
	EXPECT_EQ(running->ppid, ::getpid());
	EXPECT_TRUE(proc::alive(c));
	ASSERT_EQ(::close(go[1]), 0);	// let it exit
	siginfo_t si{};
	ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(c), &si, WEXITED | WNOWAIT), 0) << std::strerror(errno);
	auto zombie = proc::read_stat(c);
	ASSERT_TRUE(zombie) << "an unreaped child's stat is still there";
	EXPECT_EQ(zombie->state, 'Z');
	EXPECT_EQ(zombie->comm, "proc test )(");
	EXPECT_FALSE(proc::alive(c));
	ASSERT_EQ(::waitpid(c, nullptr, 0), c);
	EXPECT_FALSE(proc::read_stat(c)) << "reaped";
	EXPECT_FALSE(proc::alive(c));
	EXPECT_FALSE(proc::read_stat(0));
	EXPECT_FALSE(proc::read_stat(-1));
}

TEST(Status, ThreadGroupParentAndState)
{
	auto st = proc::parse_status("Name:\tcowtrace\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\n"
				     "Pid:\t4250\nPPid:\t1\nTracerPid:\t0\n");
	ASSERT_TRUE(st);
	EXPECT_EQ(st->tgid, 4242);
	EXPECT_EQ(st->ppid, 1);
	EXPECT_EQ(st->state, 'S');
	EXPECT_FALSE(st->gone());
	auto z = proc::parse_status("State:\tZ (zombie)\nTgid:\t7\nPPid:\t1\n");
	ASSERT_TRUE(z);
	EXPECT_TRUE(z->gone());
	EXPECT_FALSE(proc::parse_status("Name:\tx\nPPid:\t1\n")) << "no Tgid";
	EXPECT_FALSE(proc::parse_status("Tgid:\tx1\n"));
	EXPECT_FALSE(proc::parse_status("Tgid:\t5\nPPid:\tnope\n"));
	// a live one: this process, seen through a thread id too
	auto self = proc::read_status(::getpid());
	ASSERT_TRUE(self);
	EXPECT_EQ(self->tgid, ::getpid());
	EXPECT_EQ(self->ppid, ::getppid());
	EXPECT_FALSE(proc::read_status(0x7ffffff0));
}
