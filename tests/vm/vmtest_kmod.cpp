// cowscope.ko against the kernel's own ground truth (/proc/PID/pagemap and
// /proc/kpagecount), modelled on tools/testing/selftests/mm/cow.c: one
// parametrised test per memory kind (4 KiB anon, THP, shared zero page,
// private file mapping). The parent forks, the child writes on command
// over a pipe, and the parent reads both processes' views. No sleeps.
#include <gtest/gtest.h>

#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cowscope/view/diff.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/view/view.hpp"

using namespace cowscope;

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHuge = 2u << 20;

enum class Kind { Anon4K, Thp, ZeroPage, FilePrivate };

const char *kind_name(Kind k)
{
	switch (k) {
	case Kind::Anon4K: return "Anon4K";
	case Kind::Thp: return "THP";
	case Kind::ZeroPage: return "ZeroPage";
	case Kind::FilePrivate: return "FilePrivate";
	}
	return "?";
}

bool thp_available()
{
	try {
		std::string s = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
		return s.find("[never]") == std::string::npos;
	} catch (const Error &) {
		return false;
	}
}

// Pins the calling thread to the CPU it runs on while it lives. A fresh
// anonymous page sits in this CPU's LRU-add batch (holding a reference)
// until drained, and do_wp_page() can drain only the local CPU's batches:
// after a migration the parent's write would copy instead of reusing.
class OneCpu {
public:
	OneCpu()
	{
		pinned_ = sched_getaffinity(0, sizeof(saved_), &saved_) == 0;
		if (pinned_) {
			cpu_set_t one;
			CPU_ZERO(&one);
			CPU_SET(sched_getcpu(), &one);
			pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
		}
	}
	~OneCpu()
	{
		if (pinned_)
			sched_setaffinity(0, sizeof(saved_), &saved_);
	}
	OneCpu(const OneCpu &) = delete;
	OneCpu &operator=(const OneCpu &) = delete;

private:
	cpu_set_t saved_{};
	bool pinned_ = false;
};

struct Region {
	char *addr = nullptr;
	size_t len = 0;
	void *map = nullptr;
	size_t map_len = 0;
	~Region()
	{
		if (map)
			munmap(map, map_len);
	}
};

// One page's facts from every source.
struct Facts {
	view::PageRecord rec;
	PagemapEntry pm;
	std::uint64_t kpc = 0;
};

Facts facts(pid_t pid, std::uintptr_t va)
{
	Facts f;
	auto recs = view::read_records(pid, va, va + kPage);
	if (recs.size() != 1)
		throw Error("no record for page");
	f.rec = recs[0];
	f.pm = Pagemap(pid).at(va);
	if (f.pm.present() && f.pm.pfn())
		f.kpc = kpagecount(f.pm.pfn());
	return f;
}

// The module's record agrees with pagemap and kpagecount.
void expect_ground_truth(const Facts &f, bool check_excl_bit, const char *who)
{
	SCOPED_TRACE(who);
	EXPECT_EQ(f.rec.present(), f.pm.present());
	if (!f.rec.present())
		return;
	EXPECT_EQ(f.rec.pfn(), f.pm.pfn());
	EXPECT_EQ(f.rec.rec.mapcount, f.kpc) << "mapcount vs /proc/kpagecount";
	EXPECT_GE(f.rec.rec.refcount, f.rec.rec.mapcount > 0 ? 1u : 0u);
	if (check_excl_bit && !f.rec.has(COWSCOPE_F_ZERO)) {
		EXPECT_EQ(f.pm.exclusive(), f.rec.rec.mapcount == 1)
			<< "pagemap bit 56 vs mapcount";
	}
}

void xwrite(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != static_cast<ssize_t>(n))
		_exit(90);
}

void xread(int fd, void *p, size_t n)
{
	if (read(fd, p, n) != static_cast<ssize_t>(n))
		_exit(91);
}

class KmodCow : public ::testing::TestWithParam<Kind> {
protected:
	void SetUp() override
	{
		if (!view::module_loaded())
			GTEST_SKIP() << "cowscope.ko not loaded";
		cpu_.emplace();
		kind_ = GetParam();
		if (kind_ == Kind::Thp && !thp_available())
			GTEST_SKIP() << "THP unavailable in this kernel";
		populate();
		if (HasFatalFailure() || IsSkipped())
			return;
		view::track(getpid());
	}

