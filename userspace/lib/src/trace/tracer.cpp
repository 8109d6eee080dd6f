// cowtrace_core: probes, skeleton lifetime, map reading and formatting.
#include "cowscope/trace/trace.hpp"

#include <algorithm>
#include <array>
#include <iterator>
#include <optional>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "impl.hpp"

using cowscope::Error;

namespace cowtrace {

namespace {

constexpr const char *kBtfPath = "/sys/kernel/btf/vmlinux";

bool g_verbose = false;

int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	// failures surface as our own errors; -v shows libbpf's warnings
	if (!g_verbose || level == LIBBPF_DEBUG)
		return 0;
	return std::vfprintf(stderr, fmt, ap);
}

std::string errstr(int err)
{
	return std::strerror(err < 0 ? -err : err);
}

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

void vlog(const std::string &s)
{
	if (g_verbose)
		std::fprintf(stderr, "cowtrace: %s\n", s.c_str());
}

} // namespace

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

// ---- the methods, in one table ----------------------------------------------
//
// What each method attaches and how it counts copies and reuses. describe(),
// copies_by(), reuses_by(), the programs loaded (select_programs) and the
// probing (Tracer::Tracer) are all derived from it. Rows are in the order
// of preference (the constructor then ranks vmevent before fentry/kprobe
// plans without a wp_page_copy hook).

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
	// fentry/kprobe: the do_wp_page window ("fentry", "kprobe"), else null
	const char *window = nullptr;
	// programs always attached (null-terminated)
	std::array<ProgRef, 4> always{};
	std::optional<Tracepoint> fault_tp;	// page_fault_user as a tracepoint
	AllocWindow alloc = AllocWindow::never;	// mm_page_alloc as a tracepoint
	// attached when the plan has the hook
	ProgRef copy_hook = nullptr, reuse_hook = nullptr, huge_hook = nullptr;
	const char *huge_name = nullptr;	// "fexit/do_huge_pmd_wp_page"
	// How a copy and a reuse is counted, with and without the hook.
	const char *copies_by = nullptr, *copies_by_hooked = nullptr;
	const char *reuses_by = nullptr, *reuses_by_hooked = nullptr;
	bool reuses_derived = false;	// reuses = wp_faults - cow_copies (none counted)
	// methods without a window: the one line of describe(), {tp} being
	// "tp_btf" or "tracepoint"
	const char *summary = nullptr;
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
	return p;
}

std::optional<Plan> probe_tracepoint(const ProbeEnv &env)
{
	vlog(fmt::format("probe: BTF tracepoints (tp_btf): {}", env.tp_btf ? "yes" : "no"));
	Plan p;
	p.method = Method::tracepoint;
	p.tp_btf = env.tp_btf;
	return p;
}

