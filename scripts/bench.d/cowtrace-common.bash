# Sourced by the cowtrace benchmarks (20-cowtrace.sh, 25-cowtrace-serve.sh;
# not a benchmark itself: scripts/bench runs *.sh only). Before sourcing, set
# bench_name (the name of the skipped=... line). It sets cowtrace (the binary)
# and the workload's size (mib, runs, pages: COWTRACE_BENCH_MIB,
# COWTRACE_BENCH_RUNS), defines skip REASON (print the skipped line, exit 0)
# and skips where BPF tracing of the C workload cannot run.
build=${BUILD:-build}
case "$build" in /*) ;; *) build=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/$build ;; esac
bin=${COWSCOPE_BIN:-$build/bin}
cowtrace=$bin/cowtrace
mib=${COWTRACE_BENCH_MIB:-256}
runs=${COWTRACE_BENCH_RUNS:-5}
pages=$((mib * 256))

skip() { echo "$bench_name=skipped reason=\"$*\""; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root: BPF needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip "no /sys/kernel/btf/vmlinux"
[ -x "$cowtrace" ] || skip "$cowtrace not built"
command -v cc >/dev/null || skip "no C compiler for the workload"
