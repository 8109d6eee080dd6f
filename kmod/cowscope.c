// SPDX-License-Identifier: GPL-2.0
/*
 * cowscope.ko - /proc views of a task's VMAs, PTE write bits and page
 * refcounts, to watch fork()'s copy-on-write happen.
 *
 * Interface (a stable contract; kmod/README.md has the long version):
 *
 *   /proc/cowscope/track        0600. Write "PID" (optionally followed by
 *                               one newline) to track a process: this
 *                               creates /proc/cowscope/PID/. Write "-PID"
 *                               to stop. Bad input: -EINVAL; no such
 *                               process: -ESRCH; more than
 *                               COWSCOPE_MAX_TRACKED pids: -ENOSPC;
 *                               untracking an untracked pid: -ENOENT.
 *                               Reading lists the tracked pids.
 *   /proc/cowscope/PID/maps     one line per VMA:
 *                               "start-end perms label present writable
 *                               cow shared" after a "# ..." header line.
 *   /proc/cowscope/version      "abi N" (COWSCOPE_ABI_VERSION),
 *                               "version STRING" (COWSCOPE_VERSION) and
 *                               "mapcount per-page|folio-average".
 *   /proc/cowscope/PID/ptes     "# vaddr pfn flags ref map folio", then one
 *                               line per present 4 KiB page (one per
 *                               subpage of a PMD-mapped huge page). flags
 *                               letters: W D A U H a x z k f s, "-" when
 *                               none. map is "~N" when it is the folio's
 *                               average (COWSCOPE_F_MAP_AVG). folio is the
 *                               size of the page's folio: 4K 8K ... 2M.
 *   /proc/cowscope/PID/range    write "START-END" (hex, 0x optional) to
 *                               restrict ptes to [START, END); read it
 *                               back. Applies to ptes files opened later.
 *   /proc/cowscope/PID/summary  per segment label and "total": present
 *                               writable cow shared exclusive huge, then
 *                               present pages by folio size: 4K 8K 16K
 *                               32K 64K 128K 256K 512K 1M 2M.
 *   /proc/cowscope/PID/pagemap  binary: struct cowscope_rec (see
 *                               include/cowscope_uapi.h) per virtual page
 *                               at offset (vaddr / 4096) * 24.
 *
 * Only CAP_SYS_ADMIN (in the initial user namespace, checked against the
 * opener's credentials) may open any of these files. When the target has
 * exited, reads fail with -ESRCH; kernel threads have empty views.
 * Directories of exited targets are pruned on the next write to track.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "compat.h"
#include "cowscope_version.h"

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/mmap_lock.h>
#include <linux/pid.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/capability.h>
#include <linux/mutex.h>
#include <linux/list.h>
#include <linux/threads.h>
#include <linux/ctype.h>
#include <linux/kref.h>

#include <cowscope_uapi.h>
#include <cowscope_segment.h>

#define COWSCOPE_MAX_TRACKED	256
#define CS_TRACK_MAX_INPUT	64
#define CS_RANGE_MAX_INPUT	64
/* seq_file position past the last item */
#define CS_POS_EOF		((loff_t)LLONG_MAX)

/*
 * Lifetime rules.
 *
 *  - A cs_entry is created by a write to track and is on cs_entries (with
 *    its PID directory in /proc) until it is untracked, pruned or the
 *    module unloads. All three happen under cs_lock, and only the task
 *    that unlinks an entry from cs_entries removes its directory
 *    (cs_untrack_entry()): a PID directory is removed exactly once, by its
 *    owner. e->dir is only touched under cs_lock.
 *
 *  - Nothing else may remove a PID directory, which is why cs_exit() first
 *    removes the track file (proc_remove() waits for writes in flight and
 *    refuses new ones), then untracks every entry under cs_lock, and only
 *    then removes the now empty /proc/cowscope. Removing /proc/cowscope
 *    first would tear its PID directories down from under a track write
 *    still in flight that prunes or untracks them: the same directory
 *    freed twice (the slab corruption seen with readers and rmmod).
 *
 *  - Every open file of a PID directory holds a reference (kref) on the
 *    entry, taken at open (pde_data() is valid then: open runs under the
 *    PDE's use count, which proc_remove() waits out) and dropped at
 *    release. proc_remove() of the directory waits for every operation in
 *    flight and calls the release of every file still open, so by the time
 *    it returns those references are gone; the kref makes the entry
 *    outlive every file whatever the order, and the last put frees it and
 *    drops its pid. Files are released before cs_exit() returns, so no put
 *    runs after the module is gone.
 *
 *  - No file operation of a PID directory takes cs_lock, so proc_remove()
 *    under cs_lock cannot deadlock with them.
 */
struct cs_entry {
	struct list_head node;		/* on cs_entries, under cs_lock */
	struct kref ref;		/* list + open files */
	pid_t nr;			/* as seen by the tracker's namespace */
	struct pid *pid;		/* reference held */
	struct proc_dir_entry *dir;	/* under cs_lock */
	spinlock_t range_lock;
	unsigned long range_start, range_end;
};

static DEFINE_MUTEX(cs_lock);		/* protects cs_entries, cs_ntracked */
static LIST_HEAD(cs_entries);
static unsigned int cs_ntracked;
static struct proc_dir_entry *cs_root;
static struct proc_dir_entry *cs_track_pde;

static void cs_entry_free(struct kref *ref)
{
	struct cs_entry *e = container_of(ref, struct cs_entry, ref);

	put_pid(e->pid);
	kfree(e);
}

static void cs_entry_put(struct cs_entry *e)
{
	kref_put(&e->ref, cs_entry_free);
}

/* From an open of one of e's files: the directory is not yet removed. */
static struct cs_entry *cs_entry_get(struct inode *inode)
{
	struct cs_entry *e = pde_data(inode);

	kref_get(&e->ref);
	return e;
}

static bool cs_capable(const struct file *file)
{
	return file_ns_capable(file, &init_user_ns, CAP_SYS_ADMIN);
}

