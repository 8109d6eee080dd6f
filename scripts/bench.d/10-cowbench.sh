#!/usr/bin/env bash
# cowbench's own benchmark: the driver's fork latency with an empty heap
# against a plain fork+_exit+waitpid loop (lmbench's lat_proc) in the same
# process, and the cost of a COW fault beside a 4 KiB memcpy and a
# first-touch fault, for 4 KiB pages and THP; fork latency of a 256 MiB
# heap with writable vs already write-protected PTEs. Prints name=value.
set -uo pipefail
bin="${COWSCOPE_BIN:-${BUILD:-build}/bin}/cowbench"
[ -x "$bin" ] || { echo "cowbench not built ($bin)"; exit 1; }
exec "$bin" selftest --rounds "${COWBENCH_ROUNDS:-3}"
