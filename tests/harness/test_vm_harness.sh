#!/usr/bin/env bash
# The VM harness must tell pass from fail from a VM that never finished:
# exit 0 for a passing suite, 1 for a failing test, 2 for a kernel panic or
# a hang (with the console's last lines), and `run` must pass the command's
# own exit status through; --with packs a program with its libraries. A
# kernel report (BUG, WARNING, KASAN, lockdep...) on the console fails a
# suite whose tests all passed, quoted.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kernel=${1:-6.12}
vm="$root/scripts/vm"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

. "$root/tests/lib/expect.sh"

printf '#!/bin/sh\necho harness-selftest passing\nexit 0\n' >"$tmp/selftest_pass.sh"
printf '#!/bin/sh\necho harness-selftest failing on purpose\nexit 1\n' >"$tmp/selftest_fail.sh"
printf '#!/bin/sh\necho harness-selftest skipping\nexit 77\n' >"$tmp/selftest_skip.sh"
printf '#!/bin/sh\necho c >/proc/sysrq-trigger\nsleep 60\n' >"$tmp/selftest_panic.sh"
printf '#!/bin/sh\nwhile :; do sleep 1; done\n' >"$tmp/selftest_hang.sh"
# A report line as the kernel prints one (level 1, so every console shows it).
printf '#!/bin/sh\necho "<1>BUG: harness-selftest: a kernel report on purpose" >/dev/kmsg\nexit 0\n' >"$tmp/selftest_report.sh"

echo "VM harness self-test on $kernel:"
expect 0 "a passing test passes" "$vm" --kernel "$kernel" --no-module --add "$tmp/selftest_pass.sh" --filter 'selftest_pass*' test
expect 1 "a failing test fails the suite" "$vm" --kernel "$kernel" --no-module --add "$tmp/selftest_pass.sh" --add "$tmp/selftest_fail.sh" --filter 'selftest_*' test
expect 1 "a suite where everything skips is no pass" "$vm" --kernel "$kernel" --no-module --add "$tmp/selftest_skip.sh" --filter 'selftest_skip*' test
expect 2 "a kernel panic is 'never finished'" "$vm" --kernel "$kernel" --no-module --add "$tmp/selftest_panic.sh" --filter 'selftest_panic*' test
has 'last 40 console lines' "the console's tail after a panic"
has 'Kernel panic' "the console's tail shows the panic"
expect 1 "a kernel report on the console fails a suite that passed" "$vm" --kernel "$kernel" --no-module --add "$tmp/selftest_report.sh" --filter 'selftest_report*' test
has 'vm:   \| .*BUG: harness-selftest: a kernel report on purpose' "the report is quoted"
expect 2 "a hang hits the hard timeout" "$vm" --kernel "$kernel" --no-module --timeout 20 --add "$tmp/selftest_hang.sh" --filter 'selftest_hang*' test
expect 2 "a kernel that never reaches /init is retried, then 'never finished'" "$vm" --kernel "$kernel" --no-module --timeout 60 --append "rdinit=/nonexistent" run true
has 'died before /init \(attempt 2' "a boot that died before /init is retried"
expect 3 "run passes the command's exit status through" "$vm" --kernel "$kernel" --no-module run 'echo hello; exit 3'
has '^hello$' "run prints the command's output"
expect 2 "a bad --kernel is a usage error" "$vm" --kernel 5.10 run true
# --with: a program the image lacks (Debian's bash; the guest has busybox's
# sh) runs at its own path with the shared libraries it loads (libtinfo)
expect 0 "--with packs a program and its shared libraries" "$vm" --kernel "$kernel" --no-module --with bash \
	run 'bash -c "echo with-bash \$BASH_VERSION"'
has '^with-bash [0-9]' "the packed bash ran"
expect 2 "--with an unknown program is a usage error" "$vm" --kernel "$kernel" --with no-such-program-here run true

[ $fails -eq 0 ] && echo "VM harness self-test: all passed" || echo "VM harness self-test: $fails failed"
[ $fails -eq 0 ]
