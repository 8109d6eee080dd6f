/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* cowtrace: plain C types shared by cowtrace.bpf.c and the C++ loader. */
#ifndef COWTRACE_H
#define COWTRACE_H

#define COWTRACE_COMM_LEN 16
#define COWTRACE_HIST_SLOTS 32	/* log2(ns) buckets of do_wp_page latency */
#define COWTRACE_MAX_PROCS 16384

/* Per-process counters, one copy per CPU (BPF_MAP_TYPE_PERCPU_HASH keyed by
 * tgid). The loader sums the CPUs. cow_reuses is not counted in the kernel:
 * every write-protect fault either copies a page or keeps the one it has,
 * so the loader reports cow_reuses = wp_faults - cow_copies. */
struct cow_counts {
	__u64 wp_faults;	/* write faults on present, write-protected pages */
	__u64 cow_copies;	/* of those, the ones that copied a 4 KiB page */
	__u64 thp_wp_faults;	/* write-protect faults on a huge PMD (fentry/kprobe) */
	__u64 thp_fallbacks;	/* of those, split to 4 KiB and retried (fentry/kprobe) */
	__u64 hist[COWTRACE_HIST_SLOTS]; /* do_wp_page latency (fexit only) */
};

/* Cold per-process facts (BPF_MAP_TYPE_HASH keyed by tgid). */
struct cow_info {
	__u32 ppid;
	__u32 exited;		/* 1 once the last thread has exited */
	char comm[COWTRACE_COMM_LEN];
};

#endif /* COWTRACE_H */