	void populate()
	{
		const size_t pages = kind_ == Kind::Thp ? kHuge / kPage : 16;
		r_.len = pages * kPage;
		if (kind_ == Kind::FilePrivate) {
			char path[] = "/tmp/cowscope-kmod-XXXXXX";
			int fd = mkstemp(path);
			ASSERT_GE(fd, 0);
			UniqueFd f(fd);
			unlink(path);
			std::vector<char> data(r_.len, 0x33);
			ASSERT_EQ(write(fd, data.data(), data.size()),
				  static_cast<ssize_t>(data.size()));
			r_.map = mmap(nullptr, r_.len, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE, fd, 0);
			ASSERT_NE(r_.map, MAP_FAILED);
			r_.map_len = r_.len;
			r_.addr = static_cast<char *>(r_.map);
			for (size_t i = 0; i < r_.len; i += kPage)
				(void)*static_cast<volatile char *>(r_.addr + i);
			return;
		}
		r_.map_len = r_.len + (kind_ == Kind::Thp ? kHuge : 0);
		r_.map = mmap(nullptr, r_.map_len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(r_.map, MAP_FAILED);
		auto base = reinterpret_cast<std::uintptr_t>(r_.map);
		if (kind_ == Kind::Thp) {
			base = (base + kHuge - 1) & ~(kHuge - 1);
			r_.addr = reinterpret_cast<char *>(base);
			ASSERT_EQ(madvise(r_.addr, r_.len, MADV_HUGEPAGE), 0);
		} else {
			r_.addr = reinterpret_cast<char *>(base);
			ASSERT_EQ(madvise(r_.addr, r_.len, MADV_NOHUGEPAGE), 0);
		}
		if (kind_ == Kind::ZeroPage) {
			for (size_t i = 0; i < r_.len; i += kPage)
				(void)*static_cast<volatile char *>(r_.addr + i);
		} else {
			std::memset(r_.addr, 0x5a, r_.len);
		}
		if (kind_ == Kind::Thp) {
			Facts f = facts(getpid(), va(0));
			if (!f.rec.has(COWSCOPE_F_HUGE))
				GTEST_SKIP() << "no THP could be allocated here";
		}
	}

	std::uintptr_t va(size_t page) const
	{
		return reinterpret_cast<std::uintptr_t>(r_.addr) + page * kPage;
	}

	void TearDown() override { cpu_.reset(); }

	Kind kind_{};
	Region r_;
	std::optional<OneCpu> cpu_;
};

TEST_P(KmodCow, ForkSharesThenCopiesThenReuses)
{
	const pid_t self = getpid();
	const bool small = kind_ != Kind::Thp;
	const Facts before = facts(self, va(0));
	ASSERT_TRUE(before.rec.present());
	expect_ground_truth(before, small, "parent before fork");
	if (kind_ == Kind::ZeroPage) {
		EXPECT_TRUE(before.rec.has(COWSCOPE_F_ZERO)) << before.rec.flags();
	}
	if (kind_ == Kind::FilePrivate) {
		EXPECT_TRUE(before.rec.has(COWSCOPE_F_FILE)) << before.rec.flags();
	}
	if (kind_ == Kind::Anon4K || kind_ == Kind::Thp) {
		EXPECT_TRUE(before.rec.has(COWSCOPE_F_ANON_EXCL)) << before.rec.flags();
		EXPECT_TRUE(before.rec.writable());
	}

	int to_child[2], to_parent[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(to_parent), 0);
	UniqueFd c_r(to_child[0]), c_w(to_child[1]), p_r(to_parent[0]),
		p_w(to_parent[1]);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char cmd;
		// fork() copies no PTEs of a VMA without anon_vma (the zero page
		// and file cases): read-fault page 0 so both map the same page.
		(void)*static_cast<volatile char *>(r_.addr);
		xwrite(p_w.get(), "r", 1);
		xread(c_r.get(), &cmd, 1);	// 'w': write page 0
		r_.addr[0] = 1;
		xwrite(p_w.get(), "w", 1);
		xread(c_r.get(), &cmd, 1);	// 'q'
		_exit(0);
	}
	char ack;
	ASSERT_EQ(read(p_r.get(), &ack, 1), 1);
	view::track(pid);

	// Right after fork: the same page in both, W clear, mapped twice.
	Facts p0 = facts(self, va(0)), c0 = facts(pid, va(0));
	expect_ground_truth(p0, small, "parent after fork");
	expect_ground_truth(c0, small, "child after fork");
	EXPECT_EQ(p0.rec.pfn(), before.rec.pfn());
	EXPECT_EQ(c0.rec.pfn(), p0.rec.pfn()) << "child maps the parent's page";
	EXPECT_FALSE(p0.rec.writable()) << p0.rec.flags();
	EXPECT_FALSE(c0.rec.writable()) << c0.rec.flags();
	if (kind_ == Kind::ZeroPage) {
		EXPECT_TRUE(c0.rec.has(COWSCOPE_F_ZERO));
	} else {
		EXPECT_EQ(p0.rec.rec.mapcount, 2u);
		EXPECT_FALSE(p0.rec.anon_exclusive());
	}
	if (kind_ == Kind::Anon4K || kind_ == Kind::Thp) {
		EXPECT_TRUE(p0.rec.cow_pending() && c0.rec.cow_pending());
	}
	if (kind_ == Kind::Thp) {
		EXPECT_TRUE(c0.rec.has(COWSCOPE_F_HUGE)) << c0.rec.flags();
	}