/* ---------------------------------------------------------------------
 * The page-table walker.
 *
 * Locking design. walk_page_range() and __pte_offset_map_lock() are not
 * exported, so cowscope descends the page tables itself:
 *
 *  - The mm is pinned with get_task_mm()/mmput() (mm_users, so the page
 *    tables are not torn down by exit_mmap() under us) and the VMA tree
 *    with mmap_read_lock_killable(). Every caller drops both before it
 *    copies anything to user space; readers resume by *address* (the
 *    seq_file position encodes an address, pagemap's offset is one), so
 *    a changed VMA layout between two read() calls is never a problem.
 *
 *  - PGD, P4D and PUD tables are freed only by free_pgtables() under the
 *    mmap write lock (or for VMAs already detached from the tree, which
 *    find_vma() cannot return), so under the read lock they are stable.
 *    PUD leaves (DAX) are skipped.
 *
 *  - The PMD entry is read and used only under the PMD lock (pmd_lock()).
 *    Every path that changes a PMD that maps a PTE table or a huge page
 *    holds it: THP split and zap (zap_huge_pmd, __split_huge_pmd), and
 *    since 6.5 also khugepaged's retract_page_tables() and
 *    collapse_pte_mapped_thp(), which detach and RCU-free PTE tables
 *    under only the mmap *read* lock (or none). Holding the PMD lock thus
 *    keeps a PTE table attached and allocated, which is what
 *    __pte_offset_map_lock() achieves with RCU plus a re-check.
 *
 *  - With the PMD lock held the PTE table is mapped with
 *    pte_offset_kernel() (x86-64 has no HIGHPTE) and its PTE lock taken,
 *    nested, in the same order retract_page_tables() uses (pmd lock, then
 *    pte lock; the same lock is not taken twice when ptlocks are not
 *    split). Under the PTE lock no PTE can be zapped, so every page a
 *    present PTE maps keeps at least that mapping's reference while we
 *    read its refcount, mapcount and flags: no page reference is taken.
 *
 *  - A huge PMD is handled whole under the PMD lock (which zap and split
 *    need), one record per 4 KiB subpage.
 *
 *  - Spinlocks are held for at most one PMD's worth of entries (512);
 *    callers cond_resched() between PMDs and stop on a fatal signal.
 * ---------------------------------------------------------------------
 */

/*
 * Facts of one page mapped at one place: refcount and mapcount into rec,
 * returns the flags to add. The folio is looked up once. Inlined into the
 * per-PTE loop: as a call (gcc's choice since the folio_order store) the
 * binary view read 256 MiB in 1.27-1.37x pagemap's time on 6.12 under the
 * lab's emulation, inlined in 0.93-0.95x (make vm-bench, same runs).
 */
static __always_inline u32 cs_page_facts(struct page *page,
					 struct page *excl_page,
					 struct cowscope_rec *rec)
{
	struct folio *folio = page_folio(page);
	u32 flags = 0;

	rec->refcount = folio_ref_count(folio);
	rec->mapcount = cs_folio_page_mapcount(folio, page);
	/* rec arrives zeroed (folio_order 0): only large folios write it */
	if (folio_test_large(folio)) {
		rec->folio_order = min_t(unsigned int, folio_order(folio),
					 COWSCOPE_MAX_FOLIO_ORDER);
		if (CS_MAPCOUNT_AVERAGE)
			flags |= COWSCOPE_F_MAP_AVG;
	}
	if (folio_test_anon(folio)) {
		flags |= COWSCOPE_F_ANON;
		if (folio_test_ksm(folio))
			flags |= COWSCOPE_F_KSM;
		else if (PageAnonExclusive(excl_page))
			flags |= COWSCOPE_F_ANON_EXCL;
	} else if (READ_ONCE(folio->mapping)) {
		flags |= COWSCOPE_F_FILE;
	}
	if (folio_test_swapcache(folio))
		flags |= COWSCOPE_F_SWAPCACHE;
	return flags;
}

/* flags plus COW when they say present, anonymous, write-protected */
static u32 cs_cow_flags(bool vma_write, u32 flags)
{
	if (vma_write &&
	    (flags & (COWSCOPE_F_PRESENT | COWSCOPE_F_ANON | COWSCOPE_F_WRITE)) ==
	    (COWSCOPE_F_PRESENT | COWSCOPE_F_ANON))
		flags |= COWSCOPE_F_COW;
	return flags;
}

/* The flags a present PTE or huge PMD gives from its hardware bits. */
static inline u32 cs_hw_flags(bool write, bool dirty, bool young, bool user)
{
	return (write ? COWSCOPE_F_WRITE : 0) | (dirty ? COWSCOPE_F_DIRTY : 0) |
	       (young ? COWSCOPE_F_ACCESSED : 0) | (user ? COWSCOPE_F_USER : 0);
}

static void cs_huge_pmd(struct vm_area_struct *vma, pmd_t pmd,
			unsigned long addr, unsigned long end,
			struct cowscope_rec *rec)
{
	unsigned long pfn0 = pmd_pfn(pmd);
	unsigned int base = (addr & ~PMD_MASK) >> PAGE_SHIFT;
	u32 flags = COWSCOPE_F_PRESENT | COWSCOPE_F_HUGE;
	struct page *head = NULL;
	bool zero = false;
	unsigned int i;

	flags |= cs_hw_flags(pmd_write(pmd), pmd_dirty(pmd), pmd_young(pmd),
			     cs_pmd_user(pmd));
	if (cs_pmd_devmap(pmd) || !pfn_valid(pfn0) ||
	    (vma->vm_flags & (VM_PFNMAP | VM_IO)))
		flags |= COWSCOPE_F_NOPAGE;
	else
		head = pfn_to_page(pfn0);
	if (head && cs_is_huge_zero(vma, head)) {
		zero = true;
		flags |= COWSCOPE_F_ZERO;
	}

	for (i = 0; addr < end; addr += PAGE_SIZE, i++) {
		unsigned long pfn = pfn0 + base + i;

		u32 f = rec[i].flags | flags;

		rec[i].pfn = pfn;
		if (head && !zero) {
			/* the exclusive bit of a PMD-mapped THP is the head's */
			f |= cs_page_facts(pfn_to_page(pfn), head, &rec[i]);
		} else if (zero) {
			rec[i].refcount = page_count(pfn_to_page(pfn));
			rec[i].mapcount = cs_page_mapcount(pfn_to_page(pfn));
			rec[i].folio_order = min_t(unsigned int,
						   folio_order(page_folio(head)),
						   COWSCOPE_MAX_FOLIO_ORDER);
			if (CS_MAPCOUNT_AVERAGE)
				f |= COWSCOPE_F_MAP_AVG;
		}
		rec[i].flags = cs_cow_flags(vma->vm_flags & VM_WRITE, f);
	}
}

