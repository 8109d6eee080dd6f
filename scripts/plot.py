#!/usr/bin/python3
"""scripts/plot.py: plots and findings from a scripts/sweep results folder.

    scripts/plot.py results/<date>-<host>     writes <exp>.png beside the JSON
                                              and findings.json, prints them
    scripts/plot.py --trace COWTRACE.json OUT.png   copies by mapping and top sites (cowtrace --by-mapping --sites --json)

One PNG per experiment found (fork-heap, cow-ratio, spawn, writer,
children, folio). Every point is drawn as its median with the min..max spread of
its repetitions as an error bar, and the repetitions themselves as faint
dots. findings.json holds the derived numbers results/README.md quotes:
fork cost per GiB of heap, the COW/eager crossover write ratio, per-fault
costs, and so on. Uses Debian's python3-matplotlib (Agg backend, no display).
"""
import json
import math
import os
import statistics
import sys
import warnings

# Debian 12's pyparsing warns about matplotlib's own mathtext grammar (used
# for log-axis tick labels); not ours to fix, and noise under -W error.
for _msg in ("warn_name_set_on_empty_Forward", "warn_ungrouped_named_tokens", "Forward defined here"):
    warnings.filterwarnings("ignore", message=_msg)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1 << 20


def load(path):
    points = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                points.append(json.loads(line))
    return points


def values(point, key):
    """The finite values of one figure over a point's ok repetitions."""
    out = []
    for rep in point.get("repetitions", []):
        v = rep.get(key)
        if rep.get("status", "ok") == "ok" and isinstance(v, (int, float)) and math.isfinite(v):
            out.append(float(v))
    return out


def med(point, key):
    v = values(point, key)
    return statistics.median(v) if v else float("nan")


def draw(ax, xs, points, key, label, scale=1.0, **kw):
    """Medians joined by a line, min..max error bars, faint repetition dots."""
    mx, lo, hi, dx, dy = [], [], [], [], []
    for x, p in zip(xs, points):
        v = [a * scale for a in values(p, key)]
        if not v:
            continue
        m = statistics.median(v)
        mx.append((x, m))
        lo.append(m - min(v))
        hi.append(max(v) - m)
        dx += [x] * len(v)
        dy += v
    if not mx:
        return None
    line = ax.errorbar([a for a, _ in mx], [b for _, b in mx], yerr=[lo, hi], marker="o", capsize=3,
                       label=label, **kw)
    ax.scatter(dx, dy, s=8, alpha=0.25, color=line[0].get_color())
    return line


def subtitle(meta):
    if not meta:
        return ""
    return (f"{meta.get('hostname', '?')}: {meta.get('cpu_model', '?')}, {meta.get('cores', '?')} cores, "
            f"kernel {meta.get('kernel', '?')}, THP {meta.get('thp', '?')}"
            f"{', VM' if meta.get('virtualized') else ''}")


def finish(fig, ax, title, meta, out):
    ax.set_title(title)
    fig.suptitle(subtitle(meta), fontsize=8, y=0.995)
    for a in fig.axes:
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def heap_mib(p):
    return p["params"]["heap_bytes"] / MIB


def slope(xs, ys):
    """Least-squares slope and intercept."""
    n = len(xs)
    if n < 2:
        return float("nan"), float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan"), float("nan")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return b, my - b * mx


def plot_fork_heap(points, meta, out, F):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    F["fork_heap"] = {}
    for thp, label in (("never", "4 KiB pages (MADV_NOHUGEPAGE)"), ("always", "THP (MADV_HUGEPAGE)")):
        ps = sorted((p for p in points if p["params"]["thp"] == thp), key=heap_mib)
        if not ps:
            continue
        draw(ax, [heap_mib(p) for p in ps], ps, "fork_us", label, scale=1e-3)
        gib = [p["params"]["heap_bytes"] / (1 << 30) for p in ps]
        fk = [med(p, "fork_us") for p in ps]
        big = [(g, f) for g, f in zip(gib, fk) if g >= 0.25 and math.isfinite(f)]
        b, a = slope([g for g, _ in big], [f for _, f in big])
        F["fork_heap"][thp] = {
            "heap_mib": [heap_mib(p) for p in ps],
            "fork_us_median": fk,
            "fork_us_min": [min(values(p, "fork_us") or [float("nan")]) for p in ps],
            "fork_us_max": [max(values(p, "fork_us") or [float("nan")]) for p in ps],
            "anon_huge_kb": [p["setup"].get("anon_huge_kb") for p in ps],
            "fit_us_per_gib": b, "fit_intercept_us": a,
            "ns_per_4k_page": b * 1e3 / 262144 if math.isfinite(b) else None,
        }
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("heap size (MiB, log scale)")
    ax.set_ylabel("fork() call in the parent (ms, log scale)")
    finish(fig, ax, "fork latency against heap size (median, min..max of repetitions)", meta, out)


