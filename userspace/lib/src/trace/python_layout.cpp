// cowtrace_core: CPython 3.11 frames (python.hpp): where the interpreter is
// and the offsets of its structures, from its ELF and DWARF. The reading of
// a process with them is python.cpp.
#include "python.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/proc/maps.hpp"

namespace cowtrace {

using cowscope::Error;

namespace {

// ---- the ELF: build id, symbols, load address ----

struct ElfFile {
	cowscope::UniqueFd fd;
	Elf *elf = nullptr;
	ElfFile(cowscope::UniqueFd f, const std::string &name) : fd(std::move(f))
	{
		elf_version(EV_CURRENT);
		elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
		if (!elf || elf_kind(elf) != ELF_K_ELF) {
			if (elf)
				elf_end(elf);
			throw Error(fmt::format("{}: not an ELF file", name));
		}
	}
	~ElfFile()
	{
		elf_end(elf);
	}
	ElfFile(const ElfFile &) = delete;
	ElfFile &operator=(const ElfFile &) = delete;

	std::string build_id() const
	{
		const void *p = nullptr;
		ssize_t n = dwelf_elf_gnu_build_id(elf, &p);
		std::string hex;
		for (ssize_t i = 0; i < n; i++)
			hex += fmt::format("{:02x}", static_cast<const unsigned char *>(p)[i]);
		return hex;
	}
	bool has_section(std::string_view name) const
	{
		std::size_t shstrndx;
		if (elf_getshdrstrndx(elf, &shstrndx) != 0)
			return false;
		for (Elf_Scn *scn = nullptr; (scn = elf_nextscn(elf, scn));) {
			GElf_Shdr sh;
			const char *n = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : nullptr;
			if (n && name == n && sh.sh_type != SHT_NOBITS)
				return true;
		}
		return false;
	}
	// the value of symbol `name` in .symtab, else .dynsym; nullopt if neither has it
	std::optional<std::uint64_t> symbol(std::string_view name) const
	{
		for (Elf64_Word type : {SHT_SYMTAB, SHT_DYNSYM})
			for (Elf_Scn *scn = nullptr; (scn = elf_nextscn(elf, scn));) {
				GElf_Shdr sh;
				if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize)
					continue;
				Elf_Data *data = elf_getdata(scn, nullptr);
				if (!data)
					continue;
				std::size_t n = sh.sh_size / sh.sh_entsize;
				for (std::size_t i = 0; i < n; i++) {
					GElf_Sym sym;
					if (!gelf_getsym(data, static_cast<int>(i), &sym) || sym.st_shndx == SHN_UNDEF)
						continue;
					const char *s = elf_strptr(elf, sh.sh_link, sym.st_name);
					if (s && name == s)
						return sym.st_value;
				}
			}
		return std::nullopt;
	}
	// the link-time address of the page the file's offset 0 is loaded at
	std::optional<std::uint64_t> first_load() const
	{
		std::size_t n = 0;
		if (elf_getphdrnum(elf, &n) != 0)
			return std::nullopt;
		for (std::size_t i = 0; i < n; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && ph.p_offset == 0)
				return ph.p_vaddr;
		}
		return std::nullopt;
	}
};

// ---- DWARF: the types and their members ----

class Types {
public:
	Types(int fd, const std::string &file) : file_(file)
	{
		dw_ = dwarf_begin(fd, DWARF_C_READ);
		if (!dw_)
			throw Error(fmt::format("{}: no DWARF: {}", file, dwarf_errmsg(-1)));
	}
	~Types() { dwarf_end(dw_); }
	Types(const Types &) = delete;
	Types &operator=(const Types &) = delete;

	// Find the structures (by struct tag or typedef name), the typedefs
	// and the enums named in `want`, one pass over the compile units'
	// top-level entries, ending as soon as all are found.
	void find(const std::vector<std::string> &want)
	{
		std::size_t left = 0;
		for (const auto &w : want)
			left += found_.emplace(w, Dwarf_Die{}).second;
		for (const auto &[k, v] : found_)
			if (v.addr)
				left--;
		Dwarf_Off off = 0, next;
		std::size_t hsize;
		while (left && dwarf_nextcu(dw_, off, &next, &hsize, nullptr, nullptr, nullptr) == 0) {
			Dwarf_Die cu, die;
			if (dwarf_offdie(dw_, off + hsize, &cu) && dwarf_child(&cu, &die) == 0) {
				do {
					int tag = dwarf_tag(&die);
					if (tag != DW_TAG_structure_type && tag != DW_TAG_typedef && tag != DW_TAG_enumeration_type)
						continue;
					const char *name = dwarf_diename(&die);
					auto it = name ? found_.find(name) : found_.end();
					if (it == found_.end() || it->second.addr)
						continue;
					Dwarf_Die def;
					if (definition(die, def)) {
						it->second = def;
						left--;
					}
				} while (left && dwarf_siblingof(&die, &die) == 0);
			}
			off = next;
		}
	}

