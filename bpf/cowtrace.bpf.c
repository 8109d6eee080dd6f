// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cowtrace: count copy-on-write page faults per process.
 *
 * Four attach methods; the loader keeps one set of programs and turns the
 * others off with bpf_program__set_autoload() after probing the kernel:
 *
 *  vmevent     exceptions:page_fault_user snapshots this CPU's vm event
 *              counters (PGREUSE, PGALLOC_*) at a wp fault; sched_switch
 *              accounts the thread's on-CPU stretches; the next fault or
 *              switch-out decides copy or reuse (see below). No hook on the
 *              page allocator: the cheapest method where only tracepoints
 *              exist (the 6.18 dev host).
 *  tracepoint  exceptions:page_fault_user marks a write-protect fault
 *              (error_code P|W|U), and the first order-0 movable page
 *              allocation (kmem:mm_page_alloc) made inside that same fault
 *              (same user ip, task in an exception, not a syscall) is the
 *              copy. Works with tracepoints alone; costs a program run per
 *              page allocated on the machine.
 *  fentry      fentry/fexit do_wp_page open and close a window per task;
 *              fentry wp_page_copy counts copies where it is a real function,
 *              else mm_page_alloc inside the window does; fexit
 *              do_huge_pmd_wp_page counts huge-PMD write faults; fexit gives
 *              a log2 histogram of do_wp_page latency.
 *  kprobe      the same hook points through kprobe/kretprobe.
 *
 * Processes are filtered by tgid: the hash `procs` holds exactly the tracked
 * tgids and gives each its slot of the per-CPU array `pcounts`; vmevent
 * caches the slot per thread. Nothing is
 * sent per fault; userspace reads the maps. With --by-mapping or --sites
 * the fork and exec of a tracked process go to the ring buffer `events`,
 * so that the loader's watcher reads its maps at once (struct cow_event).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cowtrace.h"
#include "cowscope_segment.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set between __open and __load. */
const volatile bool follow_children = false;
/* cowtrace --serve: track every new process (--all), or every process
 * whose comm is match_comm at fork or exec (--comm). */
const volatile bool track_all = false;
const volatile bool by_comm = false;
const volatile char match_comm[COWTRACE_COMM_LEN] = {};
/* --serve: the loader untracks exited processes and reuses their slots */
const volatile bool long_running = false;
/* --by-mapping, --sites: attribute each copy/reuse to its VMA, its user
 * stack. Off: the verifier drops the code, plain counting costs the same. */
const volatile bool by_mapping = false;
const volatile bool sites = false;
/* --sites, tests only: the bits of the stack hash that pick a stack's
 * first slot in `stacks` (31: all of them). Fewer force collisions, which
 * must be detected and kept apart (tests/bpf/test_cowtrace.cpp). */
const volatile __u32 stack_hash_bits = 31;
/* Tests only: the tid bits that choose a thread's pending slot (at most 14:
 * COWTRACE_PEND_SLOTS); fewer make tracked threads share slots, which must
 * lose no count (SharedPendingSlotsLoseNoCount). */
const volatile __u32 pend_slot_bits = 14;
/* --unwind: 1 in unwind_period wp faults, at random (0: none), sends their
 * thread's registers and unwind_pages pages of its user stack, from the page of rsp
 * up (at most COWTRACE_UNWIND_STACK_MAX / 4096), to `samples`. */
const volatile __u32 unwind_period = 0;
const volatile __u32 unwind_pages = 1;

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
 * equal modulo COWTRACE_PEND_SLOTS share a slot; the second to fault takes
 * it over: vmevent counts the first's fault, if still pending, as
 * unclassified; the other methods' windows end within the fault, and a
 * fault that overlaps its slot-mate's to the instruction loses its copy. */
#define PF_TP_PENDING	1	/* tracepoint method: inside a wp fault at `ip` */
#define PF_WINDOW	2	/* fentry/kprobe: inside do_wp_page */
#define PF_COPIED	4	/* a copy was counted in this window */
#define PF_VME		8	/* vmevent: a wp fault not yet resolved */
#define PF_OFFCPU	16	/* vmevent: switched out in the middle of it */
#define PF_TAINT	32	/* vmevent: a switch of the thread was not traced */
#define PF_RSS_ANON	64	/* vmevent, tracepoint: the fault added an anonymous page to the rss */
#define PF_RSS_OTHER	128	/* ... and changed another rss counter (a file page left) */
#define PF_ZERO		256	/* fentry/kprobe: the fault's pte maps the zero page */
#define PF_TP_COPIED	512	/* tracepoint: this fault's copy is counted */

/* What a classified write-protect fault was. */
enum wp_kind { WP_COPY, WP_REUSE, WP_ZERO };

struct pend pending[COWTRACE_PEND_SLOTS];

/* tracked tgid -> its slot in pcounts */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, __u32);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cow_counts);
} pcounts SEC(".maps");

/* the next free slot of pcounts (also taken by the loader, atomically) */
__u32 next_slot;
/* children not tracked because pcounts was full */
__u64 dropped;