const MethodSpec kMethods[] = {
	{
		.method = Method::fentry,
		.window = "fentry",
		.always = {&Progs::fentry_do_wp_page, &Progs::fexit_do_wp_page},
		.alloc = AllocWindow::without_copy_hook,
		.copy_hook = &Progs::fentry_wp_page_copy,
		.reuse_hook = &Progs::fentry_wp_page_reuse,
		.huge_hook = &Progs::fexit_huge_wp,
		.huge_name = "fexit/do_huge_pmd_wp_page",
		.copies_by = "mm_page_alloc in do_wp_page",
		.copies_by_hooked = "wp_page_copy",
		.reuses_by = "do_wp_page returned without a copy",
		.reuses_by_hooked = "wp_page_reuse",
		.probe = probe_fentry,
	},
	{
		.method = Method::kprobe,
		.window = "kprobe",
		.always = {&Progs::kprobe_do_wp_page, &Progs::kretprobe_do_wp_page},
		.alloc = AllocWindow::without_copy_hook,
		.copy_hook = &Progs::kprobe_wp_page_copy,
		.reuse_hook = &Progs::kprobe_wp_page_reuse,
		.huge_hook = &Progs::kretprobe_huge_wp,
		.huge_name = "kretprobe/do_huge_pmd_wp_page",
		.copies_by = "mm_page_alloc in do_wp_page",
		.copies_by_hooked = "wp_page_copy",
		.reuses_by = "do_wp_page returned without a copy",
		.reuses_by_hooked = "wp_page_reuse",
		.probe = probe_kprobe,
	},
	{
		.method = Method::vmevent,
		.always = {&Progs::vme_fault_user, &Progs::vme_fault_kernel, &Progs::vme_switch},
		.copies_by = "vm events: pages allocated and no PGREUSE in the fault",
		.reuses_by = "vm events: PGREUSE (or nothing allocated) in the fault",
		.summary = "vmevent: tp_btf/page_fault_user (P|W|U), tp_btf/page_fault_kernel, tp_btf/sched_switch; "
			   "per-CPU PGREUSE/PGALLOC vm events over the faulting thread's on-CPU time decide "
			   "reuse/copy",
		.probe = probe_vmevent,
	},
	{
		.method = Method::tracepoint,
		.fault_tp = kFaultTp,
		.alloc = AllocWindow::always,
		.copies_by = "mm_page_alloc in the fault",
		.reuses_by = "derived: wp_faults - cow_copies",
		.reuses_derived = true,
		.summary = "tracepoint: {tp}/page_fault_user (P|W|U) + {tp}/mm_page_alloc (order 0, movable) in "
			   "the same fault; reuses = wp_faults - cow_copies",
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

std::string Plan::describe() const
{
	const MethodSpec &m = spec(method);
	const char *tp = tp_btf ? "tp_btf" : "tracepoint";
	if (!m.window)
		return fmt::format(fmt::runtime(m.summary), fmt::arg("tp", tp));
	std::string s = fmt::format("{}: {}/do_wp_page window", method_name(method), m.window);
	s += copy_hook ? fmt::format(", {}/wp_page_copy", m.window)
		       : fmt::format(", wp_page_copy not attachable: {}/mm_page_alloc in window", tp);
	s += huge_hook ? fmt::format(", {}", m.huge_name) : ", no huge-PMD hook";
	s += reuse_hook ? fmt::format(", {}/wp_page_reuse", m.window) : ", reuses: do_wp_page exits without a copy";
	if (latency)
		s += ", fexit latency histogram";
	return s;
}

const char *Plan::copies_by() const
{
	const MethodSpec &m = spec(method);
	return copy_hook && m.copies_by_hooked ? m.copies_by_hooked : m.copies_by;
}

const char *Plan::reuses_by() const
{
	const MethodSpec &m = spec(method);
	return reuse_hook && m.reuses_by_hooked ? m.reuses_by_hooked : m.reuses_by;
}

bool reuses_derived(const Plan &p)
{
	return spec(p.method).reuses_derived;
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


Tracer::Impl::~Impl()
{
	if (skel)
		cowtrace_bpf::destroy(skel);	// detaches links, frees maps
}

namespace {

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
		for (ProgRef r : {m.copy_hook, m.reuse_hook, m.huge_hook})
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
}

} // namespace

Tracer::Tracer(const Options &opts) : impl_(std::make_unique<Impl>())
{
	g_verbose = opts.verbose;
	libbpf_set_print(libbpf_print);
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

	std::int64_t vme_delta = 0;
	// Candidate plans, most precise first: kMethods' order.
	std::vector<Plan> plans;
	const ProbeEnv env{vmlinux, tp_btf, &vme_delta};
	for (const MethodSpec &m : kMethods)
		if (opts.method == Method::automatic || opts.method == m.method)
			if (auto p = m.probe(env))
				plans.push_back(*p);
	btf__free(vmlinux);
	if (!sched_btf)
		throw Error("failed to find btf_trace_sched_process_fork in kernel BTF "
			    "(cowtrace needs BTF tracepoints, Linux 5.5 or later)");
	if (plans.empty())
		throw Error(fmt::format("failed to probe method {}: the kernel does not offer it",
					method_name(opts.method)));

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
	std::string errors;
	for (const Plan &p : plans) {
		cowtrace_bpf *s = cowtrace_bpf::open(nullptr);
		if (!s)
			throw Error(fmt::format("failed to open BPF object: {}", errstr(errno)));
		s->rodata->follow_children = opts.follow_children;
		s->rodata->track_all = opts.track_all;
		s->rodata->by_comm = !opts.match_comm.empty();
		s->rodata->long_running = opts.long_running;
		std::strncpy(const_cast<char *>(s->rodata->match_comm), opts.match_comm.c_str(),
			     sizeof(s->rodata->match_comm) - 1);
		s->rodata->reuse_hook = p.reuse_hook;
		s->rodata->vme_rq_to_events = vme_delta;
		s->rodata->by_mapping = opts.by_mapping;
		s->rodata->sites = opts.sites;
		// maps of a feature that is off: one entry, no memory
		if (!opts.by_mapping)
			bpf_map__set_max_entries(s->maps.vmas, 1);
		if (!opts.sites) {
			bpf_map__set_max_entries(s->maps.site_counts, 1);
			bpf_map__set_max_entries(s->maps.stacks, 1);
		}
		select_programs(s, p);
		int err = cowtrace_bpf::load(s);
		const char *verb = "load";
		if (!err) {
			err = cowtrace_bpf::attach(s);
			verb = "attach";
		}
		if (!err) {
			impl_->skel = s;
			plan_ = p;
			break;
		}
		std::string e = fmt::format("failed to {} BPF programs ({}): {}", verb, method_name(p.method),
					    errstr(err));
		vlog(e);
		errors += (errors.empty() ? "" : "; ") + e;
		cowtrace_bpf::destroy(s);
	}
	if (!impl_->skel)
		throw Error(errors);
	impl_->ncpus = libbpf_num_possible_cpus();
	if (impl_->ncpus <= 0)
		throw Error(fmt::format("failed to count CPUs: {}", errstr(impl_->ncpus)));
	vlog("method " + plan_.describe());
	impl_->opts = opts;
	if (opts.by_mapping || opts.sites)
		impl_->watcher = std::thread([this] { watch(); });
}

Tracer::~Tracer()
{
	if (impl_->watcher.joinable()) {
		{
			std::lock_guard<std::mutex> g(impl_->mu);
			impl_->stop = true;
		}
		impl_->cv.notify_all();
		impl_->watcher.join();
	}
}

void Tracer::track(pid_t tgid, pid_t ppid, const std::string &comm)
{
	__u32 key = static_cast<__u32>(tgid);
	cow_info info{};
	info.ppid = static_cast<__u32>(ppid);
	std::strncpy(info.comm, comm.c_str(), sizeof(info.comm) - 1);
	int infos = bpf_map__fd(impl_->skel->maps.infos);
	int procs = bpf_map__fd(impl_->skel->maps.procs);
	int pcounts = bpf_map__fd(impl_->skel->maps.pcounts);
	// the BPF fork hook takes slots from the same queue and counter
	__u32 slot;
	if (bpf_map_lookup_and_delete_elem(bpf_map__fd(impl_->skel->maps.free_slots), nullptr, &slot) != 0)
		slot = __atomic_fetch_add(&impl_->skel->bss->next_slot, 1, __ATOMIC_SEQ_CST);
	if (slot >= COWTRACE_MAX_PROCS)
		throw Error(fmt::format("failed to track pid {}: all {} process slots are taken", tgid,
					COWTRACE_MAX_PROCS));
	std::vector<cow_counts> zero(impl_->ncpus);
	if (bpf_map_update_elem(infos, &key, &info, BPF_ANY) ||
	    bpf_map_update_elem(pcounts, &slot, zero.data(), BPF_ANY) ||
	    bpf_map_update_elem(procs, &key, &slot, BPF_ANY))
		throw Error(fmt::format("failed to track pid {}: {}", tgid, errstr(errno)));
	if (impl_->opts.by_mapping || impl_->opts.sites)
		impl_->remember(tgid);
}

namespace {

// One CPU's counts of a process, added to its totals.
void add_counts(ProcStats &s, const cow_counts &c)
{
	s.wp_faults += c.wp_faults;
	s.cow_copies += c.cow_copies;
	s.cow_reuses += c.cow_reuses;
	s.unclassified += c.unclassified;
	s.thp_wp_faults += c.thp_wp_faults;
	s.thp_fallbacks += c.thp_fallbacks;
	for (int i = 0; i < kHistSlots; i++)
		s.latency_log2_ns[i] += c.hist[i];
}

} // namespace

std::optional<ProcStats> Tracer::stats(pid_t tgid) const
{
	__u32 key = static_cast<__u32>(tgid), slot;
	std::vector<cow_counts> per_cpu(impl_->ncpus);
	if (bpf_map_lookup_elem(bpf_map__fd(impl_->skel->maps.procs), &key, &slot) ||
	    bpf_map_lookup_elem(bpf_map__fd(impl_->skel->maps.pcounts), &slot, per_cpu.data()))
		return std::nullopt;
	ProcStats s;
	s.pid = tgid;
	for (const cow_counts &c : per_cpu)
		add_counts(s, c);
	// The tracepoint method does not count reuses. A copy counted on one
	// CPU may be read before the fault's count on another; never report a
	// negative reuse.
	if (reuses_derived(plan_))
		s.cow_reuses = s.wp_faults > s.cow_copies ? s.wp_faults - s.cow_copies : 0;
	cow_info info{};
	if (!bpf_map_lookup_elem(bpf_map__fd(impl_->skel->maps.infos), &key, &info)) {
		s.ppid = static_cast<pid_t>(info.ppid);
		s.exited = info.exited != 0;
		s.comm.assign(info.comm, strnlen(info.comm, sizeof(info.comm)));
	}
	return s;
}

std::vector<ProcStats> Tracer::snapshot() const
{
	std::vector<ProcStats> out;
	int fd = bpf_map__fd(impl_->skel->maps.procs);
	__u32 key, next;
	__u32 *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (auto s = stats(static_cast<pid_t>(key)))
			out.push_back(*s);
	}
	std::sort(out.begin(), out.end(), [](const ProcStats &a, const ProcStats &b) { return a.pid < b.pid; });
	return out;
}

std::uint64_t Tracer::dropped() const
{
	return __atomic_load_n(&impl_->skel->bss->dropped, __ATOMIC_RELAXED);
}

namespace {

// Zero a pcounts slot on every CPU and queue it for reuse.
bool free_slot(cowtrace_bpf *skel, int ncpus, __u32 slot)
{
	std::vector<cow_counts> zero(ncpus);
	return bpf_map_update_elem(bpf_map__fd(skel->maps.pcounts), &slot, zero.data(), BPF_ANY) == 0 &&
	       bpf_map_update_elem(bpf_map__fd(skel->maps.free_slots), nullptr, &slot, BPF_ANY) == 0;
}

std::size_t count_keys(int fd)
{
	std::size_t n = 0;
	__u32 key, next;
	__u32 *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		n++;
	}
	return n;
}

} // namespace

