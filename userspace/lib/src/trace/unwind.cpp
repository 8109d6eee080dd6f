// cowtrace_core: the userspace CFI unwinder (unwind.hpp).
//
// libdwfl does the CFI: its modules are the snapshot's ELF files, reported
// at their load bias; its "process" is a thread that dwfl_attach_state's
// callbacks make out of the sample being unwound (registers, memory). One
// Dwfl per layout serves every sample of that layout: the callbacks read
// the layout's current sample.
//
// Which rule found a frame: libdwfl tries the callee's CFI (.eh_frame, then
// .debug_frame) and, where that gives nothing, the architecture's fallback
// (x86-64: the frame-pointer chain); it does not say which one worked. The
// walk below looks the callee's address up in the same CFI and watches the
// step's memory reads: CFI found and no read failed = the CFI rule gave the
// caller (a failed read is where the CFI rule stopped and the fallback took
// over); otherwise the frame pointer did.
#include "unwind.hpp"

#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include <iterator>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "symbols.hpp"

namespace cowtrace {

const char *source_name(FrameSource s)
{
	static const char *const names[] = {"regs", "cfi", "fp"};	// in FrameSource's order
	auto i = static_cast<std::size_t>(s);
	return i < std::size(names) ? names[i] : "?";
}

const char *stop_name(Stop s)
{
	// in Stop's order
	static const char *const names[] = {"outermost", "no_cfi", "slice_exhausted", "no_module", "depth_limit",
					    "failed"};
	auto i = static_cast<std::size_t>(s);
	return i < std::size(names) ? names[i] : "?";
}

std::size_t Unwound::cfi_frames() const
{
	return static_cast<std::size_t>(std::count_if(frames.begin(), frames.end(),
		[](const UnwoundFrame &f) { return f.source == FrameSource::cfi; }));
}

UserRegs from_pt_regs(std::span<const std::uint8_t> bytes)
{
	// struct pt_regs (arch/x86/include/asm/ptrace.h), in 8-byte slots
	enum { r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags,
	       rsp, ss, slots };
	if (bytes.size() < slots * 8)
		throw cowscope::Error(fmt::format("pt_regs: expected at least {} bytes, got {}", slots * 8, bytes.size()));
	auto at = [&](int slot) {
		std::uint64_t v;
		std::memcpy(&v, bytes.data() + slot * 8, 8);
		return v;
	};
	UserRegs u;
	u.r[UserRegs::rax] = at(rax);
	u.r[UserRegs::rdx] = at(rdx);
	u.r[UserRegs::rcx] = at(rcx);
	u.r[UserRegs::rbx] = at(rbx);
	u.r[UserRegs::rsi] = at(rsi);
	u.r[UserRegs::rdi] = at(rdi);
	u.r[UserRegs::rbp] = at(rbp);
	u.r[UserRegs::rsp] = at(rsp);
	u.r[UserRegs::r8] = at(r8);
	u.r[UserRegs::r9] = at(r9);
	u.r[UserRegs::r10] = at(r10);
	u.r[UserRegs::r11] = at(r11);
	u.r[UserRegs::r12] = at(r12);
	u.r[UserRegs::r13] = at(r13);
	u.r[UserRegs::r14] = at(r14);
	u.r[UserRegs::r15] = at(r15);
	u.r[UserRegs::rip] = at(rip);
	return u;
}

namespace {

// 8 bytes at `addr` from the slice, if they are all in it.
std::optional<std::uint64_t> slice_read(const StackSample &s, std::uint64_t addr)
{
	if (addr < s.stack_addr || s.stack.size() < 8 || addr - s.stack_addr > s.stack.size() - 8)
		return std::nullopt;
	std::uint64_t v;
	std::memcpy(&v, s.stack.data() + (addr - s.stack_addr), 8);
	return v;
}

// Why a read at `addr` failed, in words, with the slice's bounds.
std::string read_failure(const StackSample &s, std::uint64_t addr)
{
	std::uint64_t end = s.stack_addr + s.stack.size();
	if (addr >= s.stack_addr)
		return fmt::format("stack slice exhausted at sp+{} of {} captured (read of 8 bytes at {:#x}; slice "
				   "[{:#x}-{:#x}))",
				   addr - s.stack_addr, s.stack.size(), addr, s.stack_addr, end);
	return fmt::format("read of 8 bytes at {:#x}, below the captured stack slice [{:#x}-{:#x}) of {} bytes", addr,
			   s.stack_addr, end, s.stack.size());
}

const MapsLine *find_mapping(const std::vector<MapsLine> &sorted, std::uint64_t addr)
{
	auto m = std::upper_bound(sorted.begin(), sorted.end(), addr,
				  [](std::uint64_t a, const MapsLine &l) { return a < l.start; });
	if (m == sorted.begin() || !(--m)->contains(addr))
		return nullptr;
	return &*m;
}

bool is_file(const MapsLine &m)
{
	return !m.path.empty() && m.path[0] == '/';
}

} // namespace

struct Unwinder::Layout {
	Dwfl *dwfl = nullptr;
	std::string error;	// why this layout cannot unwind ("" when it can)
	std::vector<MapsLine> maps;	// sorted by start
	std::map<std::string, std::shared_ptr<cowscope::UniqueFd>> files;
	// the sample being unwound, and the first read of the current step
	// that failed
	const StackSample *sample = nullptr;
	std::optional<std::uint64_t> failed_read;

