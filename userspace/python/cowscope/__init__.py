"""cowscope: fork() and copy-on-write made measurable, from Python.

The same core library as the cowbench program (userspace/lib):

    >>> import cowscope
    >>> r = cowscope.bench(heap="64M", write_ratio=0.25)
    >>> r["fork_us"], r["cow_faults"], r["cow_private_dirty_kb"]

bench() returns what `cowbench --json` writes, plus every figure's median
at the top level. read_view(pid) reads the cowscope kernel module's per-page
view (inside the VM lab). trace(cmd, by_mapping=True, sites=True) runs a
command under cowtrace's tracer (root). Errors are cowscope.Error (RuntimeError),
cowscope.UsageError (ValueError), cowscope.SysError (OSError) and
cowscope.ModuleNotLoadedError, whose messages are the command-line tools'.
"""
from ._core import (
    Error,
    ModuleNotLoadedError,
    PageRecord,
    SysError,
    UsageError,
    __version__,
    bench,
    machine_metadata,
    module_loaded,
    read_view,
    repetition_keys,
    request_stop,
    thp_mode,
    trace,
)

__all__ = [
    "Error",
    "ModuleNotLoadedError",
    "PageRecord",
    "SysError",
    "UsageError",
    "bench",
    "machine_metadata",
    "module_loaded",
    "read_view",
    "repetition_keys",
    "request_stop",
    "thp_mode",
    "trace",
]
