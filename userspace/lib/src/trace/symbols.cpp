// cowtrace_core: symbolization (symbols.hpp).
#include "symbols.hpp"

#include <elfutils/libdwfl.h>
#include <gelf.h>

#include <algorithm>
#include <optional>

#include <fmt/format.h>

namespace cowtrace {

FileSymbols::FileSymbols(int fd)
{
	static const Dwfl_Callbacks cb = {
		dwfl_build_id_find_elf, dwfl_standard_find_debuginfo, dwfl_offline_section_address, nullptr,
	};
	dwfl_ = dwfl_begin(&cb);
	if (!dwfl_)
		return;
	// the path names the file for libdwfl's debuginfo search (build id,
	// .gnu_debuglink); the fd is what it reads (a deleted or replaced
	// binary included)
	std::string via = fmt::format("/proc/self/fd/{}", fd);
	dwfl_report_begin(dwfl_);
	mod_ = dwfl_report_offline(dwfl_, via.c_str(), via.c_str(), -1);
	dwfl_report_end(dwfl_, nullptr, nullptr);
	if (!mod_)
		return;
	Dwarf_Addr bias;
	if (dwfl_module_getdwarf(mod_, &bias))
		dynsym_only_ = false;
	Elf *elf = dwfl_module_getelf(mod_, &bias);
	for (Elf_Scn *scn = nullptr; dynsym_only_ && elf && (scn = elf_nextscn(elf, scn));) {
		GElf_Shdr sh;
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			dynsym_only_ = false;
	}
}

FileSymbols::~FileSymbols()
{
	if (dwfl_)
		dwfl_end(dwfl_);
}

Frame FileSymbols::resolve(std::uint64_t off, bool ret)
{
	Frame f;
	std::uint64_t at = ret && off ? off - 1 : off;
	f.offset = off;	// without a symbol: the file offset
	if (!mod_)
		return f;
	Dwarf_Addr bias = 0;
	Elf *elf = dwfl_module_getelf(mod_, &bias);
	std::size_t n = 0;
	if (!elf || elf_getphdrnum(elf, &n) != 0)
		return f;
	// the loaded segment holding the offset gives its link-time address;
	// the lowest one is where the module starts
	std::optional<Dwarf_Addr> addr;
	Dwarf_Addr low = ~Dwarf_Addr{0};
	for (std::size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD)
			continue;
		low = std::min<Dwarf_Addr>(low, ph.p_vaddr & ~Dwarf_Addr{0xfff});
		if (!addr && at >= ph.p_offset && at < ph.p_offset + ph.p_filesz)
			addr = at - ph.p_offset + ph.p_vaddr + bias;
	}
	if (!addr)
		return f;
	f.offset = *addr - bias - low + (ret ? 1 : 0);	// without a symbol: from the module's start
	GElf_Off symoff = 0;
	GElf_Sym sym;
	if (const char *name = dwfl_module_addrinfo(mod_, *addr, &symoff, &sym, nullptr, nullptr, nullptr)) {
		f.func = name;
		f.offset = symoff + (ret ? 1 : 0);
		f.guess = dynsym_only_;
	}
	if (Dwfl_Line *l = dwfl_module_getsrc(mod_, *addr)) {
		int line = 0;
		if (const char *src = dwfl_lineinfo(l, nullptr, &line, nullptr, nullptr, nullptr)) {
			f.file = src;
			f.line = line;
		}
	}
	return f;
}

Frame Symbolizer::resolve(const ProcMemory &mem, const std::vector<MapsLine> &maps, std::uint64_t ip, bool ret)
{
	Frame f;
	f.ip = ip;
	std::uint64_t at = ret ? ip - 1 : ip;
	auto m = std::upper_bound(maps.begin(), maps.end(), at,
				  [](std::uint64_t a, const MapsLine &l) { return a < l.start; });
	if (m == maps.begin() || !(--m)->contains(at))
		return f;
	auto fd = mem.files.find(m->path);
	if (fd == mem.files.end() || !fd->second)
		return f;	// anonymous, [vdso], or a file not opened in time
	std::uint64_t off = ip - m->start + m->offset;
	auto key = std::make_tuple(m->dev, m->ino, off, ret);
	auto it = cache_.find(key);
	if (it == cache_.end()) {
		auto &file = files_[{m->dev, m->ino}];
		if (!file)
			file = std::make_unique<FileSymbols>(fd->second->get());
		it = cache_.emplace(key, file->resolve(off, ret)).first;
		if (it->second.guess)
			guessed_.insert(m->path);
	}
	Frame out = it->second;
	out.ip = ip;
	out.module = m->path;
	return out;
}

std::vector<Frame> Symbolizer::frames(const ProcMemory *mem, const std::uint64_t *ips, int depth)
{
	std::vector<Frame> out;
	const std::vector<MapsLine> *maps = nullptr;
	if (mem) {
		auto it = maps_.find(mem);
		if (it == maps_.end()) {
			std::vector<MapsLine> parsed = parse_maps(mem->maps);
			std::sort(parsed.begin(), parsed.end(),
				  [](const MapsLine &a, const MapsLine &b) { return a.start < b.start; });
			it = maps_.emplace(mem, std::move(parsed)).first;
		}
		maps = &it->second;
	}
	for (int i = 0; i < depth && ips[i]; i++) {
		if (maps) {
			out.push_back(resolve(*mem, *maps, ips[i], i > 0));	// frame 0 is no return address
		} else {
			Frame f;
			f.ip = ips[i];
			out.push_back(f);
		}
	}
	return out;
}

} // namespace cowtrace