	// The child writes: its copy is new, writable, exclusive.
	ASSERT_EQ(write(c_w.get(), "w", 1), 1);
	ASSERT_EQ(read(p_r.get(), &ack, 1), 1);
	Facts p1 = facts(self, va(0)), c1 = facts(pid, va(0));
	expect_ground_truth(p1, small, "parent after child write");
	expect_ground_truth(c1, true, "child after its write");
	EXPECT_NE(c1.rec.pfn(), p0.rec.pfn()) << "child got a copy";
	EXPECT_TRUE(c1.rec.writable()) << c1.rec.flags();
	EXPECT_EQ(c1.rec.rec.mapcount, 1u);
	EXPECT_TRUE(c1.rec.anon_exclusive()) << c1.rec.flags();
	EXPECT_TRUE(c1.rec.has(COWSCOPE_F_ANON));
	EXPECT_EQ(p1.rec.pfn(), p0.rec.pfn()) << "parent keeps its page";
	EXPECT_FALSE(p1.rec.writable()) << "parent's PTE stays write-protected";

	// The parent writes: an anonymous 4 KiB page is reused in place.
	r_.addr[0] = 2;
	Facts p2 = facts(self, va(0));
	expect_ground_truth(p2, small, "parent after its write");
	EXPECT_TRUE(p2.rec.writable()) << p2.rec.flags();
	EXPECT_TRUE(p2.rec.anon_exclusive()) << p2.rec.flags();
	if (kind_ == Kind::Anon4K) {
		EXPECT_EQ(p2.rec.pfn(), p0.rec.pfn()) << "reused in place";
	} else if (kind_ != Kind::Thp) {
		EXPECT_NE(p2.rec.pfn(), p0.rec.pfn()) << "zero/file page copied";
	}

	// The ptes view agrees with the binary one on page 0.
	view::set_range(self, va(0), va(1));
	auto ptes = view::read_ptes(self);
	ASSERT_EQ(ptes.size(), 1u);
	EXPECT_EQ(ptes[0].vaddr, va(0));
	EXPECT_EQ(ptes[0].pfn, p2.rec.pfn());
	EXPECT_EQ(ptes[0].flags, p2.rec.flags());
	view::set_range(self, 0, ~0ULL);

	ASSERT_EQ(write(c_w.get(), "q", 1), 1);
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
	// Exited and reaped: reads fail with ESRCH (or the directory is gone).
	try {
		view::read_maps(pid);
		ADD_FAILURE() << "read of an exited pid succeeded";
	} catch (const SysError &e) {
		EXPECT_TRUE(e.code() == ESRCH || e.code() == ENOENT) << e.what();
	}
	try {
		view::untrack(pid);
	} catch (const Error &) {
	}
}

INSTANTIATE_TEST_SUITE_P(Kinds, KmodCow,
			 ::testing::Values(Kind::Anon4K, Kind::Thp, Kind::ZeroPage,
					   Kind::FilePrivate),
			 [](const auto &info) { return kind_name(info.param); });

// A PMD-mapped THP: one ptes line per subpage, all with H.
TEST(KmodThp, OneLinePerSubpage)
{
	if (!view::module_loaded() || !thp_available())
		GTEST_SKIP() << "module or THP unavailable";
	Mapping m = Mapping::anonymous(2 * kHuge);
	auto base = (reinterpret_cast<std::uintptr_t>(m.data()) + kHuge - 1) &
		    ~(kHuge - 1);
	ASSERT_EQ(madvise(reinterpret_cast<void *>(base), kHuge, MADV_HUGEPAGE), 0);
	std::memset(reinterpret_cast<void *>(base), 1, kHuge);
	view::track(getpid());
	auto recs = view::read_records(getpid(), base, base + kHuge);
	ASSERT_EQ(recs.size(), kHuge / kPage);
	if (!recs[0].has(COWSCOPE_F_HUGE))
		GTEST_SKIP() << "no THP allocated";
	view::set_range(getpid(), base, base + kHuge);
	auto ptes = view::read_ptes(getpid());
	view::set_range(getpid(), 0, ~0ULL);
	ASSERT_EQ(ptes.size(), kHuge / kPage);
	for (size_t i = 0; i < ptes.size(); i++) {
		EXPECT_EQ(ptes[i].vaddr, base + i * kPage);
		EXPECT_EQ(ptes[i].pfn, recs[0].pfn() + i);
		EXPECT_NE(ptes[i].flags.find('H'), std::string::npos);
	}
	auto sum = view::read_summary(getpid());
	ASSERT_FALSE(sum.empty());
	EXPECT_EQ(sum.back().label, "total");
	EXPECT_GE(sum.back().huge, 1u);
}