/*
 * One PTE table's worth of records. Each record is read once and written
 * once (flags gathered in a local); the VMA's flags are tested once. A
 * non-special PTE of a VMA that is neither VM_PFNMAP/VM_IO nor VM_MIXEDMAP
 * maps a normal page (what vm_normal_page() relies on: x86-64 has
 * pte_special), so pfn_valid() is only needed for VM_MIXEDMAP.
 */
static void cs_pte_range(struct vm_area_struct *vma, pte_t *ptep,
			 unsigned long addr, unsigned long end,
			 struct cowscope_rec *rec)
{
	const vm_flags_t vmf = vma->vm_flags;
	const bool nopage = vmf & (VM_PFNMAP | VM_IO);
	const bool check_pfn = vmf & VM_MIXEDMAP;
	const bool vma_write = vmf & VM_WRITE;

	for (; addr < end; addr += PAGE_SIZE, ptep++, rec++) {
		pte_t pte = ptep_get(ptep);
		unsigned long pfn;
		u32 f;

		if (pte_none(pte))
			continue;
		if (!pte_present(pte)) {
			rec->flags |= COWSCOPE_F_SWAPENT;
			continue;
		}
		pfn = pte_pfn(pte);
		f = rec->flags | COWSCOPE_F_PRESENT |
		    cs_hw_flags(pte_write(pte), pte_dirty(pte), pte_young(pte),
				cs_pte_user(pte));
		rec->pfn = pfn;
		/* The zero page's PTE is special: test for it first. */
		if (pte_special(pte)) {
			if (is_zero_pfn(pfn)) {
				struct page *zp = pfn_to_page(pfn);

				f |= COWSCOPE_F_ZERO;
				rec->refcount = page_count(zp);
				rec->mapcount = cs_page_mapcount(zp);
			} else {
				f |= COWSCOPE_F_NOPAGE;
			}
		} else if (nopage || (check_pfn && !pfn_valid(pfn))) {
			f |= COWSCOPE_F_NOPAGE;
		} else {
			struct page *page = pfn_to_page(pfn);

			f |= cs_page_facts(page, page, rec);
		}
		rec->flags = cs_cow_flags(vma_write, f);
	}
}

/*
 * Is this file VMA another segment of the main executable (its ELF
 * header, rodata, relro)? Same inode as the VMA holding start_code.
 */
static bool cs_is_exe_vma(struct vm_area_struct *vma)
{
	struct vm_area_struct *text = find_vma(vma->vm_mm,
					       vma->vm_mm->start_code);

	return text && text->vm_file &&
	       text->vm_start <= vma->vm_mm->start_code &&
	       file_inode(text->vm_file) == file_inode(vma->vm_file);
}

/* A plain load, for COWSCOPE_VMA_FACTS() (the BPF side reads with CO-RE). */
#define CS_READ(p, field) ((p)->field)

/*
 * Label of a VMA: cowscope_vma_label() (include/cowscope_segment.h, the
 * rule cowtrace's BPF program shares), then the module's own names for
 * special mappings. The caller holds the mmap read lock.
 */
static u8 cs_segment(struct vm_area_struct *vma)
{
	struct cowscope_vma_facts f;
	const char *name;

	BUILD_BUG_ON(COWSCOPE_VM_WRITE != VM_WRITE || COWSCOPE_VM_SHARED != VM_SHARED ||
		     COWSCOPE_VM_PFNMAP != VM_PFNMAP || COWSCOPE_VM_IO != VM_IO);
	COWSCOPE_VMA_FACTS(&f, vma, vma->vm_mm, CS_READ);
	f.has_file = vma->vm_file != NULL;
	f.special = !vma->vm_file && vma->vm_ops;
	f.exe_image = vma->vm_file && cs_is_exe_vma(vma);
	switch (cowscope_vma_label(&f)) {
	case COWSCOPE_VL_SPECIAL:
		name = vma->vm_ops->name ? vma->vm_ops->name(vma) : NULL;
		if (name && !strcmp(name, "[vdso]"))
			return COWSCOPE_SEG_VDSO;
		if (name && !strncmp(name, "[vvar", 5))
			return COWSCOPE_SEG_VVAR;
		return COWSCOPE_SEG_OTHER;
	case COWSCOPE_VL_STACK:
		return COWSCOPE_SEG_STACK;
	case COWSCOPE_VL_HEAP:
		return COWSCOPE_SEG_HEAP;
	case COWSCOPE_VL_TEXT:
		return COWSCOPE_SEG_TEXT;
	case COWSCOPE_VL_DATA:
		return COWSCOPE_SEG_DATA;
	case COWSCOPE_VL_BSS:
		return COWSCOPE_SEG_BSS;
	case COWSCOPE_VL_FILE_PRIVATE:
	case COWSCOPE_VL_FILE_SHARED:
		return COWSCOPE_SEG_MMAP_FILE;
	case COWSCOPE_VL_ANON:
		return COWSCOPE_SEG_MMAP_ANON;
	case COWSCOPE_VL_IO:
		break;
	}
	return COWSCOPE_SEG_OTHER;
}

/*
 * cs_fill - records for [addr, limit) inside @vma, at most up to the end
 * of addr's PMD span. The caller holds the mmap read lock and has zeroed
 * rec[]. Returns the end of the range covered: possibly beyond the PMD
 * span when an upper level is empty (then rec[] is left untouched and
 * the caller treats the whole range as "no page"); *filled tells which.
 */
static unsigned long cs_fill(struct mm_struct *mm, struct vm_area_struct *vma,
			     unsigned long addr, unsigned long limit,
			     struct cowscope_rec *rec, bool *filled)
{
	unsigned long end = pmd_addr_end(addr, limit);
	spinlock_t *pml, *ptl;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pudp, pud;
	pmd_t *pmdp, pmd;
	pte_t *pte;

