#!/usr/bin/env bash
# tests/pkg/test_packages.sh [--build|--root-only]: the Debian packages, installed
# the way a user installs them, in a pristine Debian 12 root.
#
# The root: mmdebstrap --variant=minbase bookworm, plus man-db and
# bash-completion (standard on any Debian system, absent from minbase; the
# man and completion checks need them). Built once, atomically (.tmp then
# rename), under /var/cache/cowscope/pkg/; each run works on a scratch copy
# (the cache stays pristine), entered with chroot, /proc /sys /dev mounted
# and unmounted on every exit path. apt's downloads are cached in
# /var/cache/cowscope/pkg/archives.
#
# Checks, in order:
#  1 apt-get install --no-install-recommends ./cowscope_*.deb
#    ./cowscope-dkms_*.deb, with no kernel headers in the root (recommends
#    off: dkms recommends linux-headers-amd64, which would install headers):
#    DKMS says it skipped the build for lack of headers, both packages are
#    "ii", dpkg --audit is clean.
#  2 every program's --version (the VERSION file's version) and --help, man -w
#    for each page, import cowscope (its __version__), examples/bench.py,
#    cowbench --heap 16M --write-ratio 0.25 --json - counts at least the
#    1024 COW faults of the pages the child wrote, bash completion loads and
#    completes subcommands and options.
#  3 without the module: cowscope and cowdemo say how to get it.
#  4 apt-get install linux-headers-<6.1 cloud ABI> (scripts/lib.sh's
#    kernel_abi 6.1): DKMS's kernel hook builds the module for it; dkms
#    status says installed, modinfo's vermagic and version match.
#  5 apt-get purge both packages: nothing of them is left (no file or
#    folder named *cowscope*, no dkms tree, no module), and every file
#    that appeared since the packages were installed belongs to an
#    installed package (the dependencies and the headers stay installed).
#
# --build: make deb first (scripts/run-tests does). --root-only: just build
# the cached root. Needs root and the network to Debian's archive.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../../scripts/lib.sh"

t_start=$SECONDS
cache=${COWSCOPE_CACHE:-/var/cache/cowscope}/pkg
base=$cache/root-bookworm-minbase
archives=$cache/archives
debdir=${COWSCOPE_DEB_DIR:-$(cowscope_build)/deb}   # (another folder: to test broken packages)
version=$(cat "$COWSCOPE_ROOT/VERSION")
progs=(cowbench cowtrace cowscope cowdemo snapdemo)
pass=0 fail=0
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security

ok() { pass=$((pass + 1)); printf '  ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf '  FAIL %s\n' "$*"; }
step() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - t_start)); }

[ "$(id -u)" -eq 0 ] || { echo "SKIP: the package test needs root (chroot, apt, dpkg)"; exit 0; }
command -v mmdebstrap >/dev/null || die "mmdebstrap missing (scripts/setup installs it)"

if [ ! -d "$base" ]; then
	step "building the pristine root $base (once)"
	rm -rf "$base.tmp"
	mkdir -p "$cache"
	mmdebstrap --quiet --variant=minbase --include=man-db,bash-completion \
		--aptopt='Acquire::Retries "3"' bookworm "$base.tmp" \
		"deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
		"deb $security bookworm-security main" ||
		{ rm -rf "$base.tmp"; die "mmdebstrap failed"; }
	mv "$base.tmp" "$base"
fi
[ "${1:-}" = "--root-only" ] && exit 0
if [ "${1:-}" = "--build" ]; then
	step "make deb"
	"$COWSCOPE_ROOT/scripts/make-deb" || die "make deb failed"
fi

debs=("$debdir/cowscope_${version}_amd64.deb" "$debdir/cowscope-dkms_${version}_all.deb")
for d in "${debs[@]}"; do
	[ -f "$d" ] || die "$d missing: run make deb first"
done
abi=$(kernel_abi 6.1) || die "cannot resolve the 6.1 cloud kernel's ABI (scripts/lib.sh kernel_abi)"

mkdir -p "$archives/partial" /tmp/cowscope-pkg
root=$(mktemp -d /tmp/cowscope-pkg/root.XXXXXX)
mounts=()
cleanup() {
	local i
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		umount -l "${mounts[i]}" 2>/dev/null || true
	done
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "scratch copy of the root in $root"
cp -a "$base/." "$root/"
for m in proc sys dev dev/pts; do
	mkdir -p "$root/$m"
	case $m in
	proc) mount -t proc proc "$root/proc" ;;
	sys) mount -t sysfs sys "$root/sys" ;;
	dev) mount --bind /dev "$root/dev" ;;
	dev/pts) mount -t devpts devpts "$root/dev/pts" ;;
	esac
	mounts+=("$root/$m")