/* Slots for reuse (a long-running --serve untracks exited processes): the
 * loader zeroes a slot on every CPU before it pushes it to free_slots;
 * take_slot() pops one there first. A tracked pid that a new tracked
 * process reuses before the loader untracked it leaves its old slot in
 * stale_slots for the loader to zero and free. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(value, __u32);
} free_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(value, __u32);
} stale_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cow_info);
} infos SEC(".maps");

/* ---- attribution (--by-mapping, --sites) --------------------------------
 *
 * At a write-protect fault the hook records in the thread's pending slot the
 * start of the faulting VMA (vmas: facts recorded when first seen) and the
 * user stack (stacks, BPF_F_USER_STACK: frame 0 is the faulting ip, exact;
 * the rest is a frame-pointer walk); when the fault is classified, attr_count()
 * adds it to vmas[(tgid, start)] and sites[(tgid, stackid)]. Sizes are set
 * by the loader (1 entry when the feature is off). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_VMAS);
	__type(key, struct vma_key);
	__type(value, struct vma_val);
} vmas SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_SITES);
	__type(key, struct site_key);
	__type(value, struct site_val);
} site_counts SEC(".maps");

/* user stacks by a 31-bit hash of their ips. A slot that holds another
 * stack (a collision, told by comparing the ips) is counted in
 * stack_collisions and the stack goes to the next of CT_STACK_PROBES slots
 * (a rehash): two stacks are never merged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_STACK_SLOTS);
	__type(key, __u32);
	__type(value, struct stack_ips);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_ips);
} stack_scratch SEC(".maps");

/* failures, reported by the loader */
__u64 vma_fail;		/* VMA not found or lookup refused (bpf_find_vma) */
__u64 vma_full;		/* vmas full: fault counted under "unknown" */
__u64 stack_fail;	/* no stack recorded (fault counted under stack -1) */
__u64 site_full;	/* site_counts full: fault not attributed to a site */
__u64 stack_collisions;	/* faults whose stack's slot held another stack */

/* --by-mapping, --sites: fork and exec of tracked processes, for the
 * loader's maps watcher (1 page when off: the loader sizes it) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* --unwind: struct cow_sample and struct cow_sample_kind records (1 page
 * when off: the loader sizes it) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} samples SEC(".maps");

__u64 unwind_lost;	/* samples not sent: `samples` full */

/* --unwind: the CPython 3.11 processes' frame offsets (struct py_target) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COWTRACE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct py_target);
} pyprocs SEC(".maps");

/* --unwind: no wakeup per record (an irq_work and a switch to the loader's
 * thread each, which more than doubled the cost of a sample); the loader
 * drains `samples` every 10 ms, and is woken once a quarter of it is full. */
static __always_inline __u64 sample_wakeup(void)
{
	return bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(&samples, BPF_RB_RING_SIZE) / 4
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}
__u64 unwind_noread;	/* samples sent without stack bytes: the read failed */
__u64 unwind_short;	/* samples sent with part of their stack: a page
			 * below the stack's end, or past it where the end
			 * was not known, could not be read */

static __always_inline void send_event(__u32 tgid, __u32 kind)
{
	struct cow_event *e;

	if (!by_mapping && !sites)
		return;
	/* full: the watcher's 10 ms poll of `procs` still finds it */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->tgid = tgid;
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
}

struct vma_ctx {
	__u64 start, end;
	struct vma_val val;
};

/* cowscope_vma_label() (kmod/include/cowscope_segment.h: the module's
 * rule too) in cowtrace's labels: special mappings (vdso, vvar) and
 * VM_PFNMAP/VM_IO ones are "other"; file mappings split into private
 * (copy-on-write) and shared. */
static __always_inline __u32 seg_of(const struct cowscope_vma_facts *f)
{
	switch (cowscope_vma_label(f)) {
	case COWSCOPE_VL_STACK:
		return COWTRACE_SEG_STACK;
	case COWSCOPE_VL_HEAP:
		return COWTRACE_SEG_HEAP;
	case COWSCOPE_VL_TEXT:
		return COWTRACE_SEG_TEXT;
	case COWSCOPE_VL_DATA:
		return COWTRACE_SEG_DATA;
	case COWSCOPE_VL_BSS:
		return COWTRACE_SEG_BSS;
	case COWSCOPE_VL_FILE_PRIVATE:
		return COWTRACE_SEG_FILE_PRIVATE;
	case COWSCOPE_VL_FILE_SHARED:
		return COWTRACE_SEG_FILE_SHARED;
	case COWSCOPE_VL_ANON:
		return COWTRACE_SEG_MMAP_ANON;
	default:
		return COWTRACE_SEG_OTHER;
	}
}

/* The label of `vma`: the plain fields through CO-RE, then the two facts
 * the rule leaves to each side (cowscope_segment.h). */
static __always_inline __u32 vma_label(struct vm_area_struct *vma)
{
	struct cowscope_vma_facts f = {};
	struct mm_struct *mm = BPF_CORE_READ(vma, vm_mm);
	struct file *file = BPF_CORE_READ(vma, vm_file);
	struct inode *exe = BPF_CORE_READ(mm, exe_file, f_inode);

	COWSCOPE_VMA_FACTS(&f, vma, mm, BPF_CORE_READ);
	f.has_file = file != NULL;
	f.special = !file && BPF_CORE_READ(vma, vm_ops);
	f.exe_image = file && exe && BPF_CORE_READ(file, f_inode) == exe && f.start >= f.start_code;
	return seg_of(&f);
}

/* What --by-mapping records of `vma` (start, end, pgoff, flags, label, file
 * name). */
static __always_inline void vma_facts(struct vm_area_struct *vma, struct vma_ctx *ctx)
{
	struct file *f = BPF_CORE_READ(vma, vm_file);

	ctx->start = BPF_CORE_READ(vma, vm_start);
	ctx->end = BPF_CORE_READ(vma, vm_end);
	ctx->val.end = ctx->end;
	ctx->val.pgoff = BPF_CORE_READ(vma, vm_pgoff);
	ctx->val.flags = (__u32)BPF_CORE_READ(vma, vm_flags);
	ctx->val.seg = vma_label(vma);
	if (f)
		bpf_probe_read_kernel_str(ctx->val.name, sizeof(ctx->val.name),
					  BPF_CORE_READ(f, f_path.dentry, d_name.name));
}

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, struct vma_ctx *ctx)
{
	vma_facts(vma, ctx);
	return 0;
}

static __always_inline void vma_record(__u32 tgid, struct vma_ctx *ctx, struct pend *p)
{
	struct vma_key k = {.tgid = tgid, .start = ctx->start};

	if (bpf_map_update_elem(&vmas, &k, &ctx->val, BPF_NOEXIST) && !bpf_map_lookup_elem(&vmas, &k)) {
		__sync_fetch_and_add(&vma_full, 1);
		p->vma = 0;
		p->vlo = p->vhi = 0;	/* no cached range without its entry */
		return;
	}
	p->vma = ctx->start;
}