	// The DIE found for `name` (a structure, a base type behind a typedef, an enum).
	Dwarf_Die type(const std::string &name) const
	{
		auto it = found_.find(name);
		if (it == found_.end() || !it->second.addr)
			throw Error(fmt::format("{}: no type {} in its DWARF (not CPython 3.11?)", file_, name));
		return it->second;
	}
	// sizeof(name)
	std::uint32_t size(const std::string &name) const
	{
		Dwarf_Die d = type(name);
		Dwarf_Word sz;
		if (dwarf_aggregate_size(&d, &sz) != 0)
			throw Error(fmt::format("{}: no size for type {} in its DWARF", file_, name));
		return static_cast<std::uint32_t>(sz);
	}
	// The byte offset of member path "a.b.c" in structure `st`; `size`,
	// when not 0, is the member's required size (a check that the build
	// is the one the reader expects, not a guess).
	std::uint32_t offset(const std::string &st, const std::string &path, std::uint32_t size = 0) const
	{
		Dwarf_Die d = type(st);
		std::uint64_t total = 0;
		std::string_view rest = path;
		Dwarf_Die m{};
		while (!rest.empty()) {
			auto dot = rest.find('.');
			std::string part(rest.substr(0, dot));
			rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
			if (!member(d, part, m))
				throw Error(fmt::format("{}: {} has no member {} in its DWARF", file_, st, path));
			Dwarf_Attribute a;
			Dwarf_Word loc = 0;
			if (dwarf_attr_integrate(&m, DW_AT_data_member_location, &a) && dwarf_formudata(&a, &loc) != 0)
				throw Error(fmt::format("{}: {}.{}: a member location that is not a constant", file_, st, path));
			total += loc;
			if (!rest.empty() && !peel(m, d))
				throw Error(fmt::format("{}: {}.{}: not a structure", file_, st, part));
		}
		if (size) {
			Dwarf_Die t;
			Dwarf_Word sz = 0;
			if (!type_of(m, t) || dwarf_aggregate_size(&t, &sz) != 0 || sz != size)
				throw Error(fmt::format("{}: {}.{} is {} bytes in its DWARF, expected {}", file_, st, path,
							sz, size));
		}
		return static_cast<std::uint32_t>(total);
	}
	// The bit position (from the least significant bit of the storage at
	// the structure's start) and width of bitfield `name` of struct member
	// `path` of `st` (PyASCIIObject.state.kind).
	std::pair<std::uint8_t, std::uint8_t> bitfield(const std::string &st, const std::string &path,
						       const std::string &name) const
	{
		Dwarf_Die d = type(st), m, s;
		std::string_view p = path;
		while (!p.empty()) {
			auto dot = p.find('.');
			std::string part(p.substr(0, dot));
			p = dot == std::string_view::npos ? std::string_view{} : p.substr(dot + 1);
			if (!member(d, part, m) || !peel(m, s))
				throw Error(fmt::format("{}: {}.{}: no such structure member in its DWARF", file_, st, path));
			d = s;
		}
		if (!member(d, name, m))
			throw Error(fmt::format("{}: {}.{} has no bitfield {} in its DWARF", file_, st, path, name));
		Dwarf_Attribute a;
		Dwarf_Word bits = 0, at = 0;
		if (!dwarf_attr_integrate(&m, DW_AT_bit_size, &a) || dwarf_formudata(&a, &bits) != 0)
			throw Error(fmt::format("{}: {}.{}.{} is not a bitfield", file_, st, path, name));
		if (dwarf_attr_integrate(&m, DW_AT_data_bit_offset, &a)) {	// DWARF 4+
			if (dwarf_formudata(&a, &at) != 0)
				throw Error(fmt::format("{}: {}.{}.{}: unreadable bit offset", file_, st, path, name));
		} else {	// DWARF 2/3: from the most significant bit of a DW_AT_byte_size unit
			Dwarf_Word bo = 0, loc = 0;
			int bytes = dwarf_bytesize(&m);
			if (!dwarf_attr_integrate(&m, DW_AT_bit_offset, &a) || dwarf_formudata(&a, &bo) != 0 || bytes <= 0)
				throw Error(fmt::format("{}: {}.{}.{}: no bit offset", file_, st, path, name));
			if (dwarf_attr_integrate(&m, DW_AT_data_member_location, &a))
				dwarf_formudata(&a, &loc);
			at = loc * 8 + static_cast<Dwarf_Word>(bytes) * 8 - bo - bits;
		}
		if (at + bits > 32)
			throw Error(fmt::format("{}: {}.{}.{} lies past the first 32 bits", file_, st, path, name));
		return {static_cast<std::uint8_t>(at), static_cast<std::uint8_t>(bits)};
	}
	// The value of enumerator `name` of enum `en`.
	std::int64_t enumerator(const std::string &en, const std::string &name) const
	{
		Dwarf_Die d = type(en), c;
		if (dwarf_child(&d, &c) == 0)
			do {
				const char *n = dwarf_diename(&c);
				Dwarf_Attribute a;
				Dwarf_Sword v;
				if (dwarf_tag(&c) == DW_TAG_enumerator && n && name == n &&
				    dwarf_attr(&c, DW_AT_const_value, &a) && dwarf_formsdata(&a, &v) == 0)
					return v;
			} while (dwarf_siblingof(&c, &c) == 0);
		throw Error(fmt::format("{}: enum {} has no {} in its DWARF", file_, en, name));
	}

private:
	static bool type_of(Dwarf_Die &die, Dwarf_Die &out)
	{
		Dwarf_Attribute a;
		return dwarf_attr_integrate(&die, DW_AT_type, &a) && dwarf_formref_die(&a, &out);
	}
	// through typedefs and qualifiers to a structure's definition
	static bool peel(Dwarf_Die die, Dwarf_Die &out)
	{
		Dwarf_Die t;
		if (!type_of(die, t))
			return false;
		for (int i = 0; i < 16; i++) {
			int tag = dwarf_tag(&t);
			if (tag == DW_TAG_structure_type) {
				out = t;
				return !dwarf_hasattr(&t, DW_AT_declaration);
			}
			if ((tag != DW_TAG_typedef && tag != DW_TAG_const_type && tag != DW_TAG_volatile_type) ||
			    !type_of(t, t))
				return false;
		}
		return false;
	}
	// a top-level entry's definition: a defined structure (directly or
	// behind a typedef), an enum, or (a typedef of anything else) itself
	static bool definition(Dwarf_Die die, Dwarf_Die &out)
	{
		int tag = dwarf_tag(&die);
		if (tag == DW_TAG_structure_type || tag == DW_TAG_enumeration_type) {
			if (dwarf_hasattr(&die, DW_AT_declaration) || !dwarf_haschildren(&die))
				return false;
			out = die;
			return true;
		}
		Dwarf_Die s;
		if (peel(die, s)) {
			out = s;
			return dwarf_haschildren(&s);
		}
		Dwarf_Die t;
		if (type_of(die, t) && dwarf_tag(&t) == DW_TAG_structure_type)
			return false;	// a typedef of a declaration: look on
		out = die;
		return true;
	}
	static bool member(Dwarf_Die st, const std::string &name, Dwarf_Die &out)
	{
		Dwarf_Die c;
		if (dwarf_child(&st, &c) != 0)
			return false;
		do {
			const char *n = dwarf_diename(&c);
			if (dwarf_tag(&c) == DW_TAG_member && n && name == n) {
				out = c;
				return true;
			}
		} while (dwarf_siblingof(&c, &c) == 0);
		return false;
	}