done
mount --bind "$archives" "$root/var/cache/apt/archives"
mounts+=("$root/var/cache/apt/archives")
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$root/tmp/debs"
cp "${debs[@]}" "$root/tmp/debs/"

# in_root CMD...: a login-like shell in the root.
in_root() {
	chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root TERM=dumb LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# file list of the root (what a user would call "the system"), sorted
snapshot() {
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
		-o -path ./run -o -path ./var/cache/apt -o -path ./var/lib/apt/lists -o -path ./var/log \
		-o -path ./var/lib/dpkg -o -path ./var/cache/man -o -path ./var/cache/debconf \) -prune \
		-o -print | LC_ALL=C sort)
}

step "apt-get update in the root"
in_root apt-get -q -o Acquire::Retries=3 update >"$root/tmp/update.log" 2>&1 ||
	{ cat "$root/tmp/update.log"; die "apt-get update in the root failed"; }
snapshot >"$root/tmp/before.txt"

step "1. install both packages, no kernel headers in the root"
if in_root apt-get install -y -q --no-install-recommends /tmp/debs/cowscope_${version}_amd64.deb \
	/tmp/debs/cowscope-dkms_${version}_all.deb >"$root/tmp/install.log" 2>&1; then
	ok "apt-get install ./cowscope_${version}_amd64.deb ./cowscope-dkms_${version}_all.deb"
else
	tail -30 "$root/tmp/install.log"
	bad "apt-get install of the packages failed"