def crossover(xs, cow_total, eager_full):
    """First write ratio where fork + write phase reaches the eager copy of
    the whole heap (linear interpolation); 0 if COW never pays off."""
    if not math.isfinite(eager_full):
        return None
    for (x0, c0), (x1, c1) in zip(zip(xs, cow_total), zip(xs[1:], cow_total[1:])):
        if c0 <= eager_full < c1:
            return x0 + (x1 - x0) * (eager_full - c0) / (c1 - c0)
    if cow_total and cow_total[0] > eager_full:
        return 0.0
    return None


def plot_cow_ratio(points, meta, out, F):
    heap = points[0]["params"]["heap_bytes"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    F["cow_ratio"] = {}
    names = {"never": "4 KiB pages", "always": "THP"}
    for thp in ("never", "always", "madvise", "system"):
        ps = sorted((p for p in points if p["params"]["thp"] == thp), key=lambda p: p["params"]["write_ratio"])
        if not ps:
            continue
        name = names.get(thp, "thp " + thp)
        xs = [p["params"]["write_ratio"] for p in ps]
        draw(ax, xs, ps, "child_write_us", f"COW write phase, {name}", scale=1e-3)
        if thp == "never":
            draw(ax, xs, ps, "eager_copy_us", "eager copy of the same pages (memcpy)", scale=1e-3)
        # COW's cost to the child: fork + write phase. An eager fork's cost:
        # copying the whole heap up front (the ratio-1 eager copy).
        # The whole-heap eager copy: the median per-page memcpy cost over every
        # repetition of every ratio, times the heap's pages (one ratio-1 point
        # alone is too noisy on a shared VM).
        per_page = [v for p in ps for v in values(p, "ns_per_page_copy")]
        eager_full = (statistics.median(per_page) * ps[0]["setup"]["pages"] / 1e3) if per_page else float("nan")
        cow_total = [med(p, "fork_us") + med(p, "child_write_us") for p in ps]
        ax.plot(xs, [c / 1e3 for c in cow_total], "--", lw=1, label=f"COW total (fork + write), {name}")
        cross = crossover(xs, cow_total, eager_full)
        if thp == "never" and math.isfinite(eager_full):
            ax.axhline(eager_full / 1e3, color="gray", ls=":", label="eager copy of the whole heap")
        if cross is not None:
            ax.axvline(cross, color="red", lw=1, ls="-" if thp == "never" else "-.")
            ax.annotate(f"crossover {name} ≈ {cross:.3f}", (cross, eager_full / 1e3),
                        xytext=(8, 20 if thp == "never" else 45), textcoords="offset points", color="red",
                        fontsize=9)
        draw(ax2, xs, ps, "cow_private_dirty_kb", f"measured Private_Dirty growth, {name}", scale=1 / 1024)
        if thp == "never":
            ax2.plot(xs, [x * heap / MIB for x in xs], "k:", lw=1.5, label="expected: ratio x heap")
        F["cow_ratio"][thp] = {
            "heap_mib": heap / MIB,
            "write_ratio": xs,
            "anon_huge_kb": ps[0]["setup"].get("anon_huge_kb"),
            "fork_us_median": [med(p, "fork_us") for p in ps],
            "child_write_us_median": [med(p, "child_write_us") for p in ps],
            "child_write_us_min": [min(values(p, "child_write_us") or [float("nan")]) for p in ps],
            "child_write_us_max": [max(values(p, "child_write_us") or [float("nan")]) for p in ps],
            "eager_copy_us_median": [med(p, "eager_copy_us") for p in ps],
            "cow_faults_median": [med(p, "cow_faults") for p in ps],
            "ns_per_cow_fault_median": [med(p, "ns_per_cow_fault") for p in ps],
            "ns_per_page_copy_median": [med(p, "ns_per_page_copy") for p in ps],
            "cow_eager_ratio_median": [med(p, "cow_eager_ratio") for p in ps],
            "private_dirty_mib_median": [med(p, "cow_private_dirty_kb") / 1024 for p in ps],
            "eager_copy_whole_heap_us": eager_full,
            "ns_per_page_copy_pooled_median": statistics.median(per_page) if per_page else None,
            "ns_per_cow_fault_pooled_median": statistics.median(
                [v for p in ps for v in values(p, "ns_per_cow_fault")] or [float("nan")]),
            "crossover_write_ratio": cross,
        }
    ax.set_xlabel("write ratio (share of the heap's pages written by the child)")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"write phase vs eager copy, {heap // MIB} MiB heap")
    ax2.set_xlabel("write ratio")
    ax2.set_ylabel("COW memory: child's Private_Dirty growth (MiB)")
    ax2.set_title("copy-on-write memory against write ratio")
    finish(fig, ax, ax.get_title(), meta, out)