bool Tracer::untrack(pid_t tgid)
{
	__u32 key = static_cast<__u32>(tgid), slot;
	int procs = bpf_map__fd(impl_->skel->maps.procs);
	if (bpf_map_lookup_elem(procs, &key, &slot) != 0)
		return false;
	bpf_map_delete_elem(procs, &key);
	bpf_map_delete_elem(bpf_map__fd(impl_->skel->maps.infos), &key);
	// the process has exited: nothing counts into its slot any more
	free_slot(impl_->skel, impl_->ncpus, slot);
	return true;
}

std::size_t Tracer::recycle()
{
	std::size_t n = 0;
	__u32 slot;
	while (bpf_map_lookup_and_delete_elem(bpf_map__fd(impl_->skel->maps.stale_slots), nullptr, &slot) == 0)
		n += free_slot(impl_->skel, impl_->ncpus, slot);
	return n;
}

Tracer::Usage Tracer::usage() const
{
	Usage u;
	u.procs = count_keys(bpf_map__fd(impl_->skel->maps.procs));
	u.infos = count_keys(bpf_map__fd(impl_->skel->maps.infos));
	u.slots_used = std::min<std::uint64_t>(__atomic_load_n(&impl_->skel->bss->next_slot, __ATOMIC_RELAXED),
					       COWTRACE_MAX_PROCS);
	// a queue has no keys to walk: count by peeking is not possible, so
	// the free slots are what was handed out less what is in use
	u.free_slots = u.slots_used > u.procs ? u.slots_used - u.procs : 0;
	return u;
}

