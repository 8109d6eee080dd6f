#!/usr/bin/python3
"""cowbench from Python: fork a heap, let the child write part of it.

    python3 bench.py [HEAP] [WRITE_RATIO]      e.g. python3 bench.py 64M 0.25
"""
import sys

import cowscope

heap = sys.argv[1] if len(sys.argv) > 1 else "64M"
ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
r = cowscope.bench(heap=heap, write_ratio=ratio, writer="child", repeat=3)
print(f"cowscope {cowscope.__version__}: heap {heap}, child writes {ratio:.0%}")
print(f"  fork {r['fork_us']:.0f} us, {r['cow_faults']:.0f} COW faults, "
      f"child writes {r['child_write_us']:.0f} us, eager copy {r['eager_copy_us']:.0f} us")
