// cowtrace_core internals: the userspace CFI unwinder (unwind.cpp). What
// BPF can capture at a copy fault, the user registers and a bounded slice
// of the user stack from rsp, is unwound after the run, when the process
// may be gone, through the .eh_frame/.debug_frame CFI of the files its maps
// snapshot (memory.hpp) names: elfutils libdwfl with dwfl_attach_state, as
// perf does (tools/perf/util/unwind-libdw.c), its modules reported from the
// snapshot (dwfl_report_elf at each file's load bias), never from a live pid.
//
// Feeding it: fill UserRegs from the kernel's struct pt_regs (from_pt_regs:
// the bytes of bpf_task_pt_regs(), or ptrace's user_regs_struct, which
// starts with the same fields), give the bytes read from the stack at rsp,
// and the process's ProcMemory. Memory is read from that slice and from
// read-only file-backed mappings (through the file's fd); nothing else.
//
// What a smaller slice costs: each frame needs its caller's return address,
// at CFA - 8, inside the slice, so a slice of N bytes unwinds the frames
// whose stack frames together fit in N bytes. The test chain (read <- f5 ..
// f1 <- main, frames of 384, 304, 288, 176, 112 and 16 bytes): 8 to 256
// bytes give 2 frames (read, f5), 512 gives 3, 1024 gives 5, 1536 the whole
// 10 down to _start (test_unwind prints the table); each stops with
// Stop::slice_exhausted and the offset it needed.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <unordered_map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cowscope/report/model.hpp"
#include "memory.hpp"

namespace cowtrace {

class Symbolizer;

// The x86-64 user registers in DWARF order (the psABI's numbering: 0 rax,
// 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the
// return address column, here rip).
struct UserRegs {
	enum : unsigned { rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, count };
	std::uint64_t r[count] = {};
};

// The registers of a kernel struct pt_regs (x86-64: r15 r14 r13 r12 rbp rbx
// r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss, 8 bytes
// each, 168 in all); ptrace's struct user_regs_struct starts the same way.
// Throws Error when `bytes` is shorter than 168.
UserRegs from_pt_regs(std::span<const std::uint8_t> bytes);

// How a frame was found: the captured registers themselves (frame 0), a
// CFI rule of the callee's FDE, or the frame-pointer chain ([rbp], [rbp+8]:
// libdwfl's fallback where the callee has no CFI, or unwind_fp()).
enum class FrameSource { regs, cfi, fp };
const char *source_name(FrameSource s);	// "regs", "cfi", "fp"

enum class Stop {
	outermost,		// the CFI says the return address is undefined (_start, thread start)
	no_cfi,			// no CFI for the address, and no frame-pointer frame either
	slice_exhausted,	// a read outside the captured stack slice
	no_module,		// the address is in no mapped file (anonymous, [vdso], unmapped)
	depth_limit,		// max_depth frames, and more follow
	failed,			// anything else (why says libdwfl's error)
};
const char *stop_name(Stop s);

struct UnwoundFrame {
	std::uint64_t ip = 0;	// frame 0: the captured rip; others: return addresses
	FrameSource source = FrameSource::regs;
	bool operator==(const UnwoundFrame &) const = default;
};

struct Unwound {
	std::vector<UnwoundFrame> frames;
	Stop stop = Stop::failed;
	// in words: "outermost frame reached", "no CFI for 0x7f.. in /usr/lib/..",
	// "stack slice exhausted: read of 8 bytes at sp+0x48 (0x7ffe..) of 64 captured [0x7ffe..-0x7ffe..)"
	std::string why;
	std::size_t cfi_frames() const;
};

// One captured sample: registers, and `stack` = the bytes of user memory
// from `stack_addr` (normally the captured rsp) on.
struct StackSample {
	UserRegs regs;
	std::uint64_t stack_addr = 0;
	std::span<const std::uint8_t> stack;
};

// The unwinder of one attribution. A libdwfl session (its modules, their
// ELF and CFI) is built once per address-space layout (the file mappings:
// addresses, offsets, files), so forked processes sharing one layout share
// one session; at most `max_layouts` are kept, least recently used dropped.
// Not thread-safe (one per thread).
class Unwinder {
public:
	explicit Unwinder(std::size_t max_layouts = 16);
	~Unwinder();
	Unwinder(const Unwinder &) = delete;
	Unwinder &operator=(const Unwinder &) = delete;

	// The frames of `sample`, taken in a process whose memory was `mem`
	// (at most max_depth frames). Never throws for what the sample holds.
	Unwound unwind(const ProcMemory &mem, const StackSample &sample, int max_depth = 64);
	// libdwfl sessions built so far (each layout once while it stays cached)
	std::size_t layouts_built() const { return built_; }

	struct Layout;

private:
	Layout &layout(const ProcMemory &mem);
	std::list<std::pair<std::string, std::unique_ptr<Layout>>> lru_;
	std::unordered_map<std::string, decltype(lru_)::iterator> by_key_;
	std::size_t max_layouts_;
	std::size_t built_ = 0;
};

// The frame-pointer walk alone, from the same registers and slice (what
// bpf/cowtrace.bpf.c's attr_stack does in the kernel): rip, then [rbp+8]
// while [rbp] chains upwards inside the slice. For comparison with unwind().
Unwound unwind_fp(const StackSample &sample, int max_depth = 64);

// The frames of `u` symbolized by `sym` (names shared with the rest of the
// attribution; .dynsym guesses stay marked), one per unwound frame.
std::vector<Frame> symbolize(Symbolizer &sym, const ProcMemory &mem, const Unwound &u);

} // namespace cowtrace
