#!/usr/bin/python3
"""Plot make demo's cowbench results: results/demo/cowbench_*.json -> demo.png.

usage: demo_plot.py RESULTS_DIR
"""
import json
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def med(d, key):
    v = d["summary"].get(key, {})
    return v.get("median") if isinstance(v, dict) else None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "results/demo"
    runs = {}
    for name in ("read_heavy", "write_heavy", "fork", "fork_exec"):
        path = os.path.join(out, f"cowbench_{name}.json")
        with open(path) as f:
            runs[name] = json.load(f)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    labels, cow, eager = [], [], []
    for name, title in (("read_heavy", "read-heavy child"), ("write_heavy", "write-heavy child")):
        r = runs[name]
        labels.append(f"{title}\n{r['params']['write_ratio']:g} written, "
                      f"{med(r, 'cow_faults'):.0f} COW faults")
        cow.append((med(r, "child_write_us") or 0) / 1000)
        eager.append((med(r, "eager_copy_us") or 0) / 1000)
    x = range(len(labels))
    a.bar([i - 0.2 for i in x], cow, 0.4, label="child's writes after fork (COW)")
    a.bar([i + 0.2 for i in x], eager, 0.4, label="eager copy of the same pages (memcpy)")
    a.set_xticks(list(x), labels)
    a.set_ylabel("ms (median)")
    a.set_title(f"heap {runs['write_heavy']['params']['heap']}: COW vs eager copy")
    a.legend(fontsize=8)
    f_us = med(runs["fork"], "fork_us") or 0
    fe_us = med(runs["fork_exec"], "exec_total_us") or med(runs["fork_exec"], "fork_us") or 0
    b.bar(["fork()", "fork()+exec()"], [f_us / 1000, fe_us / 1000], color=["tab:green", "tab:purple"])
    b.set_ylabel("ms (median)")
    b.set_title(f"fork vs fork+exec, heap {runs['fork']['params']['heap']}")
    fig.tight_layout()
    png = os.path.join(out, "demo.png")
    tmp = png + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, png)
    print(png)


if __name__ == "__main__":
    main()