// Segment labels of this (static) program.
int g_data = 42;
char g_bss[1 << 20];

std::string label_of(const std::vector<view::MapsEntry> &maps, std::uintptr_t a)
{
	for (const auto &e : maps)
		if (e.start <= a && a < e.end)
			return e.label;
	return "(none)";
}

TEST(KmodLabels, StaticBinary)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	view::track(getpid());
	g_bss[sizeof(g_bss) - 1] = 1;
	void *heap = std::malloc(64);
	ASSERT_NE(heap, nullptr);
	int local = 0;
	auto maps = view::read_maps(getpid());
	auto addr = [](const void *p) { return reinterpret_cast<std::uintptr_t>(p); };
	EXPECT_EQ(label_of(maps, reinterpret_cast<std::uintptr_t>(&label_of)), "text");
	EXPECT_EQ(label_of(maps, addr(&g_data)), "data");
	const std::string bss = label_of(maps, addr(&g_bss[sizeof(g_bss) - 1]));
	EXPECT_TRUE(bss == "bss" || bss == "data") << bss;
	EXPECT_EQ(label_of(maps, addr(heap)), "heap");
	EXPECT_EQ(label_of(maps, addr(&local)), "stack");
	EXPECT_EQ(label_of(maps, getauxval(AT_SYSINFO_EHDR)), "vdso");
	std::free(heap);
	Mapping m = Mapping::anonymous(kPage);
	EXPECT_EQ(label_of(maps = view::read_maps(getpid()), addr(m.data())),
		  "mmap-anon");
}

// The dynamic-binary case: vmhelper_dynamic (tests/vm/dyn/dynamic.c, next
// to this program in build/bin) prints where its data, bss, heap, stack and
// vDSO are and every PT_LOAD segment of every loaded object, then waits
// for EOF on stdin. Every address and every page of every segment must
// carry the label the kernel's own /proc/PID/maps and the ELF segment
// flags imply, in both the maps view and the binary records.
struct KernelMap {
	std::uintptr_t start = 0, end = 0;
	std::string perms, path;
};

std::vector<KernelMap> kernel_maps(pid_t pid)
{
	std::vector<KernelMap> out;
	std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/maps"));
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream l(line);
		std::string range, off, dev, inode;
		KernelMap m;
		l >> range >> m.perms >> off >> dev >> inode;
		std::getline(l >> std::ws, m.path);
		const auto dash = range.find('-');
		m.start = std::stoull(range.substr(0, dash), nullptr, 16);
		m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
		out.push_back(m);
	}
	return out;
}

const KernelMap *kernel_map_at(const std::vector<KernelMap> &maps,
			       std::uintptr_t a)
{
	for (const auto &m : maps)
		if (m.start <= a && a < m.end)
			return &m;
	return nullptr;
}

struct LoadSeg {
	int obj = 0;
	std::uintptr_t start = 0, filesz = 0, memsz = 0;
	unsigned flags = 0;
};

struct DynReport {
	std::map<std::string, std::uintptr_t> addr;
	std::map<int, std::string> objs;
	std::vector<LoadSeg> loads;
};

DynReport parse_dyn_report(const std::string &text)
{
	DynReport r;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream l(line);
		std::string kind;
		l >> kind;
		if (kind == "addr") {
			std::string name, a;
			l >> name >> a;
			r.addr[name] = std::stoull(a, nullptr, 16);
		} else if (kind == "obj") {
			int i;
			std::string name;
			l >> i >> name;
			r.objs[i] = name;
		} else if (kind == "load") {
			LoadSeg s;
			std::string a, f, m;
			l >> s.obj >> a >> f >> m >> std::hex >> s.flags;
			s.start = std::stoull(a, nullptr, 16);
			s.filesz = std::stoull(f, nullptr, 16);
			s.memsz = std::stoull(m, nullptr, 16);
			r.loads.push_back(s);
		}
	}
	return r;
}

std::string self_dir()
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return ".";
	std::string p(buf, static_cast<size_t>(n));
	return p.substr(0, p.rfind('/'));
}

// The label /proc/PID/maps implies for a page of object obj (0: the
// executable) at a, given its segment's ELF flags.
std::string expected_label(const KernelMap &m, const std::string &exe,
			   const std::string &obj_name, int obj,
			   unsigned seg_flags)
{
	if (obj_name == "linux-vdso.so.1")
		return "vdso";
	if (obj == 0) {
		if (m.path == exe)
			return (seg_flags & PF_W) ? "data" : "text";
		if (m.path == "[heap]")
			return "heap";
		return "bss";
	}
	return m.path.empty() ? "mmap-anon" : "mmap-file";
}

