# The target of test_python_frames.cpp: a known chain of Python functions
# in two threads, each blocked at a known line until stdin closes.
#
# Protocol (stdout): "thread TID" (the second thread's native id, once it
# has started), "main TID" (the main thread's), then the callers of each
# thread's innermost frame as this interpreter sees them ("stack NAME",
# one "QUALNAME|FILE|LINE" line a frame, innermost first, "end"): the
# ground truth the test compares its own reading with. The innermost
# frames are where each thread blocks, the lines marked "# @thread-block"
# and "# @inner-block"; the test waits until it reads them there (the
# threads are on their way when this prints). "# @name" comments mark the
# other lines the test checks by name.
import os
import sys
import threading


def frames(frame):
    out = []
    while frame is not None:
        out.append(f"{frame.f_code.co_qualname}|{frame.f_code.co_filename}|{frame.f_lineno}")
        frame = frame.f_back
    return out


def report(name, lines):
    sys.stdout.write(f"stack {name}\n" + "".join(line + "\n" for line in lines) + "end\n")
    sys.stdout.flush()


started = threading.Event()


def background():
    started.set()
    os.read(0, 1)  # @thread-block


def inner():  # @inner-def
    sys.stdout.write(f"main {threading.get_native_id()}\n")
    report("main", frames(sys._getframe().f_back))
    report("thread", frames(sys._current_frames()[worker.ident].f_back))
    os.read(0, 1)  # @inner-block


class Worker:
    def method(self):
        inner()  # @method-call


def middle():
    Worker().method()  # @middle-call


def outer():
    middle()  # @outer-call


worker = threading.Thread(target=background, daemon=True)
worker.start()
started.wait()
# the thread is in background() now, on its way into os.read
sys.stdout.write(f"thread {worker.native_id}\n")
sys.stdout.flush()
outer()  # @module-call
