#!/bin/sh
# The Python bindings against the loaded module, in the guest: Debian's
# python3 runs the module tests of tests/python (read_view() against the
# CLI, the module's text view and pagemap/kpagecount/kpageflags) with the
# extension built on the host. scripts/vm packs them in test mode.
[ -e /proc/cowscope/track ] || { echo "skip: module not loaded (/proc/cowscope/track missing)"; exit 77; }
if [ ! -d /opt/cowscope/python ]; then
	echo "skip: Python not packed into this image (scripts/vm --no-python)"
	exit 77
fi
[ -x /usr/bin/python3 ] || { echo "python3 missing although the bindings were packed"; exit 1; }
cd /opt/cowscope/tests/python || exit 1
PYTHONPATH=/opt/cowscope/python PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -rs -W error -p no:cacheprovider \
	test_module_view.py test_bindings.py::test_read_view_with_module
