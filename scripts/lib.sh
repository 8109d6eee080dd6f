# Shared shell helpers for scripts/ (sourced, not run).
# shellcheck shell=bash

COWSCOPE_ROOT=${COWSCOPE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
COWSCOPE_CACHE=${COWSCOPE_CACHE:-/var/cache/cowscope}
# The VM lab kernels, by short name.
COWSCOPE_KERNELS=${COWSCOPE_KERNELS:-"6.1 6.12"}
PYTHON=/usr/bin/python3

log() { printf 'cowscope: %s\n' "$*" >&2; }
die() { printf 'cowscope: error: %s\n' "$*" >&2; exit 1; }

# kernel_abi 6.1|6.12 -> the ABI name of the cloud kernel that suite's
# linux-image-cloud-amd64 meta package depends on (e.g. 6.1.0-56-cloud-amd64).
# bookworm(-security) carries 6.1, bookworm-backports carries 6.12.
kernel_abi() {
	local want=$1 v dep
	while read -r v; do
		case "$v" in
		"$want".*)
			dep=$(apt-cache show "linux-image-cloud-amd64=$v" 2>/dev/null |
				sed -n 's/^Depends: linux-image-\([^ ]*\) .*/\1/p' | head -n1)
			if [ -n "$dep" ]; then
				echo "$dep"
				return 0
			fi
			;;
		esac
	done < <(apt-cache madison linux-image-cloud-amd64 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -rV)
	return 1
}

# kernel_dir 6.1|6.12 -> cache folder holding vmlinuz and lib/modules/...
kernel_dir() {
	local abi
	abi=$(kernel_abi "$1") || return 1
	echo "$COWSCOPE_CACHE/kernels/$abi"
}

# kernel_headers 6.1|6.12 -> the Kbuild directory for that kernel.
kernel_headers() {
	local abi
	abi=$(kernel_abi "$1") || return 1
	echo "/usr/src/linux-headers-$abi"
}
