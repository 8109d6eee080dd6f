// cowtrace_core: the attach methods: what each loads, how the kernel is
// probed for them, and the plans to try in order (methods.hpp).
#include "methods.hpp"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"

using cowscope::Error;

namespace cowtrace {

namespace {

bool g_verbose = false;

int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	// failures surface as our own errors; -v shows libbpf's warnings
	if (!g_verbose || level == LIBBPF_DEBUG)
		return 0;
	return std::vfprintf(stderr, fmt, ap);
}


constexpr const char *kBtfPath = "/sys/kernel/btf/vmlinux";

bool path_exists(const char *p) { return access(p, F_OK) == 0; }

// libbpf-tools' fentry_can_attach(): load a two-instruction tracing program
// for the function's BTF id and attach it. Works only where the kernel has
// BPF trampolines and the function is a real (not inlined) one.
bool fentry_can_attach(const struct btf *vmlinux, const char *func)
{
	int id = btf__find_by_name_kind(vmlinux, func, BTF_KIND_FUNC);
	if (id <= 0)
		return false;
	struct bpf_insn insns[2] = {};
	insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
	insns[0].dst_reg = BPF_REG_0;
	insns[1].code = BPF_JMP | BPF_EXIT;
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY,
		    .attach_btf_id = static_cast<__u32>(id));
	int prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "cowtrace_probe", "GPL", insns, 2, &opts);
	if (prog < 0)
		return false;
	int link = bpf_raw_tracepoint_open(nullptr, prog);
	if (link >= 0)
		close(link);
	close(prog);
	return link >= 0;
}

// Symbols kprobes could attach to: an exact name in /proc/kallsyms (an
// inlined function has none; a ".isra"/".constprop" clone is another name).
std::set<std::string> kallsyms_of(std::initializer_list<const char *> wanted)
{
	std::set<std::string> want(wanted.begin(), wanted.end()), found;
	std::ifstream in("/proc/kallsyms");
	std::string addr, type, name;
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		if (!(ls >> addr >> type >> name))
			continue;
		if (want.count(name))
			found.insert(name);
	}
	return found;
}

bool kprobes_supported()
{
	return path_exists("/sys/bus/event_source/devices/kprobe/type") ||
	       path_exists("/sys/kernel/tracing/kprobe_events") ||
	       path_exists("/sys/kernel/debug/tracing/kprobe_events");
}

// &to - &from for two per-CPU variables, from their offsets in the BTF
// datasec .data..percpu.
std::optional<std::int64_t> percpu_distance(const struct btf *btf, const char *from, const char *to)
{
	int sec = btf__find_by_name_kind(btf, ".data..percpu", BTF_KIND_DATASEC);
	int a = btf__find_by_name_kind(btf, from, BTF_KIND_VAR), b = btf__find_by_name_kind(btf, to, BTF_KIND_VAR);
	if (sec <= 0 || a <= 0 || b <= 0)
		return std::nullopt;
	const struct btf_type *t = btf__type_by_id(btf, sec);
	const struct btf_var_secinfo *v = btf_var_secinfos(t);
	std::optional<std::int64_t> oa, ob;
	for (int i = 0; i < btf_vlen(t); i++, v++) {
		if (static_cast<int>(v->type) == a)
			oa = v->offset;
		if (static_cast<int>(v->type) == b)
			ob = v->offset;
	}
	if (!oa || !ob)
		return std::nullopt;
	return *ob - *oa;
}

// Does tracepoint rss_stat see every change of a process's rss counters?
// Since 6.2 (rss counters as percpu_counter) it is called by every
// add/inc/dec_mm_counter and takes (mm, member); before, a fault's changes
// went to the task's cache untraced, and it took (mm, member, count).
bool rss_stat_traces_every_change(const struct btf *btf)
{
	int id = btf__find_by_name_kind(btf, "btf_trace_rss_stat", BTF_KIND_TYPEDEF);
	if (id <= 0)
		return false;
	const struct btf_type *t = btf__type_by_id(btf, btf__type_by_id(btf, id)->type);	// the pointer
	if (!t || !btf_is_ptr(t))
		return false;
	t = btf__type_by_id(btf, t->type);
	// void *data, struct mm_struct *mm, int member
	return t && btf_is_func_proto(t) && btf_vlen(t) == 3;
}

