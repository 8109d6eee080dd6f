// cowtrace_core internals: the Python function behind a copy, for CPython
// 3.11 (python.cpp). A pre-fork pool's copies come from the interpreter
// itself (reference counts written while objects are read), so the native
// stack says "_PyEval_EvalFrameDefault"; the Python function is in the
// interpreter's own frame stack:
//
//   _PyRuntime.interpreters.head            PyInterpreterState *
//     ->threads.head, ->next ...            PyThreadState * (native_thread_id)
//       ->cframe->current_frame             _PyInterpreterFrame * (innermost)
//         ->f_code, ->prev_instr            PyCodeObject *, instruction
//         ->previous ...                    the caller's frame
//
// Nothing here is a guessed offset. PyLayout reads every offset from the
// interpreter's DWARF: its own, or Debian's detached debug file
// /usr/lib/debug/.build-id/XX/YYYY.debug (package python3.11-dbg, which
// must be the same version as python3.11); without either it throws an
// Error that says so. 3.11 has no _Py_DebugOffsets (those are 3.13+).
//
// Two ways in, for the two callers:
//  - PyReader::thread_frames(tid): walk a live thread's chain from
//    _PyRuntime (the tests; a process stopped at a point of interest);
//  - PyReader::resolve(code, instr): the (code object, instruction
//    pointer) pairs the BPF side records per frame at a sampled fault
//    (attr_py() in bpf/cowtrace.bpf.c: bpf_probe_read_user over the same
//    chain, with PyOffsets handed to it as plain integers in `pyprocs`;
//    sampler.cpp registers and resolves). resolve() caches each code object by address:
//    code objects live as long as their function, and a forked family
//    shares them, so one PyReader can serve a whole family (a code object
//    freed and another created at the same address in one member would
//    show the old name: the price of the cache).
// Every read is bounded (chain lengths, string and table sizes), and a
// frame is believed only when its code object's ob_type is &PyCode_Type,
// so a racing or hostile process gets an Error or "line unknown", never a
// loop or an unbounded allocation.
//
// The merge with native frames (attribution.cpp, merge_python()), as
// py-spy --native does:
// each native frame inside _PyEval_EvalFrameDefault stands for the run of
// Python frames from one frame up to and including the next one whose
// `entry` is set (the frame that call of _PyEval_EvalFrameDefault was
// entered with; 3.11 runs Python-to-Python calls inside the same C call).
// So, walking the native stack outermost to innermost, replace the k-th
// _PyEval_EvalFrameDefault (from the outside) with the k-th such run
// (from the outside), innermost Python frame nearest the native frames
// that it called; native frames outside the interpreter stay as they are.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cowscope/base/error.hpp"