	*filled = false;
	if (is_vm_hugetlb_page(vma)) {
		/* hugetlb: not walked (own lock scheme); mark it NOPAGE */
		unsigned long a;

		*filled = true;
		for (a = addr; a < end; a += PAGE_SIZE, rec++)
			rec->flags |= COWSCOPE_F_NOPAGE;
		return end;
	}
	pgd = pgd_offset(mm, addr);
	if (pgd_none(READ_ONCE(*pgd)) || pgd_bad(READ_ONCE(*pgd)))
		return pgd_addr_end(addr, limit);
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(READ_ONCE(*p4d)) || p4d_bad(READ_ONCE(*p4d)))
		return p4d_addr_end(addr, limit);
	pudp = pud_offset(p4d, addr);
	pud = cs_pud_read(pudp);
	if (pud_none(pud) || cs_pud_leaf(pud) || pud_bad(pud))
		return pud_addr_end(addr, limit);
	pmdp = pmd_offset(pudp, addr);
	if (pmd_none(cs_pmd_read(pmdp)))
		return end;

	*filled = true;
	pml = pmd_lock(mm, pmdp);
	pmd = cs_pmd_read(pmdp);
	if (pmd_none(pmd))
		goto out;
	if (!pmd_present(pmd)) {
		/* a PMD migration entry */
		unsigned long a;

		for (a = addr; a < end; a += PAGE_SIZE)
			rec[(a - addr) >> PAGE_SHIFT].flags |=
				COWSCOPE_F_SWAPENT;
		goto out;
	}
	if (cs_pmd_leaf(pmd) || cs_pmd_devmap(pmd)) {
		cs_huge_pmd(vma, pmd, addr, end, rec);
		goto out;
	}
	if (pmd_bad(pmd))
		goto out;
	ptl = pte_lockptr(mm, pmdp);
	if (ptl != pml)
		spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
	pte = pte_offset_kernel(pmdp, addr);
	cs_pte_range(vma, pte, addr, end, rec);
	if (ptl != pml)
		spin_unlock(ptl);
out:
	spin_unlock(pml);
	return end;
}

/* ---------------------------------------------------------------------
 * Target lookup.
 * ---------------------------------------------------------------------
 */

/*
 * The target's mm with an mm_users reference, NULL for a kernel thread
 * (an empty view), ERR_PTR(-ESRCH) once it has exited.
 */
static struct mm_struct *cs_get_mm(struct cs_entry *e)
{
	struct task_struct *task = get_pid_task(e->pid, PIDTYPE_PID);
	struct mm_struct *mm;

	if (!task)
		return ERR_PTR(-ESRCH);
	if (task->flags & PF_KTHREAD) {
		put_task_struct(task);
		return NULL;
	}
	mm = get_task_mm(task);
	put_task_struct(task);
	return mm ? mm : ERR_PTR(-ESRCH);
}

/* ---------------------------------------------------------------------
 * Text views: maps, ptes, summary (seq_file). The position of an item is
 * (address >> PAGE_SHIFT) + 1; 0 is the header line.
 * ---------------------------------------------------------------------
 */

#define CS_CHUNK_RECS	PTRS_PER_PMD	/* one PMD span of records */

struct cs_seq {
	struct cs_entry *e;
	struct mm_struct *mm;		/* between start and stop */
	bool locked;
	unsigned long range_start, range_end;	/* ptes only */
	/* ptes: records of [chunk_start, chunk_end), valid until stop */
	unsigned long chunk_start, chunk_end;
	bool chunk_filled;
	unsigned long cur;		/* address of the current item */
	struct cowscope_rec *recs;
};

static void *cs_seq_lock(struct seq_file *m)
{
	struct cs_seq *st = m->private;
	struct mm_struct *mm;

	if (!cs_capable(m->file))
		return ERR_PTR(-EPERM);
	mm = cs_get_mm(st->e);
	if (IS_ERR(mm))
		return mm;
	if (!mm)
		return NULL;
	if (mmap_read_lock_killable(mm)) {
		mmput(mm);
		return ERR_PTR(-EINTR);
	}
	st->mm = mm;
	st->locked = true;
	return st;
}

static void cs_seq_stop(struct seq_file *m, void *v)
{
	struct cs_seq *st = m->private;

	st->chunk_end = 0;		/* never reuse records across reads */
	if (st->locked) {
		mmap_read_unlock(st->mm);
		mmput(st->mm);
		st->mm = NULL;
		st->locked = false;
	}
}

static int cs_seq_open(struct inode *inode, struct file *file,
		       const struct seq_operations *ops)
{
	struct cs_entry *e;
	struct cs_seq *st;

	if (!cs_capable(file))
		return -EPERM;
	st = __seq_open_private(file, ops, sizeof(*st));
	if (!st)
		return -ENOMEM;
	e = cs_entry_get(inode);
	st->e = e;
	spin_lock(&e->range_lock);
	st->range_start = e->range_start;
	st->range_end = e->range_end;
	spin_unlock(&e->range_lock);
	st->recs = kvmalloc_array(CS_CHUNK_RECS, sizeof(*st->recs), GFP_KERNEL);
	if (!st->recs) {
		seq_release_private(inode, file);
		cs_entry_put(e);
		return -ENOMEM;
	}
	return 0;
}

static int cs_seq_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct cs_seq *st = m->private;
	struct cs_entry *e = st->e;
	int ret;

	kvfree(st->recs);
	ret = seq_release_private(inode, file);
	cs_entry_put(e);
	return ret;
}

/*
 * Run fn over every 4 KiB page record of [start, end) of @vma, in chunks,
 * cond_resched() between them. Stops early on a fatal signal.
 */
static void cs_for_each_rec(struct cs_seq *st, struct vm_area_struct *vma,
			    unsigned long start, unsigned long end,
			    void (*fn)(void *arg, unsigned long addr,
				       const struct cowscope_rec *rec),
			    void *arg)
{
	unsigned long a = start;

	while (a < end) {
		unsigned long next, x;
		bool filled;

		memset(st->recs, 0, CS_CHUNK_RECS * sizeof(*st->recs));
		next = cs_fill(st->mm, vma, a, end, st->recs, &filled);
		if (filled)
			for (x = a; x < next; x += PAGE_SIZE)
				fn(arg, x, &st->recs[(x - a) >> PAGE_SHIFT]);
		a = next;
		if (fatal_signal_pending(current))
			break;
		cond_resched();
	}
}

/* maps */

struct cs_counts {
	unsigned long present, writable, cow, shared, excl, huge;
	/* present pages by the order of their folio */
	unsigned long folio[COWSCOPE_MAX_FOLIO_ORDER + 1];
};

static void cs_count(void *arg, unsigned long addr,
		     const struct cowscope_rec *rec)
{
	struct cs_counts *c = arg;

	if (!(rec->flags & COWSCOPE_F_PRESENT))
		return;
	c->present++;
	if (rec->flags & COWSCOPE_F_WRITE)
		c->writable++;
	if (rec->flags & COWSCOPE_F_COW)
		c->cow++;
	if (rec->mapcount > 1)
		c->shared++;
	if (rec->flags & COWSCOPE_F_ANON_EXCL)
		c->excl++;
	if ((rec->flags & COWSCOPE_F_HUGE) && !(addr & ~PMD_MASK))
		c->huge++;
	c->folio[rec->folio_order]++;
}

