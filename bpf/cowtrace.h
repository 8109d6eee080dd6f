/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* cowtrace: plain C types shared by cowtrace.bpf.c and the C++ loader. */
#ifndef COWTRACE_H
#define COWTRACE_H

#define COWTRACE_COMM_LEN 16
#define COWTRACE_HIST_SLOTS 32	/* log2(ns) buckets of do_wp_page latency */
#define COWTRACE_MAX_PROCS 16384
#define COWTRACE_PEND_SLOTS 16384	/* faults in progress, by tid (power of 2) */
#define COWTRACE_MAX_VMAS 65536	/* --by-mapping: (tgid, vm_start) entries */
#define COWTRACE_MAX_SITES 65536	/* --sites: (tgid, stack id) entries */
#define COWTRACE_STACK_SLOTS 32768	/* --sites: distinct user stacks */
#define COWTRACE_STACK_DEPTH 32	/* --sites: frames kept per stack */
#define COWTRACE_VMA_NAME_LEN 48	/* file name (last path component) */

/* Label of a mapping, taken at fault time by the rule the module shares
 * (kmod/include/cowscope_segment.h) from the mm's code/data/brk/stack
 * fields; file mappings split into private (copy-on-write) and shared
 * (mkwrite, never copied). */
enum cowtrace_seg {
	COWTRACE_SEG_TEXT = 0,
	COWTRACE_SEG_DATA,
	COWTRACE_SEG_BSS,
	COWTRACE_SEG_HEAP,
	COWTRACE_SEG_STACK,
	COWTRACE_SEG_MMAP_ANON,
	COWTRACE_SEG_FILE_PRIVATE,
	COWTRACE_SEG_FILE_SHARED,
	COWTRACE_SEG_OTHER,
	COWTRACE_SEG_UNKNOWN,	/* the VMA could not be looked up */
};

/* Per-process counters, one copy per CPU (BPF_MAP_TYPE_PERCPU_ARRAY pcounts,
 * indexed by the slot that the hash `procs` gives for a tgid; slots are
 * handed out once each from next_slot, so a fresh one is zero on every CPU).
 * The loader sums the CPUs. cow_reuses is counted in the kernel by
 * the fentry and kprobe methods (wp_page_reuse where it can be hooked, else
 * a do_wp_page that returned without a copy); the tracepoint method has no
 * hook at the end of a fault and leaves it 0: the loader then reports
 * wp_faults - cow_copies - zero_fills. */
struct cow_counts {
	__u64 wp_faults;	/* write faults on present, write-protected pages */
	__u64 cow_copies;	/* of those, the ones that copied a 4 KiB page */
	__u64 cow_reuses;	/* of those, the ones that kept the page (fentry/kprobe) */
	__u64 unclassified;	/* vmevent: of those, the ones whose outcome could not
				 * be told: the scheduler moved the thread during the
				 * fault without a sched_switch event (seen on a
				 * patched host kernel) */
	__u64 zero_fills;	/* of those, writes to the shared zero page (or another
				 * page the process had no folio of, a raw PFN
				 * mapping): a fresh zeroed page, nothing copied and
				 * nothing shared with another process */
	__u64 thp_wp_faults;	/* write-protect faults on a huge PMD (fentry/kprobe) */
	__u64 thp_fallbacks;	/* of those, split to 4 KiB and retried (fentry/kprobe) */
	__u64 hist[COWTRACE_HIST_SLOTS]; /* do_wp_page latency (fexit only) */
};

/* A tracked fault in progress (the .bss array `pending`, by tid); BPF-only,
 * here because the skeleton names the type. */
struct pend {
	__u32 tid;		/* 0: free */
	__u32 tgid;
	__u32 flags;
	__u32 slot;		/* vmevent: the thread's process's slot in pcounts */
	__u64 ip;		/* tracepoint, vmevent: the faulting user ip */
	union {
		__u64 ts;	/* fentry/kprobe: do_wp_page entry time */
		__u64 neg_reuse; /* vmevent: PGREUSE events of the fault so
				  * far, minus this CPU's count when the
				  * thread came on it (see vme_fault) */
	};
	__u64 neg_alloc;	/* vmevent: PGALLOC events, likewise */
	__u64 vma;		/* --by-mapping: vm_start of the fault's VMA (0: unknown) */
	__u64 vlo, vhi;		/* --by-mapping: the thread's last VMA looked up */
	__s32 stackid;		/* --sites: user stack of the fault, its key in
				 * `stacks` (a 31-bit hash of the ips, or a
				 * rehash after a collision; < 0: none) */
	__u32 sample;		/* --unwind: enum cowtrace_sample_state of the fault */
	__u32 pad[2];
};

/* --by-mapping: copies and reuses per (tgid, VMA start); the VMA's facts are
 * recorded when it is first seen, so they outlive the process. */
struct vma_key {
	__u32 tgid;
	__u32 pad;
	__u64 start;
};

/* --by-mapping, --sites: how the attributed faults were classified. */
struct kind_counts {
	__u64 copies;
	__u64 reuses;
	__u64 zero_fills;
};