TEST(KmodLabels, DynamicBinary)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	if (access("/lib64/ld-linux-x86-64.so.2", X_OK) != 0)
		GTEST_SKIP() << "no dynamic loader in this image: only static "
				"binaries can run here";
	const std::string helper = self_dir() + "/vmhelper_dynamic";
	ASSERT_EQ(access(helper.c_str(), X_OK), 0)
		<< helper << " missing: build the vmhelper_dynamic target";

	int to_child[2], from_child[2];
	ASSERT_EQ(pipe2(to_child, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(from_child, O_CLOEXEC), 0);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		if (dup2(to_child[0], 0) < 0 || dup2(from_child[1], 1) < 0)
			_exit(92);
		execl(helper.c_str(), helper.c_str(), static_cast<char *>(nullptr));
		_exit(93);
	}
	close(to_child[0]);
	close(from_child[1]);
	std::string out;
	char buf[4096];
	while (out.find("ready\n") == std::string::npos) {
		ssize_t n = read(from_child[0], buf, sizeof(buf));
		if (n <= 0)
			break;
		out.append(buf, static_cast<size_t>(n));
	}
	close(from_child[0]);
	struct Reap {
		pid_t pid;
		int fd;
		~Reap()
		{
			close(fd);	// EOF: the helper exits
			int st;
			waitpid(pid, &st, 0);
		}
	} reap{pid, to_child[1]};
	ASSERT_NE(out.find("ready\n"), std::string::npos) << "helper said: " << out;

	const DynReport r = parse_dyn_report(out);
	view::track(pid);
	const auto kmaps = kernel_maps(pid);
	const auto maps = view::read_maps(pid);
	char exebuf[4096];
	const std::string exe_link = "/proc/" + std::to_string(pid) + "/exe";
	ssize_t n = readlink(exe_link.c_str(), exebuf, sizeof(exebuf) - 1);
	ASSERT_GT(n, 0);
	const std::string exe(exebuf, static_cast<size_t>(n));

	// the named addresses
	const std::pair<const char *, const char *> named[] = {
		{"text", nullptr}, {"data", nullptr}, {"bss", nullptr},
		{"heap", "[heap]"}, {"stack", "[stack]"}, {"vdso", "[vdso]"},
	};
	for (const auto &[name, kname] : named) {
		SCOPED_TRACE(name);
		ASSERT_TRUE(r.addr.count(name));
		const std::uintptr_t a = r.addr.at(name);
		const KernelMap *km = kernel_map_at(kmaps, a);
		ASSERT_NE(km, nullptr);
		std::string want = name;
		if (kname)
			EXPECT_EQ(km->path, kname);
		else if (std::string(name) != "bss")
			EXPECT_EQ(km->path, exe);
		else if (km->path == "[heap]")
			want = "heap";	// no brk randomisation: bss and heap merged
		EXPECT_EQ(label_of(maps, a), want);
		auto rec = view::read_records(pid, a, a + 1);
		ASSERT_EQ(rec.size(), 1u);
		EXPECT_EQ(rec[0].segment(), want);
	}

	// every page of every PT_LOAD segment of every object
	bool saw_libc = false, saw_ldso = false, saw_exe = false, saw_vdso = false;
	for (const auto &s : r.loads) {
		const std::string &obj = r.objs.at(s.obj);
		SCOPED_TRACE("object " + obj);
		saw_exe |= s.obj == 0;
		saw_vdso |= obj == "linux-vdso.so.1";
		saw_libc |= obj.find("libc.so") != std::string::npos;
		saw_ldso |= obj.find("ld-linux") != std::string::npos;
		const std::uintptr_t first = s.start & ~(kPage - 1);
		const std::uintptr_t end = (s.start + s.memsz + kPage - 1) & ~(kPage - 1);
		const auto recs = view::read_records(pid, first, end);
		ASSERT_EQ(recs.size(), (end - first) / kPage);
		for (const auto &rec : recs) {
			const KernelMap *km = kernel_map_at(kmaps, rec.vaddr);
			ASSERT_NE(km, nullptr) << std::hex << rec.vaddr;
			const std::string want =
				expected_label(*km, exe, obj, s.obj, s.flags);
			EXPECT_EQ(rec.segment(), want)
				<< std::hex << "page 0x" << rec.vaddr << " of segment 0x"
				<< s.start << " flags " << s.flags << " in " << km->path;
			EXPECT_EQ(label_of(maps, rec.vaddr), want)
				<< std::hex << "maps view at 0x" << rec.vaddr;
			EXPECT_TRUE(rec.has(COWSCOPE_F_VMA));
			// the file part of a library is its file; the exe's is the exe
			const bool file_part = rec.vaddr < s.start + s.filesz;
			if (file_part && s.obj != 0 && want != "vdso") {
				const std::string base = obj.substr(obj.rfind('/') + 1);
				EXPECT_NE(km->path.find(base), std::string::npos)
					<< km->path << " for " << obj;
			}
		}
	}
	EXPECT_TRUE(saw_exe && saw_vdso && saw_libc && saw_ldso) << out;
	view::untrack(pid);
}