static void *cs_maps_find(struct cs_seq *st, unsigned long addr)
{
	struct vm_area_struct *vma = find_vma(st->mm, addr);

	if (!vma)
		return NULL;
	st->cur = vma->vm_start;
	return st;
}

/*
 * ->start of the address-positioned views (maps, ptes): take the locks,
 * then resume at the address the position encodes (pos 0 is the header,
 * pos N > 0 is page N - 1, CS_POS_EOF is past the end).
 */
static void *cs_addr_start(struct seq_file *m, loff_t *pos,
			   void *(*find)(struct cs_seq *st, unsigned long addr))
{
	void *p;

	if (*pos == CS_POS_EOF)
		return NULL;
	p = cs_seq_lock(m);
	if (IS_ERR_OR_NULL(p))
		return p;
	if (*pos == 0)
		return SEQ_START_TOKEN;
	return find(m->private, (unsigned long)(*pos - 1) << PAGE_SHIFT);
}

static void *cs_maps_start(struct seq_file *m, loff_t *pos)
{
	return cs_addr_start(m, pos, cs_maps_find);
}

static void *cs_maps_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct cs_seq *st = m->private;
	void *p;

	if (v == SEQ_START_TOKEN) {
		p = st->locked ? cs_maps_find(st, 0) : NULL;
	} else {
		struct vm_area_struct *vma = find_vma(st->mm, st->cur);

		p = vma ? cs_maps_find(st, vma->vm_end) : NULL;
	}
	*pos = p ? (loff_t)(st->cur >> PAGE_SHIFT) + 1 : CS_POS_EOF;
	return p;
}

static int cs_maps_show(struct seq_file *m, void *v)
{
	struct cs_seq *st = m->private;
	struct vm_area_struct *vma;
	struct cs_counts c = {};
	vm_flags_t f;

	if (v == SEQ_START_TOKEN) {
		seq_puts(m, "# start-end perms label present writable cow shared\n");
		return 0;
	}
	vma = find_vma(st->mm, st->cur);
	if (!vma || vma->vm_start != st->cur)
		return 0;
	cs_for_each_rec(st, vma, vma->vm_start, vma->vm_end, cs_count, &c);
	f = vma->vm_flags;
	seq_printf(m, "%lx-%lx %c%c%c%c %s %lu %lu %lu %lu\n",
		   vma->vm_start, vma->vm_end,
		   f & VM_READ ? 'r' : '-', f & VM_WRITE ? 'w' : '-',
		   f & VM_EXEC ? 'x' : '-', f & VM_MAYSHARE ? 's' : 'p',
		   cowscope_segment_name(cs_segment(vma)),
		   c.present, c.writable, c.cow, c.shared);
	return 0;
}

/* ptes */

/* The first present page at or after addr inside the range, or NULL. */
static void *cs_ptes_find(struct cs_seq *st, unsigned long addr)
{
	if (addr < st->range_start)
		addr = st->range_start;
	while (addr < st->range_end) {
		struct vm_area_struct *vma;
		unsigned long end, x;

		if (!(st->chunk_start <= addr && addr < st->chunk_end)) {
			vma = find_vma(st->mm, addr);
			if (!vma || vma->vm_start >= st->range_end)
				return NULL;
			if (addr < vma->vm_start)
				addr = vma->vm_start;
			end = min(vma->vm_end, st->range_end);
			memset(st->recs, 0,
			       CS_CHUNK_RECS * sizeof(*st->recs));
			st->chunk_start = addr;
			st->chunk_end = cs_fill(st->mm, vma, addr, end,
						st->recs, &st->chunk_filled);
		}
		if (st->chunk_filled) {
			for (x = addr; x < st->chunk_end; x += PAGE_SIZE) {
				const struct cowscope_rec *r =
					&st->recs[(x - st->chunk_start) >>
						  PAGE_SHIFT];

				if (r->flags & COWSCOPE_F_PRESENT) {
					st->cur = x;
					return st;
				}
			}
		}
		addr = st->chunk_end;
		if (fatal_signal_pending(current))
			return NULL;
		cond_resched();
	}
	return NULL;
}

static void *cs_ptes_start(struct seq_file *m, loff_t *pos)
{
	return cs_addr_start(m, pos, cs_ptes_find);
}

static void *cs_ptes_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct cs_seq *st = m->private;
	void *p = NULL;

	if (st->locked)
		p = cs_ptes_find(st, v == SEQ_START_TOKEN ? 0 :
				 st->cur + PAGE_SIZE);
	*pos = p ? (loff_t)(st->cur >> PAGE_SHIFT) + 1 : CS_POS_EOF;
	return p;
}

/* A folio size for the text views: 4K 8K ... 512K 1M 2M. */
static void cs_put_size(struct seq_file *m, unsigned int order)
{
	unsigned long kib = (PAGE_SIZE >> 10) << order;

	if (kib >= 1024 && !(kib & 1023))
		seq_printf(m, "%luM", kib >> 10);
	else
		seq_printf(m, "%luK", kib);
}

static int cs_ptes_show(struct seq_file *m, void *v)
{
	struct cs_seq *st = m->private;
	const struct cowscope_rec *r;
	char flags[COWSCOPE_FLAG_LETTERS_LEN + 1];

	if (v == SEQ_START_TOKEN) {
		seq_puts(m, "# vaddr pfn flags ref map folio\n");
		return 0;
	}
	r = &st->recs[(st->cur - st->chunk_start) >> PAGE_SHIFT];
	cowscope_flag_letters(r->flags, flags);
	seq_printf(m, "0x%lx %llx %s %u %s%u ", st->cur,
		   (unsigned long long)r->pfn, flags, r->refcount,
		   r->flags & COWSCOPE_F_MAP_AVG ? "~" : "", r->mapcount);
	cs_put_size(m, r->folio_order);
	seq_putc(m, '\n');
	return 0;
}

/* summary */

static void *cs_summary_start(struct seq_file *m, loff_t *pos)
{
	void *p;

	if (*pos != 0)
		return NULL;
	p = cs_seq_lock(m);
	if (IS_ERR(p))
		return p;
	/* a kernel thread (p == NULL) still gets an all-zero summary */
	return SEQ_START_TOKEN;
}

static void *cs_summary_next(struct seq_file *m, void *v, loff_t *pos)
{
	*pos = CS_POS_EOF;
	return NULL;
}