SPAWNS = [("fork", "fork"), ("vfork", "vfork"), ("posix_spawn", "posix_spawn"), ("fork-exec", "fork+exec")]


def plot_spawn(points, meta, out, F):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    F["spawn"] = {}
    for spawn, label in SPAWNS:
        ps = sorted((p for p in points if p["params"]["spawn"] == spawn), key=heap_mib)
        if not ps:
            continue
        xs = [heap_mib(p) for p in ps]
        draw(ax, xs, ps, "fork_us", label, scale=1e-3)
        if spawn != "fork":
            draw(ax2, xs, ps, "exec_total_us", label, scale=1e-3)
        F["spawn"][spawn] = {"heap_mib": xs, "call_us_median": [med(p, "fork_us") for p in ps],
                             "exec_total_us_median": [med(p, "exec_total_us") for p in ps]}
    for a in (ax, ax2):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("parent's heap (MiB, log scale)")
    ax.set_ylabel("the spawn call in the parent (ms, log scale)")
    ax.set_title("creating the child: fork vs vfork, posix_spawn, fork+exec")
    ax2.set_ylabel("spawn call -> child exec'd /bin/true... reaped (ms, log)")
    ax2.set_title("whole spawn+exec+exit cycle (exec modes)")
    finish(fig, ax, ax.get_title(), meta, out)


