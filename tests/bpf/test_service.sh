#!/usr/bin/env bash
# tests/bpf/test_service.sh UNIT COWTRACE: cowtrace-exporter.service (ctest -L bpf).
#  1 systemd-analyze verify accepts the unit (ExecStart pointed at COWTRACE)
#  2 systemd-analyze security --offline: its exposure score, printed; at
#    most 4.0 ("OK" or better in systemd's words)
#  3 the capabilities the unit grants are enough: cowtrace --serve, run by
#    an unprivileged user with exactly CapabilityBoundingSet/AmbientCapabilities
#    of the unit and no_new_privs (setpriv), loads its BPF and serves, over
#    TLS with basic auth (--web-config from a folder laid out as systemd's
#    credentials: the user's, read-only, web_FILE names), a scrape that
#    counts the copies of a forked child (needs root, BTF, openssl, curl);
#    the unit hands /etc/cowscope/web to the service (LoadCredential)
# Exit 0 all passed, 1 a failure, 77 skipped with the reason.
set -uo pipefail
unit=${1:?usage: test_service.sh UNIT COWTRACE}
cowtrace=${2:?usage: test_service.sh UNIT COWTRACE}
fail=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fail=1; }

command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
tmp=$(mktemp -d /tmp/cowtrace-service.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# 1: verify (the unit names the installed cowtrace; point it at this build's)
sed "s|^ExecStart=[^ ]*/cowtrace |ExecStart=$(realpath "$cowtrace") |" "$unit" >"$tmp/cowtrace-exporter.service"
grep -q "^ExecStart=$(realpath "$cowtrace") --serve" "$tmp/cowtrace-exporter.service" || bad "ExecStart not rewritten"
# (--man=no: the man page is installed with the package, not in a build tree)
if out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/cowtrace-exporter.service" 2>&1) &&
	[ -z "$out" ]; then
	ok "systemd-analyze verify: no complaint"
else
	bad "systemd-analyze verify: $out"
fi

# 2: the exposure score
if sec=$(systemd-analyze security --offline=true --no-pager "$tmp/cowtrace-exporter.service" 2>&1); then :; fi
score=$(grep -oE 'Overall exposure level for [^:]*: [0-9.]+ [A-Z]+' <<<"$sec" | grep -oE '[0-9.]+ [A-Z]+$')
if [ -z "$score" ]; then
	bad "systemd-analyze security printed no score: $sec"
elif awk -v s="${score%% *}" 'BEGIN { exit !(s <= 4.0) }'; then
	ok "systemd-analyze security: exposure $score (at most 4.0)"
else
	bad "systemd-analyze security: exposure $score, more than 4.0:"
	grep -E '^✗' <<<"$sec" | head -20
fi

# 3: the unit's capabilities suffice, TLS and basic auth included
if grep -q '^LoadCredential=web:/.*etc/cowscope/web$' "$unit"; then
	ok "the unit hands /etc/cowscope/web to the service as credentials"
else
	bad "no LoadCredential=web:/etc/cowscope/web in the unit"
fi
if [ "$(id -u)" -ne 0 ] || [ ! -e /sys/kernel/btf/vmlinux ] || ! command -v setpriv >/dev/null ||
	! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
	echo "  skip capability check: needs root, kernel BTF, setpriv, openssl and curl"
	exit $fail
fi
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
[ "$caps" = "+bpf,+perfmon,+sys_resource" ] || bad "AmbientCapabilities changed ($caps): update this test"
# a capability this machine's bounding set lacks (a container's) cannot be
# granted here: check with the rest, and say so
bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
have=""
for c in ${caps//,/ }; do
	case $c in +bpf) bit=39 ;; +perfmon) bit=38 ;; +sys_resource) bit=24 ;; *) bit=-1 ;; esac
	if [ $bit -ge 0 ] && [ $(((bnd >> bit) & 1)) -eq 1 ]; then
		have+="${have:+,}$c"
	else
		echo "  note: ${c#+} is not in this machine's bounding set: checked without it"
	fi
done
caps=$have
chmod 755 "$tmp"
# what systemd makes of /etc/cowscope/web: /run/credentials/UNIT/web_FILE,
# owned by the service's user, read-only
cred="$tmp/credentials"
mkdir "$cred"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cred/web_cowtrace.key" \
	-out "$cred/web_cowtrace.crt" -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null ||
	bad "openssl could not make a certificate"
hash=$(python3 -c 'import ctypes; l = ctypes.CDLL("libcrypt.so.1"); l.crypt.restype = ctypes.c_char_p
l.crypt_gensalt.restype = ctypes.c_char_p
print(l.crypt(b"s3cret", l.crypt_gensalt(b"$2b$", 10, None, 0)).decode())')
printf 'tls_server_config:\n  cert_file: web_cowtrace.crt\n  key_file: web_cowtrace.key\nbasic_auth_users:\n  prometheus: %s\n' \
	"$hash" >"$cred/web_web.yml"
chown -R 65534:65534 "$cred"
chmod 0400 "$cred"/*
chmod 0500 "$cred"
target=$(realpath "${COWTRACE_TARGET:-$(dirname "$cowtrace")/cowtrace_target_static}")
setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
	--inh-caps="-all,$caps" --ambient-caps="-all,$caps" --bounding-set="-all,$caps" \
	"$(realpath "$cowtrace")" --serve 127.0.0.1:0 --comm cowtrace_target --grace 60 \
	--web-config "$cred/web_web.yml" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 1 300); do
	port=$(sed -n 's|.*serving https://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$tmp/err")
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$port" ]; then
	bad "cowtrace --serve as uid 65534 with $caps did not start: $(cat "$tmp/err")"
	exit 1
fi
ok "cowtrace --serve loads and listens over TLS as uid 65534 with only $caps"
"$target" 0 0 500 0 || bad "cowtrace_target failed"
# poll /metrics until the child's copies show (the exporter refreshes on
# each scrape), 10 s at most
copies=0
for _ in $(seq 1 100); do
	body=$(curl -sS --max-time 5 --fail --cacert "$cred/web_cowtrace.crt" -u prometheus:s3cret \
		"https://127.0.0.1:$port/metrics") || break
	copies=$(awk '/^cowtrace_cow_copies_total\{/ { if ($2 > m) m = $2 } END { print m + 0 }' <<<"$body")
	[ "$copies" -ge 500 ] && break
	sleep 0.1
done
if [ "$copies" -ge 500 ] && [ "$copies" -le 516 ]; then
	ok "the child's copies as seen by that exporter: $copies (wrote 500)"
else
	bad "the child's copies: $copies, expected 500..516"
fi
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" -eq 0 ] && ok "SIGTERM: exit status 0" || bad "SIGTERM: exit status $rc"
exit $fail
