"""What 25-cowtrace-serve.sh's scrape figures share (imported by its Python
parts; not a benchmark itself): the exporter's CPU time and a timed series
of scrapes."""
import os
import time


def cpu_ms(pid):
    """The process's user + system CPU time so far, in ms (/proc/PID/stat)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1e3 / os.sysconf("SC_CLK_TCK")


def timed_scrapes(scrape, srv, each=None, n=50):
    """n + 1 calls of scrape() (the first one only warms up; each(i, body),
    if given, sees every body): the client's times of the last n in ms,
    sorted; the exporter's cowtrace_series; its CPU ms per scrape (srv:
    its pid); the last body."""
    times, series = [], None
    c0 = cpu_ms(srv)
    for i in range(n + 1):
        t0 = time.perf_counter()
        body = scrape()
        dt = (time.perf_counter() - t0) * 1e3
        for l in body.splitlines():
            if l.startswith("cowtrace_series "):
                series = int(float(l.split()[1]))
        if each:
            each(i, body)
        if i:
            times.append(dt)
    cpu = (cpu_ms(srv) - c0) / (n + 1)
    times.sort()
    return times, series, cpu, body