static void cs_summary_line(struct seq_file *m, const char *label,
			    const struct cs_counts *c)
{
	unsigned int o;

	seq_printf(m, "%s %lu %lu %lu %lu %lu %lu", label, c->present,
		   c->writable, c->cow, c->shared, c->excl, c->huge);
	for (o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++)
		seq_printf(m, " %lu", c->folio[o]);
	seq_putc(m, '\n');
}

static int cs_summary_show(struct seq_file *m, void *v)
{
	struct cs_seq *st = m->private;
	struct cs_counts *c, total = {};
	struct vm_area_struct *vma;
	unsigned long addr = 0;
	unsigned int i;

	c = kcalloc(COWSCOPE_SEG_COUNT, sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	while (st->locked && (vma = find_vma(st->mm, addr))) {
		cs_for_each_rec(st, vma, vma->vm_start, vma->vm_end, cs_count,
				&c[cs_segment(vma)]);
		addr = vma->vm_end;
		if (fatal_signal_pending(current))
			break;
	}
	seq_puts(m, "# label present writable cow shared exclusive huge");
	for (i = 0; i <= COWSCOPE_MAX_FOLIO_ORDER; i++) {
		seq_putc(m, ' ');
		cs_put_size(m, i);
	}
	seq_putc(m, '\n');
	for (i = 0; i < COWSCOPE_SEG_COUNT; i++) {
		unsigned int o;

		cs_summary_line(m, cowscope_segment_name(i), &c[i]);
		for (o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++)
			total.folio[o] += c[i].folio[o];
		total.present += c[i].present;
		total.writable += c[i].writable;
		total.cow += c[i].cow;
		total.shared += c[i].shared;
		total.excl += c[i].excl;
		total.huge += c[i].huge;
	}
	cs_summary_line(m, "total", &total);
	kfree(c);
	return 0;
}

/*
 * The text views, by the name of their file in the pid's directory: one
 * open picks the view's seq_operations by that name, so the three files
 * share one proc_ops.
 */
static const struct {
	const char *name;
	const struct seq_operations ops;
} cs_views[] = {
	{ "maps", { .start = cs_maps_start, .next = cs_maps_next,
		    .stop = cs_seq_stop, .show = cs_maps_show } },
	{ "ptes", { .start = cs_ptes_start, .next = cs_ptes_next,
		    .stop = cs_seq_stop, .show = cs_ptes_show } },
	{ "summary", { .start = cs_summary_start, .next = cs_summary_next,
		       .stop = cs_seq_stop, .show = cs_summary_show } },
};

static int cs_view_open(struct inode *inode, struct file *file)
{
	const char *name = (const char *)file_dentry(file)->d_name.name;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cs_views); i++)
		if (!strcmp(name, cs_views[i].name))
			return cs_seq_open(inode, file, &cs_views[i].ops);
	return -ENOENT;
}

static const struct proc_ops cs_view_fops = {
	.proc_open = cs_view_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = cs_seq_release,
};

/* ---------------------------------------------------------------------
 * pagemap: binary records.
 * ---------------------------------------------------------------------
 */

/*
 * Records per mmap-lock hold and per copy_to_user(): at most 8 PMD spans
 * (96 KiB). The buffer belongs to the open file: allocated at the first
 * read, as large as that read needs up to CS_PM_BATCH, grown by a later
 * larger read, freed at release. Reads of one file take its mutex
 * (killable) to use it.
 */
#define CS_PM_BATCH	(8 * CS_CHUNK_RECS)

struct cs_pm {
	struct cs_entry *e;		/* reference held */
	struct mutex lock;		/* serialises use of buf */
	struct cowscope_rec *buf;	/* cap records, under lock */
	unsigned long cap;
};

static int cs_pagemap_open(struct inode *inode, struct file *file)
{
	struct cs_pm *pm;

	if (!cs_capable(file))
		return -EPERM;
	pm = kzalloc(sizeof(*pm), GFP_KERNEL);
	if (!pm)
		return -ENOMEM;
	mutex_init(&pm->lock);
	pm->e = cs_entry_get(inode);
	file->private_data = pm;
	return 0;
}

static int cs_pagemap_release(struct inode *inode, struct file *file)
{
	struct cs_pm *pm = file->private_data;

	cs_entry_put(pm->e);
	kvfree(pm->buf);
	mutex_destroy(&pm->lock);
	kfree(pm);
	return 0;
}

/* Set n records to *tmpl: one 24-byte store each instead of a memset. */
static void cs_fill_tmpl(struct cowscope_rec *r, unsigned long n,
			 const struct cowscope_rec *tmpl)
{
	while (n--)
		*r++ = *tmpl;
}

/*
 * Records for n pages from vaddr into buf. One find_vma() per VMA, its
 * label computed once, every record written in one pass from a template
 * (holes get segment "none") and then completed under the PMD and PTE
 * locks, which are taken once per PMD span.
 */
static int cs_pagemap_batch(struct mm_struct *mm, unsigned long vaddr,
			    unsigned long n, struct cowscope_rec *buf)
{
	static const struct cowscope_rec none = {
		.segment = COWSCOPE_SEG_NONE,
	};
	unsigned long end = vaddr + (n << PAGE_SHIFT);
	unsigned long a = vaddr;
	struct vm_area_struct *vma;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	for (vma = find_vma(mm, a); vma && vma->vm_start < end;
	     vma = find_vma(mm, vma->vm_end)) {
		struct cowscope_rec tmpl = {
			.flags = COWSCOPE_F_VMA,
			.segment = cs_segment(vma),
		};
		unsigned long vend = min(vma->vm_end, end);

		if (vma->vm_flags & VM_WRITE)
			tmpl.flags |= COWSCOPE_F_VMA_WRITE;
		if (a < vma->vm_start) {
			/* a hole: no VMA */
			cs_fill_tmpl(&buf[(a - vaddr) >> PAGE_SHIFT],
				     (vma->vm_start - a) >> PAGE_SHIFT, &none);
			a = vma->vm_start;
		}
		cs_fill_tmpl(&buf[(a - vaddr) >> PAGE_SHIFT],
			     (vend - a) >> PAGE_SHIFT, &tmpl);
		while (a < vend) {
			bool filled;

			a = cs_fill(mm, vma, a, vend,
				    &buf[(a - vaddr) >> PAGE_SHIFT], &filled);
		}
		a = vend;
		if (a >= end)
			break;
	}
	mmap_read_unlock(mm);
	if (a < end)
		cs_fill_tmpl(&buf[(a - vaddr) >> PAGE_SHIFT],
			     (end - a) >> PAGE_SHIFT, &none);
	return 0;
}

