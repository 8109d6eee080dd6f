#!/usr/bin/env bash
# cowscope forecast: how long reading a live process's page-table shape
# takes (smaps + pagemap, without stopping it) for a 4 GiB process with 4 KiB
# pages, and whether the target kept running meanwhile (its progress counter
# advanced during the read). Uses a throw-away calibration (the forecast's
# numbers are not the point here). Prints name=value with the target.
set -uo pipefail
bin="${COWSCOPE_BIN:-${BUILD:-build}/bin}"
[ -x "$bin/cowscope" ] || { echo "cowscope not built ($bin/cowscope)"; exit 1; }
size_g=${FORECAST_BENCH_GIB:-4}
tmp=$(mktemp -d)
target=""
cleanup() { [ -n "$target" ] && kill "$target" 2>/dev/null && wait "$target" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# A minimal calibration file: the shape read is what is measured.
python3 - "$tmp/cal.json" <<'PY'
import json, sys
terms = ["fixed", "writable_ptes", "wp_ptes", "huge_pmds", "vmas", "large_folio_ptes"]
json.dump({"format": "cowscope-calibration", "format_version": 1, "kernel": "bench",
           "coefficients_us": {t: {"used": t != "large_folio_ptes", "value": 0.1} for t in terms},
           "bootstrap_us": [], "noise_ratio_q05": 1, "noise_ratio_q95": 1, "copy": {}},
          open(sys.argv[1], "w"))
PY
# The target: 4 GiB touched page by page, then a counter it bumps forever.
python3 - "$size_g" "$tmp/ready" "$tmp/counter" <<'PY' &
import mmap, os, sys, time
n = int(sys.argv[1]) << 30
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
view = memoryview(m)
ones = b"\1" * (n // 4096)
view[::4096] = ones
open(sys.argv[2], "w").close()
i = 0
while True:
    i += 1
    if i % 20000 == 0:
        with open(sys.argv[3], "w") as f:
            f.write(f"{i} {time.monotonic()}\n")
PY
target=$!
for _ in $(seq 1200); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || { echo "forecast bench: the ${size_g} GiB target did not start"; exit 1; }
ms=()
for i in 1 2 3 4 5; do
	out=$("$bin/cowscope" forecast "$target" --no-module --json - --calibration "$tmp/cal.json" 2>/dev/null) || exit 1
	ms+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["shape"]["read_ms"])' <<<"$out")")
done
ptes=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["shape"]["ptes_private_writable"])' <<<"$out")
c0=$(cut -d" " -f1 "$tmp/counter")
t0=$(date +%s.%N); "$bin/cowscope" forecast "$target" --no-module --json - --calibration "$tmp/cal.json" >/dev/null 2>&1
t1=$(date +%s.%N); c1=$(cut -d' ' -f1 "$tmp/counter")
state=$(awk '{print $3}' "/proc/$target/stat")
printf '%s\n' "${ms[@]}" | sort -n | awk -v g="$size_g" -v p="$ptes" '
	{ v[NR] = $1 } END {
		printf "forecast_shape_read_%sg_ms=%.1f (min %.1f max %.1f, n=%d; %d present PTEs) target<1000 %s\n",
			g, v[int((NR + 1) / 2)], v[1], v[NR], NR, p, v[int((NR + 1) / 2)] < 1000 ? "OK" : "MISSED" }'
echo "forecast_wall_s=$(echo "$t1 - $t0" | bc) (the whole command)"
echo "forecast_target_kept_running=$([ "$c1" != "$c0" ] && echo yes || echo no) (counter $c0 -> $c1; state $state)"