// /proc/cowscope/version names the layout these tests were built for.
TEST(KmodVersion, MatchesTheHeader)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	const std::string text = read_file("/proc/cowscope/version");
	const view::ModuleInfo m = view::parse_module_info(text);
	EXPECT_EQ(m.abi, COWSCOPE_ABI_VERSION) << text;
	EXPECT_FALSE(m.version.empty()) << text;
	EXPECT_NE(text.find("mapcount "), std::string::npos) << text;
	std::printf("[   INFO   ] /proc/cowscope/version: %s", text.c_str());
}

// ---- a heap of 64 KiB folios (mTHP) -------------------------------------

// A sysfs control set for the test's duration and restored after (also
// on a failed assertion: the destructor runs).
class SysfsSetting {
public:
	SysfsSetting(std::string path, const std::string &value) : path_(std::move(path))
	{
		const std::string cur = read_file(path_);
		// "always inherit madvise [never]" -> never
		const auto l = cur.find('['), r = cur.find(']');
		saved_ = l != std::string::npos && r != std::string::npos ?
				 cur.substr(l + 1, r - l - 1) : cur;
		put(value);
	}
	~SysfsSetting()
	{
		try {
			put(saved_);
		} catch (const Error &) {
		}
	}
	SysfsSetting(const SysfsSetting &) = delete;
	SysfsSetting &operator=(const SysfsSetting &) = delete;

private:
	void put(const std::string &v)
	{
		UniqueFd fd = UniqueFd::open(path_, O_WRONLY);
		if (::write(fd.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size()))
			throw SysError("write " + v + " to " + path_);
	}
	std::string path_, saved_;
};

std::uint64_t kpageflags(std::uint64_t pfn)
{
	UniqueFd fd = UniqueFd::open("/proc/kpageflags", O_RDONLY);
	std::uint64_t v = 0;
	if (::pread(fd.get(), &v, sizeof(v), static_cast<off_t>(pfn * 8)) != sizeof(v))
		throw SysError("pread /proc/kpageflags");
	return v;
}

constexpr int KPF_COMPOUND_HEAD = 15, KPF_COMPOUND_TAIL = 16, KPF_THP = 22;
constexpr size_t k64K = 64 << 10;
constexpr unsigned kOrder64K = 4;

class KmodFolio : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (!view::module_loaded())
			GTEST_SKIP() << "cowscope.ko not loaded";
		const std::string ctl = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled";
		if (access(ctl.c_str(), W_OK) != 0)
			GTEST_SKIP() << "this kernel offers no 64 KiB folios (no " << ctl
				     << ": multi-size THP came in 6.8)";
		// Only 64 KiB: no 2 MiB THP may take the region instead.
		pmd_ = std::make_unique<SysfsSetting>(
			"/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled", "never");
		m64_ = std::make_unique<SysfsSetting>(ctl, "always");
		cpu_.emplace(); // reuses need the page's LRU batch on this CPU (OneCpu)
		map_ = Mapping::anonymous(kLen + k64K);
		base_ = (reinterpret_cast<std::uintptr_t>(map_.data()) + k64K - 1) & ~(k64K - 1);
		std::memset(reinterpret_cast<void *>(base_), 0x5a, kLen);
		view::track(getpid());
		// Whether the kernel gave a large folio is the kernel's word
		// (pagemap + kpageflags), never the module's: a module that
		// misreports the order must fail below, not skip here.
		const PagemapEntry e = Pagemap(getpid()).at(base_);
		ASSERT_TRUE(e.present());
		const std::uint64_t kf = kpageflags(e.pfn());
		if (!(kf >> KPF_THP & 1) || !(kf >> KPF_COMPOUND_HEAD & 1))
			GTEST_SKIP() << "the kernel gave no large folio here (kpageflags "
				     << std::hex << kf << "): memory too fragmented?";
	}
	void TearDown() override { cpu_.reset(); }

	std::uintptr_t va(size_t page) const { return base_ + page * kPage; }

	static constexpr size_t kLen = 1 << 20;	// 16 folios of 64 KiB
	std::unique_ptr<SysfsSetting> pmd_, m64_;
	Mapping map_;
	std::uintptr_t base_ = 0;
	std::optional<OneCpu> cpu_;
};