static ssize_t cs_pagemap_read(struct file *file, char __user *ubuf,
			       size_t count, loff_t *ppos)
{
	struct cs_pm *pm = file->private_data;
	struct mm_struct *mm;
	unsigned long vpage, npages, limit;
	ssize_t done = 0;
	int ret = 0;

	if (!cs_capable(file))
		return -EPERM;
	/* whole records only, at record-aligned offsets (as pagemap) */
	count -= count % COWSCOPE_REC_SIZE;
	if (*ppos < 0 || *ppos % COWSCOPE_REC_SIZE)
		return -EINVAL;
	mm = cs_get_mm(pm->e);
	if (IS_ERR(mm))
		return PTR_ERR(mm);
	if (!mm)
		return 0;
	limit = mm->task_size >> PAGE_SHIFT;
	vpage = *ppos / COWSCOPE_REC_SIZE;
	if (vpage >= limit || !count) {
		mmput(mm);
		return 0;
	}
	npages = min_t(unsigned long, count / COWSCOPE_REC_SIZE,
		       limit - vpage);
	if (mutex_lock_killable(&pm->lock)) {
		mmput(mm);
		return -EINTR;
	}
	if (pm->cap < min_t(unsigned long, npages, CS_PM_BATCH)) {
		unsigned long cap = min_t(unsigned long, npages, CS_PM_BATCH);
		struct cowscope_rec *buf;

		buf = kvmalloc_array(cap, sizeof(*buf), GFP_KERNEL);
		if (!buf) {
			mutex_unlock(&pm->lock);
			mmput(mm);
			return -ENOMEM;
		}
		kvfree(pm->buf);
		pm->buf = buf;
		pm->cap = cap;
	}
	while (npages) {
		unsigned long n = min(npages, pm->cap);
		size_t bytes = n * sizeof(*pm->buf);

		ret = cs_pagemap_batch(mm, vpage << PAGE_SHIFT, n, pm->buf);
		if (ret)
			break;
		if (copy_to_user(ubuf + done, pm->buf, bytes)) {
			ret = -EFAULT;
			break;
		}
		done += bytes;
		vpage += n;
		npages -= n;
		if (npages) {
			if (fatal_signal_pending(current))
				break;
			cond_resched();
		}
	}
	mutex_unlock(&pm->lock);
	mmput(mm);
	if (!done)
		return ret;
	*ppos += done;
	return done;
}

static const struct proc_ops cs_pagemap_fops = {
	.proc_open = cs_pagemap_open,
	.proc_read = cs_pagemap_read,
	.proc_lseek = default_llseek,
	.proc_release = cs_pagemap_release,
};

/* ---------------------------------------------------------------------
 * range
 * ---------------------------------------------------------------------
 */

static int cs_range_show(struct seq_file *m, void *v)
{
	struct cs_entry *e = m->private;
	unsigned long s, end;

	spin_lock(&e->range_lock);
	s = e->range_start;
	end = e->range_end;
	spin_unlock(&e->range_lock);
	seq_printf(m, "0x%lx-0x%lx\n", s, end);
	return 0;
}

static int cs_range_open(struct inode *inode, struct file *file)
{
	struct cs_entry *e;
	int ret;

	if (!cs_capable(file))
		return -EPERM;
	e = cs_entry_get(inode);
	ret = single_open(file, cs_range_show, e);
	if (ret)
		cs_entry_put(e);
	return ret;
}

static int cs_range_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct cs_entry *e = m->private;
	int ret;

	ret = single_release(inode, file);
	cs_entry_put(e);
	return ret;
}

/* Parse one hex number, "0x" optional, at *p; advance *p. */
static int cs_parse_hex(const char **p, unsigned long *val)
{
	const char *s = *p;
	unsigned long v = 0;
	int digits = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (; isxdigit(*s); s++, digits++) {
		if (digits >= 16)
			return -EINVAL;
		v = (v << 4) | hex_to_bin(*s);
	}
	if (!digits)
		return -EINVAL;
	*val = v;
	*p = s;
	return 0;
}

static ssize_t cs_range_write(struct file *file, const char __user *ubuf,
			      size_t count, loff_t *ppos)
{
	struct seq_file *m = file->private_data;
	struct cs_entry *e = m->private;
	char buf[CS_RANGE_MAX_INPUT + 1];
	unsigned long s, end;
	const char *p = buf;

	if (!cs_capable(file))
		return -EPERM;
	if (!count || count > CS_RANGE_MAX_INPUT)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	/* a NUL inside would hide the bytes after it from the parser */
	if (strlen(buf) != count)
		return -EINVAL;
	if (buf[count - 1] == '\n')
		buf[count - 1] = '\0';
	if (cs_parse_hex(&p, &s) || *p++ != '-' || cs_parse_hex(&p, &end) ||
	    *p != '\0' || s >= end)
		return -EINVAL;
	s &= PAGE_MASK;
	end = end > ULONG_MAX - PAGE_SIZE + 1 ? ULONG_MAX & PAGE_MASK :
	      PAGE_ALIGN(end);
	if (s >= end)
		return -EINVAL;
	spin_lock(&e->range_lock);
	e->range_start = s;
	e->range_end = end;
	spin_unlock(&e->range_lock);
	return count;
}

static const struct proc_ops cs_range_fops = {
	.proc_open = cs_range_open,
	.proc_read = seq_read,
	.proc_write = cs_range_write,
	.proc_lseek = seq_lseek,
	.proc_release = cs_range_release,
};

/* ---------------------------------------------------------------------
 * track
 * ---------------------------------------------------------------------
 */

/*
 * Called with cs_lock held by the one task that unlinks e (see "Lifetime
 * rules"); no fops of a PID directory takes cs_lock, so proc_remove()
 * waiting for them cannot deadlock. Drops the list's reference.
 */
static void cs_untrack_entry(struct cs_entry *e)
{
	lockdep_assert_held(&cs_lock);
	list_del(&e->node);
	cs_ntracked--;
	proc_remove(e->dir);
	e->dir = NULL;
	cs_entry_put(e);
}

static void cs_prune_exited(void)
{
	struct cs_entry *e, *tmp;

	list_for_each_entry_safe(e, tmp, &cs_entries, node)
		if (!pid_has_task(e->pid, PIDTYPE_PID))
			cs_untrack_entry(e);
}