// ---- the methods, in one table ----------------------------------------------
//
// What each method attaches. The programs loaded (select_programs) and the
// probing (probe_plans) are derived from it; how each counts copies and
// reuses (Plan::describe(), copies_by(), reuses_by()) is report/plan.cpp's
// table. Rows are in the order of preference (probe_plans then ranks
// vmevent before fentry/kprobe plans without a wp_page_copy hook).

using Progs = decltype(cowtrace_bpf::progs);
using ProgRef = bpf_program *Progs::*;

// A tracepoint program in its two flavours: BTF-typed (tp_btf) or classic.
struct Tracepoint {
	ProgRef btf = nullptr, classic = nullptr;
};
constexpr Tracepoint kFaultTp{.btf = &Progs::tp_btf_fault, .classic = &Progs::tp_fault};
constexpr Tracepoint kAllocTp{.btf = &Progs::tp_btf_alloc, .classic = &Progs::tp_alloc};

// What the kernel offers, for the probes.
struct ProbeEnv {
	const struct btf *vmlinux;
	bool tp_btf;
	std::int64_t *vme_delta;	// vmevent's probe stores the per-CPU distance
};

enum class AllocWindow {
	never,			// copies counted otherwise
	without_copy_hook,	// mm_page_alloc inside do_wp_page when wp_page_copy cannot be hooked
	always,			// mm_page_alloc inside the fault is the copy
};

struct MethodSpec {
	Method method;
	// programs always attached (null-terminated)
	std::array<ProgRef, 4> always{};
	std::optional<Tracepoint> fault_tp;	// page_fault_user as a tracepoint
	AllocWindow alloc = AllocWindow::never;	// mm_page_alloc as a tracepoint
	// attached when the plan has the hook
	ProgRef copy_hook = nullptr, reuse_hook = nullptr, huge_hook = nullptr;
	// tells zero-page fills from copies (Plan::zero_hook)
	ProgRef zero_hook = nullptr;
	// Does the kernel offer it? The plan if so.
	std::optional<Plan> (*probe)(const ProbeEnv &) = nullptr;
};

std::optional<Plan> probe_fentry(const ProbeEnv &env)
{
	bool ok = fentry_can_attach(env.vmlinux, "do_wp_page");
	vlog(fmt::format("probe: fentry do_wp_page: {}", ok ? "yes" : "no"));
	if (!ok)
		return std::nullopt;
	Plan p;
	p.method = Method::fentry;
	p.tp_btf = env.tp_btf;
	p.copy_hook = fentry_can_attach(env.vmlinux, "wp_page_copy");
	p.huge_hook = fentry_can_attach(env.vmlinux, "do_huge_pmd_wp_page");
	p.latency = true;
	p.reuse_hook = fentry_can_attach(env.vmlinux, "wp_page_reuse");
	vlog(fmt::format("probe: fentry wp_page_copy: {}, wp_page_reuse: {}, do_huge_pmd_wp_page: {}",
			 p.copy_hook ? "yes" : "no (inlined or absent)", p.reuse_hook ? "yes" : "no (inlined or absent)",
			 p.huge_hook ? "yes" : "no"));
	return p;
}

std::optional<Plan> probe_kprobe(const ProbeEnv &env)
{
	bool kp = kprobes_supported();
	auto syms = kp ? kallsyms_of({"do_wp_page", "wp_page_copy", "do_huge_pmd_wp_page", "wp_page_reuse"})
		       : std::set<std::string>{};
	vlog(fmt::format("probe: kprobes: {}, do_wp_page symbol: {}", kp ? "yes" : "no",
			 syms.count("do_wp_page") ? "yes" : "no"));
	if (!kp || !syms.count("do_wp_page"))
		return std::nullopt;
	Plan p;
	p.method = Method::kprobe;
	p.tp_btf = env.tp_btf;
	p.copy_hook = syms.count("wp_page_copy") > 0;
	p.huge_hook = syms.count("do_huge_pmd_wp_page") > 0;
	p.reuse_hook = syms.count("wp_page_reuse") > 0;
	return p;
}