/* vmevent, tracepoint: the VMA at `addr`, cached per thread. The cache is
 * a range: a later munmap+mmap over the same range by the same thread is
 * charged to the first VMA seen there. */
static __always_inline void attr_vma_at(struct pend *p, __u32 tgid, __u64 addr)
{
	struct vma_ctx ctx = {};

	if (addr >= p->vlo && addr < p->vhi) {
		p->vma = p->vlo;
		return;
	}
	p->vma = 0;
	if (bpf_find_vma(bpf_get_current_task_btf(), addr, vma_cb, &ctx, 0) || !ctx.end) {
		__sync_fetch_and_add(&vma_fail, 1);
		return;
	}
	p->vlo = ctx.start;
	p->vhi = ctx.end;
	vma_record(tgid, &ctx, p);
}

/* fentry/kprobe: the fault's own VMA (vmf->vma). */
static __always_inline void attr_vma_of(struct pend *p, __u32 tgid, struct vm_area_struct *vma)
{
	struct vma_ctx ctx = {};

	p->vma = 0;
	if (!vma) {
		__sync_fetch_and_add(&vma_fail, 1);
		return;
	}
	if (BPF_CORE_READ(vma, vm_start) == p->vlo && p->vhi) {
		p->vma = p->vlo;
		return;
	}
	vma_facts(vma, &ctx);
	p->vlo = ctx.start;
	p->vhi = ctx.end;
	vma_record(tgid, &ctx, p);
}

/* The user stack: the faulting ip (exact) and a frame-pointer walk from
 * the saved user registers. Not bpf_get_stackid(BPF_F_USER_STACK): in code
 * built without frame pointers (Debian's python3, redis-server) rbp holds
 * anything, and the kernel's walk then reads an unmapped address; each such
 * read is a kernel-mode page fault (an exception, fixed up) that cost
 * ~2 us per stack here. This walk only follows a frame pointer that lies in
 * [sp, sp + 8 MiB), 8-aligned, above the previous frame: a garbage rbp
 * ends the walk without a read. */
#define CT_STACK_SPAN (8UL << 20)

#define CT_STACK_PROBES 4

static __always_inline bool same_stack(const struct stack_ips *a, const struct stack_ips *b)
{
	for (int i = 0; i < COWTRACE_STACK_DEPTH; i++) {
		if (a->ips[i] != b->ips[i])
			return false;
		if (!a->ips[i])
			break;
	}
	return true;
}

/* --unwind: the Python frames of thread `tid` of a CPython 3.11 process
 * (pyprocs), innermost first: its thread state found by native id among the
 * main interpreter's, then cframe->current_frame and ->previous. Every
 * read can fail (racing, paged out): the frames read until then are kept;
 * the loader checks each code object before it believes it. */
static __always_inline void attr_py(struct cow_sample *s, __u32 tgid, __u32 tid)
{
	struct py_target *t = bpf_map_lookup_elem(&pyprocs, &tgid);
	__u64 interp = 0, ts = 0, id = 0, cf = 0, fr = 0;
	__u8 entry;
	__u32 i;

	s->py_n = 0;
	s->py_entry = 0;
	if (!t || bpf_probe_read_user(&interp, sizeof(interp), (void *)t->interp_head) || !interp ||
	    bpf_probe_read_user(&ts, sizeof(ts), (void *)(interp + t->interp_threads_head)))
		return;
	for (i = 0; i < COWTRACE_PY_THREADS && ts; i++) {
		if (bpf_probe_read_user(&id, sizeof(id), (void *)(ts + t->tstate_native_thread_id)))
			return;
		if (id == tid)
			break;
		if (bpf_probe_read_user(&ts, sizeof(ts), (void *)(ts + t->tstate_next)))
			return;
	}
	if (!ts || id != tid || bpf_probe_read_user(&cf, sizeof(cf), (void *)(ts + t->tstate_cframe)) || !cf ||
	    bpf_probe_read_user(&fr, sizeof(fr), (void *)(cf + t->cframe_current_frame)))
		return;
	for (i = 0; i < COWTRACE_PY_FRAMES && fr; i++) {
		if (bpf_probe_read_user(&s->py[i].code, sizeof(__u64), (void *)(fr + t->frame_code)) ||
		    bpf_probe_read_user(&s->py[i].instr, sizeof(__u64), (void *)(fr + t->frame_prev_instr)) ||
		    bpf_probe_read_user(&entry, sizeof(entry), (void *)(fr + t->frame_is_entry)))
			break;
		if (entry)
			s->py_entry |= 1U << i;
		s->py_n = i + 1;
		if (bpf_probe_read_user(&fr, sizeof(fr), (void *)(fr + t->frame_previous)))
			break;
	}
}

/* --unwind: where the frames on the stack that `sp` is on end, as far as
 * it can be told without the mmap_lock (bpf_find_vma()'s trylock fails
 * here, with interrupts off), or 0 where it cannot: the main thread's
 * first frame is just below mm->start_stack (argc), and above it lie argv,
 * the environment and a gap of up to 8 KiB never written (arch_align_stack),
 * whose pages are not there; a glibc thread's stack block ends with its
 * static TLS and TCB (fsbase). A read of a missing page is not wrong, it
 * fails whole, but the fault it takes cost more than all the rest of a
 * sample (6 us of 8 on the PVM dev host, in 7 of 24 runs of the bench's
 * workload: rsp's page the last one below the gap). */
static __always_inline __u64 user_stack_end(struct task_struct *t, __u64 sp)
{
	__u64 top = BPF_CORE_READ(t, mm, start_stack);
	__u64 fs = BPF_CORE_READ(t, thread.fsbase);
	__u64 end = 0;

	if (sp < top)
		end = (top + COWTRACE_UNWIND_PAGE) & ~(__u64)(COWTRACE_UNWIND_PAGE - 1);
	if (sp < fs) {
		fs = (fs + COWTRACE_UNWIND_PAGE) & ~(__u64)(COWTRACE_UNWIND_PAGE - 1);
		if (!end || fs < end)
			end = fs;
	}
	return end;
}

