// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cowtrace: count copy-on-write page faults per process.
 *
 * Three attach methods; the loader keeps one set of programs and turns the
 * others off with bpf_program__set_autoload() after probing the kernel:
 *
 *  tracepoint  exceptions:page_fault_user marks a write-protect fault
 *              (error_code P|W|U), and the first order-0 movable page
 *              allocation (kmem:mm_page_alloc) made inside that same fault
 *              (same user ip, task in an exception, not a syscall) is the
 *              copy. Works with tracepoints alone (the 6.18 dev host).
 *  fentry      fentry/fexit do_wp_page open and close a window per task;
 *              fentry wp_page_copy counts copies where it is a real function,
 *              else mm_page_alloc inside the window does; fexit
 *              do_huge_pmd_wp_page counts huge-PMD write faults; fexit gives
 *              a log2 histogram of do_wp_page latency.
 *  kprobe      the same hook points through kprobe/kretprobe.
 *
 * Processes are filtered by tgid: the per-CPU hash `counts` holds exactly the
 * tracked tgids, so one lookup both filters and finds the counters. Nothing is
 * sent per event; userspace reads the maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cowtrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set between __open and __load. */
const volatile bool follow_children = false;

/* x86 page fault error code bits (arch/x86/include/asm/trap_pf.h). */
#define X86_PF_PROT	(1UL << 0)
#define X86_PF_WRITE	(1UL << 1)
#define X86_PF_USER	(1UL << 2)
/* RSVD, INSTR, PK, SHSTK: not a plain write to a write-protected page. */
#define X86_PF_MASK	0x7fUL
#define X86_PF_WP_USER	(X86_PF_PROT | X86_PF_WRITE | X86_PF_USER)

/* gfp bits (include/linux/gfp_types.h, stable since 4.x): a page for user
 * memory is __GFP_HIGHMEM | __GFP_MOVABLE (GFP_HIGHUSER_MOVABLE); page
 * tables (the split of a huge PMD), slab and kernel pages are not. */
#define GFP_HIGHMEM_BIT	(1U << 1)
#define GFP_MOVABLE_BIT	(1U << 3)

/* A tracked fault in progress, one slot per thread: pending[tid & mask].
 * The fault hook fills it, the hooks later in the same fault read it; the
 * slot is found from the thread id alone (no task storage, no hash lookup),
 * and unlike a per-CPU slot it survives the thread being preempted and
 * migrated in the middle of its fault. Two tracked threads whose ids are
 * equal modulo COWTRACE_PEND_SLOTS and that fault at the same moment share a
 * slot; the second overwrites the first, whose copy is then not seen. */
#define PF_TP_PENDING	1	/* tracepoint method: inside a wp fault at `ip` */
#define PF_WINDOW	2	/* fentry/kprobe: inside do_wp_page */
#define PF_COPIED	4	/* a copy was counted in this window */

struct pend pending[COWTRACE_PEND_SLOTS];

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cow_counts);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cow_info);
} infos SEC(".maps");

static __always_inline struct cow_counts *counts_of(__u32 tgid)
{
	return bpf_map_lookup_elem(&counts, &tgid);
}

static __always_inline struct pend *pend_of(__u32 tid)
{
	return &pending[tid & (COWTRACE_PEND_SLOTS - 1)];
}

/* ---- tracepoint method ------------------------------------------------ */

static __always_inline int on_user_fault(unsigned long error_code, unsigned long ip)
{
	struct cow_counts *c;
	struct pend *p;
	__u64 id;

	/* Cheapest test first: most faults are not write-protect faults. A
	 * stale mark left by an earlier (reused) fault is harmless:
	 * on_page_alloc() checks that the thread is still in the fault at
	 * that ip. */
	if ((error_code & X86_PF_MASK) != X86_PF_WP_USER)
		return 0;
	id = bpf_get_current_pid_tgid();
	c = counts_of(id >> 32);
	if (!c)
		return 0;
	c->wp_faults++;
	p = pend_of((__u32)id);
	p->ip = ip;
	p->flags = PF_TP_PENDING;
	p->tid = (__u32)id;
	return 0;
}