struct vma_val {
	__u64 end;
	__u64 wp_faults;
	struct kind_counts n;
	__u64 pgoff;		/* vm_pgoff (file offset in pages) */
	__u32 seg;		/* enum cowtrace_seg */
	__u32 flags;		/* low 32 bits of vm_flags */
	char name[COWTRACE_VMA_NAME_LEN];	/* file mappings: d_name */
};

/* --sites: copies and reuses per (tgid, user stack id in `stacks`). */
struct site_key {
	__u32 tgid;
	__s32 stackid;		/* < 0: no stack (see stack_fail) */
};

/* --sites: one user stack, ips[0] the faulting ip, then return addresses;
 * 0 ends it. */
struct stack_ips {
	__u64 ips[COWTRACE_STACK_DEPTH];
};

struct site_val {
	struct kind_counts n;
};

/* --unwind: a sampled fault's user registers and the user stack from rsp,
 * for the loader's CFI unwinder (ring buffer `samples`), sent when the fault
 * begins; its kind follows in a struct cow_sample_kind once it is
 * classified (the vmevent method classifies at the thread's next fault or
 * switch, when the registers are another fault's). */
#define COWTRACE_UNWIND_PAGE 4096	/* the stack is read a page at a time */
#define COWTRACE_UNWIND_STACK_MAX 16384	/* --unwind-stack: most bytes captured */
#define COWTRACE_PT_REGS_WORDS 21	/* x86-64 struct pt_regs: r15 .. ss */

enum cowtrace_sample_type {
	COWTRACE_SAMPLE_STACK = 1,	/* struct cow_sample */
	COWTRACE_SAMPLE_KIND = 2,	/* struct cow_sample_kind */
};

/* pend.sample: where the thread's fault stands with its sample */
enum cowtrace_sample_state {
	COWTRACE_SAMPLE_NONE = 0,	/* not sampled */
	COWTRACE_SAMPLE_SENT = 1,	/* its stack sent, its kind not yet */
	COWTRACE_SAMPLE_COPY = 2,	/* sent as a copy: the tracepoint method may
					 * still find it was a zero fill */
};

/* enum wp_kind of cowtrace.bpf.c, and the tracepoint method's correction */
enum cowtrace_sample_kinds {
	COWTRACE_KIND_COPY = 0,
	COWTRACE_KIND_REUSE = 1,
	COWTRACE_KIND_ZERO = 2,
	COWTRACE_KIND_COPY_WAS_ZERO = 3,	/* the copy sent before was a zero fill */
};

/* --unwind, CPython 3.11: where a process keeps its frames (the map
 * `pyprocs` by tgid, filled by the loader from the interpreter's DWARF,
 * copied to a child at fork). Offsets in bytes. */
#define COWTRACE_PY_FRAMES 16	/* Python frames read per sample, innermost first */
#define COWTRACE_PY_THREADS 64	/* thread states searched for the faulting thread */

struct py_target {
	__u64 interp_head;		/* address of _PyRuntime.interpreters.head */
	__u32 interp_threads_head;	/* PyInterpreterState.threads.head */
	__u32 tstate_next, tstate_native_thread_id, tstate_cframe;	/* PyThreadState */
	__u32 cframe_current_frame;	/* _PyCFrame */
	__u32 frame_code, frame_previous, frame_prev_instr, frame_is_entry;	/* _PyInterpreterFrame */
};

struct cow_py_frame {
	__u64 code;		/* PyCodeObject * */
	__u64 instr;		/* prev_instr: the instruction it is running */
};

struct cow_sample {
	__u32 type;		/* COWTRACE_SAMPLE_STACK */
	__u32 tgid;
	__u32 tid;
	__s32 stackid;		/* the fault's frame-pointer stack in `stacks` */
	__u32 py_n;		/* Python frames in py[] (0: none, not Python) */
	__u32 py_entry;		/* bit i: py[i] is the first frame of its
				 * _PyEval_EvalFrameDefault call */
	struct cow_py_frame py[COWTRACE_PY_FRAMES];
	__u64 regs[COWTRACE_PT_REGS_WORDS];	/* struct pt_regs of the user entry */
	__u64 stack_addr;	/* where stack[] was read from: rsp's page */
	__u32 stack_len;	/* bytes of stack[] read, whole pages up to the
				 * first missing one (0: none) */
	__u32 pad;
	__u8 stack[];		/* unwind_pages pages reserved */
};

struct cow_sample_kind {
	__u32 type;		/* COWTRACE_SAMPLE_KIND */
	__u32 tid;		/* of the thread's last struct cow_sample */
	__u32 kind;		/* enum cowtrace_sample_kinds */
	__u32 pad;
};

/* Cold per-process facts (BPF_MAP_TYPE_HASH keyed by tgid). */
struct cow_info {
	__u32 ppid;
	__u32 exited;		/* 1 once the last thread has exited */
	char comm[COWTRACE_COMM_LEN];
	__u32 execs;		/* exec()s seen while tracked */
	__u32 pad;
};

/* --by-mapping, --sites: a tracked process forked or exec'd (the ring
 * buffer `events`): the loader's watcher reads its maps now, before a
 * short-lived process is gone. */
enum cowtrace_event_kind {
	COWTRACE_EV_FORK = 1,
	COWTRACE_EV_EXEC = 2,
};

struct cow_event {
	__u32 tgid;
	__u32 kind;		/* enum cowtrace_event_kind */
};

#endif /* COWTRACE_H */