namespace {

// Every (key, value) of a map, by bpf_map_lookup_batch; false if the kernel
// cannot (ENOTSUPP/EINVAL before 5.6). `max` bounds the elements read.
template <class K>
bool lookup_all(int fd, std::size_t value_size, std::size_t max, std::vector<K> &keys, std::vector<char> &values)
{
	keys.assign(max, K{});
	values.assign(max * value_size, 0);
	std::size_t got = 0;
	__u32 token = 0;
	bool first = true;
	while (got < max) {
		__u32 count = static_cast<__u32>(max - got);
		__u32 next = 0;
		int err = bpf_map_lookup_batch(fd, first ? nullptr : &token, &next, keys.data() + got,
					       values.data() + got * value_size, &count, nullptr);
		if (err && errno != ENOENT) {
			if (first && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP || errno == 524))
				return false;
			throw Error(fmt::format("failed to read a BPF map in batches: {}", errstr(errno)));
		}
		got += count;
		if (err)	// ENOENT: that was the last batch
			break;
		token = next;
		first = false;
	}
	keys.resize(got);
	values.resize(got * value_size);
	return true;
}

} // namespace

std::vector<ProcStats> Tracer::snapshot_batch(Usage *usage) const
{
	cowtrace_bpf *sk = impl_->skel;
	std::uint64_t used = std::min<std::uint64_t>(__atomic_load_n(&sk->bss->next_slot, __ATOMIC_RELAXED),
						     COWTRACE_MAX_PROCS);
	std::vector<__u32> tgids, infokeys, slots;
	std::vector<char> slotv, infov, countv;
	std::size_t percpu = sizeof(cow_counts) * static_cast<std::size_t>(impl_->ncpus);
	if (!lookup_all(bpf_map__fd(sk->maps.procs), sizeof(__u32), COWTRACE_MAX_PROCS, tgids, slotv) ||
	    !lookup_all(bpf_map__fd(sk->maps.infos), sizeof(cow_info), COWTRACE_MAX_PROCS, infokeys, infov) ||
	    !lookup_all(bpf_map__fd(sk->maps.pcounts), percpu, used, slots, countv)) {
		if (usage)
			*usage = this->usage();
		return snapshot();
	}
	std::map<__u32, const cow_info *> info;
	for (std::size_t i = 0; i < infokeys.size(); i++)
		info[infokeys[i]] = reinterpret_cast<const cow_info *>(infov.data() + i * sizeof(cow_info));
	std::vector<ProcStats> out;
	out.reserve(tgids.size());
	for (std::size_t i = 0; i < tgids.size(); i++) {
		__u32 slot;
		std::memcpy(&slot, slotv.data() + i * sizeof(__u32), sizeof(slot));
		if (slot >= slots.size())
			continue;	// taken after `used` was read: next time
		ProcStats s;
		s.pid = static_cast<pid_t>(tgids[i]);
		const char *base = countv.data() + static_cast<std::size_t>(slot) * percpu;
		for (int c = 0; c < impl_->ncpus; c++) {
			cow_counts k;
			std::memcpy(&k, base + static_cast<std::size_t>(c) * sizeof(cow_counts), sizeof(k));
			add_counts(s, k);
		}
		if (reuses_derived(plan_))
			s.cow_reuses = s.wp_faults > s.cow_copies ? s.wp_faults - s.cow_copies : 0;
		if (auto it = info.find(tgids[i]); it != info.end()) {
			s.ppid = static_cast<pid_t>(it->second->ppid);
			s.exited = it->second->exited != 0;
			s.comm.assign(it->second->comm, strnlen(it->second->comm, sizeof(it->second->comm)));
		}
		out.push_back(std::move(s));
	}
	if (usage) {
		usage->procs = tgids.size();
		usage->infos = infokeys.size();
		usage->slots_used = used;
		usage->free_slots = used > tgids.size() ? used - tgids.size() : 0;
	}
	return out;
}

