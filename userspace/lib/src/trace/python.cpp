// cowtrace_core: CPython 3.11 frames (python.hpp): reading a process's
// frames and code objects with the offsets python_layout.cpp found.
#include "python.hpp"

#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

using cowscope::Error;

// ---- reading the process ----

PyReader::PyReader(pid_t pid, PyLayout layout, Limits lim) : pid_(pid), layout_(std::move(layout)), lim_(lim) {}

void PyReader::read(std::uint64_t addr, void *buf, std::size_t len, const char *what) const
{
	iovec local{buf, len};
	iovec remote{reinterpret_cast<void *>(addr), len};
	ssize_t n = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
	if (n < 0)
		throw cowscope::SysError(fmt::format("process {}: read {} at 0x{:x}", pid_, what, addr));
	if (static_cast<std::size_t>(n) != len)
		throw Error(fmt::format("process {}: read {} at 0x{:x}: {} of {} bytes", pid_, what, addr, n, len));
}

std::uint64_t PyReader::ptr(std::uint64_t addr, const char *what) const
{
	std::uint64_t v;
	read(addr, &v, sizeof(v), what);
	return v;
}

std::string PyReader::string(std::uint64_t addr, const char *what)
{
	const PyOffsets &o = layout_.off;
	if (ptr(addr + o.object_type, what) != o.unicode_type + layout_.bias)
		throw Error(fmt::format("process {}: {} at 0x{:x} is not a str", pid_, what, addr));
	std::int64_t len;
	std::uint32_t state;
	read(addr + o.unicode_length, &len, sizeof(len), what);
	read(addr + o.unicode_state, &state, sizeof(state), what);
	unsigned kind = (state >> o.state_kind_shift) & ((1u << o.state_kind_bits) - 1);
	bool compact = (state >> o.state_compact_shift) & 1, ascii = (state >> o.state_ascii_shift) & 1;
	if (!compact)	// names and file names are always compact; a legacy string is not read
		throw Error(fmt::format("process {}: {} at 0x{:x} is not a compact str", pid_, what, addr));
	if (kind != 1 && kind != 2 && kind != 4)
		throw Error(fmt::format("process {}: {} at 0x{:x}: str kind {}", pid_, what, addr, kind));
	if (len < 0 || static_cast<std::uint64_t>(len) * kind > lim_.max_string)
		throw Error(fmt::format("process {}: {} at 0x{:x}: length {} (at most {} bytes read)", pid_, what,
					addr, len, lim_.max_string));
	std::uint64_t data = addr + (ascii ? o.ascii_size : o.compact_size);
	std::vector<std::uint8_t> raw(static_cast<std::size_t>(len) * kind);
	if (!raw.empty())
		read(data, raw.data(), raw.size(), what);
	std::string out;
	for (std::size_t i = 0; i < raw.size(); i += kind) {	// UCS1/2/4 to UTF-8
		std::uint32_t c = raw[i];
		if (kind == 2)
			c |= raw[i + 1] << 8;
		else if (kind == 4)
			c |= raw[i + 1] << 8 | raw[i + 2] << 16 | static_cast<std::uint32_t>(raw[i + 3]) << 24;
		if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
			c = 0xfffd;
		if (c < 0x80) {
			out += static_cast<char>(c);
		} else if (c < 0x800) {
			out += static_cast<char>(0xc0 | c >> 6);
			out += static_cast<char>(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out += static_cast<char>(0xe0 | c >> 12);
			out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
			out += static_cast<char>(0x80 | (c & 0x3f));
		} else {
			out += static_cast<char>(0xf0 | c >> 18);
			out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
			out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
			out += static_cast<char>(0x80 | (c & 0x3f));
		}
	}
	return out;
}

const PyReader::Code &PyReader::code(std::uint64_t addr)
{
	if (auto it = codes_.find(addr); it != codes_.end())
		return it->second;
	const PyOffsets &o = layout_.off;
	if (ptr(addr + o.object_type, "code object") != o.code_type + layout_.bias)
		throw Error(fmt::format("process {}: 0x{:x} is not a code object", pid_, addr));
	Code c;
	std::int64_t units;
	read(addr + o.var_size, &units, sizeof(units), "code object");
	if (units < 0 || static_cast<std::uint64_t>(units) > lim_.max_code_units)
		throw Error(fmt::format("process {}: code object 0x{:x}: {} code units", pid_, addr, units));
	c.units = static_cast<std::uint32_t>(units);
	read(addr + o.code_firstlineno, &c.firstlineno, sizeof(c.firstlineno), "co_firstlineno");
	std::int32_t traceable;
	read(addr + o.code_firsttraceable, &traceable, sizeof(traceable), "_co_firsttraceable");
	c.firsttraceable = traceable;
	c.qualname = string(ptr(addr + o.code_qualname, "co_qualname"), "co_qualname");
	c.file = string(ptr(addr + o.code_filename, "co_filename"), "co_filename");
	std::uint64_t table = ptr(addr + o.code_linetable, "co_linetable");
	if (ptr(table + o.object_type, "co_linetable") != o.bytes_type + layout_.bias)
		throw Error(fmt::format("process {}: co_linetable of 0x{:x} is not bytes", pid_, addr));
	std::int64_t tlen;
	read(table + o.var_size, &tlen, sizeof(tlen), "co_linetable");
	if (tlen < 0 || static_cast<std::uint64_t>(tlen) > lim_.max_linetable)
		throw Error(fmt::format("process {}: co_linetable of 0x{:x}: {} bytes", pid_, addr, tlen));
	c.linetable.resize(static_cast<std::size_t>(tlen));
	if (tlen)
		read(table + o.bytes_sval, c.linetable.data(), c.linetable.size(), "co_linetable");
	std::size_t bytes = c.linetable.size() + c.qualname.size() + c.file.size() + sizeof(Code);
	if (codes_.size() >= lim_.max_cached || cached_bytes_ + bytes > lim_.max_cached_bytes) {
		codes_.clear();
		cached_bytes_ = 0;
	}
	cached_bytes_ += bytes;
	return codes_.emplace(addr, std::move(c)).first->second;
}

PyFrame PyReader::resolve(std::uint64_t addr, std::uint64_t instr)
{
	const Code &c = code(addr);
	PyFrame f;
	f.function = c.qualname;
	f.file = c.file;
	f.code = addr;
	f.instr = instr;
	// prev_instr: the code unit before the next instruction; one before
	// the first (LASTI -1) in a frame that has not started
	const std::uint64_t unit = layout_.off.code_unit;
	std::uint64_t start = addr + layout_.off.code_adaptive;
	if (instr + unit >= start && instr < start + c.units * unit && (instr + unit - start) % unit == 0) {
		std::int64_t lasti = (static_cast<std::int64_t>(instr) - static_cast<std::int64_t>(start)) /
				     static_cast<std::int64_t>(unit);
		f.line = py_addr2line(c.linetable, c.firstlineno, static_cast<int>(lasti));
	}
	return f;
}

std::uint64_t PyReader::tstate(pid_t tid)
{
	const PyOffsets &o = layout_.off;
	std::uint64_t interp = ptr(layout_.runtime() + o.runtime_interp_head, "_PyRuntime.interpreters.head");
	for (int i = 0; interp && i < lim_.max_interpreters; i++) {
		std::uint64_t ts = ptr(interp + o.interp_threads_head, "PyInterpreterState.threads.head");
		for (int j = 0; ts && j < lim_.max_threads; j++) {
			if (ptr(ts + o.tstate_native_thread_id, "PyThreadState.native_thread_id") ==
			    static_cast<std::uint64_t>(tid))
				return ts;
			ts = ptr(ts + o.tstate_next, "PyThreadState.next");
		}
		interp = ptr(interp + o.interp_next, "PyInterpreterState.next");
	}
	throw Error(fmt::format("process {}: no Python thread state has native id {}", pid_, tid));
}

std::vector<pid_t> PyReader::threads()
{
	const PyOffsets &o = layout_.off;
	std::vector<pid_t> out;
	std::uint64_t interp = ptr(layout_.runtime() + o.runtime_interp_head, "_PyRuntime.interpreters.head");
	for (int i = 0; interp && i < lim_.max_interpreters; i++) {
		std::uint64_t ts = ptr(interp + o.interp_threads_head, "PyInterpreterState.threads.head");
		for (int j = 0; ts && j < lim_.max_threads; j++) {
			out.push_back(static_cast<pid_t>(
				ptr(ts + o.tstate_native_thread_id, "PyThreadState.native_thread_id")));
			ts = ptr(ts + o.tstate_next, "PyThreadState.next");
		}
		interp = ptr(interp + o.interp_next, "PyInterpreterState.next");
	}
	return out;
}

std::vector<PyFrame> PyReader::thread_frames(pid_t tid)
{
	const PyOffsets &o = layout_.off;
	std::vector<PyFrame> out;
	std::uint64_t cframe = ptr(tstate(tid) + o.tstate_cframe, "PyThreadState.cframe");
	if (!cframe)
		return out;
	std::uint64_t f = ptr(cframe + o.cframe_current_frame, "_PyCFrame.current_frame");
	std::vector<std::uint8_t> buf(o.frame_size);
	auto at = [&](std::uint32_t off) {
		std::uint64_t v;
		std::memcpy(&v, buf.data() + off, sizeof(v));
		return v;
	};
	for (int depth = 0; f && depth < lim_.max_frames; depth++) {
		read(f, buf.data(), buf.size(), "_PyInterpreterFrame");
		std::uint64_t co = at(o.frame_code), instr = at(o.frame_prev_instr);
		bool entry = buf[o.frame_is_entry] != 0;
		auto owner = static_cast<std::int8_t>(buf[o.frame_owner]);
		f = at(o.frame_previous);
		const Code &c = code(co);
		// _PyFrame_IsIncomplete: before its first traceable instruction
		if (owner != o.owner_generator &&
		    instr < co + o.code_adaptive + static_cast<std::uint64_t>(c.firsttraceable) * o.code_unit)
			continue;
		PyFrame p = resolve(co, instr);
		p.entry = entry;
		out.push_back(std::move(p));
	}
	return out;
}

// ---- the 3.11 location table (Objects/locations.md) ----

int py_addr2line(const std::vector<std::uint8_t> &t, int firstlineno, int lasti)
{
	if (lasti < 0)
		return firstlineno;
	std::size_t i = 0, n = t.size();
	auto varint = [&]() {	// 6 bits a byte, 0x40: more follow
		std::uint32_t v = 0;
		for (unsigned shift = 0; i < n && shift < 32; shift += 6) {
			std::uint8_t b = t[i++];
			v |= static_cast<std::uint32_t>(b & 63) << shift;
			if (!(b & 64))
				break;
		}
		return v;
	};
	auto svarint = [&]() {
		std::uint32_t v = varint();
		return v & 1 ? -static_cast<int>(v >> 1) : static_cast<int>(v >> 1);
	};
	long line = firstlineno;
	long end = 0;	// code units covered so far
	while (i < n) {
		std::uint8_t b = t[i];
		if (!(b & 0x80))
			return 0;	// not at an entry's first byte: a garbled table
		i++;
		int code = (b >> 3) & 15;
		long len = (b & 7) + 1;	// code units
		bool none = code == 15;
		if (code == 13 || code == 14)
			line += svarint();
		else if (code >= 10 && code <= 12)
			line += code - 10;
		// skip the rest of the entry (columns, end line): up to the next first byte
		while (i < n && !(t[i] & 0x80))
			i++;
		if (lasti < end + len)
			return none || line <= 0 ? 0 : static_cast<int>(line);
		end += len;
	}
	return 0;
}

} // namespace cowtrace
