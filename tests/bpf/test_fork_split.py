#!/usr/bin/python3
"""scripts/fork-split against the traced program's own clock (ctest -L bpf, root).

  test_fork_split.py --fork-split scripts/fork-split --cowbench build/bin/cowbench

Cases (each prints PASS/FAIL; exit 0 when all passed, 1 on a failure, 77
when the machine lacks something, with the reason):
  cowbench   cowbench's timed forks of a 256 MiB heap: one line per fork of
             cowbench's own process (its warm-up and repetitions), each the
             kernel's part plus the return; each total inside cowbench's
             own clock around fork(), and the median covering most of it
  threads    a program that starts threads and forks twice: exactly two
             forks (threads and vfork copy no page tables and are left out)
  pid        --pid --seconds on a running process that forks every 0.2 s
  status     the command's failure is reported, exit 1; usage errors exit 2
  tracefs    where a fresh boot left tracefs unmounted, fork-split mounts it
             for its run and unmounts it: the mount is as it was before
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

failures = []


def case(name, ok, why=""):
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {why}" if why and not ok else ""), flush=True)
    if not ok:
        failures.append(name)


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fork-split", required=True)
    ap.add_argument("--cowbench", required=True)
    a = ap.parse_args()
    tracefs_before = os.path.isdir("/sys/kernel/tracing/events")
    if os.geteuid() != 0:
        print("SKIP: fork-split needs root (BPF tracepoints)")
        return 77
    if not shutil.which("bpftrace"):
        print("SKIP: bpftrace is not installed")
        return 77
    fs = ["/usr/bin/python3", a.fork_split]
    # fork-split mounts tracefs where a fresh boot left it unmounted, and
    # says so when the kernel lacks one of its tracepoints (a skip here).
    r = run(fs + ["--", "/bin/true"])
    if r.returncode != 0 and "this kernel has no tracepoint" in r.stderr:
        print(f"SKIP: {r.stderr.strip()}")
        return 77
    case("tracefs: left as it was", os.path.isdir("/sys/kernel/tracing/events") == tracefs_before,
         f"/sys/kernel/tracing/events was {'there' if tracefs_before else 'absent'} before fork-split, "
         "not after")
    tmp = tempfile.mkdtemp(prefix="fork-split-test.")
    try:
        # cowbench: 1 warm-up + 5 timed forks of its own process.
        fj, cj = os.path.join(tmp, "fs.json"), os.path.join(tmp, "cb.json")
        r = run(fs + ["--json", fj, "--", a.cowbench, "--heap", "256M", "--write-ratio", "0",
                      "--repeat", "5", "-q", "--json", cj])
        if r.returncode != 0:
            case("cowbench", False, f"exit {r.returncode}: {r.stderr.strip()}")
        else:
            doc, cb = json.load(open(fj)), json.load(open(cj))
            forks = doc["forks"]
            walls = [rep["fork_us"] / 1e3 for rep in cb["repetitions"]]
            ok = len(forks) == 6 and len(walls) == 5
            why = f"{len(forks)} forks traced, {len(walls)} timed by cowbench (expected 6 and 5)"
            if ok:
                bad = [f for f in forks if f["parent"] != doc["target_pid"] or f["child"] <= 0
                       or f["kernel_ms"] <= 0 or f["return_ms"] < 0]
                ok, why = not bad, f"malformed forks: {bad}"
            if ok:
                timed = forks[1:]
                over = [(f["total_ms"], w) for f, w in zip(timed, walls) if f["total_ms"] > w + 0.2]
                ok, why = not over, f"traced total above cowbench's own clock (ms): {over}"
            if ok:
                share = statistics.median(f["total_ms"] for f in timed) / statistics.median(walls)
                ok, why = share >= 0.6, f"traced total is {share:.2f} of cowbench's fork time"
            if ok:
                line = [ln for ln in r.stdout.splitlines() if "medians" in ln]
                ok, why = len(line) == 1 and "6 forks" in line[0], f"summary line: {line}"
            case("cowbench", ok, why)

        # threads: three threads (clone3 with CLONE_VM), then two forks
        prog = ("import os, threading\n"
                "ts = [threading.Thread(target=lambda: None) for _ in range(3)]\n"
                "[t.start() for t in ts]; [t.join() for t in ts]\n"
                "for _ in range(2):\n"
                "    p = os.fork()\n"
                "    if p == 0: os._exit(0)\n"
                "    os.waitpid(p, 0)\n")
        r = run(fs + ["--json", "-", "--", "/usr/bin/python3", "-c", prog])
        try:
            n = json.loads(r.stdout)["summary"]["forks"]
        except (ValueError, KeyError):
            n = None
        case("threads", r.returncode == 0 and n == 2, f"exit {r.returncode}, forks {n}: {r.stderr.strip()}")

        # pid: a process forking every 0.2 s for 8 s, traced for 3 s
        forker = subprocess.Popen(["/usr/bin/python3", "-c",
                                   "import os, time\n"
                                   "for _ in range(40):\n"
                                   "    p = os.fork()\n"
                                   "    if p == 0: os._exit(0)\n"
                                   "    os.waitpid(p, 0); time.sleep(0.2)\n"])
        try:
            r = run(fs + ["--pid", str(forker.pid), "--seconds", "3", "--json", "-"])
            try:
                doc = json.loads(r.stdout)
                n = doc["summary"]["forks"]
                parents = {f["parent"] for f in doc["forks"]}
            except (ValueError, KeyError):
                n, parents = None, set()
            case("pid", r.returncode == 0 and n is not None and 5 <= n <= 16 and parents == {forker.pid},
                 f"exit {r.returncode}, forks {n}, parents {parents}: {r.stderr.strip()}")
        finally:
            forker.kill()
            forker.wait()

        # status and usage
        r = run(fs + ["--", "/bin/false"])
        case("status: command fails", r.returncode == 1 and "exited with status 1" in r.stderr,
             f"exit {r.returncode}: {r.stderr.strip()}")
        for args, want in ((["--pid", "0"], "expected a process id"),
                           ([], "either --pid PID or -- COMMAND"),
                           (["--pid", "1", "--", "/bin/true"], "either --pid PID or -- COMMAND"),
                           (["--seconds", "-1", "--", "/bin/true"], "--seconds")):
            r = run(fs + args)
            case(f"usage {args}", r.returncode == 2 and want in r.stderr, f"exit {r.returncode}: {r.stderr.strip()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