std::optional<Plan> probe_vmevent(const ProbeEnv &env)
{
	auto delta = percpu_distance(env.vmlinux, "runqueues", "vm_event_states");
	bool ok = env.tp_btf && delta &&
		  btf__find_by_name_kind(env.vmlinux, "btf_trace_sched_switch", BTF_KIND_TYPEDEF) > 0 &&
		  btf__find_by_name_kind(env.vmlinux, "btf_trace_page_fault_kernel", BTF_KIND_TYPEDEF) > 0;
	*env.vme_delta = delta.value_or(0);
	vlog(fmt::format("probe: vmevent (tp_btf page_fault_user/kernel, sched_switch, "
			 "vm_event_states in BTF): {}", ok ? "yes" : "no"));
	if (!ok)
		return std::nullopt;
	Plan p;
	p.method = Method::vmevent;
	p.tp_btf = true;
	p.zero_hook = rss_stat_traces_every_change(env.vmlinux);
	vlog(fmt::format("probe: rss_stat traces every change (zero fills told apart): {}", p.zero_hook ? "yes" : "no"));
	return p;
}

std::optional<Plan> probe_tracepoint(const ProbeEnv &env)
{
	vlog(fmt::format("probe: BTF tracepoints (tp_btf): {}", env.tp_btf ? "yes" : "no"));
	Plan p;
	p.method = Method::tracepoint;
	p.tp_btf = env.tp_btf;
	// the BTF-typed program only: rss_stat's classic event has no member
	// field before 6.2 either, and the plain fault path has no tp_btf flavour
	p.zero_hook = env.tp_btf && rss_stat_traces_every_change(env.vmlinux);
	return p;
}

const MethodSpec kMethods[] = {
	{
		.method = Method::fentry,
		.always = {&Progs::fentry_do_wp_page, &Progs::fexit_do_wp_page},
		.alloc = AllocWindow::without_copy_hook,
		.copy_hook = &Progs::fentry_wp_page_copy,
		.reuse_hook = &Progs::fentry_wp_page_reuse,
		.huge_hook = &Progs::fexit_huge_wp,
		.probe = probe_fentry,
	},
	{
		.method = Method::kprobe,
		.always = {&Progs::kprobe_do_wp_page, &Progs::kretprobe_do_wp_page},
		.alloc = AllocWindow::without_copy_hook,
		.copy_hook = &Progs::kprobe_wp_page_copy,
		.reuse_hook = &Progs::kprobe_wp_page_reuse,
		.huge_hook = &Progs::kretprobe_huge_wp,
		.probe = probe_kprobe,
	},
	{
		.method = Method::vmevent,
		.always = {&Progs::vme_fault_user, &Progs::vme_fault_kernel, &Progs::vme_switch},
		.zero_hook = &Progs::rss_stat,
		.probe = probe_vmevent,
	},
	{
		.method = Method::tracepoint,
		.fault_tp = kFaultTp,
		.alloc = AllocWindow::always,
		.zero_hook = &Progs::rss_stat,
		.probe = probe_tracepoint,
	},
};

const MethodSpec &spec(Method m)
{
	for (const MethodSpec &s : kMethods)
		if (s.method == m)
			return s;
	return kMethods[std::size(kMethods) - 1];	// the tracepoint method, as before
}

} // namespace

void set_verbose(bool on)
{
	g_verbose = on;
	libbpf_set_print(libbpf_print);
}

void vlog(const std::string &s)
{
	if (g_verbose)
		std::fprintf(stderr, "cowtrace: %s\n", s.c_str());
}

std::string errstr(int err)
{
	return std::strerror(err < 0 ? -err : err);
}

std::string bpf_unavailable_reason()
{
	if (!path_exists(kBtfPath))
		return fmt::format("no kernel BTF at {} (the kernel needs CONFIG_DEBUG_INFO_BTF)", kBtfPath);
	__user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
	__user_cap_data_struct data[2]{};
	if (syscall(SYS_capget, &hdr, data) != 0)
		return fmt::format("capget: {}", std::strerror(errno));
	auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1; };
	constexpr int cap_perfmon = 38, cap_bpf = 39;
	if (!has(CAP_SYS_ADMIN) && !(has(cap_bpf) && has(cap_perfmon)))
		return "no permission: loading BPF needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)";
	return "";
}

