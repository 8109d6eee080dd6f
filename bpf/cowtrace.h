/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* cowtrace: plain C types shared by cowtrace.bpf.c and the C++ loader. */
#ifndef COWTRACE_H
#define COWTRACE_H

#define COWTRACE_COMM_LEN 16
#define COWTRACE_HIST_SLOTS 32	/* log2(ns) buckets of do_wp_page latency */
#define COWTRACE_MAX_PROCS 16384
#define COWTRACE_PEND_SLOTS 16384	/* faults in progress, by tid (power of 2) */

/* Per-process counters, one copy per CPU (BPF_MAP_TYPE_PERCPU_ARRAY pcounts,
 * indexed by the slot that the hash `procs` gives for a tgid; slots are
 * handed out once each from next_slot, so a fresh one is zero on every CPU).
 * The loader sums the CPUs. cow_reuses is counted in the kernel by
 * the fentry and kprobe methods (wp_page_reuse where it can be hooked, else
 * a do_wp_page that returned without a copy); the tracepoint method has no
 * hook at the end of a fault and leaves it 0: the loader then reports
 * wp_faults - cow_copies. */
struct cow_counts {
	__u64 wp_faults;	/* write faults on present, write-protected pages */
	__u64 cow_copies;	/* of those, the ones that copied a 4 KiB page */
	__u64 cow_reuses;	/* of those, the ones that kept the page (fentry/kprobe) */
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
	__u64 ts;		/* fentry/kprobe: do_wp_page entry time;
				 * vmevent: PGREUSE events, see cowtrace.bpf.c */
	__u64 alloc;		/* vmevent: PGALLOC events, likewise */
};

/* Cold per-process facts (BPF_MAP_TYPE_HASH keyed by tgid). */
struct cow_info {
	__u32 ppid;
	__u32 exited;		/* 1 once the last thread has exited */
	char comm[COWTRACE_COMM_LEN];
};

#endif /* COWTRACE_H */