/* --unwind: 1 in unwind_period faults, at random, sends the thread's user
 * registers and the user stack from the page of rsp up to the stack's end
 * where user_stack_end() knows it, a whole page at a time (a read fails
 * whole where a page is missing), to `samples`. The fault's kind follows in
 * attr_sample_kind(). */
static __always_inline void attr_sample(struct pend *p, __u32 tgid, struct task_struct *t, struct pt_regs *regs)
{
	struct cow_sample *s;
	__u64 base, end;
	__u32 i, len = 0;

	p->sample = COWTRACE_SAMPLE_NONE;
	/* 1 in unwind_period at random: a stride (every Nth fault of the
	 * thread) sampled the same faults of every process that does the same
	 * things, a forked server's children, and never the others; with
	 * PostgreSQL's backends at 1 in 16, 3 of the 6 sites with the most
	 * copies got no sample at all */
	if (!unwind_period || (unwind_period > 1 && bpf_get_prandom_u32() % unwind_period))
		return;
	s = bpf_ringbuf_reserve(&samples, sizeof(*s) + unwind_pages * COWTRACE_UNWIND_PAGE, 0);
	if (!s) {
		__sync_fetch_and_add(&unwind_lost, 1);
		return;
	}
	s->type = COWTRACE_SAMPLE_STACK;
	s->tgid = tgid;
	s->tid = p->tid;
	s->stackid = p->stackid;
	s->pad = 0;
	attr_py(s, tgid, p->tid);
	bpf_probe_read_kernel(s->regs, sizeof(s->regs), regs);
	base = regs->sp & ~(__u64)(COWTRACE_UNWIND_PAGE - 1);
	end = user_stack_end(t, regs->sp);
	s->stack_addr = base;
	for (i = 0; i < COWTRACE_UNWIND_STACK_MAX / COWTRACE_UNWIND_PAGE && i < unwind_pages; i++) {
		if (end && base + (i + 1) * COWTRACE_UNWIND_PAGE > end)
			break;
		if (bpf_probe_read_user(s->stack + i * COWTRACE_UNWIND_PAGE, COWTRACE_UNWIND_PAGE, (void *)(base + i * COWTRACE_UNWIND_PAGE))) {
			if (i)
				__sync_fetch_and_add(&unwind_short, 1);
			break;
		}
		len += COWTRACE_UNWIND_PAGE;
	}
	if (!len)
		__sync_fetch_and_add(&unwind_noread, 1);
	s->stack_len = len;
	bpf_ringbuf_submit(s, sample_wakeup());
	p->sample = COWTRACE_SAMPLE_SENT;
}

/* --unwind: the kind of the thread's sampled fault, once classified. */
static __always_inline void attr_sample_kind(struct pend *p, __u32 kind)
{
	struct cow_sample_kind *k;

	if (p->sample == COWTRACE_SAMPLE_NONE ||
	    (kind == COWTRACE_KIND_COPY_WAS_ZERO) != (p->sample == COWTRACE_SAMPLE_COPY))
		return;
	p->sample = kind == COWTRACE_KIND_COPY ? COWTRACE_SAMPLE_COPY : COWTRACE_SAMPLE_NONE;
	k = bpf_ringbuf_reserve(&samples, sizeof(*k), 0);
	if (!k) {
		/* the userspace side sees the sample unclassified */
		__sync_fetch_and_add(&unwind_lost, 1);
		return;
	}
	k->type = COWTRACE_SAMPLE_KIND;
	k->tid = p->tid;
	k->kind = kind;
	k->pad = 0;
	bpf_ringbuf_submit(k, sample_wakeup());
}

static __always_inline void attr_stack_ips(struct pend *p, struct pt_regs *regs)
{
	__u32 zero = 0, h = 2166136261u;
	struct stack_ips *st = bpf_map_lookup_elem(&stack_scratch, &zero);
	__u64 fp, sp, lim, frame[2];
	int i;

	p->stackid = -1;
	if (!regs || !st) {
		__sync_fetch_and_add(&stack_fail, 1);
		return;
	}
	fp = regs->bp;
	sp = regs->sp;
	lim = sp + CT_STACK_SPAN;
	st->ips[0] = regs->ip;
	for (i = 1; i < COWTRACE_STACK_DEPTH; i++)
		st->ips[i] = 0;
	for (i = 1; i < COWTRACE_STACK_DEPTH; i++) {
		if (fp < sp || fp >= lim || (fp & 7))
			break;
		if (bpf_probe_read_user(frame, sizeof(frame), (void *)fp) || !frame[1])
			break;
		st->ips[i] = frame[1];
		sp = fp + 16;	/* the caller's frame is above this one */
		fp = frame[0];
	}
	for (i = 0; i < COWTRACE_STACK_DEPTH; i++) {
		__u64 v = st->ips[i];

		if (!v)
			break;
		h = (h ^ (__u32)v) * 16777619u;
		h = (h ^ (__u32)(v >> 32)) * 16777619u;
	}
	for (i = 0; i < CT_STACK_PROBES; i++) {
		/* the first slot: the hash's low stack_hash_bits; then rehashes */
		__u32 k = i ? ((h ^ (i * 0x9e3779b9u)) * 16777619u) & 0x7fffffff
			    : h & (0x7fffffffu >> (31 - (stack_hash_bits & 31)));
		struct stack_ips *have = bpf_map_lookup_elem(&stacks, &k);

		if (!have) {
			if (bpf_map_update_elem(&stacks, &k, st, BPF_NOEXIST) == 0) {
				p->stackid = (__s32)k;
				return;
			}
			have = bpf_map_lookup_elem(&stacks, &k);	/* raced, or full */
			if (!have) {
				__sync_fetch_and_add(&stack_fail, 1);	/* table full */
				return;
			}
		}
		if (same_stack(have, st)) {
			p->stackid = (__s32)k;
			return;
		}
		if (!i)
			__sync_fetch_and_add(&stack_collisions, 1);
	}
	__sync_fetch_and_add(&stack_fail, 1);	/* every probed slot taken by others */
}

