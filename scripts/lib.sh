# Shared shell helpers for scripts/ (sourced, not run).
# shellcheck shell=bash

COWSCOPE_ROOT=${COWSCOPE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
COWSCOPE_CACHE=${COWSCOPE_CACHE:-/var/cache/cowscope}
# The VM lab kernels: ONE line per kernel. Adding a kernel is adding a line
# here (then `scripts/setup` fetches it; see README "Adding a kernel").
#   short  apt suite of its linux-image-cloud-amd64   where its module is built
#          ("host": this Debian 12 with its headers installed as packages;
#          "trixie": a cached Debian 13 root, see build_root_dir, for headers
#          that need Debian 13's compiler and glibc; "debug": a debug
#          tier, NAME-debug, built from source from the suite's
#          linux-source-NAME at NAME's cloud kernel version with the
#          configuration scripts/kernel/NAME-debug.config, by
#          scripts/build-debug-kernel, once, on first need)
COWSCOPE_KERNEL_TABLE='
6.1          bookworm             host
6.12         bookworm-backports   host
7.3          trixie-backports     trixie
6.12-debug   bookworm-backports   debug
'
# The lab kernels (set-up, the sweeps, `make kmod`): every line but the
# debug tiers, which are for the tests only.
COWSCOPE_KERNELS=${COWSCOPE_KERNELS:-$(awk 'NF && $3 != "debug" { printf "%s%s", sep, $1; sep = " " }' <<<"$COWSCOPE_KERNEL_TABLE")}
# The kernels `make test` runs the module's suites on: every line, debug
# tiers included (a debug tier is built on the first run that needs it;
# make test KERNELS="6.1 6.12" for fewer).
COWSCOPE_TEST_KERNELS=${COWSCOPE_TEST_KERNELS:-$(awk 'NF { printf "%s%s", sep, $1; sep = " " }' <<<"$COWSCOPE_KERNEL_TABLE")}
PYTHON=/usr/bin/python3

# cowscope_build -> the build folder, absolute: $BUILD (relative to the
# source tree, as make takes it) or build/.
cowscope_build() {
	local b=${BUILD:-build}
	case "$b" in /*) echo "$b" ;; *) echo "$COWSCOPE_ROOT/$b" ;; esac
}

log() { printf 'cowscope: %s\n' "$*" >&2; }
die() { printf 'cowscope: error: %s\n' "$*" >&2; exit 1; }

# kernel_field K N -> column N of kernel K's table line; fails for an
# unknown kernel.
kernel_field() {
	awk -v k="$1" -v n="$2" '$1 == k { print $n; found = 1 } END { exit !found }' <<<"$COWSCOPE_KERNEL_TABLE"
}
kernel_known() { kernel_field "$1" 1 >/dev/null; }
kernel_suite() { kernel_field "$1" 2; }
kernel_root() { kernel_field "$1" 3; }
# kernel_base K -> the lab kernel a debug tier is built like (6.12-debug ->
# 6.12); K itself for the others.
kernel_base() { kernel_known "$1" && echo "${1%-debug}"; }
# The known short names, for messages: "6.1, 6.12 or 7.3".
kernel_names() {
	awk 'NF { n[++c] = $1 } END { for (i = 1; i <= c; i++) printf "%s%s", n[i], (i == c ? "\n" : (i == c - 1 ? " or " : ", ")) }' <<<"$COWSCOPE_KERNEL_TABLE"
}

# A kernel whose module is built in a foreign root ("trixie") is fetched
# through a private apt configuration under the cache, so the host's own apt
# never sees that release (nothing on the host can upgrade from it).
# foreign_apt_dir RELEASE -> that configuration's folder.
foreign_apt_dir() { echo "$COWSCOPE_CACHE/apt/$1"; }
# foreign_apt RELEASE apt-get|apt-cache ARGS... -> run apt on that config.
foreign_apt() {
	local rel=$1 tool=$2 d
	shift 2
	d=$(foreign_apt_dir "$rel")
	"$tool" -o Dir::Etc="$d/etc" -o Dir::State="$d/state" \
		-o Dir::State::status="$d/status" -o Dir::Cache="$d/cache" \
		-o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
# kernel_apt K apt-get|apt-cache ARGS... -> the right apt for kernel K.
kernel_apt() {
	local root tool=$2 k=$1
	root=$(kernel_root "$k") || return 1
	shift 2
	if [ "$root" = host ] || [ "$root" = debug ]; then
		"$tool" "$@"
	else
		foreign_apt "$root" "$tool" "$@"
	fi
}

# kernel_abi K -> the ABI name of the cloud kernel its suite's
# linux-image-cloud-amd64 meta package depends on (e.g. 6.1.0-56-cloud-amd64,
# 7.3.4+deb13-cloud-amd64), resolved from apt at set-up.
kernel_abi() {
	local want=$1 v dep
	kernel_known "$want" || return 1
	while read -r v; do
		case "$v" in
		"$want".*)
			dep=$(kernel_apt "$want" apt-cache show "linux-image-cloud-amd64=$v" 2>/dev/null |
				sed -n '/^Depends:/{s/.*linux-image-\([0-9][^ ,]*-cloud-amd64\).*/\1/p;q}')
			if [ -n "$dep" ]; then
				echo "$dep"
				return 0
			fi
			;;
		esac
	done < <(kernel_apt "$want" apt-cache madison linux-image-cloud-amd64 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -rV)
	return 1
}

# kernel_dir K -> cache folder holding vmlinuz and lib/modules/... (a
# debug tier: vmlinuz and its build tree, see scripts/build-debug-kernel)
kernel_dir() {
	local abi
	if [ "$(kernel_root "$1")" = debug ]; then
		echo "$COWSCOPE_CACHE/kernels/$1"
		return 0
	fi
	abi=$(kernel_abi "$1") || return 1
	echo "$COWSCOPE_CACHE/kernels/$abi"
}

# build_root_dir RELEASE -> the cached foreign build root (a Debian RELEASE
# tree made by scripts/setup --build-root).
build_root_dir() { echo "$COWSCOPE_CACHE/roots/$1-build"; }

# kernel_headers K -> the Kbuild directory for that kernel: on the host, or
# inside its build root for a foreign-built kernel.
kernel_headers() {
	local abi root
	if [ "$(kernel_root "$1")" = debug ]; then
		echo "$(kernel_dir "$1")/obj"
		return 0
	fi
	abi=$(kernel_abi "$1") || return 1
	root=$(kernel_root "$1") || return 1
	if [ "$root" = host ]; then
		echo "/usr/src/linux-headers-$abi"
	else
		echo "$(build_root_dir "$root")/usr/src/linux-headers-$abi"
	fi
}