std::vector<Tracer::ProgStats> Tracer::prog_stats() const
{
	std::vector<ProgStats> out;
	bpf_program *prog;
	bpf_object__for_each_program(prog, impl_->skel->obj)
	{
		int fd = bpf_program__fd(prog);
		if (fd < 0)
			continue;
		bpf_prog_info info{};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			out.push_back({bpf_program__name(prog), info.run_time_ns, info.run_cnt, info.recursion_misses});
	}
	return out;
}

std::pair<std::uint64_t, std::uint64_t> Tracer::run_stats() const
{
	std::uint64_t ns = 0, cnt = 0;
	bpf_program *prog;
	bpf_object__for_each_program(prog, impl_->skel->obj)
	{
		int fd = bpf_program__fd(prog);
		if (fd < 0)
			continue;
		bpf_prog_info info{};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			ns += info.run_time_ns;
			cnt += info.run_cnt;
		}
	}
	return {ns, cnt};
}

nlohmann::json to_json(const ProcStats &s, const Plan &plan)
{
	nlohmann::json j = {
		{"pid", s.pid}, {"ppid", s.ppid}, {"comm", s.comm}, {"exited", s.exited},
		{"wp_faults", s.wp_faults}, {"cow_copies", s.cow_copies}, {"cow_reuses", s.cow_reuses},
		{"wp_unclassified", s.unclassified},
		{"method", method_name(plan.method)},
		{"cow_copies_by", plan.copies_by()}, {"cow_reuses_by", plan.reuses_by()},
		// What one copy or reuse is, large folios included (checked against
		// pagemap on 64 KiB folios by Cowtrace.Folio64K* on 6.12, 7.3, 6.18).
		{"cow_unit", "4 KiB page: a write to a page of a shared large folio (mTHP, or THP after "
			     "its split) copies or reuses that one page"},
	};
	if (plan.huge_hook) {
		j["thp_wp_faults"] = s.thp_wp_faults;
		j["thp_fallbacks"] = s.thp_fallbacks;
	}
	if (plan.latency) {
		// {"<lo>": count} for each non-empty bucket [2^i, 2^(i+1)) ns
		nlohmann::json h = nlohmann::json::object();
		for (int i = 0; i < kHistSlots; i++)
			if (s.latency_log2_ns[i])
				h[std::to_string(i ? 1ULL << i : 0)] = s.latency_log2_ns[i];
		j["wp_latency_ns_log2"] = h;
	}
	return j;
}

