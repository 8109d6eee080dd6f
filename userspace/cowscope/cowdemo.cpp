// cowdemo: the guided tour of fork() and copy-on-write (`make demo`).
//
//   cowdemo [--heap SIZE] [--steps fork,layout,cow] [--no-module] [--json]
//
// 1 fork: fork's two returns, getppid, and an orphan's adoption (by init,
//   then by a subreaper).
// 2 layout: this process's memory layout as the module sees it.
// 3-4 cow: a heap buffer right after fork (shared PFNs, W clear), after the
//   child writes 25% of it (copied), after the parent writes the same pages
//   (reused in place) - with `cowscope diff` tables and the heap strip.
// Run under `cowtrace -- cowdemo --steps cow` the same writes show up as
// per-process COW copies and reuses (step 5).
//
// Parent and child synchronise through pipes; nothing sleeps. Without the
// module (--no-module, or /proc/cowscope missing) steps 3-4 fall back to
// /proc/PID/pagemap's PFNs (root) and step 2 is skipped.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cowscope/base/cli.hpp"
#include "cowscope/view/diff.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/base/process.hpp"
#include "cowscope/base/units.hpp"
#include "cowscope/view/view.hpp"
#include "cowscope/base/version.hpp"

using namespace cowscope;

namespace {

constexpr std::uint64_t P = COWSCOPE_PAGE_SIZE;

// Something in each segment, to point at in step 2.
int g_data = 42;            // initialised: .data
char g_bss[65536];          // zero: .bss (its first bytes may share data's last page)

bool g_module = false;      // read the module's views (else /proc/PID/pagemap)
nlohmann::json g_json;

void say(const std::string &s) { std::cout << s << std::flush; }

void heading(const std::string &title)
{
	say(fmt::format("\n==== {} {}\n", title, std::string(title.size() < 66 ? 66 - title.size() : 2, '=')));
}

void notice(const std::string &text)
{
	// Wrap at ~76 columns behind "  > ".
	std::istringstream in(text);
	std::string word, line;
	while (in >> word) {
		if (!line.empty() && line.size() + word.size() + 1 > 74) {
			say("  > " + line + "\n");
			line.clear();
		}
		line += (line.empty() ? "" : " ") + word;
	}
	if (!line.empty())
		say("  > " + line + "\n");
}

// ---- pipes: cowscope::Pipe (process.hpp), both ends closed on destruction

// Reap a child (or an orphan adopted as subreaper): its exit status.
int wait_exit(Child &kid)
{
	int st = kid.wait();
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string comm_of(pid_t pid)
{
	try {
		std::string s = read_file(fmt::format("/proc/{}/comm", pid));
		while (!s.empty() && s.back() == '\n')
			s.pop_back();
		return s;
	} catch (const std::exception &) {
		return "?";
	}
}

// ---- step 1: fork's two returns, orphans --------------------------------

void orphan(bool subreaper)
{
	const pid_t me = ::getpid();
	if (subreaper && ::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		throw SysError("prctl(PR_SET_CHILD_SUBREAPER)");
	Pipe report;
	// SIGUSR1 blocked before the forks, so the grandchild inherits the mask
	// and can sigwait for its parent-death signal.
	sigset_t usr1, old;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	pid_t mid = ::fork();
	if (mid < 0)
		throw SysError("fork");
	if (mid == 0) {
		Pipe ready;
		const pid_t middle = ::getpid();
		pid_t g = ::fork();
		if (g == 0) {
			// Grandchild: ask for SIGUSR1 when the parent dies. The kernel
			// sends it after re-parenting, so getppid() is then the new one.
			::prctl(PR_SET_PDEATHSIG, SIGUSR1);
			pid_t before = ::getppid();
			ready.put<char>('r');
			if (before == middle) {
				int sig;
				sigwait(&usr1, &sig);
			}
			pid_t vals[3] = {::getpid(), before, ::getppid()};
			report.send(vals, sizeof(vals));
			_exit(0);
		}
		ready.get<char>();  // the grandchild is waiting: now die
		_exit(0);
	}
	Child middle(mid);
	wait_exit(middle);
	pid_t vals[3];
	if (!report.recv(vals, sizeof(vals)))
		throw Error("orphan demo: no report from the grandchild");
	sigprocmask(SIG_SETMASK, &old, nullptr);
	say(fmt::format("  child {} forks grandchild {}, then exits.\n", mid, vals[0]));
	say(fmt::format("  grandchild: getppid() = {} before, {} after its parent exited ({})\n",
			vals[1], vals[2], comm_of(vals[2])));
	if (subreaper) {
		Child orphan(vals[0]);
		wait_exit(orphan);  // we adopted it: we must reap it
		::prctl(PR_SET_CHILD_SUBREAPER, 0);
		say(fmt::format("  with PR_SET_CHILD_SUBREAPER set here, the orphan went to {} = cowdemo "
				"itself,\n  which then reaped it with waitpid().\n", me));
	}
	g_json[subreaper ? "orphan_subreaper" : "orphan"] = {
		{"grandchild", vals[0]}, {"ppid_before", vals[1]}, {"ppid_after", vals[2]}};
}

void step_fork()
{
	heading("1. fork() returns twice");
	const pid_t parent = ::getpid();
	Pipe p;
	pid_t pid = ::fork();
	if (pid < 0)
		throw SysError("fork");
	if (pid == 0) {
		pid_t v[3] = {0, ::getpid(), ::getppid()};
		p.send(v, sizeof(v));
		_exit(0);
	}
	Child kid(pid);
	pid_t v[3];
	p.recv(v, sizeof(v));
	wait_exit(kid);
	say(fmt::format("  in the parent: fork() returned {:<6}  (getpid() = {})\n", pid, parent));
	say(fmt::format("  in the child:  fork() returned {:<6}  (getpid() = {}, getppid() = {})\n",
			v[0], v[1], v[2]));
	notice("One call, two returns: the parent gets the child's pid, the child gets 0. "
	       "That return value is the only way the two copies of the program tell "
	       "themselves apart. getppid() in the child is the parent's pid.");
	g_json["fork"] = {{"parent", parent}, {"child", pid}, {"child_getppid", v[2]}};

	say("\n  Orphans: what happens to a child whose parent exits first?\n");
	orphan(false);
	notice("The orphan is re-parented (adopted) by the nearest subreaper, else by "
	       "init (pid 1 in its pid namespace), which waits for it so that it never "
	       "stays a zombie.");
	orphan(true);
}

// ---- step 2: memory layout ----------------------------------------------

void step_layout(const char *heap_buf, const char *mmap_buf)
{
	heading("2. The memory layout, from the module (/proc/cowscope/PID/maps)");
	if (!g_module) {
		say(view::module_loaded() ? std::string("  skipped: --no-module\n")
					  : fmt::format("  skipped: the cowscope module is not loaded here. {}.\n",
							view::module_hint()));
		return;
	}
	const pid_t me = ::getpid();
	ensure_tracked(me);
	auto maps = view::read_maps(me);
	say(fmt::format("  {:<10} {:>14} {:>14} {:>10}  {:<5} {:>7}\n", "segment", "start", "end",
			"size", "perms", "present"));
	nlohmann::json arr = nlohmann::json::array();
	for (const auto &m : maps) {
		say(fmt::format("  {:<10} {:>#14x} {:>#14x} {:>10}  {:<5} {:>7}\n", m.label, m.start,
				m.end, format_size(m.end - m.start), m.perms, m.present));
		arr.push_back({{"label", m.label}, {"start", m.start}, {"end", m.end},
			       {"perms", m.perms}, {"present", m.present}});
	}
	g_json["layout"] = arr;
	int local = 0;
	const struct {
		const char *what;
		const void *addr;
	} things[] = {
		{"main() (code)", reinterpret_cast<const void *>(&step_layout)},
		{"g_data = 42 (initialised global)", &g_data},
		{"g_bss[] (zero global), its end", g_bss + sizeof(g_bss) - 1},
		{"malloc'd demo buffer", heap_buf},
		{"mmap'd anonymous buffer", mmap_buf},
		{"a local variable", &local},
	};
	say("\n  where this program's own things live:\n");
	for (const auto &t : things) {
		auto a = reinterpret_cast<std::uint64_t>(t.addr);
		std::string label = "?";
		for (const auto &m : maps)
			if (m.start <= a && a < m.end)
				label = m.label;
		say(fmt::format("    {:<34} {:>#14x}  -> {}\n", t.what, a, label));
	}
	notice("text is the code (r-x), data the initialised globals, bss the zeroed ones, "
	       "heap grows with brk (malloc), mmap regions hold big allocations and "
	       "libraries, the stack grows down from the top. 'present' counts pages "
	       "that have a physical page right now: memory is only given on first touch.");
}

// ---- steps 3-4: copy-on-write --------------------------------------------

struct Page {
	std::uint64_t pfn = 0;
	std::uint32_t flags = 0;  // COWSCOPE_F_* (module only)
	std::uint32_t ref = 0, map = 0;
	unsigned folio_order = 0;  // log2 pages of its folio (module only: 0 = 4 KiB)
	bool present = false;
};

// Pages of [start, start + n*P) in pid: from the module, else pagemap.
std::vector<Page> read_pages(pid_t pid, std::uint64_t start, std::uint64_t n)
{
	std::vector<Page> out(n);
	if (g_module) {
		ensure_tracked(pid);
		auto recs = view::read_records(pid, start, start + n * P);
		for (size_t i = 0; i < recs.size() && i < n; i++)
			out[i] = {recs[i].rec.pfn, recs[i].rec.flags, recs[i].rec.refcount,
				  recs[i].rec.mapcount, recs[i].folio_order(), recs[i].present()};
		return out;
	}
	std::vector<PagemapEntry> e(n);
	Pagemap(pid).read(start, n, e.data());
	for (size_t i = 0; i < n; i++) {
		out[i].present = e[i].present();
		out[i].pfn = e[i].pfn();
		if (out[i].pfn)
			out[i].map = static_cast<std::uint32_t>(kpagecount(out[i].pfn));
	}
	return out;
}

struct Counts {
	std::uint64_t shared = 0, copied = 0, wp_both = 0, two_maps = 0;
};

Counts compare(const std::vector<Page> &a, const std::vector<Page> &b)
{
	Counts c;
	for (size_t i = 0; i < a.size(); i++) {
		if (!a[i].present || !b[i].present)
			continue;
		if (a[i].pfn == b[i].pfn) {
			c.shared++;
			if (!(a[i].flags & COWSCOPE_F_WRITE) && !(b[i].flags & COWSCOPE_F_WRITE))
				c.wp_both++;
			if (a[i].map == 2)
				c.two_maps++;
		} else {
			c.copied++;
		}
	}
	return c;
}

std::string wbit(const Page &p)
{
	if (!g_module)
		return "?";
	return p.flags & COWSCOPE_F_WRITE ? "W" : "-";
}

void sample_table(const std::vector<size_t> &idx, const std::vector<Page> &par,
		  const std::vector<Page> &chi, std::uint64_t base)
{
	say(fmt::format("    {:>5} {:>14}   {:>9} {:>1} {:>3} {:>3}   {:>9} {:>1} {:>3} {:>3}\n",
			"page", "vaddr", "parent pfn", "W", "ref", "map", "child pfn", "W", "ref",
			"map"));
	for (size_t i : idx) {
		const Page &p = par[i], &c = chi[i];
		say(fmt::format("    {:>5} {:>#14x}   {:>10x} {:>1} {:>3} {:>3}   {:>9x} {:>1} {:>3} {:>3}{}\n",
				i, base + i * P, p.pfn, wbit(p), g_module ? std::to_string(p.ref) : "?",
				p.map, c.pfn, wbit(c), g_module ? std::to_string(c.ref) : "?", c.map,
				p.pfn == c.pfn ? "   same page" : "   different pages"));
	}
}

void show_diff(pid_t parent, pid_t child, std::uint64_t lo, std::uint64_t hi, const char *key)
{
	if (!g_module)
		return;
	Diff d = diff_pids(parent, child, lo, hi);
	say(fmt::format("\n  $ cowscope diff {} {} --range {:#x}-{:#x}\n", parent, child, lo, hi));
	std::istringstream in(format_diff(d, 64));
	for (std::string line; std::getline(in, line);)
		say("  " + line + "\n");
	g_json[key] = diff_json(d);
}

// The COW step's buffer and processes, which each of its stages reads.
struct CowStep {
	char *buf = nullptr;
	std::uint64_t n = 0, base = 0;
	pid_t parent = 0, child = 0;
	std::vector<size_t> written; // the pages the child writes
	size_t sample_copied = 0, sample_shared = 0;

	std::vector<Page> pages(pid_t pid) const { return read_pages(pid, base, n); }
	void samples(const std::vector<Page> &par, const std::vector<Page> &chi) const
	{
		sample_table({sample_copied, sample_shared}, par, chi, base);
	}
	void diff(const char *key) const { show_diff(parent, child, base, base + n * P, key); }
};

// Right after fork: what the two processes share.
Counts report_after_fork(const CowStep &s, const std::vector<Page> &par0, const std::vector<Page> &chi0)
{
	say(fmt::format("  parent {} forked child {}; demo buffer {} = {} pages at {:#x} (heap)\n",
			s.parent, s.child, format_size(s.n * P), s.n, s.base));
	say(g_module ? "  two sample pages, from /proc/cowscope/PID/pagemap:\n"
		     : "  two sample pages, from /proc/PID/pagemap + /proc/kpagecount (no module: "
		       "no W bit, no refcount):\n");
	s.samples(par0, chi0);
	Counts c0 = compare(par0, chi0);
	say(fmt::format("  whole buffer: {} of {} pages share one physical page (same PFN); "
			"write-protected in both: {}; mapcount 2: {}\n",
			c0.shared, s.n, g_module ? std::to_string(c0.wp_both) : "?", c0.two_maps));
	notice("fork() did not copy the heap: it copied the page tables and pointed both "
	       "processes at the same physical pages (same PFN, mapcount 2), clearing the "
	       "write bit W in both so that the first write traps. refcount can read one "
	       "more than mapcount while the kernel holds a page in a per-CPU batch.");
	s.diff("after_fork");
	return c0;
}

// After the child wrote its pages: which it copied.
Counts report_child_write(const CowStep &s, const std::vector<Page> &chi0, const std::vector<Page> &par1,
			  const std::vector<Page> &chi1)
{
	s.samples(par1, chi1);
	Counts c1 = compare(par1, chi1);
	std::uint64_t child_moved = 0;
	for (size_t i : s.written)
		child_moved += chi1[i].pfn != chi0[i].pfn;
	say(fmt::format("  child wrote {} pages: {} now have a new PFN in the child; buffer: "
			"{} copied, {} still shared\n",
			s.written.size(), child_moved, c1.copied, c1.shared));
	notice("Each first write by the child took a page fault: the kernel saw a "
	       "write-protected page still mapped twice, so it gave the child a fresh copy "
	       "(new PFN, W set). The parent keeps the original, still write-protected but "
	       "now mapped once (map 1). The pages nobody wrote are still shared.");
	s.diff("after_child_write");
	return c1;
}

// The parent's writes to the pages the child copied: reused in place or
// copied again (and of those, how many sat in large folios, by order).
struct Rewrite {
	std::uint64_t reused = 0, reused_w = 0, recopied = 0, recopied_large = 0;
	std::map<unsigned, std::uint64_t> recopied_orders;
	bool shared_copied = false; // the sample page still shared with the child
};

// A page the parent did not reuse was copied again. Where it sat in a
// large folio (> 4 KiB, the module's folio size) that is the kernel's
// rule, not a contradiction: 6.12 never reuses a page of a large folio
// on a write fault, even when no one else maps it; 7.3 does once no
// other process maps any page of the folio.
Rewrite count_rewrite(const CowStep &s, const std::vector<Page> &par1, const std::vector<Page> &par2)
{
	Rewrite r;
	for (size_t i : s.written)
		if (par2[i].pfn == par1[i].pfn) {
			r.reused++;
			r.reused_w += (par2[i].flags & COWSCOPE_F_WRITE) != 0;
		} else {
			r.recopied++;
			if (par1[i].folio_order > 0) {
				r.recopied_large++;
				r.recopied_orders[par1[i].folio_order]++;
			}
		}
	r.shared_copied = par2[s.sample_shared].pfn != par1[s.sample_shared].pfn;
	return r;
}

void report_parent_write(const CowStep &s, const Rewrite &r)
{
	say(fmt::format("  parent wrote {} pages the child had copied: {} kept their PFN (reused in "
			"place){}{}; page {} (still shared) {}\n",
			s.written.size(), r.reused,
			g_module ? fmt::format(", {} now W", r.reused_w) : std::string(),
			r.recopied ? fmt::format("; {} were copied again{}", r.recopied,
						 r.recopied_large == r.recopied ? " (all in large folios)"
						 : r.recopied_large
							 ? fmt::format(" ({} in large folios)", r.recopied_large)
							 : "")
				   : std::string(),
			s.sample_shared, r.shared_copied ? "was copied: new PFN in the parent" : "kept its PFN"));
	notice("Reuse: when the parent's write fault finds the page mapped only once (the "
	       "child already has its copy), the kernel just sets W again: no copy. A page "
	       "still shared with the child is copied, whichever process writes first.");
	if (r.recopied_large) {
		std::string sizes;
		for (auto [order, count] : r.recopied_orders)
			sizes += fmt::format("{}{} in {} folios", sizes.empty() ? "" : ", ", count,
					     format_size(P << order));
		notice(fmt::format(
			"Why {} of them were copied although the child had its own copy: they sat in "
			"large folios in the parent ({}; the module's folio size), not in 4 KiB pages. "
			"Some kernels (6.12 among the lab's) never reuse a page of a large folio on a "
			"write fault, even when no one else maps it: they copy it into a 4 KiB page. "
			"Kernels that reuse large folios (7.3) keep the PFN once no other process maps "
			"any page of the folio. `cowscope ptes PID` shows "
			"each page's folio size; docs/lab.md, \"Large folios across fork\", has the "
			"experiment page by page.",
			r.recopied_large, sizes));
	}
	if (r.recopied > r.recopied_large)
		notice(fmt::format(
			"{} of them sat in 4 KiB pages and were copied all the same: the kernel reuses "
			"a page only when it can tell that no one else holds it, and a passing extra "
			"reference (the page still in another CPU's LRU batch, or in the swap cache) "
			"makes it copy to be safe.",
			r.recopied - r.recopied_large));
	s.diff("after_parent_write");
}

// The demo buffer (heap_bytes, every page present), the pages the child
// will write and the two sample pages.
CowStep prepare_cow_step(std::uint64_t heap_bytes)
{
	// A malloc'd buffer on the brk heap (not a separate mmap), touched page by
	// page so that every page is present before the fork.
	::mallopt(M_MMAP_THRESHOLD, 1 << 30);
	CowStep s;
	s.n = heap_bytes / P;
	const std::uint64_t n = s.n;
	char *buf = static_cast<char *>(std::aligned_alloc(P, n * P));
	if (!buf)
		throw Error("cannot allocate the demo buffer");
	s.buf = buf;
	::madvise(buf, n * P, MADV_NOHUGEPAGE);  // 4 KiB pages, one record each
	for (std::uint64_t i = 0; i < n; i++)
		buf[i * P] = static_cast<char>(i | 1);
	s.base = reinterpret_cast<std::uint64_t>(buf);
	s.parent = ::getpid();

	// The child writes every 4th group of pages (25%), in groups as wide as
	// one character of the heap strip so the pattern shows.
	const std::uint64_t group = std::max<std::uint64_t>(1, n / 64);
	for (std::uint64_t i = 0; i < n; i++)
		if ((i / group) % 4 == 0)
			s.written.push_back(i);
	s.sample_copied = 0;
	s.sample_shared = std::min<size_t>(group, n - 1);
	return s;
}

void step_cow(std::uint64_t heap_bytes)
{
	heading("3. Right after fork: the heap is shared");
	CowStep s = prepare_cow_step(heap_bytes);
	char *buf = s.buf;
	const std::uint64_t n = s.n;

	Pipe to_child, to_parent;
	pid_t child = ::fork();
	if (child < 0)
		throw SysError("fork");
	if (child == 0) {
		try {
			to_parent.put<char>('r');
			to_child.get<char>();  // 'w': write 25%
			for (size_t i : s.written)
				buf[i * P] = 'c';
			to_parent.put<char>('w');
			to_child.get<char>();  // 'q' (or EOF): done
		} catch (...) {
		}
		_exit(0);
	}
	Child kid(child);	// killed and reaped should the demo fail midway
	s.child = child;
	to_parent.get<char>();
	std::vector<Page> par0 = s.pages(s.parent), chi0 = s.pages(child);
	Counts c0 = report_after_fork(s, par0, chi0);

	heading("4. The child writes 25% of the heap: copy on write");
	to_child.put<char>('w');
	to_parent.get<char>();
	std::vector<Page> par1 = s.pages(s.parent), chi1 = s.pages(child);
	Counts c1 = report_child_write(s, chi0, par1, chi1);

	say("\n  Now the parent writes the same pages the child copied, and one page the\n"
	    "  child still shares:\n");
	for (size_t i : s.written)
		buf[i * P] = 'p';
	buf[s.sample_shared * P] = 'p';
	std::vector<Page> par2 = s.pages(s.parent), chi2 = s.pages(child);
	s.samples(par2, chi2);
	Rewrite r = count_rewrite(s, par1, par2);
	report_parent_write(s, r);

	g_json["cow"] = {{"parent", s.parent},
			 {"child", child},
			 {"heap_pages", n},
			 {"child_wrote", s.written.size()},
			 {"after_fork_shared", c0.shared},
			 {"after_child_write_copied", c1.copied},
			 {"after_child_write_shared", c1.shared},
			 {"parent_reused", r.reused},
			 {"parent_copied_again", r.recopied},
			 {"parent_copied_again_large_folio", r.recopied_large},
			 {"parent_copied_shared_page", r.shared_copied}};
	to_child.put<char>('q');
	wait_exit(kid);

	heading("5. What cowtrace should count for this step");
	say(fmt::format("  child {}:  about {} COW copies (its {} writes, plus a few stack/libc pages)\n",
			child, s.written.size(), s.written.size()));
	say(fmt::format("  parent {}: about {} reuses and 1 copy (page {}), plus a few of its own\n",
			s.parent, s.written.size(), s.sample_shared));
	say("  (count them with `sudo cowtrace -- cowdemo --steps cow --no-module`; make demo does so in a clone.)\n");
	std::free(buf);
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"cowdemo: a guided tour of fork() and copy-on-write"};
	app.set_version_flag("--version", version_line("cowdemo"));
	std::string heap_s = "16M", steps_s = "fork,layout,cow";
	bool no_module = false, json = false;
	app.add_option("--heap", heap_s, "size of the heap buffer (default 16M)");
	app.add_option("--steps", steps_s, "comma-separated: fork, layout, cow (default all)");
	app.add_flag("--no-module", no_module, "do not use /proc/cowscope even if present");
	app.add_flag("--json", json, "print the numbers as one 'cowdemo-json: {...}' line at the end");
	return cli::run_main("cowdemo", app, [&] {
		app.parse(argc, argv);
		std::uint64_t heap = parse_size(heap_s, "--heap");
		if (heap < 64 * P || heap > (1ull << 34))
			cli::usage_error("--heap", "a size from 256K to 16G", heap_s);
		std::set<std::string> steps;
		std::stringstream ss(steps_s);
		for (std::string s; std::getline(ss, s, ',');) {
			if (s != "fork" && s != "layout" && s != "cow")
				cli::usage_error("--steps", "fork, layout or cow", s);
			steps.insert(s);
		}
		g_module = !no_module && view::module_loaded();
		say(fmt::format("cowdemo: pid {}, {}\n", ::getpid(),
				g_module ? "reading the cowscope module (/proc/cowscope)"
					 : "module not used: PFNs from /proc/PID/pagemap"));
		if (steps.count("fork"))
			step_fork();
		// Something to show in the mmap segment.
		Mapping anon = Mapping::anonymous(16 * P);
		std::memset(anon.data(), 1, anon.size());
		if (steps.count("layout")) {
			::mallopt(M_MMAP_THRESHOLD, 1 << 30);
			char *probe = static_cast<char *>(std::malloc(64));
			step_layout(probe, anon.data());
			std::free(probe);
		}
		if (steps.count("cow"))
			step_cow(heap);
		if (json)
			say("cowdemo-json: " + g_json.dump() + "\n");
		return 0;
	});
}
