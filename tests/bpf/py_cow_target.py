"""cowtrace --unwind's CPython target (tests/bpf/test_cowtrace.cpp,
Unwind.PythonFramesNameTheFunctionAndLine).

    python3.11 py_cow_target.py N [GO]

The parent builds a list of N objects, reads a byte from the FIFO GO when
given (the test writes it once cowtrace reads this interpreter's frames:
reading its DWARF the first time takes up to a second), and forks; the
child's Worker.run()
calls touch(), whose loop, on the line marked COPY-LINE, reads every object:
each read writes the object's reference count, so the child copies the
pages of the list and of the objects there. The parent waits for it.
"""
import os
import sys


def touch(data):
    for _ in data: pass  # COPY-LINE


class Worker:
    def run(self, data):
        touch(data)


def main():
    data = [object() for _ in range(int(sys.argv[1]))]
    if len(sys.argv) > 2:
        with open(sys.argv[2], "rb") as go:  # blocks until the test opens it
            if go.read(1) != b"g":
                sys.exit("py_cow_target: " + sys.argv[2] + " closed without the go byte")
    pid = os.fork()
    if pid == 0:
        Worker().run(data)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(0 if status == 0 else 1)


main()
