/*
 * The offsets of CPython 3.11's structures as its own headers give them
 * (libpython3.11-dev, with the internal ones): test_python_frames compares
 * them with what the frame reader read from the interpreter's DWARF. One
 * "name=0xVALUE" line each, PyOffsets::text()'s names; the symbol
 * addresses are not here (only the ELF has them).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define LINE(name, value) printf("%s=0x%zx\n", name, (size_t)(value))

/* the position and width of a state bit field: set it to all ones */
#define STATE_BITS(field, shift, bits)                                          \
	do {                                                                    \
		PyASCIIObject a;                                                \
		uint32_t w;                                                     \
		memset(&a, 0, sizeof(a));                                       \
		a.state.field--;	/* 0 - 1: every bit of it */          \
		memcpy(&w, &a.state, sizeof(w));                                \
		shift = (size_t)__builtin_ctz(w);                               \
		bits = (size_t)__builtin_popcount(w);                           \
	} while (0)

int main(void)
{
	size_t kind_shift, kind_bits, compact_shift, compact_bits, ascii_shift, ascii_bits;

	STATE_BITS(kind, kind_shift, kind_bits);
	STATE_BITS(compact, compact_shift, compact_bits);
	STATE_BITS(ascii, ascii_shift, ascii_bits);
	LINE("runtime_interp_head", offsetof(_PyRuntimeState, interpreters.head));
	LINE("interp_next", offsetof(PyInterpreterState, next));
	LINE("interp_threads_head", offsetof(PyInterpreterState, threads.head));
	LINE("tstate_next", offsetof(PyThreadState, next));
	LINE("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
	LINE("tstate_cframe", offsetof(PyThreadState, cframe));
	LINE("cframe_current_frame", offsetof(_PyCFrame, current_frame));
	LINE("frame_code", offsetof(_PyInterpreterFrame, f_code));
	LINE("frame_previous", offsetof(_PyInterpreterFrame, previous));
	LINE("frame_prev_instr", offsetof(_PyInterpreterFrame, prev_instr));
	LINE("frame_is_entry", offsetof(_PyInterpreterFrame, is_entry));
	LINE("frame_owner", offsetof(_PyInterpreterFrame, owner));
	LINE("frame_size", offsetof(_PyInterpreterFrame, localsplus));
	LINE("object_type", offsetof(PyObject, ob_type));
	LINE("var_size", offsetof(PyVarObject, ob_size));
	LINE("code_name", offsetof(PyCodeObject, co_name));
	LINE("code_qualname", offsetof(PyCodeObject, co_qualname));
	LINE("code_filename", offsetof(PyCodeObject, co_filename));
	LINE("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
	LINE("code_linetable", offsetof(PyCodeObject, co_linetable));
	LINE("code_firsttraceable", offsetof(PyCodeObject, _co_firsttraceable));
	LINE("code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
	LINE("bytes_sval", offsetof(PyBytesObject, ob_sval));
	LINE("unicode_length", offsetof(PyASCIIObject, length));
	LINE("unicode_state", offsetof(PyASCIIObject, state));
	LINE("ascii_size", sizeof(PyASCIIObject));
	LINE("compact_size", sizeof(PyCompactUnicodeObject));
	LINE("state_kind_shift", kind_shift);
	LINE("state_kind_bits", kind_bits);
	LINE("state_compact_shift", compact_bits == 1 ? compact_shift : 99);
	LINE("state_ascii_shift", ascii_bits == 1 ? ascii_shift : 99);
	LINE("code_unit", sizeof(_Py_CODEUNIT));
	LINE("owner_generator", FRAME_OWNED_BY_GENERATOR);
	return 0;
}
