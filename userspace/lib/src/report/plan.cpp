// report/: the methods' names and how each counts (Plan's text). The
// programs each method attaches are trace/methods.cpp's table, in the same
// order.
#include <iterator>

#include <fmt/format.h>

#include "cowscope/report/model.hpp"

namespace cowtrace {

const char *method_name(Method m)
{
	switch (m) {
	case Method::automatic: return "auto";
	case Method::fentry: return "fentry";
	case Method::kprobe: return "kprobe";
	case Method::vmevent: return "vmevent";
	case Method::tracepoint: return "tracepoint";
	}
	return "?";
}

std::optional<Method> parse_method(const std::string &t)
{
	for (Method m : {Method::automatic, Method::fentry, Method::kprobe, Method::vmevent, Method::tracepoint})
		if (t == method_name(m))
			return m;
	return std::nullopt;
}

namespace {

// How each method counts copies and reuses, with and without the hooks.
struct MethodText {
	Method method;
	// fentry/kprobe: the do_wp_page window ("fentry", "kprobe"), else null
	const char *window = nullptr;
	const char *huge_name = nullptr;	// "fexit/do_huge_pmd_wp_page"
	const char *copies_by = nullptr, *copies_by_hooked = nullptr;
	const char *reuses_by = nullptr, *reuses_by_hooked = nullptr;
	bool reuses_derived = false;	// reuses = wp_faults - cow_copies (none counted)
	// zero fills: always told (fentry/kprobe), or with Plan::zero_hook
	const char *zero_fills_by = nullptr;
	bool zero_fills_need_hook = false;
	// methods without a window: the one line of describe(), {tp} being
	// "tp_btf" or "tracepoint"
	const char *summary = nullptr;
};

// fentry and kprobe: the same do_wp_page window, through their own hooks.
constexpr MethodText windowed(Method m, const char *window, const char *huge_name)
{
	return {
		.method = m,
		.window = window,
		.huge_name = huge_name,
		.copies_by = "mm_page_alloc in do_wp_page",
		.copies_by_hooked = "wp_page_copy",
		.reuses_by = "do_wp_page returned without a copy",
		.reuses_by_hooked = "wp_page_reuse",
		.zero_fills_by = "do_wp_page's pte maps the zero page",
	};
}

// the rss_stat rule of vmevent and tracepoint
constexpr const char *kZeroByRss = "a copy whose fault added an anonymous page to the rss and took no file page "
				   "(tp_btf/rss_stat)";

const MethodText kMethodText[] = {
	windowed(Method::fentry, "fentry", "fexit/do_huge_pmd_wp_page"),
	windowed(Method::kprobe, "kprobe", "kretprobe/do_huge_pmd_wp_page"),
	{
		.method = Method::vmevent,
		.copies_by = "vm events: pages allocated and no PGREUSE in the fault",
		.reuses_by = "vm events: PGREUSE (or nothing allocated) in the fault",
		.zero_fills_by = kZeroByRss,
		.zero_fills_need_hook = true,
		.summary = "vmevent: tp_btf/page_fault_user (P|W|U), tp_btf/page_fault_kernel, tp_btf/sched_switch; "
			   "per-CPU PGREUSE/PGALLOC vm events over the faulting thread's on-CPU time decide "
			   "reuse/copy",
	},
	{
		.method = Method::tracepoint,
		.copies_by = "mm_page_alloc in the fault",
		.reuses_by = "derived: wp_faults - cow_copies - zero_fills",
		.reuses_derived = true,
		.zero_fills_by = kZeroByRss,
		.zero_fills_need_hook = true,
		.summary = "tracepoint: {tp}/page_fault_user (P|W|U) + {tp}/mm_page_alloc (order 0, movable) in "
			   "the same fault; reuses = wp_faults - cow_copies - zero_fills",
	},
};

const MethodText &text_of(Method m)
{
	for (const MethodText &t : kMethodText)
		if (t.method == m)
			return t;
	return kMethodText[std::size(kMethodText) - 1];	// the tracepoint method
}

// describe()'s part on zero fills
std::string zero_text(const Plan &p)
{
	if (!p.zero_fills_by())
		return "; zero-page fills not told apart (counted as copies: rss_stat before 6.2 misses them)";
	return p.method == Method::vmevent || p.method == Method::tracepoint ? "; tp_btf/rss_stat tells zero-page fills"
									   : "; zero-page fills by the pte";
}

} // namespace

std::string Plan::describe() const
{
	const MethodText &m = text_of(method);
	const char *tp = tp_btf ? "tp_btf" : "tracepoint";
	if (!m.window)
		return fmt::format(fmt::runtime(m.summary), fmt::arg("tp", tp)) + zero_text(*this);
	std::string s = fmt::format("{}: {}/do_wp_page window", method_name(method), m.window);
	s += copy_hook ? fmt::format(", {}/wp_page_copy", m.window)
		       : fmt::format(", wp_page_copy not attachable: {}/mm_page_alloc in window", tp);
	s += huge_hook ? fmt::format(", {}", m.huge_name) : ", no huge-PMD hook";
	s += reuse_hook ? fmt::format(", {}/wp_page_reuse", m.window) : ", reuses: do_wp_page exits without a copy";
	if (latency)
		s += ", fexit latency histogram";
	return s + zero_text(*this);
}

const char *Plan::zero_fills_by() const
{
	const MethodText &m = text_of(method);
	return m.zero_fills_need_hook && !zero_hook ? nullptr : m.zero_fills_by;
}

const char *Plan::copies_by() const
{
	const MethodText &m = text_of(method);
	return copy_hook && m.copies_by_hooked ? m.copies_by_hooked : m.copies_by;
}

const char *Plan::reuses_by() const
{
	const MethodText &m = text_of(method);
	return reuse_hook && m.reuses_by_hooked ? m.reuses_by_hooked : m.reuses_by;
}

bool Plan::reuses_derived() const
{
	return text_of(method).reuses_derived;
}

} // namespace cowtrace
