"""cowscope.read_view() (the binding over the module's binary view) against
the CLI (`cowscope ptes --json -`, `cowscope summary --json -`), the module's
own text view (/proc/cowscope/PID/ptes) and the kernel's ground truth
(/proc/PID/pagemap, /proc/kpagecount, /proc/kpageflags), per memory kind:
4 KiB anonymous pages shared and copied after fork, a THP, the zero page,
file-backed private pages.

Needs cowscope.ko and root: the VM lab runs these on every lab kernel
(tests/vm/python_module.sh packs Debian's python3 and the built extension
into the guest). Elsewhere each test skips and says why.
"""
import json
import mmap
import os
import struct
import subprocess
import tempfile

import pytest

PAGE = 4096
HUGE = 2 << 20
ANON_PAGES = 64
CHILD_WRITES = 16          # the child copies the first 16 anonymous pages
KPF_THP = 22
KPF_ZERO_PAGE = 24


@pytest.fixture(scope="module")
def need_module(cowscope):
    if not cowscope.module_loaded():
        pytest.skip("needs cowscope.ko (/proc/cowscope): the VM lab runs this file "
                    "(tests/vm/python_module.sh, make vm-test)")
    if os.geteuid() != 0:
        pytest.skip("needs root (PFNs in /proc/PID/pagemap, /proc/kpagecount)")


