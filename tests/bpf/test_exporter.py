#!/usr/bin/python3
"""cowtrace --serve against a real Prometheus (ctest -L bpf, root).

  test_exporter.py --cowtrace build/bin/cowtrace --target build/bin/cowtrace_target_static

Cases (each prints PASS/FAIL; exit 0 when all passed, 1 on a failure, 77
when the machine lacks something, with the reason):
  prometheus   a Prometheus started here (loopback, a free port, 1 s scrape
               interval, storage in a temp dir) scrapes the exporter; a
               PromQL query through /api/v1/query finds the copies of a
               child that wrote a known number of pages after fork
  promtool     `promtool check metrics` accepts a scrape; OpenMetrics is
               served to Prometheus's Accept header and ends with # EOF
  port-in-use  a second exporter on the same port fails at once, non-zero,
               with a clear message, before loading any BPF
  bounded      a forking load (hundreds of short-lived children, -p PID
               --children --max-series 10 --grace 2) never shows more than
               10 series, counts the dropped ones, reuses BPF slots, and the
               exporter keeps serving after its target exited
  sigterm      SIGTERM stops the exporter with status 0 and its BPF programs
               are gone (bpftool prog show)
Every process started here is stopped on every exit path.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SLACK = 16  # fork return path, stack, libc data (as tests/bpf/test_cowtrace.cpp)
OPENMETRICS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

procs = []  # (name, Popen): stopped by stop_all()


def start(name, argv, **kw):
    p = subprocess.Popen(argv, **kw)
    procs.append((name, p))
    return p


def stop(p, sig=signal.SIGTERM, wait=10):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def stop_all():
    for _, p in reversed(procs):
        stop(p)
    procs.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, accept=None, timeout=5):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def start_exporter(args, extra):
    """Start cowtrace --serve on a free loopback port; returns (Popen, port, stderr file)."""
    err = tempfile.TemporaryFile(mode="w+")
    p = start("cowtrace", [args.cowtrace, "--serve", "127.0.0.1:0", *extra],
              stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 60
    while time.time() < deadline:
        err.seek(0)
        text = err.read()
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", text)
        if m:
            return p, int(m.group(1)), err
        if p.poll() is not None:
            raise AssertionError(f"cowtrace --serve exited with {p.returncode}: {text}")
        time.sleep(0.1)
    raise AssertionError("cowtrace --serve did not start listening within 60 s")


def stderr_of(err):
    err.seek(0)
    return err.read()


def metric(text, name, labels=""):
    """Values of samples `name{...labels...}` in an exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) == name and labels in (m.group(2) or ""):
            out.append(float(m.group(3)))
    return out


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def case_prometheus(args, tmp):
    exporter, port, err = start_exporter(args, ["--comm", "cowtrace_target", "--grace", "120"])
    pport = free_port()
    conf = os.path.join(tmp, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: cowtrace\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{port}']\n")
    prom = start("prometheus", [args.prometheus, f"--config.file={conf}",
                                f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                                f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w"))
    api = f"http://127.0.0.1:{pport}"

    def query(q):
        _, body = http_get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        j = json.loads(body)
        check(j["status"] == "success", f"query {q}: {body}")
        return j["data"]["result"]

    deadline = time.time() + 60
    while True:
        check(prom.poll() is None, f"prometheus exited: {open(os.path.join(tmp, 'prometheus.log')).read()}")
        try:
            if query('up{job="cowtrace"} == 1'):
                break
        except OSError:
            pass
        check(time.time() < deadline, "prometheus did not scrape the exporter (up == 1) within 60 s")
        time.sleep(0.5)
    # the child writes K pages of the parent's heap after fork: K copies
    K = 1000
    target = subprocess.run([args.target, "0", "0", str(K), "0"], timeout=60)
    check(target.returncode == 0, f"cowtrace_target failed: {target.returncode}")
    parent = None
    q = f'cowtrace_cow_copies_total{{comm="cowtrace_target",job="cowtrace"}}'
    deadline = time.time() + 30
    value = None
    while time.time() < deadline:
        # the child is the series whose parent is a cowtrace_target too
        res = query(f'{q} and on(ppid) label_replace({q}, "ppid", "$1", "pid", "(.*)")')
        if res:
            value = float(res[-1]["value"][1])
            child = res[-1]["metric"]
            if value >= K:
                break
        time.sleep(0.5)
    check(value is not None, f"no child series in Prometheus within 30 s ({query(q)})")
    print(f"  PromQL {q} of the child {child.get('pid')} (parent {child.get('ppid')}): {value:.0f}, wrote {K}")
    check(K <= value <= K + SLACK, f"child copies {value}, expected {K}..{K + SLACK}")
    mib = query(f'max(cowtrace_cow_copied_bytes_total{{pid="{child["pid"]}"}}) / 2^20')
    check(abs(float(mib[0]["value"][1]) - value * 4096 / 2**20) < 1e-6, f"copied bytes {mib}")
    check(query('cowtrace_method_info{job="cowtrace"}'), "no cowtrace_method_info")
    check(exporter.poll() is None, "the exporter stopped after its targets exited")
    stop(prom)
    check(stop(exporter) == 0, f"exporter exit status {exporter.returncode}: {stderr_of(err)}")


def case_promtool(args, tmp):
    exporter, port, err = start_exporter(args, ["--all", "--max-series", "2000"])
    # a process whose comm needs escaping: quote and backslash (comm is the
    # executable's file name)
    odd = os.path.join(tmp, 'co"w\\x')
    shutil.copy("/bin/sleep", odd)
    start("odd", [odd, "30"])
    time.sleep(1.5)
    ctype, text = http_get(f"http://127.0.0.1:{port}/metrics")
    check('comm="co\\"w\\\\x"' in text, "no series for the process named co\"w\\x, escaped")
    check(ctype.startswith("text/plain; version=0.0.4"), f"Content-Type {ctype}")
    r = subprocess.run([args.promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    series = metric(text, "cowtrace_series")
    print(f"  promtool check metrics on {len(text)} bytes, {series[0]:.0f} process series: rc {r.returncode} "
          f"{(r.stdout + r.stderr).strip()}")
    check(r.returncode == 0, f"promtool: {r.stdout}{r.stderr}")
    check(series and series[0] > 1, "--all exported no process series")
    ctype, om = http_get(f"http://127.0.0.1:{port}/metrics", accept=OPENMETRICS_ACCEPT)
    check(ctype.startswith("application/openmetrics-text; version=1.0.0"), f"Content-Type {ctype}")
    check(om.endswith("# EOF\n") and "# TYPE cowtrace_cow_copies counter" in om, "OpenMetrics body")
    check(stop(exporter) == 0, f"exporter exit status {exporter.returncode}")


def case_port_in_use(args, tmp):
    exporter, port, err = start_exporter(args, ["--comm", "nothing-here"])
    t0 = time.time()
    r = subprocess.run([args.cowtrace, "--serve", f"127.0.0.1:{port}", "--comm", "x"], capture_output=True,
                       text=True, timeout=60)
    print(f"  second exporter on port {port}: rc {r.returncode} in {time.time() - t0:.2f} s: {r.stderr.strip()}")
    check(r.returncode == 1, f"rc {r.returncode}")
    check(f"--serve 127.0.0.1:{port}: address already in use" in r.stderr, r.stderr)
    check("vmevent" not in r.stderr and "tracepoint:" not in r.stderr, "it loaded BPF before binding")
    r = subprocess.run([args.cowtrace, "--serve", "banana:1", "--all"], capture_output=True, text=True)
    check(r.returncode == 2 and "--serve: expected ADDR:PORT" in r.stderr, f"bad address: {r.returncode} {r.stderr}")
    r = subprocess.run([args.cowtrace, "--serve", "1", "--all", "--comm", "x"], capture_output=True, text=True)
    check(r.returncode == 2 and "exactly one target" in r.stderr, f"two targets: {r.returncode} {r.stderr}")
    check(stop(exporter) == 0, "exporter exit status")


FORKER = r"""
import os, sys
sys.stdin.readline()                      # go
for i in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        b = bytearray(8 * 4096)           # touch a few pages, then exit
        os._exit(0)
    os.waitpid(pid, 0)
"""


def case_bounded(args, tmp):
    n = 600
    load = start("forker", [sys.executable, "-c", FORKER, str(n)], stdin=subprocess.PIPE, text=True)
    exporter, port, err = start_exporter(args, ["-p", str(load.pid), "--children", "--max-series", "10",
                                                "--grace", "2"])
    load.stdin.write("go\n")
    load.stdin.flush()
    most = 0
    samples = 0
    while load.poll() is None:
        _, text = http_get(f"http://127.0.0.1:{port}/metrics")
        most = max(most, metric(text, "cowtrace_series")[0])
        samples += 1
        time.sleep(0.05)
    check(load.returncode == 0, f"forking load failed: {load.returncode}")
    time.sleep(4)  # grace 2 s, refreshed every second
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    samples += 1
    most = max(most, metric(text, "cowtrace_series")[0])
    exited = metric(text, "cowtrace_series_dropped_total", 'reason="exited"')[0]
    limited = metric(text, "cowtrace_series_dropped_total", 'reason="limit"')[0]
    slots = metric(text, "cowtrace_bpf_slots_used")[0]
    tracked = metric(text, "cowtrace_tracked_processes")[0]
    now = metric(text, "cowtrace_series")[0]
    tree = metric(text, "cowtrace_tree_wp_faults_total")
    print(f"  {n} children: at most {most:.0f} series in {samples} scrapes (limit 10), now {now:.0f}; dropped "
          f"exited {exited:.0f}, limit {limited:.0f}; BPF slots used {slots:.0f}, tracked now {tracked:.0f}; "
          f"tree wp faults {tree}")
    check(most <= 10, f"{most} series, limit 10")
    check(limited > 0, "the limit was never reached: the load is too slow to test it")
    check(exited + limited >= n - 10, f"dropped {exited} + {limited} of {n} children")
    check(now == 0 and tracked == 0, f"{now} series, {tracked} tracked after every process exited")
    check(slots < n / 2, f"{slots} BPF slots for {n} children: not reused")
    check(tree and tree[0] >= n, f"tree totals {tree}")
    check(exporter.poll() is None, "the exporter stopped when its target exited")
    check(f"pid {load.pid} exited" in stderr_of(err), stderr_of(err))
    check(stop(exporter) == 0, "exporter exit status")


def bpf_ids(pid):
    """The BPF programs and maps the process holds fds of (/proc/PID/fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            for line in open(f"/proc/{pid}/fdinfo/{fd}"):
                k, _, v = line.partition(":")
                if k in ("prog_id", "map_id"):
                    ids.add((k, int(v)))
        except OSError:
            pass
    return ids


def bpf_alive(kind, id_):
    what = "prog" if kind == "prog_id" else "map"
    return subprocess.run(["bpftool", what, "show", "id", str(id_)], capture_output=True).returncode == 0


def case_sigterm(args, tmp):
    check(shutil.which("bpftool"), "bpftool missing (scripts/setup installs it)")
    exporter, port, err = start_exporter(args, ["--comm", "nothing-here"])
    ids = bpf_ids(exporter.pid)
    progs = sum(1 for k, _ in ids if k == "prog_id")
    check(progs > 0 and all(bpf_alive(k, i) for k, i in ids), f"the exporter holds no live BPF program: {ids}")
    t0 = time.time()
    rc = stop(exporter, signal.SIGTERM)
    time.sleep(0.5)  # the kernel frees them after the last reference
    left = sorted(f"{k}={i}" for k, i in ids if bpf_alive(k, i))
    print(f"  SIGTERM: rc {rc} after {time.time() - t0:.2f} s; it held {progs} programs and {len(ids) - progs} "
          f"maps; left after exit: {left}")
    check(rc == 0, f"rc {rc}: {stderr_of(err)}")
    check(not left, f"BPF objects left after SIGTERM: {left}")
    exporter, port, err = start_exporter(args, ["--comm", "nothing-here"])
    check(stop(exporter, signal.SIGINT) == 0, "SIGINT")


CASES = {"prometheus": case_prometheus, "promtool": case_promtool, "port-in-use": case_port_in_use,
         "bounded": case_bounded, "sigterm": case_sigterm}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cowtrace", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--promtool", default="/usr/bin/promtool")
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: cowtrace needs root")
        return 77
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        print("SKIP: no kernel BTF (/sys/kernel/btf/vmlinux)")
        return 77
    for tool in (args.prometheus, args.promtool):
        if not os.access(tool, os.X_OK):
            print(f"SKIP: {tool} missing (apt-get install prometheus; scripts/setup does)")
            return 77
    failed = []
    for name in args.cases:
        tmp = tempfile.mkdtemp(prefix=f"cowtrace-exporter-{name}-")
        t0 = time.time()
        try:
            CASES[name](args, tmp)
            print(f"PASS {name} ({time.time() - t0:.1f} s)")
        except Exception as e:  # a failed check, or a tool that broke
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        finally:
            stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(args.cases) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # ctest's timeout: finally blocks still run
    sys.exit(main())
