"""A pre-fork pool whose workers only *read* what the parent built.

    python3 prefork_pool.py [--freeze] [--collect] [--workers N] [--objects N]

The parent builds a large structure (a list of small dicts holding strings
and ints), then forks N workers; each worker walks the whole structure
read-only (sums lengths, compares keys) and exits. --freeze: gc.freeze()
in the parent before fork (moves everything to the permanent generation, so
the collector never touches it in the children); --collect: each worker
runs gc.collect() before reading. Run it under `cowtrace --by-mapping
--sites`: every page a worker copies is a write it never asked for
(reference counts, the collector's list links).
"""
import argparse
import gc
import os
import sys


def build(n):
    return [{"id": i, "name": "user-%d" % i, "tags": ["t%d" % (i % 7), "g%d" % (i % 13)]} for i in range(n)]


def read_only(data):
    total = 0
    for rec in data:
        total += len(rec["name"]) + rec["id"] + len(rec["tags"])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--freeze", action="store_true")
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--objects", type=int, default=200000)
    a = ap.parse_args()
    data = build(a.objects)
    if a.freeze:
        gc.freeze()
    pids = []
    for _ in range(a.workers):
        pid = os.fork()
        if pid == 0:
            if a.collect:
                gc.collect()
            read_only(data)
            os._exit(0)
        pids.append(pid)
    bad = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        bad += st != 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