def plot_writer(points, meta, out, F):
    heaps = sorted({p["params"]["heap_bytes"] for p in points})
    writers = ["child", "parent", "both"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(heaps)
    F["writer"] = {}
    for i, h in enumerate(heaps):
        xs, ps = [], []
        for j, w in enumerate(writers):
            p = [q for q in points if q["params"]["heap_bytes"] == h and q["params"]["writer"] == w]
            if p:
                xs.append(j + (i - (len(heaps) - 1) / 2) * width)
                ps.append(p[0])
        ms = [med(p, "child_write_us") / 1e3 for p in ps]
        bars = ax.bar(xs, ms, width * 0.9, label=f"{h // MIB} MiB heap, write ratio {ps[0]['params']['write_ratio']}",
                      alpha=0.6)
        draw(ax, xs, ps, "child_write_us", None, scale=1e-3, ls="none", color=bars.patches[0].get_facecolor()[:3])
        F["writer"][str(h // MIB)] = {
            w: {"write_us_median": med(p, "child_write_us"), "cow_faults_median": med(p, "cow_faults"),
                "parent_write_us_median": med(p, "parent_write_us"),
                "private_dirty_mib_median": med(p, "cow_private_dirty_kb") / 1024}
            for w, p in zip([q["params"]["writer"] for q in ps], ps)}
    ax.set_xticks(range(len(writers)), ["child writes", "parent writes", "both write"])
    ax.set_ylabel("write phase (ms; both: the slower side)")
    finish(fig, ax, "who writes after fork: child vs parent vs both", meta, out)


def plot_children(points, meta, out, F):
    ps = sorted(points, key=lambda p: p["params"]["children"])
    xs = [p["params"]["children"] for p in ps]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    draw(ax, xs, ps, "child_write_us", "write phase (slowest child)", scale=1e-3)
    base = med(ps[0], "child_write_us") / 1e3
    ncpu = (ps[0].get("machine") or {}).get("cores") or os.cpu_count() or 1
    ax.plot(xs, [base * max(1.0, n / ncpu) for n in xs], "k--", lw=1,
            label=f"one child's time x children / {ncpu} cores")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("children writing the same heap concurrently")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"one to many children, {ps[0]['params']['heap_bytes'] // MIB} MiB heap, "
                 f"write ratio {ps[0]['params']['write_ratio']}")
    draw(ax2, xs, ps, "cow_private_dirty_kb", "Private_Dirty growth, all children", scale=1 / 1024)
    ax2.plot(xs, [n * ps[0]["params"]["write_ratio"] * ps[0]["params"]["heap_bytes"] / MIB for n in xs], "k--",
             lw=1, label="expected: children x ratio x heap")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("children")
    ax2.set_ylabel("COW memory (MiB)")
    ax2.set_title("copies made: one per writing child")
    F["children"] = {"children": xs, "write_us_median": [med(p, "child_write_us") for p in ps],
                     "fork_us_median": [med(p, "fork_us") for p in ps],
                     "cow_faults_median": [med(p, "cow_faults") for p in ps],
                     "ns_per_cow_fault_median": [med(p, "ns_per_cow_fault") for p in ps],
                     "private_dirty_mib_median": [med(p, "cow_private_dirty_kb") / 1024 for p in ps]}
    finish(fig, ax, ax.get_title(), meta, out)


def plot_trace_attribution(path, out, top=10):
    """Bar charts of a `cowtrace --by-mapping --sites --json` file: copies by
    mapping (label and path, summed over the processes) and the top copy
    sites merged over the process tree (leaf frame, with its caller)."""
    with open(path) as f:
        j = json.load(f)
    procs = j["processes"]  # cowtrace JSON schema 2 (bpf/README.md)
    maps = {}
    for p in procs:
        for m in p.get("mappings", []):
            key = m["label"] + (" " + os.path.basename(m["path"]) if m.get("path") else "")
            maps[key] = maps.get(key, 0) + m["copies"]
    maps = sorted(((v, k) for k, v in maps.items() if v), reverse=True)[:top]
    sites = []
    for s in j.get("merged_sites", []):
        if not s["copies"]:
            continue
        names = [fr["func"] or ("%s+0x%x" % (os.path.basename(fr["module"]) or "?", fr["offset"]))
                 for fr in s["frames"][:2]] or ["[no stack]"]
        sites.append((s["copies"], " < ".join(names)))
    sites = sorted(sites, reverse=True)[:top]
    if not maps and not sites:
        raise ValueError(f"{path}: no mappings or sites (run cowtrace with --by-mapping --sites --json)")
    fig, axes = plt.subplots(1, 2, figsize=(13, max(3, 0.45 * max(len(maps), len(sites)) + 1.5)))
    for ax, rows, title in ((axes[0], maps, "copies by mapping"), (axes[1], sites, "top copy sites (leaf < caller)")):
        ax.barh([k[:60] for _, k in rows][::-1], [v for v, _ in rows][::-1], color="tab:orange")
        ax.set_title(title)
        ax.set_xlabel("pages copied (4 KiB)")
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(os.path.basename(path))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


FOLIOS = ["4K", "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"]


def spread(point, key):
    """median, first and third quartile, min, max, n of one figure."""
    v = sorted(values(point, key))
    if not v:
        return None
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": v[0], "max": v[-1], "n": len(v)}


def plot_folio(points, meta, out, F):
    """Fork and the child's COW write phase by heap folio size (cowbench
    --folio), per heap size and write ratio; the probe's page-level answers
    (folio-probe.jsonl beside it) go into findings.json."""
    # Points of one (heap, folio, ratio) run one repetition each in the VM
    # lab (each on a fresh heap, --seed telling them apart): merge them.
    merged = {}
    for p in points:
        k = (p["params"]["heap_bytes"], p["params"].get("folio"), p["params"]["write_ratio"])
        if k in merged:
            merged[k]["repetitions"] = merged[k]["repetitions"] + p["repetitions"]
            merged[k]["setups"].append(p.get("setup", {}))
        else:
            merged[k] = dict(p, setups=[p.get("setup", {})])
    points = list(merged.values())
    sizes = [f for f in FOLIOS if any(p["params"].get("folio") == f for p in points)]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    heaps = sorted({p["params"]["heap_bytes"] for p in points})
    ratios = sorted({p["params"]["write_ratio"] for p in points})
    res = {"points": []}
    for h in heaps:
        for r in ratios:
            ps = [next((p for p in points if p["params"]["heap_bytes"] == h and p["params"]["write_ratio"] == r
                        and p["params"].get("folio") == f), None) for f in sizes]
            xs = [i for i, p in enumerate(ps) if p]
            ps = [p for p in ps if p]
            if r == ratios[0]:  # fork does not depend on the ratio: one line per heap
                draw(ax, xs, ps, "fork_us", f"{h // MIB} MiB", scale=1e-3)
            draw(ax2, xs, ps, "child_write_us", f"{h // MIB} MiB, ratio {r}", scale=1e-3)
            for p in ps:
                su = p.get("setup", {})
                res["points"].append({
                    "heap_mib": h // MIB, "write_ratio": r, "folio": p["params"].get("folio"),
                    "folio_fraction": [x.get("folio_fraction") for x in p["setups"]],
                    "folio_fraction_end": [x.get("folio_fraction_end") for x in p["setups"]],
                    "fork_us": spread(p, "fork_us"), "child_write_us": spread(p, "child_write_us"),
                    "cow_faults": spread(p, "cow_faults"), "ns_per_cow_fault": spread(p, "ns_per_cow_fault"),
                    "pages_written": su.get("pages_written")})
    for a in (ax, ax2):
        a.set_xticks(range(len(sizes)), sizes)
        a.set_xlabel("heap folio size (cowbench --folio)")
        a.set_yscale("log")
    ax.set_ylabel("fork call (ms)")
    ax.set_title("fork latency by folio size")
    ax2.set_ylabel("child's write phase (ms)")
    ax2.set_title("child's COW write phase by folio size")
    probe = os.path.join(os.path.dirname(out), "folio-probe.jsonl")
    if os.path.exists(probe):
        res["probe"] = [{"folio": q["params"]["folio"], "heap": q["params"]["heap"],
                         "before": q["before"]["pages_by_folio_size"], "child": {
                             k: q["child"][k] for k in ("folios_written", "pages_written", "written_pages_copied",
                                                        "unwritten_pages_copied", "minor_faults",
                                                        "new_pages_by_folio_size", "large_folios_partly_copied")},
                         "parent_after_child_exit": {k: v for k, v in q["parent_after_child_exit"].items()
                                                     if k != "after"},
                         "parent_after": q["parent_after_child_exit"]["after"]["pages_by_folio_size"]}
                        for q in load(probe)]
    F["folio"] = res
    finish(fig, ax, ax.get_title(), meta, out)


PLOTS = [("fork-heap", plot_fork_heap), ("cow-ratio", plot_cow_ratio), ("spawn", plot_spawn),
         ("writer", plot_writer), ("children", plot_children), ("folio", plot_folio)]


def main(argv):
    if len(argv) == 4 and argv[1] == "--trace":  # plot.py --trace COWTRACE.json OUT.png
        print(plot_trace_attribution(argv[2], argv[3]))
        return 0
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    d = argv[1]
    meta = None
    try:
        with open(os.path.join(d, "sweep.json")) as f:
            meta = json.load(f).get("machine")
    except (OSError, ValueError):
        pass
    F, made = {}, []
    for name, fn in PLOTS:
        path = os.path.join(d, name + ".jsonl")
        if not os.path.exists(path):
            continue
        points = [p for p in load(path) if p.get("repetitions")]
        if not points:
            continue
        meta = meta or points[0].get("machine")
        out = os.path.join(d, name + ".png")
        fn(points, meta, out, F)
        made.append(out)
    if not made:
        print(f"plot.py: no results (*.jsonl from scripts/sweep) in {d}", file=sys.stderr)
        return 1
    F["machine"] = meta

    def clean(o):  # NaN -> null: strict JSON
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    F = clean(F)
    tmp = os.path.join(d, ".findings.json.tmp")
    with open(tmp, "w") as f:
        json.dump(F, f, indent=1, sort_keys=True, default=str, allow_nan=False)
        f.write("\n")
    os.rename(tmp, os.path.join(d, "findings.json"))
    for m in made:
        print(m)
    print(os.path.join(d, "findings.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