	std::string file_;
	Dwarf *dw_ = nullptr;
	std::map<std::string, Dwarf_Die> found_;
};

// 3.11's offsets from the DWARF in `fd` (named `file`)
PyOffsets read_offsets(int fd, const std::string &file)
{
	Types t(fd, file);
	t.find({"_PyRuntimeState", "PyInterpreterState", "PyThreadState", "_PyCFrame", "_PyInterpreterFrame",
		"PyObject", "PyVarObject", "PyCodeObject", "PyBytesObject", "PyASCIIObject",
		"PyCompactUnicodeObject", "_Py_CODEUNIT", "_frameowner"});
	PyOffsets o;
	const std::uint32_t P = sizeof(void *);
	o.runtime_interp_head = t.offset("_PyRuntimeState", "interpreters.head", P);
	o.interp_next = t.offset("PyInterpreterState", "next", P);
	o.interp_threads_head = t.offset("PyInterpreterState", "threads.head", P);
	o.tstate_next = t.offset("PyThreadState", "next", P);
	o.tstate_native_thread_id = t.offset("PyThreadState", "native_thread_id", 8);
	o.tstate_cframe = t.offset("PyThreadState", "cframe", P);
	o.cframe_current_frame = t.offset("_PyCFrame", "current_frame", P);
	o.frame_code = t.offset("_PyInterpreterFrame", "f_code", P);
	o.frame_previous = t.offset("_PyInterpreterFrame", "previous", P);
	o.frame_prev_instr = t.offset("_PyInterpreterFrame", "prev_instr", P);
	o.frame_is_entry = t.offset("_PyInterpreterFrame", "is_entry", 1);
	o.frame_owner = t.offset("_PyInterpreterFrame", "owner", 1);
	o.frame_size = t.offset("_PyInterpreterFrame", "localsplus");
	o.object_type = t.offset("PyObject", "ob_type", P);
	o.var_size = t.offset("PyVarObject", "ob_size", 8);
	o.code_name = t.offset("PyCodeObject", "co_name", P);
	o.code_qualname = t.offset("PyCodeObject", "co_qualname", P);
	o.code_filename = t.offset("PyCodeObject", "co_filename", P);
	o.code_firstlineno = t.offset("PyCodeObject", "co_firstlineno", 4);
	o.code_linetable = t.offset("PyCodeObject", "co_linetable", P);
	o.code_firsttraceable = t.offset("PyCodeObject", "_co_firsttraceable", 4);
	o.code_adaptive = t.offset("PyCodeObject", "co_code_adaptive");
	o.bytes_sval = t.offset("PyBytesObject", "ob_sval");
	o.unicode_length = t.offset("PyASCIIObject", "length", 8);
	o.unicode_state = t.offset("PyASCIIObject", "state", 4);
	o.ascii_size = t.size("PyASCIIObject");
	o.compact_size = t.size("PyCompactUnicodeObject");
	std::tie(o.state_kind_shift, o.state_kind_bits) = t.bitfield("PyASCIIObject", "state", "kind");
	auto compact = t.bitfield("PyASCIIObject", "state", "compact");
	auto ascii = t.bitfield("PyASCIIObject", "state", "ascii");
	if (compact.second != 1 || ascii.second != 1)
		throw Error(fmt::format("{}: PyASCIIObject.state.compact/ascii are not one bit each", file));
	o.state_compact_shift = compact.first;
	o.state_ascii_shift = ascii.first;
	o.code_unit = static_cast<std::uint8_t>(t.size("_Py_CODEUNIT"));
	o.owner_generator = static_cast<std::int8_t>(t.enumerator("_frameowner", "FRAME_OWNED_BY_GENERATOR"));
	return o;
}