fi
for p in cowscope cowscope-dkms; do
	st=$(in_root dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$p" 2>/dev/null || true)
	[ "$st" = "ii $version" ] && ok "dpkg: $p is ii $version" || bad "dpkg: $p is \"$st\", expected \"ii $version\""
done
# cowtrace-exporter.service: shipped with its options file, not enabled
if [ -f "$root/lib/systemd/system/cowtrace-exporter.service" ] && [ -f "$root/etc/default/cowtrace-exporter" ] &&
	! ls "$root"/etc/systemd/system/*.wants/cowtrace-exporter.service >/dev/null 2>&1; then
	ok "cowtrace-exporter.service and /etc/default/cowtrace-exporter installed, the service not enabled"
else
	bad "cowtrace-exporter.service missing, or enabled by the package"
fi
audit=$(in_root dpkg --audit 2>&1 || true)
[ -z "$audit" ] && ok "dpkg --audit is clean" || bad "dpkg --audit: $audit"
if grep -q "cowscope-dkms: no kernel headers for the running kernel" "$root/tmp/install.log" &&
	grep -q "modprobe cowscope" "$root/tmp/install.log"; then
	ok "the install says why nothing was built and what to do:"
	sed -n '/^Loading new cowscope/,/modprobe cowscope/p' "$root/tmp/install.log" | sed 's/^/         | /'
else
	sed -n '/cowscope-dkms/,$p' "$root/tmp/install.log" | tail -15
	bad "no message from DKMS about the missing kernel headers"
fi
in_root test -f "/usr/src/cowscope-$version/dkms.conf" && ok "/usr/src/cowscope-$version/dkms.conf" ||
	bad "/usr/src/cowscope-$version/dkms.conf missing"
in_root grep -q "^PACKAGE_VERSION=\"$version\"" "/usr/src/cowscope-$version/dkms.conf" &&
	ok "dkms.conf PACKAGE_VERSION=\"$version\"" || bad "dkms.conf's PACKAGE_VERSION is not \"$version\""

step "2. the programs, man pages, Python module, completion"
for p in "${progs[@]}"; do
	out=$(in_root "$p" --version 2>&1) && [[ $out == "$p $version (commit "*")" ]] &&
		ok "$p --version: $out" || bad "$p --version: \"$out\""
	out=$(in_root "$p" --help 2>&1) && [[ $out == *"Usage: "*"$p"* ]] && [[ $out == *"--version"* ]] &&
		ok "$p --help ($(wc -l <<<"$out") lines)" || bad "$p --help: $(head -3 <<<"$out")"
	page=$(in_root man -w "$p" 2>&1) && [ "$page" = "/usr/share/man/man1/$p.1.gz" ] &&
		ok "man -w $p: $page" || bad "man -w $p: \"$page\""
	text=$(in_root sh -c "MANWIDTH=200 man $p 2>/dev/null | col -b" || true)
	if grep -q "EXIT STATUS" <<<"$text" && grep -q "EXAMPLES" <<<"$text" && grep -q -- "--version" <<<"$text"; then
		ok "man $p has OPTIONS from --help, EXIT STATUS and EXAMPLES"
	else
		bad "man $p lacks EXIT STATUS, EXAMPLES or the options"
	fi
	in_root ldd "/usr/bin/$p" >/dev/null 2>&1 && ! in_root ldd "/usr/bin/$p" | grep -q 'not found' &&
		ok "$p: every shared library found" || bad "$p: ldd: $(in_root ldd "/usr/bin/$p" 2>&1 | grep 'not found')"
done
out=$(in_root python3 -c 'import cowscope; print(cowscope.__version__)' 2>&1) && [ "$out" = "$version" ] &&
	ok "python3 -c 'import cowscope': __version__ $out" || bad "import cowscope: $out"
out=$(in_root python3 /usr/share/doc/cowscope/examples/bench.py 16M 0.25 2>&1) && [[ $out == *"COW faults"* ]] &&
	ok "examples/bench.py: $(tail -1 <<<"$out" | sed 's/^ *//')" || bad "examples/bench.py: $out"
json=$(in_root cowbench --heap 16M --write-ratio 0.25 --json - 2>"$root/tmp/cowbench.err") || true
# 16 MiB = 4096 pages, the child writes 25% = 1024 pages (setup.pages_written):
# each repetition's cow_faults must count at least those, and not twice as many.
read -r faults written < <(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
vals = [r["cow_faults"] for r in d["repetitions"] if r["status"] == "ok"]
print(min(vals) if vals and d["status"] == "ok" else -1, d["setup"]["pages_written"])' <<<"$json" 2>/dev/null || echo "-1 0")
if [ "$written" -eq 1024 ] && [ "$faults" -ge "$written" ] && [ "$faults" -lt $((2 * written)) ]; then
	ok "cowbench --heap 16M --write-ratio 0.25 --json -: cow_faults $faults for $written pages written"
else
	bad "cowbench: cow_faults $faults for $written pages written, expected 1024 written and 1024..2047 faults (stderr: $(head -3 "$root/tmp/cowbench.err"))"
fi
# completion: bash-completion loads completions/PROGRAM on first use.
comp=$(in_root bash -c '
	. /usr/share/bash-completion/bash_completion
	__load_completion cowscope || exit 3
	complete -p cowbench cowtrace cowscope cowdemo snapdemo >/dev/null || exit 4
	COMP_WORDS=(cowscope d); COMP_CWORD=1; COMP_LINE="cowscope d"; COMP_POINT=${#COMP_LINE}
	_cowscope_complete cowscope d cowscope; echo "sub:${COMPREPLY[*]}"
	COMP_WORDS=(cowbench --he); COMP_CWORD=1; COMP_LINE="cowbench --he"; COMP_POINT=${#COMP_LINE}
	_cowscope_complete cowbench --he cowbench; echo "opt:${COMPREPLY[*]}"
	COMP_WORDS=(cowbench sweep --ou); COMP_CWORD=2; COMP_LINE="cowbench sweep --ou"; COMP_POINT=${#COMP_LINE}
	_cowscope_complete cowbench --ou sweep; echo "subopt:${COMPREPLY[*]}"' 2>&1 || true)
grep -qx 'sub:diff' <<<"$comp" && ok "completion: cowscope d<Tab> -> diff" || bad "completion of cowscope's subcommands: $comp"
grep -q '^opt:.*--heap' <<<"$comp" && ok "completion: cowbench --he<Tab> -> --heap" || bad "completion of cowbench's options: $comp"
grep -qx 'subopt:--out' <<<"$comp" && ok "completion: cowbench sweep --ou<Tab> -> --out" || bad "completion of a subcommand's options: $comp"

step "3. without the module"
out=$(in_root cowscope summary 1 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] && grep -q "modprobe cowscope" <<<"$out" && grep -q "cowscope-dkms" <<<"$out" &&
	ok "cowscope summary 1: exit 1, says how to get the module" || bad "cowscope without the module: rc $rc: $out"
out=$(in_root cowdemo --steps layout 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q "modprobe cowscope" <<<"$out" &&
	ok "cowdemo --steps layout: says how to load the module" || bad "cowdemo without the module: rc $rc: $out"
out=$(in_root cowdemo --steps fork 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q "fork" <<<"$out" && ok "cowdemo --steps fork runs (host part)" || bad "cowdemo --steps fork: rc $rc"

step "4. kernel headers $abi arrive: DKMS builds the module"
if in_root apt-get install -y -q --no-install-recommends "linux-headers-$abi" >"$root/tmp/headers.log" 2>&1; then
	ok "apt-get install linux-headers-$abi"
else
	tail -30 "$root/tmp/headers.log"
	bad "apt-get install linux-headers-$abi failed"
fi
st=$(in_root dkms status cowscope 2>&1 || true)
grep -q "cowscope/$version, $abi, x86_64: installed" <<<"$st" && ok "dkms status: $(grep "$abi" <<<"$st")" ||
	{ tail -30 "$root/tmp/headers.log"; bad "dkms status: \"$st\""; }
ko=$(in_root sh -c "ls /lib/modules/$abi/updates/dkms/cowscope.ko* 2>/dev/null || true" | head -1)
if [ -n "$ko" ]; then
	vm=$(in_root modinfo -F vermagic "$ko" | awk '{print $1}')
	[ "$vm" = "$abi" ] && ok "modinfo -F vermagic $ko: $vm" || bad "vermagic \"$vm\", expected $abi"
	mv=$(in_root modinfo -F version "$ko")
	[ "$mv" = "$version" ] && ok "modinfo -F version: $mv" || bad "module version \"$mv\", expected $version"
else
	bad "no cowscope.ko in /lib/modules/$abi/updates/dkms/"
fi
audit=$(in_root dpkg --audit 2>&1 || true)
[ -z "$audit" ] && ok "dpkg --audit is clean" || bad "dpkg --audit: $audit"

step "5. purge both packages"
if in_root apt-get purge -y -q cowscope cowscope-dkms >"$root/tmp/purge.log" 2>&1; then
	ok "apt-get purge cowscope cowscope-dkms"
else
	tail -20 "$root/tmp/purge.log"
	bad "apt-get purge failed"
fi
left=$(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \) -prune \
	-o -iname '*cowscope*' -print | grep -v '^./var/cache/apt/archives/' || true)
[ -z "$left" ] && ok "no file or folder named *cowscope* left" || bad "left behind: $(tr '\n' ' ' <<<"$left")"
in_root test ! -e /var/lib/dkms/cowscope && ok "dkms tree /var/lib/dkms/cowscope gone" || bad "/var/lib/dkms/cowscope left"
snapshot >"$root/tmp/after.txt"
# Every path that appeared must belong to an installed package (the
# dependencies, the headers) or be what their maintainer scripts generate.
# dpkg's lists say /bin, /sbin, /lib; bookworm's merged /usr has them under /usr.
cat "$root"/var/lib/dpkg/info/*.list "$root"/var/lib/dpkg/info/*.conffiles 2>/dev/null |
	sed -E 's,^/(bin|sbin|lib|lib64)(/|$),/usr/\1\2,; s,^,.,' | LC_ALL=C sort -u >"$root/tmp/owned.txt"
# Also explained: what the dependencies' maintainer scripts generate
# (update-rc.d links, kmod's /etc/modules, readline's /etc/inputrc, python's
# byte code, debian_config and /usr/local folder, update-alternatives' links,
# cpp's /usr/lib/cpp, the dynamic linker's caches, depmod's indexes).
LC_ALL=C comm -13 "$root/tmp/before.txt" "$root/tmp/after.txt" | LC_ALL=C comm -23 - "$root/tmp/owned.txt" |
	grep -vE '/__pycache__(/|$)|^\./etc/alternatives/|^\./etc/ld\.so\.cache$|^\./usr/lib/modules/[^/]+/modules\.[a-z.]+$|^\./etc/rc[0-6S]\.d/|^\./etc/modules$|^\./etc/inputrc$|^\./etc/python3(/debian_config)?$|^\./etc/ssl/certs/' |
	grep -vE '^\./usr/lib/cpp$|^\./usr/local/lib/python3[^/]*(/dist-packages)?$|^\./var/cache/ldconfig/|^\./var/lib/python(/|$)' |
	while IFS= read -r f; do
		# update-alternatives' links (cc, c89, lzma and their man pages)
		case $(readlink "$root/$f" || true) in /etc/alternatives/*) ;; *) printf '%s\n' "$f" ;; esac
	done >"$root/tmp/unexplained.txt" || true
cp "$root/tmp/unexplained.txt" /tmp/cowscope-pkg/last-unexplained.txt
if [ -s "$root/tmp/unexplained.txt" ]; then
	bad "files no installed package owns ($(wc -l <"$root/tmp/unexplained.txt"), all in /tmp/cowscope-pkg/last-unexplained.txt): $(head -20 "$root/tmp/unexplained.txt" | tr '\n' ' ')"
else
	ok "every file added since the install belongs to an installed package ($(comm -13 "$root/tmp/before.txt" "$root/tmp/after.txt" | wc -l) paths)"
fi
audit=$(in_root dpkg --audit 2>&1 || true)
[ -z "$audit" ] && ok "dpkg --audit is clean" || bad "dpkg --audit: $audit"

printf '\npackage tests: %d passed, %d failed (%d s)\n' "$pass" "$fail" $((SECONDS - t_start))
[ "$fail" -eq 0 ]
