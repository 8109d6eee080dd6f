// The userspace CFI unwinder (userspace/lib/src/trace/unwind.hpp) against a
// known call chain built without frame pointers (unwind_target.c): stopped
// with ptrace in read(), its registers, a stack slice from rsp and its maps
// snapshot taken, the process killed, THEN unwound, as cowtrace will after
// its BPF capture. Host only: needs ptrace on a child, no root, no BPF.
// Exits 77 when every test skipped (ptrace refused), with the reason.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cowscope/base/fd.hpp"
#include "cowscope/base/process.hpp"
#include "run_command.hpp"
#include "symbols.hpp"
#include "unwind.hpp"

namespace {

using cowscope::testing::bin_dir;
using namespace cowtrace;

std::string g_skip;	// why ptrace cannot be used here ("" when it can)

// What the BPF capture will hand over, taken here through ptrace.
struct Capture {
	UserRegs regs;
	std::vector<std::uint8_t> stack;	// from regs.rsp
	std::shared_ptr<const ProcMemory> mem;
	std::string error;	// "" when captured

	StackSample sample(std::size_t bytes = SIZE_MAX) const
	{
		StackSample s;
		s.regs = regs;
		s.stack_addr = regs.r[UserRegs::rsp];
		s.stack = std::span<const std::uint8_t>(stack).first(std::min(bytes, stack.size()));
		return s;
	}
};

std::string slurp_proc(pid_t pid, const char *what)
{
	std::string path = fmt::format("/proc/{}/{}", pid, what), text;
	cowscope::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
	char buf[512];
	ssize_t n;
	while (fd && (n = read(fd.get(), buf, sizeof(buf))) > 0)
		text.append(buf, static_cast<std::size_t>(n));
	return text;
}

// Run `exe` until f5 blocks in read(0, ...), stop it, take registers, up to
// `slice` bytes of stack at rsp and the maps snapshot, kill it.
Capture capture(const std::string &exe, std::size_t slice = 16384)
{
	Capture c;
	cowscope::Pipe in, out;
	pid_t pid = fork();
	if (pid < 0) {
		c.error = "fork failed";
		return c;
	}
	if (pid == 0) {
		dup2(in.read_end.get(), 0);
		dup2(out.write_end.get(), 1);
		execl(exe.c_str(), exe.c_str(), static_cast<char *>(nullptr));
		_exit(127);
	}
	cowscope::Child kid(pid);
	in.read_end.reset();
	out.write_end.reset();
	// f5 says it is there ...
	pollfd p{out.read_end.get(), POLLIN, 0};
	char r = 0;
	if (poll(&p, 1, 10000) != 1 || read(out.read_end.get(), &r, 1) != 1 || r != 'R') {
		c.error = exe + ": no \"R\" from the target within 10 s";
		return c;
	}
	// ... and is blocked in read(0, ...) once /proc/PID/syscall says so
	// ("0 0x0 ...": syscall number 0, fd 0); polled to a deadline
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	while (slurp_proc(pid, "syscall").rfind("0 0x0 ", 0) != 0) {
		if (std::chrono::steady_clock::now() > deadline) {
			c.error = fmt::format("{}: not in read(0) after 10 s: /proc/{}/syscall = {}", exe, pid,
					      slurp_proc(pid, "syscall"));
			return c;
		}
		usleep(1000);
	}
	c.mem = read_memory(pid, 0, nullptr);
	if (ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) {
		g_skip = fmt::format("PTRACE_SEIZE of a child refused: {}", strerror(errno));
		c.error = g_skip;
		return c;
	}
	int st = 0;
	if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0 || waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st)) {
		c.error = fmt::format("PTRACE_INTERRUPT/waitpid: {} (status {:#x})", strerror(errno), st);
		return c;
	}
	user_regs_struct ur{};
	if (ptrace(PTRACE_GETREGS, pid, nullptr, &ur) != 0) {
		c.error = fmt::format("PTRACE_GETREGS: {}", strerror(errno));
		return c;
	}
	// user_regs_struct starts like struct pt_regs: what from_pt_regs reads
	c.regs = from_pt_regs(std::span(reinterpret_cast<const std::uint8_t *>(&ur), sizeof(ur)));
	std::uint64_t rsp = c.regs.r[UserRegs::rsp], end = rsp + slice;
	for (const MapsLine &m : parse_maps(c.mem ? c.mem->maps : ""))
		if (m.contains(rsp))
			end = std::min(end, m.end);	// the stack's top
	c.stack.resize(end - rsp);
	cowscope::UniqueFd memfd(open(fmt::format("/proc/{}/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
	if (!memfd || pread(memfd.get(), c.stack.data(), c.stack.size(), static_cast<off_t>(rsp)) !=
			      static_cast<ssize_t>(c.stack.size())) {
		c.error = fmt::format("reading {} bytes of /proc/{}/mem at {:#x}: {}", c.stack.size(), pid, rsp,
				      strerror(errno));
		return c;
	}
	kid.kill_and_reap();
	if (kill(pid, 0) == 0 || errno != ESRCH)
		c.error = fmt::format("pid {} still there after kill_and_reap", pid);
	if (!c.mem)
		c.error = "no maps snapshot";
	return c;
}

std::string describe(const Unwound &u, const std::vector<Frame> &f)
{
	std::string s = fmt::format("stop {}: {}\n", stop_name(u.stop), u.why);
	for (std::size_t i = 0; i < u.frames.size(); i++)
		s += fmt::format("  #{} {:4} {}\n", i, source_name(u.frames[i].source),
				 i < f.size() ? f[i].text() : "(not symbolized)");
	return s;
}

const char *const chain[] = {"f5", "f4", "f3", "f2", "f1", "main"};

class Unwind : public ::testing::Test {
protected:
	static void SetUpTestSuite()
	{
		if (access((bin_dir() + "/unwind_target").c_str(), X_OK) != 0) {
			g_skip = "no unwind_target beside the test";
			return;
		}
		cap = new Capture(capture(bin_dir() + "/unwind_target"));
	}
	static void TearDownTestSuite()
	{
		delete cap;
		cap = nullptr;
	}
	void SetUp() override
	{
		if (!g_skip.empty())
			GTEST_SKIP() << g_skip;
		ASSERT_TRUE(cap->error.empty()) << cap->error;
	}
	static Capture *cap;
};
Capture *Unwind::cap = nullptr;

// The whole chain, every caller from CFI, after the process is gone; the
// frame-pointer walk from the same registers does not get past f5.
TEST_F(Unwind, CfiWalksTheChainWithoutFramePointers)
{
	Unwinder uw;
	StackSample s = cap->sample();
	Unwound u = uw.unwind(*cap->mem, s);
	Symbolizer sym;
	auto f = symbolize(sym, *cap->mem, u);
	std::string all = describe(u, f);
	std::printf("%s", all.c_str());
	ASSERT_GE(u.frames.size(), 7u) << all;
	EXPECT_EQ(u.frames[0].source, FrameSource::regs) << all;
	EXPECT_NE(f[0].module.find("libc.so"), std::string::npos) << "frame 0 is not in libc's read: " << all;
	for (int i = 0; i < 6; i++) {
		EXPECT_EQ(f[i + 1].func, chain[i]) << "frame " << i + 1 << ": " << all;
		EXPECT_EQ(u.frames[i + 1].source, FrameSource::cfi) << "frame " << i + 1 << ": " << all;
		EXPECT_FALSE(f[i + 1].guess) << all;
	}
	// on through libc's start code to _start, whose CFI ends the stack
	EXPECT_EQ(u.stop, Stop::outermost) << all;
	EXPECT_EQ(u.cfi_frames(), u.frames.size() - 1) << all;

	Unwound fp = unwind_fp(s);
	auto ff = symbolize(sym, *cap->mem, fp);
	std::string fps = describe(fp, ff);
	std::printf("frame pointers alone:\n%s", fps.c_str());
	for (const Frame &x : ff)
		for (int i = 1; i < 6; i++)
			EXPECT_NE(x.func, chain[i]) << "the frame-pointer walk reached " << chain[i] << ":\n" << fps;
}

// What a shorter slice costs: fewer frames, and a stop that says where the
// slice ended; never a crash, whatever the size.
TEST_F(Unwind, ShortSliceStopsWithItsReason)
{
	Unwinder uw;
	Symbolizer sym;
	Unwound u = uw.unwind(*cap->mem, cap->sample(64));
	std::string all = describe(u, symbolize(sym, *cap->mem, u));
	std::printf("64 bytes:\n%s", all.c_str());
	EXPECT_EQ(u.stop, Stop::slice_exhausted) << all;
	EXPECT_NE(u.why.find("stack slice exhausted at sp+"), std::string::npos) << all;
	EXPECT_NE(u.why.find(" of 64 captured"), std::string::npos) << all;
	EXPECT_LT(u.frames.size(), 7u) << all;
	std::size_t last = 0;
	for (std::size_t bytes : {0, 8, 64, 256, 512, 768, 1024, 1536, 2048, 4096, 16384}) {
		Unwound v = uw.unwind(*cap->mem, cap->sample(bytes));
		std::printf("slice %5zu bytes: %2zu frames, %s\n", bytes, v.frames.size(), v.why.c_str());
		EXPECT_GE(v.frames.size(), last) << bytes << " bytes: " << v.why;
		EXPECT_GE(v.frames.size(), 1u);
		last = v.frames.size();
	}
}

// One libdwfl session per layout, whatever the ProcMemory object: a forked
// child's snapshot (same maps) reuses it; repeated unwinds give the same
// frames. The rate is printed (the report's number).
TEST_F(Unwind, OneSessionPerLayoutAndItsRate)
{
	Unwinder uw;
	StackSample s = cap->sample();
	auto c0 = std::chrono::steady_clock::now();
	Unwound first = uw.unwind(*cap->mem, s);
	std::printf("first unwind of the layout (libdwfl session built): %.2f ms\n",
		    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count());
	ProcMemory twin = *cap->mem;	// another process of the same layout
	twin.pid = cap->mem->pid + 1;
	twin.maps += "10000-11000 rw-p 00000000 00:00 0 \n";	// and a mapping of its own
	Unwound again = uw.unwind(twin, s);
	EXPECT_EQ(uw.layouts_built(), 1u);
	EXPECT_EQ(first.frames, again.frames);
	EXPECT_EQ(first.why, again.why);
	const int n = 20000;
	auto t0 = std::chrono::steady_clock::now();
	std::size_t frames = 0;
	for (int i = 0; i < n; i++) {
		Unwound u = uw.unwind(i % 2 ? twin : *cap->mem, s);
		frames += u.frames.size();
		if (u.frames != first.frames)
			ADD_FAILURE() << "unwind " << i << " differs: " << u.why;
	}
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	std::printf("%d unwinds of %zu frames in %.3f s: %.0f unwinds/s (%.0f frames/s), %zu layout(s) built\n", n,
		    first.frames.size(), secs, n / secs, frames / secs, uw.layouts_built());
	EXPECT_EQ(uw.layouts_built(), 1u);
	// a different layout (one file mapping moved) is a session of its own
	ProcMemory moved = *cap->mem;
	auto nl = moved.maps.find('\n');
	ASSERT_NE(nl, std::string::npos);
	moved.maps = moved.maps.substr(nl + 1);
	uw.unwind(moved, s);
	EXPECT_EQ(uw.layouts_built(), 2u);
}

TEST_F(Unwind, DepthLimit)
{
	Unwinder uw;
	Unwound u = uw.unwind(*cap->mem, cap->sample(), 3);
	EXPECT_EQ(u.frames.size(), 3u) << u.why;
	EXPECT_EQ(u.stop, Stop::depth_limit) << u.why;
	EXPECT_EQ(u.why, "depth limit of 3 frames reached");
}

// An ip in no file (here: on the stack, as a wild jump would leave it)
TEST_F(Unwind, IpInNoFileSaysWhere)
{
	Unwinder uw;
	StackSample s = cap->sample();
	s.regs.r[UserRegs::rip] = s.stack_addr;
	Unwound u = uw.unwind(*cap->mem, s);
	EXPECT_EQ(u.frames.size(), 1u) << u.why;
	EXPECT_EQ(u.stop, Stop::no_module) << u.why;
	// (then libdwfl's frame-pointer fallback tried rbp, a value in f3)
	EXPECT_TRUE(u.why.starts_with(fmt::format("{:#x} is in no mapped ELF file ([stack])", s.stack_addr))) << u.why;
}

// Where the callee has no CFI, libdwfl's frame-pointer fallback gives the
// caller, labelled fp; its reads outside the slice come from read-only
// file mappings through the file. Here rip is in no file and rbp points
// 16 bytes into the executable's ELF header (its first, read-only
// mapping), so the "return address" at rbp+8 is the header's e_entry.
TEST_F(Unwind, FramePointerFallbackReadsReadOnlyFiles)
{
	const MapsLine *exe = nullptr;
	std::vector<MapsLine> maps = parse_maps(cap->mem->maps);
	for (const MapsLine &m : maps)
		if (m.path.ends_with("/unwind_target") && m.offset == 0 && !m.writable())
			exe = &m;
	ASSERT_TRUE(exe) << cap->mem->maps;
	std::uint64_t entry = 0;
	ASSERT_TRUE(cap->mem->files.count(exe->path));
	ASSERT_EQ(pread(cap->mem->files.at(exe->path)->get(), &entry, 8, 0x18), 8);
	Unwinder uw;
	StackSample s = cap->sample();
	s.regs.r[UserRegs::rip] = s.stack_addr;
	s.regs.r[UserRegs::rbp] = exe->start + 0x10;
	s.regs.r[UserRegs::rsp] = 0x1000;	// below rbp, as the fallback wants
	Unwound u = uw.unwind(*cap->mem, s);
	ASSERT_GE(u.frames.size(), 2u) << u.why;
	EXPECT_EQ(u.frames[1].ip, entry) << u.why;
	EXPECT_EQ(u.frames[1].source, FrameSource::fp) << u.why;
}

TEST_F(Unwind, PtRegsTooShortIsAnError)
{
	std::uint8_t b[160] = {};
	EXPECT_THROW(from_pt_regs(b), cowscope::Error);
}

// The same chain in a stripped copy (-rdynamic: the names in .dynsym):
// names marked as guesses, offsets in the functions and from the load base
// the same as the unstripped binary's.
TEST_F(Unwind, StrippedCopyGivesMarkedGuessesAtExactOffsets)
{
	if (system("command -v objcopy >/dev/null 2>&1") != 0)
		GTEST_SKIP() << "no objcopy program here (binutils)";
	char tmpl[] = "/tmp/cowscope-unwind-XXXXXX";
	ASSERT_NE(mkdtemp(tmpl), nullptr);
	std::string dir = tmpl, copy = dir + "/unwind_target";
	ASSERT_EQ(system(("objcopy --strip-all " + bin_dir() + "/unwind_target " + copy).c_str()), 0);
	Capture sc = capture(copy);
	std::remove(copy.c_str());
	rmdir(dir.c_str());
	ASSERT_TRUE(sc.error.empty()) << sc.error;

	Unwinder uw;
	Symbolizer sym;
	Unwound u = uw.unwind(*sc.mem, sc.sample()), o = uw.unwind(*cap->mem, cap->sample());
	auto f = symbolize(sym, *sc.mem, u), of = symbolize(sym, *cap->mem, o);
	std::string all = describe(u, f) + "unstripped:\n" + describe(o, of);
	std::printf("stripped:\n%s", all.c_str());
	ASSERT_GE(u.frames.size(), 7u) << all;
	ASSERT_GE(o.frames.size(), 7u) << all;
	// the executable's load base in each process: its lowest mapping
	auto base = [](const ProcMemory &m, const std::string &exe_suffix) {
		std::uint64_t b = UINT64_MAX;
		for (const MapsLine &l : parse_maps(m.maps))
			if (l.path.size() >= exe_suffix.size() &&
			    l.path.compare(l.path.size() - exe_suffix.size(), exe_suffix.size(), exe_suffix) == 0)
				b = std::min(b, l.start);
		return b;
	};
	std::uint64_t sb = base(*sc.mem, "/unwind_target"), ob = base(*cap->mem, "/unwind_target");
	for (int i = 0; i < 6; i++) {
		EXPECT_EQ(f[i + 1].func, chain[i]) << all;
		EXPECT_TRUE(f[i + 1].guess) << "frame " << i + 1 << " not marked a guess: " << all;
		EXPECT_EQ(u.frames[i + 1].source, FrameSource::cfi) << all;
		EXPECT_EQ(f[i + 1].offset, of[i + 1].offset) << chain[i] << ": " << all;
		EXPECT_EQ(u.frames[i + 1].ip - sb, o.frames[i + 1].ip - ob) << chain[i] << ": " << all;
	}
}

} // namespace

int main(int argc, char **argv)
{
	::testing::InitGoogleTest(&argc, argv);
	int rc = RUN_ALL_TESTS();
	auto *u = ::testing::UnitTest::GetInstance();
	if (rc == 0 && u->test_to_run_count() > 0 && u->skipped_test_count() == u->test_to_run_count()) {
		std::printf("unwind tests: all skipped: %s\n", g_skip.c_str());
		return 77;
	}
	return rc;
}