struct Cached {
	PyOffsets off;
	std::string debug_file;
};
std::mutex g_layouts_mu;
std::map<std::string, Cached> g_layouts;	// by build id (and debug root)

PyLayout layout_of(cowscope::UniqueFd fd, const std::string &elf, const std::string &debug_root)
{
	ElfFile e(std::move(fd), elf);
	PyLayout l;
	l.elf = elf;
	l.build_id = e.build_id();
	if (l.build_id.size() < 4)
		throw Error(fmt::format("{}: no build id (a GNU build-id note): its debug file cannot be found", elf));
	std::string key = l.build_id + "\n" + debug_root;
	std::lock_guard<std::mutex> g(g_layouts_mu);
	auto it = g_layouts.find(key);
	if (it == g_layouts.end()) {
		Cached c;
		std::string debug = fmt::format("{}/.build-id/{}/{}.debug", debug_root, l.build_id.substr(0, 2),
						l.build_id.substr(2));
		cowscope::UniqueFd dfd;
		if (e.has_section(".debug_info")) {
			c.debug_file = elf;
			dfd = cowscope::UniqueFd(dup(e.fd.get()));
		} else {
			dfd = cowscope::UniqueFd(open(debug.c_str(), O_RDONLY | O_CLOEXEC));
			if (!dfd)
				throw PyNoDebugInfo(fmt::format(
					"{}: no debug information (no .debug_info in it, and {}: {}): the offsets of "
					"its frames come from DWARF; for Debian's python3.11 install python3.11-dbg "
					"of the same version as python3.11 (apt-get install python3.11-dbg)",
					elf, debug, std::strerror(errno)));
			c.debug_file = debug;
		}
		c.off = read_offsets(dfd.get(), c.debug_file);
		// the symbols: the debug file's .symtab, else the ELF's .dynsym
		ElfFile d(std::move(dfd), c.debug_file);
		auto sym = [&](const char *name) {
			auto v = d.symbol(name);
			if (!v)
				v = e.symbol(name);
			if (!v)
				throw Error(fmt::format("{}: no symbol {} (in {} or its .dynsym)", elf, name,
							c.debug_file));
			return *v;
		};
		c.off.runtime = sym("_PyRuntime");
		c.off.code_type = sym("PyCode_Type");
		c.off.unicode_type = sym("PyUnicode_Type");
		c.off.bytes_type = sym("PyBytes_Type");
		it = g_layouts.emplace(key, std::move(c)).first;
	}
	l.debug_file = it->second.debug_file;
	l.off = it->second.off;
	return l;
}