// Every page reports its 64 KiB folio, as kpageflags and pagemap see it:
// head/tail bits, THP bit, 16 contiguous PFNs from a 16-aligned head.
TEST_F(KmodFolio, EveryPageReportsItsFolio)
{
	const pid_t self = getpid();
	const auto recs = view::read_records(self, base_, base_ + kLen);
	ASSERT_EQ(recs.size(), kLen / kPage);
	Pagemap pm(self);
	const auto info = view::module_info();
	unsigned large = 0;
	for (size_t i = 0; i < recs.size(); i++) {
		SCOPED_TRACE("page " + std::to_string(i));
		const auto &r = recs[i];
		const PagemapEntry e = pm.at(r.vaddr);
		ASSERT_TRUE(r.present() && e.present());
		ASSERT_EQ(r.pfn(), e.pfn());
		const std::uint64_t kf = kpageflags(r.pfn());
		if (r.folio_order() != kOrder64K) {
			// the kernel may fall back to 4 KiB for some folio
			EXPECT_EQ(r.folio_order(), 0u);
			EXPECT_FALSE(kf >> KPF_THP & 1) << std::hex << kf;
			continue;
		}
		large++;
		const bool head = (i % 16) == 0;
		EXPECT_EQ(kf >> KPF_COMPOUND_HEAD & 1, head ? 1u : 0u) << std::hex << kf;
		EXPECT_EQ(kf >> KPF_COMPOUND_TAIL & 1, head ? 0u : 1u) << std::hex << kf;
		EXPECT_TRUE(kf >> KPF_THP & 1) << std::hex << kf;
		const std::uint64_t head_pfn = recs[i - i % 16].pfn();
		EXPECT_EQ(head_pfn % 16, 0u) << "folios are naturally aligned";
		EXPECT_EQ(r.pfn(), head_pfn + i % 16) << "contiguous PFNs in a folio";
		EXPECT_FALSE(r.has(COWSCOPE_F_HUGE)) << "PTE-mapped, not by a PMD";
		EXPECT_EQ(r.rec.mapcount, kpagecount(r.pfn()));
		EXPECT_EQ(r.map_average(), info.mapcount_average) << r.flags();
	}
	EXPECT_GE(large, 16u * 8) << "at least half the heap in 64 KiB folios";
	std::printf("[   INFO   ] %u of %zu pages in 64 KiB folios\n", large, recs.size());

	// The ptes view says 64K, the summary counts the pages by folio size.
	view::set_range(self, base_, base_ + kLen);
	const auto ptes = view::read_ptes(self);
	view::set_range(self, 0, ~0ULL);
	ASSERT_EQ(ptes.size(), recs.size());
	for (size_t i = 0; i < ptes.size(); i++)
		EXPECT_EQ(ptes[i].folio_order, recs[i].folio_order()) << i;
	const auto sum = view::read_summary(self);
	ASSERT_FALSE(sum.empty());
	EXPECT_EQ(sum.back().label, "total");
	EXPECT_GE(sum.back().folio[kOrder64K], large);
	std::uint64_t by_size = 0;
	for (auto n : sum.back().folio)
		by_size += n;
	EXPECT_EQ(by_size, sum.back().present) << "every present page has one folio size";
}