	~Layout()
	{
		if (dwfl)
			dwfl_end(dwfl);
	}

	// the sample's memory: the slice, then read-only file mappings
	bool read(std::uint64_t addr, std::uint64_t *out)
	{
		if (auto v = slice_read(*sample, addr)) {
			*out = *v;
			return true;
		}
		if (const MapsLine *m = find_mapping(maps, addr); m && is_file(*m) && !m->writable() && addr + 8 <= m->end)
			if (auto f = files.find(m->path); f != files.end() && f->second &&
			    pread(f->second->get(), out, 8, static_cast<off_t>(addr - m->start + m->offset)) == 8)
				return true;
		if (!failed_read)
			failed_read = addr;
		return false;
	}
};

namespace {

using Layout = Unwinder::Layout;

pid_t next_thread(Dwfl *, void *arg, void **thread_argp)
{
	if (*thread_argp)
		return 0;
	*thread_argp = arg;
	return 1;
}

bool get_thread(Dwfl *, pid_t, void *arg, void **thread_argp)
{
	*thread_argp = arg;
	return true;
}

bool memory_read(Dwfl *, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
	std::uint64_t v;
	if (!static_cast<Layout *>(arg)->read(addr, &v))
		return false;
	*result = v;
	return true;
}

bool set_initial_registers(Dwfl_Thread *thread, void *arg)
{
	const UserRegs &r = static_cast<Layout *>(arg)->sample->regs;
	Dwarf_Word regs[UserRegs::count];
	std::copy(std::begin(r.r), std::end(r.r), regs);
	// 0-15 and the return address column 16 (= rip at the fault)
	return dwfl_thread_state_registers(thread, 0, UserRegs::count, regs);
}

const Dwfl_Thread_Callbacks thread_callbacks = {
	.next_thread = next_thread,
	.get_thread = get_thread,
	.memory_read = memory_read,
	.set_initial_registers = set_initial_registers,
	.detach = nullptr,
	.thread_detach = nullptr,
};

// The CFI libdwfl would use for `addr` (.eh_frame, else .debug_frame)
// has an FDE for it.
bool has_cfi(Dwfl_Module *mod, Dwarf_Addr addr)
{
	if (!mod)
		return false;
	auto covers = [&](Dwarf_CFI *cfi, Dwarf_Addr bias) {
		Dwarf_Frame *frame = nullptr;
		if (!cfi || dwarf_cfi_addrframe(cfi, addr - bias, &frame) != 0)
			return false;
		free(frame);
		return true;
	};
	Dwarf_Addr bias = 0;
	if (Dwarf_CFI *eh = dwfl_module_eh_cfi(mod, &bias); covers(eh, bias))
		return true;
	Dwarf_CFI *dw = dwfl_module_dwarf_cfi(mod, &bias);
	return covers(dw, bias);
}

struct Walk {
	Layout *layout;
	Unwound *out;
	int max_depth;
	bool depth_hit = false;
	// the frame the current step unwinds from
	Dwarf_Addr pc = 0;	// adjusted: in the call instruction for return addresses
	Dwfl_Module *mod = nullptr;
	bool cfi = false;
};

int on_frame(Dwfl_Frame *state, void *arg)
{
	Walk &w = *static_cast<Walk *>(arg);
	if (static_cast<int>(w.out->frames.size()) >= w.max_depth) {
		w.depth_hit = true;
		return DWARF_CB_ABORT;
	}
	FrameSource src = FrameSource::regs;
	if (!w.out->frames.empty())
		src = w.cfi && !w.layout->failed_read ? FrameSource::cfi : FrameSource::fp;
	// the next step's reads start here (dwfl_frame_pc may make them, to
	// tell whether the caller is a signal frame)
	w.layout->failed_read.reset();
	Dwarf_Addr pc;
	bool activation = false;
	if (!dwfl_frame_pc(state, &pc, &activation))
		return DWARF_CB_ABORT;
	w.out->frames.push_back({pc, src});
	w.pc = activation ? pc : pc - 1;
	w.mod = dwfl_addrmodule(dwfl_thread_dwfl(dwfl_frame_thread(state)), w.pc);
	w.cfi = has_cfi(w.mod, w.pc);
	return DWARF_CB_OK;
}

} // namespace

Unwinder::Unwinder(std::size_t max_layouts) : max_layouts_(std::max<std::size_t>(max_layouts, 1)) {}
Unwinder::~Unwinder() = default;

Unwinder::Layout &Unwinder::layout(const ProcMemory &mem)
{
	// the key: the lines of every file mapping (where, how, which file),
	// as maps has them; anonymous ones ([heap], [stack], ...) differ
	// between forked processes of one layout, and no module is in them
	std::string key;
	for (std::string_view text = mem.maps; !text.empty();) {
		std::size_t nl = text.find('\n');
		std::string_view line = text.substr(0, nl);
		text.remove_prefix(nl == text.npos ? text.size() : nl + 1);
		if (line.find('/') != line.npos)
			(key += line) += '\n';
	}
	if (auto it = by_key_.find(key); it != by_key_.end()) {
		lru_.splice(lru_.begin(), lru_, it->second);
		return *it->second->second;
	}
	std::vector<MapsLine> maps = parse_maps(mem.maps);
	std::sort(maps.begin(), maps.end(), [](const MapsLine &a, const MapsLine &b) { return a.start < b.start; });
	auto l = std::make_unique<Layout>();
	l->maps = std::move(maps);
	l->files = mem.files;
	built_++;
	static const Dwfl_Callbacks cb = {
		dwfl_build_id_find_elf, dwfl_standard_find_debuginfo, dwfl_offline_section_address, nullptr,
	};
	l->dwfl = dwfl_begin(&cb);
	if (!l->dwfl) {
		l->error = fmt::format("dwfl_begin: {}", dwfl_errmsg(-1));
	} else {
		// each file once, at its lowest mapping: load bias = start - offset
		// there (as perf reports them: start - pgoff, not adding p_vaddr)
		dwfl_report_begin(l->dwfl);
		std::map<std::pair<dev_t, ino_t>, const MapsLine *> lowest;
		for (const MapsLine &m : l->maps)
			if (is_file(m) && !lowest.count({m.dev, m.ino}))
				lowest[{m.dev, m.ino}] = &m;
		std::size_t reported = 0;
		for (const auto &[id, m] : lowest) {
			auto f = l->files.find(m->path);
			if (f == l->files.end() || !f->second)
				continue;	// not opened in time: its frames stop as no_module
			char magic[4];
			if (pread(f->second->get(), magic, 4, 0) != 4 || std::memcmp(magic, "\x7f" "ELF", 4) != 0)
				continue;
			int fd = dup(f->second->get());
			if (fd < 0)
				continue;
			// the path names the file for the debuginfo search (build id,
			// .gnu_debuglink); the module owns the dup'ed fd from here
			std::string via = fmt::format("/proc/self/fd/{}", f->second->get());
			if (dwfl_report_elf(l->dwfl, m->path.c_str(), via.c_str(), fd, m->start - m->offset, false))
				reported++;
			else
				close(fd);
		}
		dwfl_report_end(l->dwfl, nullptr, nullptr);
		if (!reported)
			l->error = "no ELF file in the maps snapshot could be opened";
		else if (!dwfl_attach_state(l->dwfl, nullptr, mem.pid ? mem.pid : 1, &thread_callbacks, l.get()))
			l->error = fmt::format("dwfl_attach_state: {}", dwfl_errmsg(-1));
	}
	lru_.emplace_front(key, std::move(l));
	by_key_[key] = lru_.begin();
	if (lru_.size() > max_layouts_) {
		by_key_.erase(lru_.back().first);
		lru_.pop_back();
	}
	return *lru_.front().second;
}

Unwound Unwinder::unwind(const ProcMemory &mem, const StackSample &sample, int max_depth)
{
	Unwound out;
	Layout *l;
	try {
		l = &layout(mem);
	} catch (const cowscope::Error &e) {
		out.why = fmt::format("maps snapshot of pid {}: {}", mem.pid, e.what());
		return out;
	}
	if (!l->error.empty()) {
		out.frames.push_back({sample.regs.r[UserRegs::rip], FrameSource::regs});
		out.why = l->error;
		return out;
	}
	l->sample = &sample;
	l->failed_read.reset();
	Walk w{l, &out, std::max(max_depth, 1)};
	int rc = dwfl_getthread_frames(l->dwfl, 1, on_frame, &w);
	l->sample = nullptr;
	if (w.depth_hit) {
		out.stop = Stop::depth_limit;
		out.why = fmt::format("depth limit of {} frames reached", w.max_depth);
		return out;
	}
	// libdwfl ends with 0 when the caller's pc is undefined: the CFI says
	// so (outermost), but also when the read of the return address failed
	if (rc == 0 && !l->failed_read) {
		out.stop = Stop::outermost;
		out.why = "outermost frame reached";
		return out;
	}
	if (out.frames.empty()) {
		out.why = fmt::format("no initial frame: {}", dwfl_errmsg(-1));
		return out;
	}
	std::string file = w.mod ? dwfl_module_info(w.mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
						    nullptr)
				 : "";
	if (!w.mod) {
		// this process's own maps (its anonymous mappings are not the layout's)
		std::vector<MapsLine> maps;
		try {
			maps = parse_maps(mem.maps);
		} catch (const cowscope::Error &) {
			maps = l->maps;
		}
		std::sort(maps.begin(), maps.end(), [](const MapsLine &a, const MapsLine &b) { return a.start < b.start; });
		const MapsLine *m = find_mapping(maps, w.pc);
		out.stop = Stop::no_module;
		out.why = fmt::format("{:#x} is in no mapped ELF file ({})", w.pc,
				      !m ? "unmapped" : m->path.empty() ? "anonymous" : m->path);
		if (l->failed_read)
			out.why += fmt::format(", and no frame-pointer frame: {}", read_failure(sample, *l->failed_read));
	} else if (w.cfi && l->failed_read) {
		out.stop = Stop::slice_exhausted;
		out.why = read_failure(sample, *l->failed_read);
	} else if (!w.cfi) {
		out.stop = Stop::no_cfi;
		out.why = fmt::format("no CFI for {:#x} in {}", w.pc, file);
		if (l->failed_read)
			out.why += fmt::format(", and no frame-pointer frame: {}", read_failure(sample, *l->failed_read));
	} else {
		out.why = fmt::format("CFI unwind failed at {:#x} in {}: {}", w.pc, file, dwfl_errmsg(-1));
	}
	return out;
}

Unwound unwind_fp(const StackSample &s, int max_depth)
{
	Unwound out;
	out.frames.push_back({s.regs.r[UserRegs::rip], FrameSource::regs});
	std::uint64_t bp = s.regs.r[UserRegs::rbp];
	for (;;) {
		if (bp == 0) {
			out.stop = Stop::outermost;
			out.why = "rbp is 0: end of the frame-pointer chain";
			return out;
		}
		auto next = slice_read(s, bp);
		auto ret = slice_read(s, bp + 8);
		if (!next || !ret) {
			out.stop = Stop::slice_exhausted;
			out.why = read_failure(s, next ? bp + 8 : bp);
			return out;
		}
		if (*ret == 0) {
			out.stop = Stop::outermost;
			out.why = "return address 0: end of the frame-pointer chain";
			return out;
		}
		if (static_cast<int>(out.frames.size()) >= max_depth) {
			out.stop = Stop::depth_limit;
			out.why = fmt::format("depth limit of {} frames reached", max_depth);
			return out;
		}
		out.frames.push_back({*ret, FrameSource::fp});
		if (*next != 0 && *next <= bp) {
			out.stop = Stop::failed;
			out.why = fmt::format("frame-pointer chain does not go up the stack ({:#x} after {:#x})", *next, bp);
			return out;
		}
		bp = *next;
	}
}

std::vector<Frame> symbolize(Symbolizer &sym, const ProcMemory &mem, const Unwound &u)
{
	std::vector<std::uint64_t> ips;
	for (const UnwoundFrame &f : u.frames)
		ips.push_back(f.ip);
	return sym.frames(&mem, ips.data(), static_cast<int>(ips.size()));
}

} // namespace cowtrace