nlohmann::json to_json(const std::vector<ProcStats> &procs, const Plan &plan)
{
	nlohmann::json a = nlohmann::json::array();
	for (const auto &p : procs)
		a.push_back(to_json(p, plan));
	return a;
}

std::string format_table(const std::vector<ProcStats> &procs, const Plan &plan)
{
	std::string out = fmt::format("{:>7} {:>7} {:<16} {:>11} {:>11} {:>11} {:<10}\n", "PID", "PPID",
				      "COMM", "WP_FAULTS", "COW_COPIES", "COW_REUSES", "METHOD");
	for (const auto &p : procs)
		out += fmt::format("{:>7} {:>7} {:<16} {:>11} {:>11} {:>11} {:<10}\n",
				   fmt::format("{}{}", p.exited ? "*" : "", p.pid), p.ppid, p.comm,
				   p.wp_faults, p.cow_copies, p.cow_reuses, method_name(plan.method));
	for (const auto &p : procs)
		if (p.unclassified)
			out += fmt::format("pid {}: {} write faults neither copy nor reuse: the kernel moved the thread "
					   "during the fault without a sched_switch event (not counted in COW_COPIES "
					   "or COW_REUSES)\n", p.pid, p.unclassified);
	if (plan.latency) {
		for (const auto &p : procs) {
			std::uint64_t total = 0, max = 0;
			for (auto v : p.latency_log2_ns) {
				total += v;
				max = std::max(max, v);
			}
			if (!total)
				continue;
			out += fmt::format("do_wp_page latency, pid {}:\n", p.pid);
			for (int i = 0; i < kHistSlots; i++) {
				if (!p.latency_log2_ns[i])
					continue;
				std::uint64_t lo = i ? 1ULL << i : 0, hi = (1ULL << (i + 1)) - 1;
				int bar = static_cast<int>(40 * p.latency_log2_ns[i] / max);
				out += fmt::format("  {:>10} -> {:<10} : {:<10} |{:<40}|\n", lo, hi,
						   p.latency_log2_ns[i], std::string(bar, '*'));
			}
		}
	}
	return out;
}

} // namespace cowtrace