// After fork, the child writes one page of folio 0: the module's PFNs say
// which pages were copied and which stayed shared, exactly as pagemap
// does; the diff counts folio 0 as partly copied. Then the child exits
// and the parent writes another page of folio 0: reused in place or
// copied, the module agrees with pagemap (and the test says which).
TEST_F(KmodFolio, PartialChildWriteCopiesAndReusesMatchPagemap)
{
	const pid_t self = getpid();
	const auto before = view::read_records(self, base_, base_ + k64K);
	ASSERT_EQ(before.size(), 16u);
	int to_child[2], to_parent[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(to_parent), 0);
	UniqueFd c_r(to_child[0]), c_w(to_child[1]), p_r(to_parent[0]), p_w(to_parent[1]);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char cmd;
		xwrite(p_w.get(), "r", 1);
		xread(c_r.get(), &cmd, 1);
		reinterpret_cast<char *>(va(3))[0] = 1;	// one page of folio 0
		xwrite(p_w.get(), "w", 1);
		xread(c_r.get(), &cmd, 1);
		_exit(0);
	}
	char ack;
	ASSERT_EQ(read(p_r.get(), &ack, 1), 1);
	view::track(pid);
	ASSERT_EQ(write(c_w.get(), "w", 1), 1);
	ASSERT_EQ(read(p_r.get(), &ack, 1), 1);

	const auto par = view::read_records(self, base_, base_ + k64K);
	const auto chi = view::read_records(pid, base_, base_ + k64K);
	Pagemap ppm(self), cpm(pid);
	unsigned copied = 0;
	for (size_t i = 0; i < 16; i++) {
		SCOPED_TRACE("page " + std::to_string(i));
		EXPECT_EQ(par[i].pfn(), ppm.at(va(i)).pfn());
		EXPECT_EQ(chi[i].pfn(), cpm.at(va(i)).pfn());
		EXPECT_EQ(par[i].pfn(), before[i].pfn()) << "the parent keeps its folio";
		EXPECT_EQ(par[i].folio_order(), kOrder64K);
		EXPECT_EQ(par[i].rec.mapcount, kpagecount(par[i].pfn()));
		EXPECT_EQ(chi[i].rec.mapcount, kpagecount(chi[i].pfn()));
		if (chi[i].pfn() != par[i].pfn())
			copied++;
	}
	EXPECT_NE(chi[3].pfn(), par[3].pfn()) << "the written page was copied";
	EXPECT_TRUE(chi[3].writable());
	std::printf("[   INFO   ] child wrote 1 page of a 64 KiB folio: %u of 16 pages copied, "
		    "the copy is a %s folio\n",
		    copied, view::folio_size_name(chi[3].folio_order()).c_str());
	const Diff d = diff_pids(self, pid, base_, base_ + k64K);
	EXPECT_EQ(d.total.copied, copied);
	EXPECT_EQ(d.total.large_folios, 1u);
	if (copied < 16)
		EXPECT_EQ(d.total.large_folios_partly_copied, 1u);
	else
		EXPECT_EQ(d.total.large_folios_wholly_copied, 1u);

	ASSERT_EQ(write(c_w.get(), "q", 1), 1);
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;

	reinterpret_cast<char *>(va(5))[0] = 2;	// the parent writes page 5
	const auto after = view::read_records(self, base_, base_ + k64K);
	Pagemap apm(self);
	for (size_t i = 0; i < 16; i++) {
		SCOPED_TRACE("page " + std::to_string(i));
		EXPECT_EQ(after[i].pfn(), apm.at(va(i)).pfn());
		EXPECT_EQ(after[i].rec.mapcount, kpagecount(after[i].pfn()));
	}
	EXPECT_TRUE(after[5].writable());
	std::printf("[   INFO   ] after the child exited the parent's write to a PTE-mapped "
		    "64 KiB folio was %s (page 5 now in a %s folio)\n",
		    after[5].pfn() == before[5].pfn() ? "reused in place" : "copied",
		    view::folio_size_name(after[5].folio_order()).c_str());
}

TEST(KmodTrack, BadInputsRefused)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	const char *bad[] = {"", "\n", "abc", " 1", "1 ", "1x", "0", "-0",
			     "+1", "1\n\n", "99999999999", "4194305", "--1",
			     "12345678901234567890123456789012345678901234567890"
			     "12345678901234567"};
	for (const char *b : bad) {
		UniqueFd fd = UniqueFd::open("/proc/cowscope/track", O_WRONLY);
		errno = 0;
		ssize_t n = write(fd.get(), b, std::strlen(b));
		if (!std::strlen(b)) {
			EXPECT_LE(n, 0);	// the VFS may not even call us
			continue;
		}
		EXPECT_LT(n, 0) << '"' << b << '"';
		EXPECT_EQ(errno, EINVAL) << '"' << b << '"';
	}
}

} // namespace

namespace {

// Only CAP_SYS_ADMIN may open the views: an unprivileged user (and root
// without CAP_SYS_ADMIN) is refused with EACCES or EPERM.
int child_open_errors(bool drop_uid)
{
	if (drop_uid) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			return 10;
	} else {
		// root without any capability
		struct {
			std::uint32_t version;
			int pid;
		} hdr = {0x20080522, 0};	// _LINUX_CAPABILITY_VERSION_3
		std::uint32_t data[6] = {};
		if (syscall(SYS_capset, &hdr, data) != 0)
			return 11;
	}
	const std::string views[] = {
		"/proc/cowscope/track", "/proc/cowscope/1/maps",
		"/proc/cowscope/1/ptes", "/proc/cowscope/1/pagemap",
		"/proc/cowscope/1/summary", "/proc/cowscope/1/range",
	};
	for (const auto &v : views) {
		int fd = open(v.c_str(), O_RDONLY);
		if (fd >= 0)
			return 20;
		if (errno != EACCES && errno != EPERM)
			return 21;
		fd = open(v.c_str(), O_WRONLY);
		if (fd >= 0 || (errno != EACCES && errno != EPERM))
			return 22;
	}
	return 0;
}

void expect_refused(bool drop_uid)
{
	view::track(1);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(child_open_errors(drop_uid));
	int st = 0;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
		<< "child status " << st;
}

} // namespace

TEST(KmodSecurity, UnprivilegedUserRefused)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	expect_refused(true);
}

TEST(KmodSecurity, RootWithoutCapSysAdminRefused)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	expect_refused(false);
}
