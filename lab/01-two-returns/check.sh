# Exercise 1's checker (run in the VM lab by lab/lib/grade-vm.sh).
# Passes when the grandchild, once orphaned, has the top process as its
# parent (a subreaper adopted it), and is reaped by the "done" checkpoint.
# shellcheck shell=sh
. "$LAB_EX/../lib/check.sh"

lab_start
top=$LAB_PID
lab_wait orphaned 30
gc=$CP_PID
ppid=$(awk '$1 == "PPid:" { print $2 }' "/proc/$gc/status")
echo "grandchild $gc orphaned: the kernel made $ppid its parent (top process: $top, init: 1)"
lab_go
lab_wait "done" 30
if lab_alive "$gc"; then
	left="still running"
elif [ -d "/proc/$gc" ]; then
	left="a zombie (exited, not yet reaped)"
else
	left="reaped"
fi
echo "at \"done\" the grandchild is $left"
lab_go
lab_end
starts=$(grep -c "^top $top starts" "$LAB_WORK/out")
echo "\"top $top starts\" was printed $starts time(s) (standard output was a file: see the README's first prediction)"
lab_output
if [ "$LAB_RC" != 0 ]; then
	echo "measured: the program exited with status $LAB_RC"
	echo "target:   exit status 0"
	exit 1
fi
echo "measured: the orphan's new parent $ppid, at \"done\" the orphan is $left"
echo "target:   new parent = the top process ($top), reaped before \"done\""
[ "$ppid" = "$top" ] && [ "$left" = reaped ]