static struct cs_entry *cs_find_entry(pid_t nr)
{
	struct cs_entry *e;

	list_for_each_entry(e, &cs_entries, node)
		if (e->nr == nr)
			return e;
	return NULL;
}

static int cs_track(pid_t nr)
{
	struct cs_entry *e;
	struct pid *pid;
	char name[16];
	unsigned int i;
	int ret = 0;

	mutex_lock(&cs_lock);
	cs_prune_exited();
	if (cs_find_entry(nr))
		goto out;
	ret = -ENOSPC;
	if (cs_ntracked >= COWSCOPE_MAX_TRACKED)
		goto out;
	ret = -ESRCH;
	pid = find_get_pid(nr);
	if (!pid)
		goto out;
	if (!pid_has_task(pid, PIDTYPE_PID))
		goto out_put;
	ret = -ENOMEM;
	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e)
		goto out_put;
	kref_init(&e->ref);
	e->nr = nr;
	e->pid = pid;
	spin_lock_init(&e->range_lock);
	e->range_start = 0;
	e->range_end = TASK_SIZE_MAX;
	snprintf(name, sizeof(name), "%d", nr);
	e->dir = proc_mkdir_mode(name, 0500, cs_root);
	if (!e->dir)
		goto out_free;
	for (i = 0; i < ARRAY_SIZE(cs_views); i++)
		if (!proc_create_data(cs_views[i].name, 0400, e->dir,
				      &cs_view_fops, e))
			goto out_remove;
	if (!proc_create_data("pagemap", 0400, e->dir, &cs_pagemap_fops, e) ||
	    !proc_create_data("range", 0600, e->dir, &cs_range_fops, e))
		goto out_remove;
	list_add_tail(&e->node, &cs_entries);
	cs_ntracked++;
	mutex_unlock(&cs_lock);
	return 0;

out_remove:
	/* files already created may have been opened: put, not kfree */
	proc_remove(e->dir);
	cs_entry_put(e);	/* drops pid */
	goto out;
out_free:
	kfree(e);
out_put:
	put_pid(pid);
out:
	mutex_unlock(&cs_lock);
	return ret;
}

static int cs_untrack(pid_t nr)
{
	struct cs_entry *e;
	int ret = -ENOENT;

	mutex_lock(&cs_lock);
	e = cs_find_entry(nr);
	if (e) {
		cs_untrack_entry(e);
		ret = 0;
	}
	cs_prune_exited();
	mutex_unlock(&cs_lock);
	return ret;
}

/*
 * Parse "PID" or "-PID", one optional trailing newline, nothing else.
 * Returns the pid (> 0) and *neg, or -EINVAL.
 */
static int cs_parse_pid(const char *buf, size_t len, bool *neg)
{
	unsigned long v = 0;
	size_t i = 0, digits = 0;

	if (len && buf[len - 1] == '\n')
		len--;
	*neg = len && buf[0] == '-';
	if (*neg)
		i++;
	for (; i < len; i++, digits++) {
		if (buf[i] < '0' || buf[i] > '9' || digits >= 10)
			return -EINVAL;
		v = v * 10 + (buf[i] - '0');
	}
	if (!digits || v == 0 || v > PID_MAX_LIMIT)
		return -EINVAL;
	return (int)v;
}

static ssize_t cs_track_write(struct file *file, const char __user *ubuf,
			      size_t count, loff_t *ppos)
{
	char buf[CS_TRACK_MAX_INPUT];
	bool neg;
	int nr, ret;

	if (!cs_capable(file))
		return -EPERM;
	if (!count || count > CS_TRACK_MAX_INPUT)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	nr = cs_parse_pid(buf, count, &neg);
	if (nr < 0)
		return nr;
	ret = neg ? cs_untrack(nr) : cs_track(nr);
	return ret ? ret : count;
}

static int cs_track_show(struct seq_file *m, void *v)
{
	struct cs_entry *e;

	mutex_lock(&cs_lock);
	list_for_each_entry(e, &cs_entries, node)
		seq_printf(m, "%d\n", e->nr);
	mutex_unlock(&cs_lock);
	return 0;
}

static int cs_track_open(struct inode *inode, struct file *file)
{
	if (!cs_capable(file))
		return -EPERM;
	return single_open(file, cs_track_show, NULL);
}

static const struct proc_ops cs_track_fops = {
	.proc_open = cs_track_open,
	.proc_read = seq_read,
	.proc_write = cs_track_write,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

/* ---------------------------------------------------------------------
 * version: what userspace checks before it reads any record.
 * ---------------------------------------------------------------------
 */

static int cs_version_show(struct seq_file *m, void *v)
{
	seq_printf(m, "abi %u\nversion %s\nmapcount %s\n",
		   COWSCOPE_ABI_VERSION, COWSCOPE_VERSION,
		   CS_MAPCOUNT_AVERAGE ? "folio-average" : "per-page");
	return 0;
}

/* ---------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------
 */

static int __init cs_init(void)
{
	cs_root = proc_mkdir_mode("cowscope", 0500, NULL);
	if (!cs_root)
		return -ENOMEM;
	/* no capability needed: it names the interface, nothing of a task */
	if (!proc_create_single("version", 0444, cs_root, cs_version_show)) {
		proc_remove(cs_root);
		return -ENOMEM;
	}
	cs_track_pde = proc_create("track", 0600, cs_root, &cs_track_fops);
	if (!cs_track_pde) {
		proc_remove(cs_root);
		return -ENOMEM;
	}
	return 0;
}

static void __exit cs_exit(void)
{
	struct cs_entry *e, *tmp;

	/*
	 * Order matters (see "Lifetime rules"): first the track file, which
	 * waits for writes in flight and refuses new ones, so that nobody
	 * else removes a PID directory; then every PID directory by its
	 * owner, which waits for each open file's operation in flight and
	 * releases the file (dropping its entry reference); then the empty
	 * root.
	 */
	proc_remove(cs_track_pde);
	mutex_lock(&cs_lock);
	list_for_each_entry_safe(e, tmp, &cs_entries, node)
		cs_untrack_entry(e);
	mutex_unlock(&cs_lock);
	proc_remove(cs_root);
}

module_init(cs_init);
module_exit(cs_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("cowscope");
MODULE_DESCRIPTION("/proc views of page tables to watch copy-on-write");
MODULE_VERSION(COWSCOPE_VERSION);