/* Runs for every page allocation of the machine: the common case must exit
 * after a few instructions and one helper call. */
static __always_inline int on_page_alloc(unsigned int order, unsigned int gfp)
{
	struct cow_counts *c;
	struct pend *p;
	__u32 tid;
	__u64 id;

	if (order != 0 || (gfp & (GFP_HIGHMEM_BIT | GFP_MOVABLE_BIT)) !=
				  (GFP_HIGHMEM_BIT | GFP_MOVABLE_BIT))
		return 0;
	id = bpf_get_current_pid_tgid();
	tid = (__u32)id;
	p = pend_of(tid);
	if (p->tid != tid || !tid)
		return 0;
	if (p->flags & PF_TP_PENDING) {
		/* Still in the fault that set it? The user registers saved on
		 * entry hold the faulting ip, and orig_ax is -1 in an exception
		 * (the error code under FRED), a syscall number in a syscall. */
		struct pt_regs *regs =
			(struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		long orig_ax;

		if (!regs)
			return 0;
		/* BTF pointer: direct (CO-RE relocated) loads, no helper call */
		orig_ax = regs->orig_ax;
		if (regs->ip != p->ip ||
		    (orig_ax != -1 && orig_ax != X86_PF_WP_USER))
			return 0;
		p->tid = 0;	/* one copy per fault at most */
	} else if (p->flags & PF_WINDOW) {
		if (p->flags & PF_COPIED)
			return 0;
		p->flags |= PF_COPIED;
	} else {
		return 0;
	}
	c = counts_of(id >> 32);
	if (c)
		c->cow_copies++;
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_btf_fault, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	return on_user_fault(error_code, regs->ip);
}

/* The exceptions events are not in BTF (no trace_event_raw_* type); the
 * layout below is the one in events/exceptions/page_fault_user/format,
 * unchanged since the event was added in 3.13. */
struct cowtrace_x86_exceptions {
	__u64 common;
	unsigned long address;
	unsigned long ip;
	unsigned long error_code;
};

SEC("tracepoint/exceptions/page_fault_user")
int tp_fault(struct cowtrace_x86_exceptions *ctx)
{
	return on_user_fault(ctx->error_code, ctx->ip);
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(tp_btf_alloc, struct page *page, unsigned int order, gfp_t gfp)
{
	return on_page_alloc(order, gfp);
}

SEC("tracepoint/kmem/mm_page_alloc")
int tp_alloc(struct trace_event_raw_mm_page_alloc *ctx)
{
	return on_page_alloc(ctx->order, ctx->gfp_flags);
}

/* ---- fentry and kprobe methods: a window around do_wp_page ------------ */

/* Set between __open and __load: wp_page_reuse is hooked, so a window that
 * ends without a copy is not counted as a reuse by wp_exit(). */
const volatile bool reuse_hook = false;

static __always_inline int wp_enter(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct cow_counts *c = counts_of(id >> 32);
	struct pend *p;

	if (!c)
		return 0;
	c->wp_faults++;
	p = pend_of((__u32)id);
	p->ts = bpf_ktime_get_ns();
	p->flags = PF_WINDOW;
	p->tid = (__u32)id;
	return 0;
}

static __always_inline int wp_exit(bool latency)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pend *p = pend_of((__u32)id);
	struct cow_counts *c;
	__u64 delta, slot = 0;
	__u32 flags;

	if (p->tid != (__u32)id || !(p->flags & PF_WINDOW))
		return 0;
	flags = p->flags;
	p->tid = 0;
	c = counts_of(id >> 32);
	if (!c)
		return 0;
	/* No copy between entry and exit: the page was kept (reused in
	 * place, or the fault ended early: a changed pte, an error). */
	if (!reuse_hook && !(flags & PF_COPIED))
		c->cow_reuses++;
	if (!latency)
		return 0;
	delta = bpf_ktime_get_ns() - p->ts;
	/* log2, bounded loop for old verifiers */
#pragma unroll
	for (int i = 0; i < COWTRACE_HIST_SLOTS - 1; i++) {
		if (delta > 1)
			slot++;
		delta >>= 1;
	}
	c->hist[slot & (COWTRACE_HIST_SLOTS - 1)]++;
	return 0;
}

static __always_inline int copy_hit(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct cow_counts *c = counts_of(id >> 32);
	struct pend *p = pend_of((__u32)id);

	if (!c)
		return 0;
	c->cow_copies++;
	if (p->tid == (__u32)id)
		p->flags |= PF_COPIED;
	return 0;
}

static __always_inline int reuse_hit(void)
{
	struct cow_counts *c = counts_of(bpf_get_current_pid_tgid() >> 32);

	if (c)
		c->cow_reuses++;
	return 0;
}

static __always_inline int huge_wp_exit(vm_fault_t ret)
{
	struct cow_counts *c = counts_of(bpf_get_current_pid_tgid() >> 32);
	int fallback = bpf_core_enum_value(enum vm_fault_reason, VM_FAULT_FALLBACK);

	if (!c)
		return 0;
	c->thp_wp_faults++;
	if (ret & fallback) {
		c->thp_fallbacks++;	/* split; the pte-level do_wp_page follows */
	} else {
		c->wp_faults++;		/* handled on the huge PMD (reused) */
		c->cow_reuses++;
	}
	return 0;
}

SEC("fentry/do_wp_page")
int BPF_PROG(fentry_do_wp_page, struct vm_fault *vmf)
{
	return wp_enter();
}

SEC("fexit/do_wp_page")
int BPF_PROG(fexit_do_wp_page, struct vm_fault *vmf, vm_fault_t ret)
{
	return wp_exit(true);
}

SEC("fentry/wp_page_copy")
int BPF_PROG(fentry_wp_page_copy, struct vm_fault *vmf)
{
	return copy_hit();
}

SEC("fentry/wp_page_reuse")
int BPF_PROG(fentry_wp_page_reuse)
{
	return reuse_hit();
}

SEC("fexit/do_huge_pmd_wp_page")
int BPF_PROG(fexit_huge_wp, struct vm_fault *vmf, vm_fault_t ret)
{
	return huge_wp_exit(ret);
}

SEC("kprobe/do_wp_page")
int BPF_KPROBE(kprobe_do_wp_page)
{
	return wp_enter();
}

SEC("kretprobe/do_wp_page")
int BPF_KRETPROBE(kretprobe_do_wp_page)
{
	return wp_exit(false);
}

SEC("kprobe/wp_page_copy")
int BPF_KPROBE(kprobe_wp_page_copy)
{
	return copy_hit();
}

SEC("kprobe/wp_page_reuse")
int BPF_KPROBE(kprobe_wp_page_reuse)
{
	return reuse_hit();
}

SEC("kretprobe/do_huge_pmd_wp_page")
int BPF_KRETPROBE(kretprobe_huge_wp, long ret)
{
	return huge_wp_exit(ret);
}

/* ---- the process tree -------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	struct cow_counts zero = {};
	struct cow_info info = {};

	if (!follow_children || ptgid == ctgid)
		return 0;
	if (!counts_of(ptgid))
		return 0;
	/* a recycled pid must not inherit other CPUs' stale counts */
	bpf_map_delete_elem(&counts, &ctgid);
	info.ppid = ptgid;
	BPF_CORE_READ_STR_INTO(&info.comm, child, comm);
	bpf_map_update_elem(&infos, &ctgid, &info, BPF_ANY);
	bpf_map_update_elem(&counts, &ctgid, &zero, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct cow_info *info = bpf_map_lookup_elem(&infos, &tgid);

	if (info)
		BPF_CORE_READ_STR_INTO(&info->comm, p, comm);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct cow_info *info = bpf_map_lookup_elem(&infos, &tgid);

	/* signal->live drops to 0 when the last thread exits (before this
	 * tracepoint in do_exit on 6.1 and later) */
	if (!info || BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	BPF_CORE_READ_STR_INTO(&info->comm, p, comm);
	info->exited = 1;
	return 0;
}