// Autoload exactly the programs of plan `p` (kMethods' row for its method),
// none of the other methods'.
void select_programs(cowtrace_bpf *s, const Plan &p)
{
	auto set = [s](ProgRef r, bool on) {
		if (r)
			bpf_program__set_autoload(s->progs.*r, on);
	};
	auto set_tp = [&](const Tracepoint &t, bool on) {
		set(t.btf, on && p.tp_btf);
		set(t.classic, on && !p.tp_btf);
	};
	for (const MethodSpec &m : kMethods) {	// every method's programs off ...
		for (ProgRef r : m.always)
			set(r, false);
		for (ProgRef r : {m.copy_hook, m.reuse_hook, m.huge_hook, m.zero_hook})
			set(r, false);
		if (m.fault_tp)
			set_tp(*m.fault_tp, false);
	}
	set_tp(kAllocTp, false);
	const MethodSpec &m = spec(p.method);	// ... then this plan's on
	for (ProgRef r : m.always)
		set(r, true);
	if (m.fault_tp)
		set_tp(*m.fault_tp, true);
	if (p.copy_hook)
		set(m.copy_hook, true);
	if (m.alloc == AllocWindow::always || (m.alloc == AllocWindow::without_copy_hook && !p.copy_hook))
		set_tp(kAllocTp, true);
	if (p.reuse_hook)
		set(m.reuse_hook, true);
	if (p.huge_hook)
		set(m.huge_hook, true);
	if (p.zero_hook)
		set(m.zero_hook, true);
}

std::vector<Plan> probe_plans(Method wanted, std::int64_t &vme_delta)
{
	if (!path_exists(kBtfPath))
		throw Error(fmt::format("failed to find kernel BTF: {} is missing "
					"(cowtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF)", kBtfPath));
	if (std::string why = bpf_unavailable_reason(); !why.empty())
		throw Error(why);

	struct btf *vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux)
		throw Error(fmt::format("failed to load kernel BTF: {}", errstr(errno)));
	bool tp_btf = btf__find_by_name_kind(vmlinux, "btf_trace_page_fault_user", BTF_KIND_TYPEDEF) > 0 &&
		      btf__find_by_name_kind(vmlinux, "btf_trace_mm_page_alloc", BTF_KIND_TYPEDEF) > 0;
	bool sched_btf = btf__find_by_name_kind(vmlinux, "btf_trace_sched_process_fork", BTF_KIND_TYPEDEF) > 0;

	// Candidate plans, most precise first: kMethods' order.
	std::vector<Plan> plans;
	const ProbeEnv env{vmlinux, tp_btf, &vme_delta};
	for (const MethodSpec &m : kMethods)
		if (wanted == Method::automatic || wanted == m.method)
			if (auto p = m.probe(env))
				plans.push_back(*p);
	btf__free(vmlinux);
	if (!sched_btf)
		throw Error("failed to find btf_trace_sched_process_fork in kernel BTF "
			    "(cowtrace needs BTF tracepoints, Linux 5.5 or later)");
	if (plans.empty())
		throw Error(fmt::format("failed to probe method {}: the kernel does not offer it",
					method_name(wanted)));

	// Where wp_page_copy cannot be hooked (inlined: Debian's 6.12 and 7.3),
	// fentry and kprobe infer a copy from a page allocation inside the
	// do_wp_page window, and that misses copies when several threads of a
	// process fault at once (7.3: 13 to 102 of 4096 pages classified as
	// reuses in 5 of 8 runs of Cowtrace.ThreadsCopyTheirPages); vmevent
	// counted every one there. So vmevent goes before such plans (and
	// stays before the tracepoint method).
	auto inferred = std::find_if(plans.begin(), plans.end(), [](const Plan &p) {
		return spec(p.method).alloc == AllocWindow::without_copy_hook && !p.copy_hook;
	});
	auto vme = std::find_if(plans.begin(), plans.end(),
				[](const Plan &p) { return p.method == Method::vmevent; });
	if (inferred < vme && vme != plans.end())
		std::rotate(inferred, vme, vme + 1);
	// A wp_page_reuse symbol may exist and still refuse a probe (6.1:
	// in kallsyms, kprobe EINVAL): try each such plan again without it.
	for (std::size_t i = 0; i < plans.size(); i++) {
		if (plans[i].reuse_hook) {
			Plan q = plans[i];
			q.reuse_hook = false;
			plans.insert(plans.begin() + static_cast<std::ptrdiff_t>(i) + 1, q);
			i++;
		}
	}
	return plans;
}

} // namespace cowtrace
