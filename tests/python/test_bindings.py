"""The cowscope module: one test (at least) per binding."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest


def test_package_exports(cowscope):
    assert set(cowscope.__all__) >= {"bench", "read_view", "Error", "UsageError", "SysError",
                                     "ModuleNotLoadedError", "machine_metadata", "module_loaded"}
    for name in cowscope.__all__:
        obj = getattr(cowscope, name)
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


def test_bench_keys_and_counts(cowscope):
    r = cowscope.bench(heap="16M", write_ratio=0.25, repeat=3)
    # cowbench --json's keys ...
    for k in ("tool", "params", "machine", "setup", "repetitions", "summary", "status", "pte_state"):
        assert k in r
    assert r["tool"] == "cowbench" and r["status"] == "ok"
    assert r["params"]["heap_bytes"] == 16 << 20 and r["params"]["thp"] == "never"
    assert len(r["repetitions"]) == 3
    # ... and every figure's median at the top level.
    for k in ("fork_us", "cow_faults", "child_write_us", "cow_private_dirty_kb", "eager_copy_us"):
        assert r[k] == r["summary"][k]["median"]
    assert r["fork_us"] > 0 and r["child_write_us"] > 0
    pages = r["setup"]["pages_written"]
    assert pages == 1024
    assert r["cow_faults"] == pages  # one COW fault per page written
    # Private_Dirty also counts the pages the forked Python child dirties
    # besides the heap (stack, malloc arenas): a few dozen.
    assert 0 <= r["cow_private_dirty_kb"] / 4 - pages <= 64


def test_bench_matches_cli_json(cowscope, build_bin, tmp_path):
    out = tmp_path / "b.json"
    subprocess.run([os.path.join(build_bin, "cowbench"), "--heap", "4M", "--write-ratio", "0.5", "--thp", "never",
                    "--repeat", "1", "-q", "--json", str(out)], check=True, capture_output=True)
    import json
    cli = json.loads(out.read_text())
    py = cowscope.bench(heap="4M", write_ratio=0.5, repeat=1)
    assert set(cli) <= set(py)
    assert set(cli["summary"]) == set(py["summary"])
    assert cli["params"] == py["params"]


def test_bench_more_options(cowscope):
    r = cowscope.bench(heap=4 << 20, write_ratio=0, spawn="posix_spawn", repeat=2, warmup=0)
    assert r["params"]["spawn"] == "posix_spawn"
    assert r["exec_total_us"] > 0  # the exec modes run /bin/true from Python
    r = cowscope.bench(heap="4M", write_ratio=1, writer="both", pattern="random", children=2, repeat=1,
                       read=False, pte_state="readonly")
    assert r["status"] == "ok" and r["parent_cow_faults"] is not None


@pytest.mark.parametrize("kwargs, cli_args", [
    ({"heap": "lots"}, ["--heap", "lots"]),
    ({"write_ratio": 2}, ["--write-ratio", "2"]),
    ({"writer": "nobody"}, ["--writer", "nobody"]),
    ({"thp": "huge"}, ["--thp", "huge"]),
    ({"children": 0}, ["--children", "0"]),
])
def test_usage_errors_carry_cli_messages(cowscope, build_bin, kwargs, cli_args):
    with pytest.raises(cowscope.UsageError) as e:
        cowscope.bench(**kwargs)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cowscope.Error)
    p = subprocess.run([os.path.join(build_bin, "cowbench")] + cli_args, capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == f"cowbench: {e.value}"


def test_bench_folio(cowscope):
    r = cowscope.bench(heap="4M", write_ratio=0.5, folio="4K", repeat=1)
    assert r["params"]["folio"] == "4K" and r["params"]["thp"] == "system"
    assert r["setup"]["thp_advice"] == "MADV_NOHUGEPAGE" and r["setup"]["folio_requested"] == "4K"
    assert r["setup"]["folio_observed"]["pages"] == 1024
    with pytest.raises(cowscope.UsageError, match="--folio: .*8K is not"):
        cowscope.bench(folio="8K")
    with pytest.raises(cowscope.UsageError, match="--folio: expected a folio size"):
        cowscope.bench(folio="banana")
    with pytest.raises(cowscope.UsageError, match="give one of them"):
        cowscope.bench(folio="64K", thp="always")


def test_unknown_option(cowscope):
    with pytest.raises(cowscope.UsageError, match='unknown option "colour"'):
        cowscope.bench(colour="blue")


def test_error_hierarchy(cowscope):
    assert issubclass(cowscope.Error, RuntimeError)
    assert issubclass(cowscope.SysError, OSError) and issubclass(cowscope.SysError, cowscope.Error)
    assert issubclass(cowscope.ModuleNotLoadedError, cowscope.Error)


def test_read_view_without_module(cowscope):
    if os.path.exists("/proc/cowscope/track"):
        pytest.skip("the cowscope module is loaded here: this test checks the error without it")
    assert cowscope.module_loaded() is False
    with pytest.raises(cowscope.ModuleNotLoadedError) as e:
        cowscope.read_view(os.getpid())
    msg = str(e.value)
    assert "/proc/cowscope/track not found" in msg and "module is not loaded" in msg
    assert "make load" in msg or "VM" in msg


def test_read_view_with_module(cowscope):
    if not cowscope.module_loaded():
        pytest.skip("needs cowscope.ko (/proc/cowscope): the VM lab runs this test on every lab kernel "
                    "(tests/vm/python_module.sh)")
    recs = cowscope.read_view(os.getpid())
    assert recs and all(r.vaddr % 4096 == 0 for r in recs)
    assert any(r.present and r.segment == "stack" for r in recs)


def test_page_record_type(cowscope):
    doc = cowscope.PageRecord.__doc__
    assert "cowscope_rec" in doc
    for attr in ("vaddr", "pfn", "flags", "letters", "refcount", "mapcount", "segment", "present",
                 "writable", "cow", "anon_exclusive"):
        assert hasattr(cowscope.PageRecord, attr)


def test_machine_metadata(cowscope):
    m = cowscope.machine_metadata()
    for k in ("kernel", "cpu_model", "cores", "page_size", "thp", "hostname", "commit", "virtualized"):
        assert k in m
    assert m["kernel"] == os.uname().release
    assert m["page_size"] == 4096
    assert cowscope.thp_mode() == m["thp"]


def test_repetition_keys(cowscope):
    keys = cowscope.repetition_keys()
    assert "fork_us" in keys and "cow_faults" in keys


def test_gil_released_and_request_stop(cowscope):
    # bench() in a thread: the main thread keeps running (GIL released), and
    # request_stop() ends it early with the finished repetitions.
    result, ticks = {}, []
    t = threading.Thread(target=lambda: result.update(cowscope.bench(heap="32M", write_ratio=1, repeat=200)))
    t.start()
    # About 0.5 s per repetition on an idle machine (more under load): stop
    # after 5 s, well after the warm-up and first repetition, long before 200.
    deadline = time.monotonic() + 5
    while t.is_alive() and time.monotonic() < deadline:
        ticks.append(1)
        time.sleep(0.01)
    cowscope.request_stop()
    t.join(60)
    assert not t.is_alive()
    assert len(ticks) >= 5
    assert result["interrupted"] is True
    assert 0 < len(result["repetitions"]) < 200


def test_ctrl_c_raises_keyboard_interrupt(build_bin):
    code = ("import cowscope, sys\n"
            "try:\n"
            "    cowscope.bench(heap='32M', write_ratio=1, repeat=500)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted'); sys.exit(3)\n")
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 3 and "interrupted" in out


def _bpf_skip(cowscope):
    if os.geteuid() != 0:
        pytest.skip("cowscope.trace needs root (BPF)")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no kernel BTF: cowscope.trace needs /sys/kernel/btf/vmlinux")


def test_trace_by_mapping_and_sites(cowscope, build_bin):
    """The tracer of cowtrace, from Python: the two-function target's copies
    by mapping and by faulting function, per process."""
    _bpf_skip(cowscope)
    target = os.path.join(build_bin, "cowtrace_target")
    if not os.path.exists(target):
        pytest.skip(f"{target} not built")
    r = cowscope.trace([target, "30", "40", "50", "60"], by_mapping=True, sites=True)
    assert r["exit_status"] == 0
    assert r["schema"] == 2, "cowtrace's JSON schema (bpf/README.md)"
    assert "attribution_errors" in r and "merged_sites" in r
    procs = {p["pid"]: p for p in r["processes"]}
    parent = next(p for p in procs.values() if p["comm"] == "cowtrace_target" and
                  any(q["ppid"] == p["pid"] for q in procs.values()))
    child = next(q for q in procs.values() if q["ppid"] == parent["pid"])
    for proc, heap, mm in ((parent, 30, 40), (child, 50, 60)):
        best = {}
        for m in proc["mappings"]:
            best[m["label"]] = max(best.get(m["label"], 0), m["copies"])
        assert heap <= best["heap"] <= heap + 16, proc["mappings"]
        assert mm <= best["mmap-anon"] <= mm + 16, proc["mappings"]
        leaf = {}
        for s in proc["sites"]:
            if s["frames"]:
                f = s["frames"][0]["func"]
                leaf[f] = leaf.get(f, 0) + s["copies"]
        assert heap <= leaf["write_heap_pages"] <= heap + 16, leaf
        assert mm <= leaf["write_mmap_pages"] <= mm + 16, leaf
        assert sum(m["copies"] for m in proc["mappings"]) == proc["cow_copies"]


def test_trace_usage_errors(cowscope):
    with pytest.raises(cowscope.UsageError, match="method: expected auto"):
        cowscope.trace(["true"], method="banana")
    with pytest.raises(cowscope.UsageError, match="cmd: expected a command"):
        cowscope.trace([])