bool is_python311(std::string_view path)
{
	auto slash = path.rfind('/');
	std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
	return base.starts_with("libpython3.11") || base == "python3.11" || base == "python3.11d";
}

} // namespace

std::string PyOffsets::text() const
{
	std::string s;
	auto line = [&](const char *n, std::uint64_t v) { s += fmt::format("{}=0x{:x}\n", n, v); };
	line("runtime", runtime);
	line("code_type", code_type);
	line("unicode_type", unicode_type);
	line("bytes_type", bytes_type);
	line("runtime_interp_head", runtime_interp_head);
	line("interp_next", interp_next);
	line("interp_threads_head", interp_threads_head);
	line("tstate_next", tstate_next);
	line("tstate_native_thread_id", tstate_native_thread_id);
	line("tstate_cframe", tstate_cframe);
	line("cframe_current_frame", cframe_current_frame);
	line("frame_code", frame_code);
	line("frame_previous", frame_previous);
	line("frame_prev_instr", frame_prev_instr);
	line("frame_is_entry", frame_is_entry);
	line("frame_owner", frame_owner);
	line("frame_size", frame_size);
	line("object_type", object_type);
	line("var_size", var_size);
	line("code_name", code_name);
	line("code_qualname", code_qualname);
	line("code_filename", code_filename);
	line("code_firstlineno", code_firstlineno);
	line("code_linetable", code_linetable);
	line("code_firsttraceable", code_firsttraceable);
	line("code_adaptive", code_adaptive);
	line("bytes_sval", bytes_sval);
	line("unicode_length", unicode_length);
	line("unicode_state", unicode_state);
	line("ascii_size", ascii_size);
	line("compact_size", compact_size);
	line("state_kind_shift", state_kind_shift);
	line("state_kind_bits", state_kind_bits);
	line("state_compact_shift", state_compact_shift);
	line("state_ascii_shift", state_ascii_shift);
	line("code_unit", code_unit);
	line("owner_generator", static_cast<std::uint64_t>(owner_generator));
	return s;
}

PyLayout python_layout(const std::string &elf, const std::string &debug_root)
{
	cowscope::UniqueFd fd(open(elf.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		throw cowscope::SysError("open " + elf);
	return layout_of(std::move(fd), elf, debug_root);
}

PyLayout find_python(pid_t pid, const std::string &debug_root)
{
	auto maps = cowscope::proc::read_maps(pid);
	// libpython (an embedding program, a python linked against it) before
	// the executable (Debian's python3.11 has the interpreter linked in)
	const cowscope::proc::MapsEntry *pick = nullptr;
	for (int pass = 0; pass < 2 && !pick; pass++)
		for (const auto &m : maps) {
			auto slash = m.path.rfind('/');
			std::string_view base = std::string_view(m.path).substr(slash == std::string::npos ? 0 : slash + 1);
			bool lib = base.starts_with("libpython3.11");
			if (m.offset == 0 && is_python311(m.path) && lib == (pass == 0)) {
				pick = &m;
				break;
			}
		}
	if (!pick)
		throw Error(fmt::format("process {}: no CPython 3.11 in its maps (no python3.11 or libpython3.11 mapped)",
					pid));
	std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, pick->start, pick->end);
	cowscope::UniqueFd fd(open(via.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		fd = cowscope::UniqueFd(open(pick->path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		throw cowscope::SysError(fmt::format("process {}: open {}", pid, pick->path));
	cowscope::UniqueFd again(dup(fd.get()));
	PyLayout l = layout_of(std::move(fd), pick->path, debug_root);
	ElfFile e(std::move(again), pick->path);
	auto first = e.first_load();
	if (!first)
		throw Error(fmt::format("{}: no loadable segment at file offset 0", pick->path));
	l.bias = pick->start - (*first & ~std::uint64_t{0xfff});
	return l;
}

} // namespace cowtrace
