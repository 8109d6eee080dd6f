#!/usr/bin/env bash
# tests/bpf/soak_exporter.sh [SECONDS] [OUT.csv]: the exporter's leak check
# (not in `make test`: it runs for SECONDS, default 660). A forking load
# (a parent forking a short-lived child that writes 16 pages, about 20 per
# second) runs under `cowtrace --serve -p LOAD --children --max-series 200
# --grace 5`; every 10 s one scrape records the exporter's RSS (its
# process_resident_memory_bytes and /proc/PID/status VmRSS), its series, the
# BPF map entries, the BPF slots handed out, dropped series and the tree's
# copies. Writes OUT.csv (atomically) and prints the first and last rows and
# the RSS growth between the 2nd and the last sample.
set -euo pipefail
secs=${1:-660}
out=${2:-soak.csv}
root=$(cd "$(dirname "$0")/../.." && pwd)
cowtrace=${COWTRACE:-$root/build/bin/cowtrace}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
tmp=$(mktemp -d)
load="" srv=""
cleanup() {
	[ -n "$load" ] && kill "$load" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 130" INT TERM

cat >"$tmp/l.c" <<'C'
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(void)
{
	char *p = mmap(0, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 1, 64 * 4096);
	char c;
	if (read(0, &c, 1) != 1) return 1;	/* go */
	for (;;) {
		pid_t k = fork();
		if (k == 0) {
			for (int i = 0; i < 16; i++) p[i * 4096] = 2;
			_exit(0);
		}
		waitpid(k, 0, 0);
		struct timespec t = {0, 50 * 1000 * 1000};
		nanosleep(&t, 0);
	}
}
C
cc -O2 -o "$tmp/soakload" "$tmp/l.c"
mkfifo "$tmp/go"
"$tmp/soakload" <"$tmp/go" &
load=$!
exec 3>"$tmp/go"
"$cowtrace" --serve 127.0.0.1:0 -p "$load" --children --max-series 200 --grace 5 2>"$tmp/err" >/dev/null &
srv=$!
port=""
for _ in $(seq 600); do
	port=$(sed -n 's|.*serving http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$tmp/err")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/err"; exit 1; }
echo go >&3
t0=$SECONDS
echo "t_s,rss_kib_status,rss_bytes_metric,series,map_procs,map_infos,slots_used,dropped_exited,dropped_limit,tree_copies,children_forked" >"$tmp/csv"
while [ $((SECONDS - t0)) -le "$secs" ]; do
	python3 - "$port" "$srv" $((SECONDS - t0)) >>"$tmp/csv" <<'PY'
import re, sys, urllib.request
port, pid, t = sys.argv[1:]
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
def m(name, labels=""):
    for l in body.splitlines():
        x = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", l)
        if x and x.group(1) == name and labels in (x.group(2) or ""):
            return float(x.group(3))
    return -1
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
tree = m("cowtrace_tree_wp_faults_total")
print(",".join(str(int(v)) for v in [int(t), int(rss), m("process_resident_memory_bytes"), m("cowtrace_series"),
      m("cowtrace_bpf_map_entries", 'map="procs"'), m("cowtrace_bpf_map_entries", 'map="infos"'),
      m("cowtrace_bpf_slots_used"), m("cowtrace_series_dropped_total", 'reason="exited"'),
      m("cowtrace_series_dropped_total", 'reason="limit"'), m("cowtrace_tree_cow_copies_total"),
      m("cowtrace_series_dropped_total", 'reason="exited"') + m("cowtrace_series", "")]))
PY
	sleep 10
done
mv "$tmp/csv" "$out.tmp" && mv "$out.tmp" "$out"
head -n 3 "$out"
tail -n 1 "$out"
python3 - "$out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
a, b = rows[1], rows[-1]
print(f"samples={len(rows)} duration_s={b['t_s']} children~{b['children_forked']} "
      f"rss_kib {a['rss_kib_status']} -> {b['rss_kib_status']} (growth {int(b['rss_kib_status']) - int(a['rss_kib_status'])} KiB); "
      f"max series {max(int(r['series']) for r in rows)}, max procs entries {max(int(r['map_procs']) for r in rows)}, "
      f"slots used {b['slots_used']}")
PY
kill "$srv"
wait "$srv" && echo "exporter exit status 0 after SIGTERM"
srv=""
