// The segment rule the module and cowtrace's BPF program share
// (kmod/include/cowscope_segment.h), as a table of VMAs of one typical
// process layout: each kind, the order in which rules win, and the edges
// of each range. The module and BPF compile this same function; the
// in-VM suites check both against live processes.
#include <gtest/gtest.h>

#include "cowscope_segment.h"

namespace {

// code, data, a bss page past it, the heap, a stack high up
constexpr unsigned long kCode = 0x400000, kCodeEnd = 0x452000, kData = 0x651000, kDataEnd = 0x653800,
			kBrkStart = 0x700000, kBrk = 0x721000, kStack = 0x7ffff000f000;
constexpr unsigned long W = COWSCOPE_VM_WRITE, S = COWSCOPE_VM_SHARED;
enum : int { FILE_ = 1, SPECIAL = 2, EXE = 4, NO_HEAP = 8 };

struct Case {
	const char *what;
	unsigned long start, end, flags;
	int facts;	// FILE_, SPECIAL, EXE, NO_HEAP
	enum cowscope_vma_label want;
};

const Case kCases[] = {
	{"the executable's text", kCode, kCodeEnd, 0, FILE_, COWSCOPE_VL_TEXT},
	{"the executable's data", kData, 0x654000, W, FILE_, COWSCOPE_VL_DATA},
	{"bss: anonymous, from the page after data", 0x654000, 0x656000, W, 0, COWSCOPE_VL_BSS},
	{"bss one page further is an mmap", 0x655000, 0x656000, W, 0, COWSCOPE_VL_ANON},
	{"a file mapping there is never bss", 0x654000, 0x656000, W, FILE_, COWSCOPE_VL_FILE_PRIVATE},
	{"the heap", kBrkStart, kBrk, W, 0, COWSCOPE_VL_HEAP},
	{"no heap yet (brk == start_brk)", kBrkStart, kBrk, W, NO_HEAP, COWSCOPE_VL_ANON},
	{"ends where the heap starts", 0x6ff000, kBrkStart, W, 0, COWSCOPE_VL_ANON},
	{"starts at brk", kBrk, 0x722000, W, 0, COWSCOPE_VL_ANON},
	{"the stack", 0x7ffff0000000, 0x7ffff0021000, W, 0, COWSCOPE_VL_STACK},
	{"the stack, start_stack at its start", kStack, 0x7ffff0020000, W, 0, COWSCOPE_VL_STACK},
	{"the stack, start_stack at its end", 0x7ffff0000000, kStack, W, 0, COWSCOPE_VL_STACK},
	{"stack wins over a heap reaching it", kBrkStart, 0x7ffff0021000, W, 0, COWSCOPE_VL_STACK},
	{"a special mapping wins over the stack", 0x7ffff0000000, 0x7ffff0021000, 0, SPECIAL, COWSCOPE_VL_SPECIAL},
	{"an anonymous mmap", 0x7f0000000000, 0x7f0000400000, W, 0, COWSCOPE_VL_ANON},
	{"a private library", 0x7f1000000000, 0x7f1000020000, W, FILE_, COWSCOPE_VL_FILE_PRIVATE},
	{"a shared file", 0x7f1000000000, 0x7f1000020000, W | S, FILE_, COWSCOPE_VL_FILE_SHARED},
	{"VM_PFNMAP", 0x7f2000000000, 0x7f2000001000, W | COWSCOPE_VM_PFNMAP, FILE_, COWSCOPE_VL_IO},
	{"VM_IO", 0x7f2000000000, 0x7f2000001000, COWSCOPE_VM_IO, FILE_, COWSCOPE_VL_IO},
	{"the executable's image, read-only (PIE rodata)", 0x5555555a0000, 0x5555555b0000, 0, FILE_ | EXE,
	 COWSCOPE_VL_TEXT},
	{"the executable's image, writable (relro, data)", 0x5555555a0000, 0x5555555b0000, W, FILE_ | EXE,
	 COWSCOPE_VL_DATA},
};

class SegmentRule : public ::testing::TestWithParam<Case> {};

} // namespace

TEST_P(SegmentRule, Label)
{
	const Case &c = GetParam();
	cowscope_vma_facts f{};
	f.start = c.start;
	f.end = c.end;
	f.flags = c.flags;
	f.start_code = kCode;
	f.end_code = kCodeEnd;
	f.start_data = kData;
	f.end_data = kDataEnd;
	f.start_brk = kBrkStart;
	f.brk = c.facts & NO_HEAP ? kBrkStart : kBrk;
	f.start_stack = kStack;
	f.has_file = (c.facts & FILE_) != 0;
	f.special = (c.facts & SPECIAL) != 0;
	f.exe_image = (c.facts & EXE) != 0;
	EXPECT_EQ(cowscope_vma_label(&f), c.want) << c.what;
}

INSTANTIATE_TEST_SUITE_P(Vmas, SegmentRule, ::testing::ValuesIn(kCases));