static __always_inline void attr_stack(void *ctx, struct pend *p, __u32 tgid)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);

	attr_stack_ips(p, regs);
	if (regs)
		attr_sample(p, tgid, t, regs);
	else
		p->sample = COWTRACE_SAMPLE_NONE;
}

/* One classified fault into `n`; `undo` takes back a copy counted before. */
static __always_inline void count_kind(struct kind_counts *n, enum wp_kind kind, bool undo)
{
	if (undo)
		__sync_fetch_and_add(&n->copies, -1);
	if (kind == WP_COPY)
		__sync_fetch_and_add(&n->copies, 1);
	else if (kind == WP_ZERO)
		__sync_fetch_and_add(&n->zero_fills, 1);
	else
		__sync_fetch_and_add(&n->reuses, 1);
}

/* The fault recorded in `p` is classified: a copy, a reuse or a zero fill;
 * `undo` (tracepoint method) takes back a copy counted before. */
static __always_inline void attr_count(struct pend *p, __u32 tgid, enum wp_kind kind, bool undo)
{
	if (unwind_period)	/* enum wp_kind numbers as COWTRACE_KIND_* */
		attr_sample_kind(p, undo ? COWTRACE_KIND_COPY_WAS_ZERO : (__u32)kind);
	if (by_mapping) {
		struct vma_key k = {.tgid = tgid, .start = p->vma};
		struct vma_val *v = bpf_map_lookup_elem(&vmas, &k);

		if (!v && !p->vma) {
			struct vma_val z = {.seg = COWTRACE_SEG_UNKNOWN};

			bpf_map_update_elem(&vmas, &k, &z, BPF_NOEXIST);
			v = bpf_map_lookup_elem(&vmas, &k);
		}
		if (v) {
			if (!undo)
				__sync_fetch_and_add(&v->wp_faults, 1);
			count_kind(&v->n, kind, undo);
		}
	}
	if (sites) {
		struct site_key k = {.tgid = tgid, .stackid = p->stackid};
		struct site_val *v = bpf_map_lookup_elem(&site_counts, &k);

		if (!v) {
			struct site_val z = {};

			bpf_map_update_elem(&site_counts, &k, &z, BPF_NOEXIST);
			v = bpf_map_lookup_elem(&site_counts, &k);
			if (!v) {
				__sync_fetch_and_add(&site_full, 1);
				return;
			}
		}
		count_kind(&v->n, kind, undo);
	}
}

static __always_inline struct cow_counts *counts_at(__u32 slot)
{
	return bpf_map_lookup_elem(&pcounts, &slot);
}

static __always_inline struct cow_counts *counts_of(__u32 tgid)
{
	__u32 *slot = bpf_map_lookup_elem(&procs, &tgid);

	return slot ? counts_at(*slot) : NULL;
}

static __always_inline struct pend *pend_of(__u32 tid)
{
	return &pending[tid & ((1U << pend_slot_bits) - 1) & (COWTRACE_PEND_SLOTS - 1)];
}

/* Is the current thread still inside the user fault at `ip`? The user
 * registers saved on entry hold the faulting ip, and orig_ax is -1 in an
 * exception (the error code under FRED), a syscall number in a syscall. */
static __always_inline bool in_fault_at(__u64 ip)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long orig_ax;

	if (!regs)
		return false;
	/* BTF pointer: direct (CO-RE relocated) loads, no helper call */
	orig_ax = regs->orig_ax;
	return regs->ip == ip && (orig_ax == -1 || orig_ax == X86_PF_WP_USER);
}

/* ---- tracepoint method ------------------------------------------------ */

static __always_inline int on_user_fault(void *ctx, unsigned long error_code, unsigned long ip,
					 unsigned long address)
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
	if (p->tid != (__u32)id)
		p->vlo = p->vhi = 0;
	p->ip = ip;
	p->flags = PF_TP_PENDING;
	p->tid = (__u32)id;
	if (by_mapping)
		attr_vma_at(p, id >> 32, address);
	if (sites)
		attr_stack(ctx, p, id >> 32);
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
		if (!in_fault_at(p->ip))
			return 0;
		/* one copy per fault at most; a zero fill's rss_stat comes next */
		p->flags = PF_TP_COPIED;
		c = counts_of(id >> 32);
		if (c)
			c->cow_copies++;
		/* the tracepoint method sees copies only: reuses are not attributed */
		if (by_mapping || sites)
			attr_count(p, id >> 32, WP_COPY, false);
		return 0;
	} else if (p->flags & PF_WINDOW) {
		if (p->flags & PF_COPIED)
			return 0;
		p->flags |= PF_COPIED;
	} else {
		return 0;
	}
	c = counts_of(id >> 32);
	if (!c)
		return 0;
	if (p->flags & PF_ZERO)
		c->zero_fills++;
	else
		c->cow_copies++;
	return 0;
}

/* rss_stat (6.2 and later: every change of a process's rss counters; 6.1
 * traces only the slow path, and a fault's changes go to the task's cache
 * untraced). A write-protect fault that allocates a page copies it, unless
 * the pte held no folio of the process's: the zero page. wp_page_copy then
 * adds one page to MM_ANONPAGES and takes none out (a copy of an anonymous
 * page changes no counter; one of a file page takes it out of MM_FILEPAGES
 * or MM_SHMEMPAGES first). Only changes made inside the fault itself count
 * (in_fault_at): a munmap the thread makes before its fault is resolved
 * does not. The members are an unnamed enum (mm_types_task.h), the same
 * since 2.6.34: MM_ANONPAGES is 1. */
#define CT_MM_ANONPAGES 1