def pagemap(pid, vaddr):
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(vaddr // PAGE * 8)
        (e,) = struct.unpack("<Q", f.read(8))
    return e


def kword(path, pfn):
    with open(path, "rb") as f:
        f.seek(pfn * 8)
        (v,) = struct.unpack("<Q", f.read(8))
    return v


class Target:
    """A forked child holding four regions, stopped in a read() while the
    test looks at it: its memory does not change under the readers."""

    def __init__(self):
        # private anonymous (mmap's default for -1 is MAP_SHARED: no COW)
        priv = mmap.MAP_PRIVATE
        self.anon = mmap.mmap(-1, ANON_PAGES * PAGE, flags=priv)
        for i in range(ANON_PAGES):
            self.anon[i * PAGE] = 1
        # fork copies the page tables of a VMA only once it has an
        # anon_vma: page 0 of the zero and file regions is written (an
        # anonymous page), the 15 others only read
        self.zero = mmap.mmap(-1, 16 * PAGE, flags=priv)
        self.zero[0] = 1
        for i in range(1, 16):
            assert self.zero[i * PAGE] == 0          # a read maps the zero page
        self.file = tempfile.TemporaryFile()
        self.file.write(b"\x33" * (16 * PAGE))
        self.file.flush()
        self.fmap = mmap.mmap(self.file.fileno(), 16 * PAGE, flags=mmap.MAP_PRIVATE,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.fmap[0] = 1
        for i in range(1, 16):
            assert self.fmap[i * PAGE] == 0x33
        # a 2 MiB-aligned THP candidate inside a 4 MiB mapping
        self.thp_map = mmap.mmap(-1, 2 * HUGE, flags=priv)
        base = addr_of(self.thp_map)
        self.thp_off = (-base) % HUGE
        self.thp_map.madvise(mmap.MADV_HUGEPAGE, self.thp_off, HUGE)
        for i in range(0, HUGE, PAGE):
            self.thp_map[self.thp_off + i] = 7
        self.parent_pfn = [pagemap(os.getpid(), addr_of(self.anon) + i * PAGE) & ((1 << 55) - 1)
                           for i in range(ANON_PAGES)]
        r_go, w_go = os.pipe()
        r_ready, w_ready = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(w_go)
                os.close(r_ready)
                for i in range(CHILD_WRITES):
                    self.anon[i * PAGE] = 2
                os.write(w_ready, b"r")
                os.read(r_go, 1)                      # EOF when the test ends
            finally:
                os._exit(0)
        os.close(r_go)
        os.close(w_ready)
        self.go = w_go
        assert os.read(r_ready, 1) == b"r", "the child did not get ready"
        os.close(r_ready)

    def regions(self):
        a = addr_of(self.anon)
        t = addr_of(self.thp_map) + self.thp_off
        return {"anon": (a, a + ANON_PAGES * PAGE),
                "zero": (addr_of(self.zero), addr_of(self.zero) + 16 * PAGE),
                "file": (addr_of(self.fmap), addr_of(self.fmap) + 16 * PAGE),
                "thp": (t, t + HUGE)}

    def close(self):
        os.close(self.go)
        os.waitpid(self.pid, 0)
        self.file.close()   # the mappings stay: ctypes views of them are still alive


def addr_of(m):
    import ctypes
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


@pytest.fixture(scope="module")
def target(need_module):
    t = Target()
    yield t
    t.close()


@pytest.fixture(scope="module")
def cli(build_bin):
    def run(*args):
        p = subprocess.run([os.path.join(build_bin, "cowscope"), *args], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, f"cowscope {' '.join(args)}: rc {p.returncode}: {p.stderr}"
        return json.loads(p.stdout)
    return run


def records(cowscope, pid, lo, hi):
    recs = cowscope.read_view(pid, lo, hi)
    assert [r.vaddr for r in recs] == list(range(lo, hi, PAGE)), "one record per page of the range"
    return recs


def module_text_ptes(pid):
    """/proc/cowscope/PID/ptes: vaddr -> (pfn, letters, ref, map, folio)."""
    out = {}
    with open("/proc/cowscope/track", "w") as t:
        t.write(str(pid))
    try:
        with open(f"/proc/cowscope/{pid}/ptes") as f:
            head = f.readline()
            assert head.startswith("# vaddr pfn flags ref map folio"), head
            for line in f:
                va, pfn, letters, ref, mapc, folio = line.split()
                size = int(folio[:-1]) * (1024 if folio[-1] == "K" else 1 << 20)
                out[int(va, 16)] = (int(pfn, 16), letters, int(ref), mapc, size)
    finally:
        with open("/proc/cowscope/track", "w") as t:
            t.write(f"-{pid}")
    return out


def snapshot(cowscope, cli, pid, lo, hi):
    """The CLI's, the binding's and the module text view's facts of the
    present pages of [lo, hi), vaddr -> (pfn, letters, ref, map, folio,
    cow, segment). A refcount may move between two reads for a reason of
    the kernel's own (a new page holds a per-CPU LRU batch reference until
    the batch drains), so the three are compared on a read bracketed by
    two CLI reads that agree."""
    def from_cli():
        return {p["vaddr"]: (p["pfn"], p["flags"], p["refcount"],
                             ("~" if p["mapcount_is_folio_average"] else "") + str(p["mapcount"]),
                             p["folio_size"], p["cow"], p["segment"])
                for p in cli("ptes", "--json", "-", "--range", f"{lo:x}-{hi:x}", str(pid))["ptes"]}
    for _ in range(5):
        before = from_cli()
        recs = records(cowscope, pid, lo, hi)
        text = module_text_ptes(pid)
        after = from_cli()
        if before == after:
            break
    else:
        pytest.fail(f"the pages of {lo:#x}-{hi:#x} never held still over two CLI reads")
    mine = {r.vaddr: (r.pfn, r.letters, r.refcount,
                      ("~" if r.flags & (1 << 17) else "") + str(r.mapcount),
                      r.folio_size, r.cow, r.segment) for r in recs if r.present}
    return before, mine, {va: t for va, t in text.items() if lo <= va < hi}


def test_records_agree_with_cli_and_module_text(cowscope, target, cli):
    for name, (lo, hi) in target.regions().items():
        from_cli, mine, text = snapshot(cowscope, cli, target.pid, lo, hi)
        assert mine, f"{name}: no present page"
        assert sorted(from_cli) == sorted(mine), f"{name}: CLI and binding list other pages"
        assert sorted(text) == sorted(mine), f"{name}: module text view and binding list other pages"
        for va, got in mine.items():
            assert got == from_cli[va], f"{name} {va:#x}: binding {got} != CLI {from_cli[va]}"
            assert got[:5] == text[va], f"{name} {va:#x}: binding {got} != /proc/cowscope ptes {text[va]}"


def test_records_agree_with_kernel_ground_truth(cowscope, target):
    pid = target.pid
    for name, (lo, hi) in target.regions().items():
        for r in records(cowscope, pid, lo, hi):
            e = pagemap(pid, r.vaddr)
            assert r.present == bool(e >> 63), f"{name} {r.vaddr:#x}: present vs pagemap"
            if not r.present:
                continue
            assert r.pfn == e & ((1 << 55) - 1), f"{name} {r.vaddr:#x}: PFN vs pagemap"
            if not r.flags & (1 << 17):
                assert r.mapcount == kword("/proc/kpagecount", r.pfn), \
                    f"{name} {r.vaddr:#x}: mapcount vs /proc/kpagecount"


def test_anon_pages_shared_then_copied(cowscope, target):
    lo, hi = target.regions()["anon"]
    recs = records(cowscope, target.pid, lo, hi)
    for i, r in enumerate(recs):
        assert r.present and r.segment == "mmap-anon" and "a" in r.letters, r
        if i < CHILD_WRITES:        # written by the child: its own copy
            assert r.pfn != target.parent_pfn[i] and r.writable and not r.cow, r
            assert r.mapcount == 1 and r.anon_exclusive, r
        else:                       # still shared with the parent
            assert r.pfn == target.parent_pfn[i] and r.cow and not r.writable, r
            assert r.mapcount == 2 and not r.anon_exclusive, r
        assert r.folio_size == PAGE, r


def test_zero_page(cowscope, target):
    lo, hi = target.regions()["zero"]
    for r in records(cowscope, target.pid, lo + PAGE, hi):
        assert r.present and "z" in r.letters and not r.writable, r
        assert kword("/proc/kpageflags", r.pfn) >> KPF_ZERO_PAGE & 1, f"{r}: kpageflags says not the zero page"


def test_file_private_pages(cowscope, target):
    lo, hi = target.regions()["file"]
    first = records(cowscope, target.pid, lo, lo + PAGE)[0]
    assert first.present and "a" in first.letters and "f" not in first.letters, \
        f"{first}: the written page of a private file mapping is an anonymous copy"
    for r in records(cowscope, target.pid, lo + PAGE, hi):
        assert r.present and "f" in r.letters and "a" not in r.letters, r
        assert r.segment == "mmap-file" and not r.cow, r


def test_thp_folio_size(cowscope, target):
    lo, hi = target.regions()["thp"]
    recs = records(cowscope, target.pid, lo, hi)
    thp = [r for r in recs if r.present and kword("/proc/kpageflags", r.pfn) >> KPF_THP & 1]
    if not thp:
        pytest.skip("the kernel gave no THP for the 2 MiB-aligned MADV_HUGEPAGE range here")
    for r in thp:
        assert r.folio_size == HUGE, r
    assert all(r.cow for r in thp), "a THP shared with the parent is write-protected"


def test_summary_counts_match_records(cowscope, target, cli):
    s = cli("summary", "--json", "-", str(target.pid))["segments"]
    recs = cowscope.read_view(target.pid)
    for seg, row in s.items():
        if seg == "total":
            mine = [r for r in recs if r.present]
        else:
            mine = [r for r in recs if r.present and r.segment == seg]
        assert row["present"] == len(mine), f"{seg}: summary present vs records"
        assert row["cow"] == sum(r.cow for r in mine), f"{seg}: summary cow vs records"
        assert row["writable"] == sum(r.writable for r in mine), f"{seg}: summary writable vs records"