namespace cowtrace {

// No DWARF for the interpreter: what is missing and which package brings it.
class PyNoDebugInfo : public cowscope::Error {
public:
	using Error::Error;
};

// The offsets one CPython 3.11 build needs, in bytes (plain integers: what
// the loader hands to the BPF side too). Read from DWARF by PyLayout.
struct PyOffsets {
	// link-time addresses of the ELF's symbols (add PyLayout::bias)
	std::uint64_t runtime = 0;	// _PyRuntime
	std::uint64_t code_type = 0;	// PyCode_Type
	std::uint64_t unicode_type = 0;	// PyUnicode_Type
	std::uint64_t bytes_type = 0;	// PyBytes_Type
	// _PyRuntimeState
	std::uint32_t runtime_interp_head = 0;	// interpreters.head
	// PyInterpreterState
	std::uint32_t interp_next = 0, interp_threads_head = 0;	// next, threads.head
	// PyThreadState
	std::uint32_t tstate_next = 0, tstate_native_thread_id = 0, tstate_cframe = 0;
	// _PyCFrame
	std::uint32_t cframe_current_frame = 0;
	// _PyInterpreterFrame
	std::uint32_t frame_code = 0, frame_previous = 0, frame_prev_instr = 0;
	std::uint32_t frame_is_entry = 0, frame_owner = 0;	// bool, char
	std::uint32_t frame_size = 0;	// up to localsplus: what one read of a frame takes
	// PyObject, PyVarObject
	std::uint32_t object_type = 0, var_size = 0;	// ob_type, ob_size
	// PyCodeObject (ob_size: its length in code units)
	std::uint32_t code_name = 0, code_qualname = 0, code_filename = 0, code_firstlineno = 0;
	std::uint32_t code_linetable = 0, code_firsttraceable = 0, code_adaptive = 0;	// co_code_adaptive
	// PyBytesObject
	std::uint32_t bytes_sval = 0;	// ob_sval (ob_size bytes)
	// PyASCIIObject, PyCompactUnicodeObject
	std::uint32_t unicode_length = 0, unicode_state = 0;	// length, state (a 4-byte bitfield)
	std::uint32_t ascii_size = 0, compact_size = 0;	// sizeof: where compact data starts
	std::uint8_t state_kind_shift = 0, state_kind_bits = 0;	// state.kind: 1, 2 or 4 bytes a character
	std::uint8_t state_compact_shift = 0, state_ascii_shift = 0;	// state.compact, state.ascii (1 bit)
	std::uint8_t code_unit = 0;	// sizeof(_Py_CODEUNIT)
	std::int8_t owner_generator = 0;	// FRAME_OWNED_BY_GENERATOR (enum _frameowner)
	// "name=value" lines, in this order
	std::string text() const;
};

// One Python frame. `line` 0: unknown (an instruction outside its code).
struct PyFrame {
	std::string function;	// co_qualname ("Worker.method", "<module>")
	std::string file;	// co_filename
	int line = 0;
	std::uint64_t code = 0;	// the code object's address
	std::uint64_t instr = 0;	// prev_instr: the instruction it is running
	bool entry = false;	// the first frame of its _PyEval_EvalFrameDefault call
	bool operator==(const PyFrame &) const = default;
};

// A process's interpreter: which ELF, where it is loaded, and its offsets.
struct PyLayout {
	std::string elf;	// python3.11 or libpython3.11.so.1.0, as in maps
	std::string build_id;	// hex
	std::string debug_file;	// where the DWARF came from (the ELF itself or a .debug)
	std::uint64_t bias = 0;	// load address minus link-time address
	PyOffsets off;
	std::uint64_t runtime() const { return off.runtime + bias; }
};

// The interpreter of process `pid` (a live one: its maps). `debug_root` is
// where .build-id/XX/YYYY.debug files are looked for. Throws Error: no
// CPython 3.11 in its maps, an ELF without a build id, no DWARF for it
// (PyNoDebugInfo: which package brings it), a type or member missing
// from the DWARF.
// The DWARF is read once per build id (a cache for the whole program).
PyLayout find_python(pid_t pid, const std::string &debug_root = "/usr/lib/debug");
// The offsets of an ELF by its path (no process needed): the same rules.
PyLayout python_layout(const std::string &elf, const std::string &debug_root = "/usr/lib/debug");

// Reads one process's Python frames (process_vm_readv: ptrace rights over
// it, which root has).
class PyReader {
public:
	struct Limits {
		int max_frames = 4096;	// frames of one chain
		int max_threads = 4096;	// thread states of one interpreter
		int max_interpreters = 64;
		std::uint32_t max_string = 4096;	// bytes of a name or file name (longer: an Error)
		std::uint32_t max_linetable = 1 << 20;	// bytes of co_linetable
		std::uint32_t max_code_units = 1 << 24;	// ob_size of a code object
		std::size_t max_cached = 1 << 16;	// code objects kept (the cache starts over past it)
		std::size_t max_cached_bytes = 64 << 20;	// their names and tables (the same)
	};
	PyReader(pid_t pid, PyLayout layout) : PyReader(pid, std::move(layout), Limits{}) {}
	PyReader(pid_t pid, PyLayout layout, Limits lim);

	// The frames of thread `tid` (its native id, as in /proc/PID/task),
	// innermost first; frames still being set up (before their first
	// RESUME, as CPython's own traceback skips them) are left out. Throws
	// Error when no thread state has that id or a read fails.
	std::vector<PyFrame> thread_frames(pid_t tid);
	// The native ids of the process's Python threads, as the interpreter
	// lists them.
	std::vector<pid_t> threads();
	// One frame from its code object's address and its prev_instr. Throws
	// Error when `code` is not a readable code object; an instruction
	// outside the code gives line 0 (`entry` is false: the caller knows).
	PyFrame resolve(std::uint64_t code, std::uint64_t instr);

	const PyLayout &layout() const { return layout_; }
	std::size_t cached() const { return codes_.size(); }
	void set_pid(pid_t pid) { pid_ = pid; }	// another member of the family

private:
	struct Code {
		std::string qualname, file;
		int firstlineno = 0, firsttraceable = 0;
		std::uint32_t units = 0;	// ob_size
		std::vector<std::uint8_t> linetable;
	};
	const Code &code(std::uint64_t addr);
	std::string string(std::uint64_t addr, const char *what);
	std::uint64_t tstate(pid_t tid);
	void read(std::uint64_t addr, void *buf, std::size_t len, const char *what) const;
	std::uint64_t ptr(std::uint64_t addr, const char *what) const;

	pid_t pid_;
	PyLayout layout_;
	Limits lim_;
	std::map<std::uint64_t, Code> codes_;
	std::size_t cached_bytes_ = 0;
};

// The line of instruction `lasti` (in code units from the code's start;
// -1: not started, the code's first line) in a 3.11 location table
// (CPython's Objects/locations.md; PyCode_Addr2Line). 0 where the table
// has no line for it or `lasti` is past its end. Exposed for the tests.
int py_addr2line(const std::vector<std::uint8_t> &table, int firstlineno, int lasti);

} // namespace cowtrace