static __always_inline int on_rss_stat(int member)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct pend *p = pend_of(tid);
	struct cow_counts *c;
	__u32 flags = p->flags;

	if (p->tid != tid || !tid || !(flags & (PF_VME | PF_TP_COPIED)) || !in_fault_at(p->ip))
		return 0;
	if (member != CT_MM_ANONPAGES) {
		p->flags = flags | PF_RSS_OTHER;
		return 0;
	}
	if (flags & PF_VME) {
		p->flags = flags | PF_RSS_ANON;
		return 0;
	}
	/* tracepoint: the copy counted at the allocation was a zero fill */
	p->flags = 0;
	if (flags & PF_RSS_OTHER)
		return 0;
	c = counts_of(id >> 32);
	if (c) {
		c->cow_copies--;	/* per-CPU: the sum over CPUs stays right */
		c->zero_fills++;
	}
	if (by_mapping || sites)
		attr_count(p, id >> 32, WP_ZERO, true);
	return 0;
}

SEC("tp_btf/rss_stat")
int BPF_PROG(rss_stat, struct mm_struct *mm, int member)
{
	return on_rss_stat(member);
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_btf_fault, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	return on_user_fault(ctx, error_code, regs->ip, address);
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
	return on_user_fault(ctx, ctx->error_code, ctx->ip, ctx->address);
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

/* ---- vmevent method: per-CPU vm event counters, no allocation hook ----
 *
 * The page allocator runs mm_page_alloc for every page of the machine, and
 * a BPF program there costs a run per allocation whatever it does. This
 * method hooks only page_fault_user (every user fault, as the one-liner
 * does), page_fault_kernel (rare) and sched_switch (per context switch),
 * and reads the kernel's own per-CPU event counters (vm_event_states, the
 * /proc/vmstat events): wp_page_reuse() counts PGREUSE, the page allocator
 * PGALLOC_<zone>. A tracked wp fault snapshots this CPU's counters; while
 * the thread runs on a CPU no other task does, so the counters' growth over
 * the thread's on-CPU stretches (switch-out adds the stretch, switch-in
 * starts a new one: a fault preempted and migrated midway is still exact)
 * up to the fault's resolution is the fault's own doing. Resolution: the
 * thread's next fault (user or kernel mode), or its switch-out once its
 * saved user registers no longer show the fault. PGREUSE grew: reused; else
 * a page was allocated: copied; else (huge PMD kept, pte changed, error):
 * counted as reused, as the other methods do. Between the fault and its
 * resolution the thread may run its own code and syscalls: a PGREUSE from
 * get_user_pages() there would turn a copy into a reuse, a page allocation
 * would turn a "kept" fault (rare already) into a copy. */
/* The counters are the per-CPU variable vm_event_states. A typed __ksym
 * needs it in kallsyms (CONFIG_KALLSYMS_ALL, not on the 6.18 host), so this
 * CPU's copy is found from this CPU's runqueue, the per-CPU variable
 * `runqueues` that current->se.cfs_rq->rq points to: both sit in
 * .data..percpu, and the loader sets their distance from the offsets in the
 * BTF datasec. */
const volatile __s64 vme_rq_to_events = 0;

#define VME_CPUS 1024	/* CPUs whose counters' address is cached */

/* this CPU's &vm_event_states, found once per CPU */
__u64 vme_base[VME_CPUS];

static __always_inline bool vme_now(__u64 *reuse, __u64 *alloc)
{
	__u32 cpu = bpf_get_smp_processor_id();
	int lo = bpf_core_enum_value_exists(enum vm_event_item, PGALLOC_DMA32) ?
		 bpf_core_enum_value(enum vm_event_item, PGALLOC_DMA32) :
		 bpf_core_enum_value(enum vm_event_item, PGALLOC_NORMAL);
	int hi = bpf_core_enum_value_exists(enum vm_event_item, PGALLOC_MOVABLE) ?
		 bpf_core_enum_value(enum vm_event_item, PGALLOC_MOVABLE) :
		 bpf_core_enum_value(enum vm_event_item, PGALLOC_NORMAL);
	__u64 ev[4] = {}, base;

	if (cpu >= VME_CPUS)
		return false;
	base = vme_base[cpu];
	if (!base) {
		struct task_struct *t = bpf_get_current_task_btf();
		struct rq *rq = t->se.cfs_rq->rq;

		if (!rq)
			return false;
		base = (__u64)rq + vme_rq_to_events;
		vme_base[cpu] = base;
	}
	/* PGALLOC_<zone> are consecutive items (FOR_ALL_ZONES) */
	if (hi < lo || hi - lo >= 4)
		return false;
	if (bpf_probe_read_kernel(ev, (hi - lo + 1) * sizeof(__u64), (void *)(base + lo * sizeof(__u64))))
		return false;
	*alloc = ev[0] + ev[1] + ev[2] + ev[3];
	return !bpf_probe_read_kernel(reuse, sizeof(*reuse),
				      (void *)(base + bpf_core_enum_value(enum vm_event_item, PGREUSE) *
						      sizeof(__u64)));
}

static __always_inline void vme_resolve(struct pend *p, struct cow_counts *c, __u64 r, __u64 a)
{
	__u32 flags = p->flags;
	enum wp_kind kind;

	r += p->neg_reuse;
	a += p->neg_alloc;
	p->flags = 0;
	if (!c)
		return;
	/* Still marked off-CPU while it runs (its switch-in was not traced),
	 * or tainted (see vme_switch): the counters mix other tasks' events. */
	if (flags & (PF_OFFCPU | PF_TAINT)) {
		c->unclassified++;
		return;
	}
	/* a page was allocated and none kept: copied, or, when the fault
	 * added an anonymous page to the rss and took no file page out of it
	 * (wp_page_copy with no old folio: the zero page), a zero fill */
	if (r || !a)
		kind = WP_REUSE;
	else if ((flags & (PF_RSS_ANON | PF_RSS_OTHER)) == PF_RSS_ANON)
		kind = WP_ZERO;
	else
		kind = WP_COPY;
	if (kind == WP_COPY)
		c->cow_copies++;
	else if (kind == WP_ZERO)
		c->zero_fills++;
	else
		c->cow_reuses++;
	if (by_mapping || sites)
		attr_count(p, p->tgid, kind, false);
}

/* The slot pending[tid] of a tracked thread stays its own (tid, tgid and
 * the counters' slot) between faults: a tracked thread's fault costs no
 * hash lookup; an untracked thread's wp fault costs one (a miss). */
static __always_inline int vme_fault(void *ctx, unsigned long error_code, unsigned long ip,
				     unsigned long address, bool user)
{
	__u64 id = bpf_get_current_pid_tgid(), r, a;
	__u32 tid = (__u32)id, tgid = id >> 32;
	struct pend *p = pend_of(tid);
	bool own = p->tid == tid && p->tgid == tgid && tid;
	bool pend = own && (p->flags & PF_VME);
	bool wp = user && (error_code & X86_PF_MASK) == X86_PF_WP_USER;
	struct cow_counts *c;

	if (!pend && !wp)
		return 0;
	if (own) {
		c = counts_at(p->slot);
	} else {
		__u32 *slot = bpf_map_lookup_elem(&procs, &tgid);

		if (!slot)
			return 0;
		/* The slot holds another tracked thread's fault (its id equal
		 * modulo COWTRACE_PEND_SLOTS), not yet resolved: it is resolved
		 * at that thread's next fault or switch, so the window is long
		 * (a child of a churn test writing while its parent's maps
		 * watcher faulted lost one copy so). Its outcome goes with the
		 * slot: unclassified, so that the counts still add up. */
		if (p->tid && (p->flags & PF_VME)) {
			struct cow_counts *oc = counts_at(p->slot);

			if (oc)
				oc->unclassified++;
		}
		p->tid = tid;
		p->tgid = tgid;
		p->slot = *slot;
		p->flags = 0;
		p->vlo = p->vhi = 0;
		c = counts_at(*slot);
	}
	if (!c)
		return 0;
	if (!vme_now(&r, &a)) {
		p->flags = 0;
		return 0;
	}
	if (pend)
		vme_resolve(p, c, r, a);
	if (!wp)
		return 0;
	c->wp_faults++;
	p->ip = ip;
	p->neg_reuse = -r;
	p->neg_alloc = -a;
	/* Before the fault is marked pending: the user stack walk may fault
	 * (kernel mode, no fixup needed), and vme_fault_kernel, another
	 * program, runs nested and would resolve it. */
	if (by_mapping)
		attr_vma_at(p, tgid, address);
	if (sites)
		attr_stack(ctx, p, tgid);
	p->flags = PF_VME;
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(vme_fault_user, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	return vme_fault(ctx, error_code, regs->ip, address, true);
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(vme_fault_kernel, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	return vme_fault(ctx, error_code, 0, address, false);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(vme_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 ptid = prev->pid, ntid = next->pid;
	struct pend *pp = pend_of(ptid), *np = pend_of(ntid);
	bool pout = pp->tid == ptid && ptid && (pp->flags & PF_VME);
	bool pin = np->tid == ntid && ntid && (np->flags & PF_VME);
	bool out = pout && !(pp->flags & PF_OFFCPU);
	bool in = pin && (np->flags & PF_OFFCPU);
	__u64 r, a;

	/* Every switch-out of a thread with a fault pending is followed by
	 * a switch-in before it runs again. A kernel that switches a task
	 * without this tracepoint (this project's patched 6.18 dev host
	 * does, rarely) breaks the pairing: switched out while marked
	 * off-CPU, or in while marked on a CPU. That fault's counters then
	 * hold other tasks' events: it is not classified. */
	if (pout && !out)
		pp->flags |= PF_TAINT;
	if (pin && !in)
		np->flags |= PF_TAINT;
	if (!out && !in)
		return 0;
	/* prev is still current here: this CPU's counters are its own */
	if (!vme_now(&r, &a)) {
		if (out)
			pp->flags = 0;
		if (in)
			np->flags = 0;
		return 0;
	}
	if (out) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(prev);
		long orig_ax = regs ? regs->orig_ax : 0;

		if (regs && regs->ip == pp->ip && (orig_ax == -1 || orig_ax == X86_PF_WP_USER)) {
			/* still in the fault: close this CPU's stretch */
			pp->neg_reuse += r;
			pp->neg_alloc += a;
			pp->flags |= PF_OFFCPU;
		} else {
			vme_resolve(pp, counts_at(pp->slot), r, a);
		}
	}
	if (in) {
		np->neg_reuse -= r;
		np->neg_alloc -= a;
		np->flags &= ~PF_OFFCPU;
	}
	return 0;
}

/* ---- fentry and kprobe methods: a window around do_wp_page ------------ */

/* Set between __open and __load: wp_page_reuse is hooked, so a window that
 * ends without a copy is not counted as a reuse by wp_exit(). */
const volatile bool reuse_hook = false;

/* x86 pte bits (arch/x86/include/asm/pgtable_types.h) and vm_flags */
#define X86_PTE_PRESENT	(1ULL << 0)
#define X86_PTE_SPECIAL	(1ULL << 9)	/* _PAGE_BIT_SOFTW1 */
#define CT_VM_PFNMAP	0x00000400UL
#define CT_VM_MIXEDMAP	0x10000000UL

/* The pte do_wp_page was called for maps the zero page: present and
 * special (no struct page behind it for vm_normal_page) in a mapping that
 * is neither file-backed nor a raw PFN one, where only the zero page is
 * mapped special. */
static __always_inline bool wp_on_zero_page(struct vm_fault *vmf)
{
	__u64 pte = BPF_CORE_READ(vmf, orig_pte.pte);
	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);

	if ((pte & (X86_PTE_PRESENT | X86_PTE_SPECIAL)) != (X86_PTE_PRESENT | X86_PTE_SPECIAL) || !vma)
		return false;
	return !BPF_CORE_READ(vma, vm_file) &&
	       !(BPF_CORE_READ(vma, vm_flags) & (CT_VM_PFNMAP | CT_VM_MIXEDMAP));
}

static __always_inline int wp_enter(void *ctx, struct vm_fault *vmf)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct cow_counts *c = counts_of(id >> 32);
	struct pend *p;

	if (!c)
		return 0;
	c->wp_faults++;
	p = pend_of((__u32)id);
	if (p->tid != (__u32)id)
		p->vlo = p->vhi = 0;
	p->ts = bpf_ktime_get_ns();
	p->flags = PF_WINDOW | (wp_on_zero_page(vmf) ? PF_ZERO : 0);
	p->tid = (__u32)id;
	if (by_mapping)
		attr_vma_of(p, id >> 32, BPF_CORE_READ(vmf, vma));
	if (sites)
		attr_stack(ctx, p, id >> 32);
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
	p->flags = 0;	/* the slot (and its VMA cache) stays the thread's */
	c = counts_of(id >> 32);
	if (!c)
		return 0;
	/* No copy between entry and exit: the page was kept (reused in
	 * place, or the fault ended early: a changed pte, an error). */
	if (!reuse_hook && !(flags & PF_COPIED))
		c->cow_reuses++;
	if (by_mapping || sites)
		attr_count(p, id >> 32,
			   !(flags & PF_COPIED) ? WP_REUSE : (flags & PF_ZERO) ? WP_ZERO : WP_COPY, false);
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

/* A copy or reuse counts only inside a window wp_enter() opened for this
 * thread: a fault that began before its process was tracked (the command
 * cowtrace starts faults right after its fork, while the loader is
 * tracking it) is counted by neither wp_faults nor cow_copies, so that
 * every counted copy or reuse is also attributed (--by-mapping, --sites). */
static __always_inline struct cow_counts *in_window(struct pend **pp)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pend *p = pend_of((__u32)id);

	if (p->tid != (__u32)id || !(p->flags & PF_WINDOW))
		return NULL;
	*pp = p;
	return counts_of(id >> 32);
}

static __always_inline int copy_hit(void)
{
	struct pend *p;
	struct cow_counts *c = in_window(&p);

	if (!c)
		return 0;
	if (p->flags & PF_ZERO)
		c->zero_fills++;
	else
		c->cow_copies++;
	p->flags |= PF_COPIED;
	return 0;
}

static __always_inline int reuse_hit(void)
{
	struct pend *p;
	struct cow_counts *c = in_window(&p);

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
	return wp_enter(ctx, vmf);
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
int BPF_KPROBE(kprobe_do_wp_page, struct vm_fault *vmf)
{
	return wp_enter(ctx, vmf);
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

static __always_inline bool comm_matches(const char *comm)
{
	for (int i = 0; i < COWTRACE_COMM_LEN; i++) {
		if (comm[i] != match_comm[i])
			return false;
		if (!comm[i])
			return true;
	}
	return true;
}

/* Track `tgid` (a fresh or recycled slot, zero on every CPU); false when
 * every slot is taken. */
static __always_inline bool track_new(__u32 tgid, struct cow_info *info)
{
	__u32 slot, *old;

	if (bpf_map_pop_elem(&free_slots, &slot) != 0) {
		slot = __sync_fetch_and_add(&next_slot, 1);
		if (slot >= COWTRACE_MAX_PROCS) {
			__sync_fetch_and_add(&dropped, 1);
			return false;
		}
	}
	old = long_running ? bpf_map_lookup_elem(&procs, &tgid) : NULL;
	if (old)	/* an exited process's pid, not yet untracked */
		bpf_map_push_elem(&stale_slots, old, 0);
	bpf_map_update_elem(&infos, &tgid, info, BPF_ANY);
	bpf_map_update_elem(&procs, &tgid, &slot, BPF_ANY);
	return true;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	struct cow_info info = {};

	if (ptgid == ctgid)
		return 0;
	BPF_CORE_READ_STR_INTO(&info.comm, child, comm);
	if (!track_all && !(by_comm && comm_matches(info.comm)) &&
	    !(follow_children && bpf_map_lookup_elem(&procs, &ptgid))) {
		/* an untracked process under the pid of an exited tracked one
		 * that the loader has not untracked yet: its faults are not
		 * the old process's */
		__u32 *old = long_running ? bpf_map_lookup_elem(&procs, &ctgid) : NULL;

		if (old) {
			bpf_map_push_elem(&stale_slots, old, 0);
			bpf_map_delete_elem(&procs, &ctgid);
			bpf_map_delete_elem(&infos, &ctgid);
		}
		return 0;
	}
	info.ppid = ptgid;
	if (track_new(ctgid, &info)) {
		struct py_target *py = unwind_period ? bpf_map_lookup_elem(&pyprocs, &ptgid) : NULL;

		/* the same address space: the same interpreter, from the start */
		if (py)
			bpf_map_update_elem(&pyprocs, &ctgid, py, BPF_ANY);
		send_event(ctgid, COWTRACE_EV_FORK);
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid), tid = BPF_CORE_READ(p, pid);
	struct cow_info *info = bpf_map_lookup_elem(&infos, &tgid);
	struct pend *pd = pend_of(tid);

	/* the thread's cached VMA range was the old program's */
	if (pd->tid == tid)
		pd->vlo = pd->vhi = 0;
	if (unwind_period)	/* another program: not the interpreter it had */
		bpf_map_delete_elem(&pyprocs, &tgid);
	if (info) {
		BPF_CORE_READ_STR_INTO(&info->comm, p, comm);
		__sync_fetch_and_add(&info->execs, 1);
		send_event(tgid, COWTRACE_EV_EXEC);
	} else if (by_comm) {
		struct cow_info fresh = {};

		BPF_CORE_READ_STR_INTO(&fresh.comm, p, comm);
		if (!comm_matches(fresh.comm))
			return 0;
		fresh.ppid = BPF_CORE_READ(p, real_parent, tgid);
		if (track_new(tgid, &fresh))
			send_event(tgid, COWTRACE_EV_EXEC);
	}
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
