#!/bin/sh
# snapdemo on a live process: the parent keeps writing while a forked
# snapshot child reads (Redis BGSAVE). `cowscope diff PARENT CHILD --json -`
# until pages are copied, then until more are: copied pages > 0 and not
# decreasing, the heap's
# copies writable in the parent (the parent took them). Only the module is
# used (no cowtrace). After snapdemo is stopped (SIGINT) or killed (SIGKILL)
# no snapshot child is left. Exit 0 pass, 77 skip, anything else fail.
[ -e /proc/cowscope/track ] || { echo "skip: module not loaded (/proc/cowscope/track missing)"; exit 77; }
command -v snapdemo >/dev/null || { echo "skip: snapdemo not in PATH (build it: cmake --build build --target snapdemo)"; exit 77; }
command -v cowscope >/dev/null || { echo "skip: cowscope not in PATH"; exit 77; }

out=/tmp/snapdemo_live.$$
mkdir -p "$out"
P=""
fail() {
	echo "FAIL: $*"
	[ -n "$P" ] && kill -9 "$P" 2>/dev/null
	[ -f "$out/log" ] && sed 's/^/  snapdemo| /' "$out/log"
	exit 1
}

# this process's own children: /proc/P/task/P/children, else a /proc scan
children_of() {
	if [ -r "/proc/$1/task/$1/children" ]; then
		echo $(cat "/proc/$1/task/$1/children" 2>/dev/null)
		return
	fi
	for s in /proc/[0-9]*/stat; do
		set -- "$1" $(sed 's/^.*) //' "$s" 2>/dev/null)
		[ "$3" = "$1" ] && { d=${s%/stat}; echo "${d#/proc/}"; }
	done
}

# every live (not zombie) process whose comm is snapdemo
snapdemos() {
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = snapdemo ] || continue
		st=$(sed 's/^.*) //' "$d/stat" 2>/dev/null | cut -d' ' -f1)
		[ "$st" = Z ] || [ -z "$st" ] && continue
		echo "${d#/proc/}"
	done
}

# waits (bounded) for snapdemo $1's snapshot child; prints its pid
wait_child() {
	i=0
	while [ $i -lt 150 ]; do
		c=$(children_of "$1")
		[ -n "$c" ] && { echo "$c" | cut -d' ' -f1; return 0; }
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# poll (every 0.1 s) until the shell condition $1 holds, for at most $2
# tenths of a second; false when it never did
until_true() {
	n=0
	while ! eval "$1"; do
		[ $n -ge "$2" ] && return 1
		sleep 0.1
		n=$((n + 1))
	done
}

# total.copied, or SEGMENT.KEY, from `cowscope diff --json -` output in $1
jget() {
	awk -v blk="\"$2\": {" -v key="\"$3\":" '
		index($0, blk) { inb = 1; next }
		inb && index($0, key) { v = $2; gsub(/[^0-9]/, "", v); print v; exit }
		inb && /}/ { inb = 0 }' "$1"
}

# cowtrace is not part of this: the diff comes from the module alone
for d in /proc/[0-9]*; do
	[ "$(cat "$d/comm" 2>/dev/null)" = cowtrace ] && fail "a cowtrace process (${d#/proc/}) is running; this test must not need one"
done

# 1. diff twice while the snapshot child lives (it is paced to 30 s)
snapdemo --mem 16M --rate 2000 --interval 0.5 --snapshot-seconds 30 --out "$out" >"$out/log" 2>&1 &
P=$!
C=$(wait_child "$P") || fail "no snapshot child of snapdemo $P within 15 s"
until_true 'grep -q "forked child $C (parent $P)" "$out/log"' 50 || fail "snapdemo did not print 'forked child $C (parent $P)' within 5 s"
grep -q "snapdemo: pid $P;" "$out/log" || fail "snapdemo did not print its pid $P"
# diff NAME: cowscope diff into $out/NAME.json (its text in NAME.txt); the
# total copied pages, or nothing when it failed
diff_copied() {
	cowscope diff "$P" "$C" --json - >"$out/$1.json" 2>"$out/$1.txt" && jget "$out/$1.json" total copied
}
until_true '[ "$(diff_copied d1)" -gt 0 ] 2>/dev/null' 100 ||
	fail "no copied pages within 10 s while the parent writes (cowscope diff $P $C: $(tail -n 3 "$out/d1.txt"))"
c1=$(jget "$out/d1.json" total copied)
# then a later diff: more copies, or the same once every page was copied
until_true '[ "$(diff_copied d2)" -gt "$c1" ] 2>/dev/null' 100 ||
	[ -s "$out/d2.json" ] || fail "second cowscope diff $P $C failed: $(tail -n 3 "$out/d2.txt")"
c2=$(jget "$out/d2.json" total copied)
h2=$(jget "$out/d2.json" heap copied)
hpw=$(jget "$out/d2.json" heap copied_parent_writable)
echo "parent $P child $C: copied $c1 pages, later $c2 (heap $h2, of them writable in the parent $hpw)"
[ -n "$c1" ] && [ -n "$c2" ] && [ -n "$h2" ] && [ -n "$hpw" ] || fail "no total/heap copied counts in the diff JSON: $(head -c 400 "$out/d2.json")"
[ "$c1" -gt 0 ] || fail "no copied pages while the parent writes (first diff: $c1)"
[ "$c2" -ge "$c1" ] || fail "copied pages decreased: $c1 then $c2"
[ "$h2" -gt 0 ] || fail "no heap (store) pages copied"
# the parent took the copies: most copied heap pages are writable in the parent
[ $((hpw * 2)) -gt "$h2" ] || fail "only $hpw of $h2 copied heap pages are writable in the parent"

# 2. Ctrl-C: snapdemo kills and reaps the child, exits 0
kill -INT "$P"
i=0
while kill -0 "$P" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$P" 2>/dev/null && fail "snapdemo $P still running 10 s after SIGINT"
wait "$P"; rc=$?
[ "$rc" -eq 0 ] || fail "snapdemo exited $rc after SIGINT, expected 0"
P=""
[ -d "/proc/$C" ] && fail "snapshot child $C still exists after snapdemo exited"
left=$(snapdemos)
[ -z "$left" ] || fail "snapdemo processes left after SIGINT: $left"
ls "$out"/.snapdemo-* >/dev/null 2>&1 && fail "temporary snapshot file left: $(ls "$out"/.snapdemo-*)"

# 3. SIGKILL of the parent: the child dies with it (PR_SET_PDEATHSIG)
snapdemo --mem 4M --rate 100 --interval 0.2 --snapshot-seconds 30 --out /dev/null >"$out/log" 2>&1 &
P=$!
C=$(wait_child "$P") || fail "no snapshot child of the second snapdemo $P within 15 s"
kill -9 "$P"
wait "$P" 2>/dev/null
P=""
i=0
while [ -n "$(snapdemos)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
left=$(snapdemos)
[ -z "$left" ] || fail "snapdemo processes left 5 s after SIGKILL of the parent: $left"
echo "after SIGINT and after SIGKILL of the parent: no snapshot child left"
rm -rf "$out"
exit 0
