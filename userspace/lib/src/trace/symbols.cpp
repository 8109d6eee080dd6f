// cowtrace_core: symbolization (symbols.hpp).
#include "symbols.hpp"

#include <elfutils/libdwfl.h>
#include <gelf.h>

#include <cstdio>

#include <fmt/format.h>

namespace cowtrace {

ProcSymbols::ProcSymbols(const ProcMemory &mem)
{
	static const Dwfl_Callbacks cb = {
		dwfl_linux_proc_find_elf, dwfl_standard_find_debuginfo, nullptr, nullptr,
	};
	dwfl_ = dwfl_begin(&cb);
	if (!dwfl_)
		return;
	std::string text;
	for (const MapsLine &m : parse_maps(mem.maps)) {
		auto it = mem.files.find(m.path);
		if (it == mem.files.end())
			continue;
		std::string fdpath = fmt::format("/proc/self/fd/{}", it->second->get());
		names_[fdpath] = m.path;
		text += m.head + fdpath + "\n";
	}
	dwfl_report_begin(dwfl_);
	if (FILE *f = fmemopen(text.data(), text.size(), "r")) {
		if (!text.empty())
			dwfl_linux_proc_maps_report(dwfl_, f);
		std::fclose(f);
	}
	dwfl_report_end(dwfl_, nullptr, nullptr);
}

ProcSymbols::~ProcSymbols()
{
	if (dwfl_)
		dwfl_end(dwfl_);
}

Frame ProcSymbols::resolve(std::uint64_t ip, bool ret, std::set<std::string> &guessed)
{
	Frame f;
	f.ip = ip;
	if (!dwfl_)
		return f;
	Dwarf_Addr a = ret ? ip - 1 : ip;
	Dwfl_Module *m = dwfl_addrmodule(dwfl_, a);
	if (!m)
		return f;
	const char *mainfile = nullptr;
	Dwarf_Addr lo = 0, bias = 0;
	dwfl_module_getelf(m, &bias);	// finds the file: mainfile below is set
	dwfl_module_info(m, nullptr, &lo, nullptr, nullptr, nullptr, &mainfile, nullptr);
	std::string key = mainfile ? mainfile : "";
	auto it = names_.find(key);
	f.module = it != names_.end() ? it->second : key;
	if (f.module.empty())
		f.module = "?";
	GElf_Off off = 0;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(m, a, &off, &sym, nullptr, nullptr, nullptr);
	if (name) {
		f.func = name;
		f.offset = off + (ret ? 1 : 0);
		f.guess = dynsym_only(m);
		if (f.guess)
			guessed.insert(f.module);
	} else {
		f.offset = ip - lo;	// module-relative
	}
	if (Dwfl_Line *l = dwfl_module_getsrc(m, a)) {
		int line = 0;
		if (const char *src = dwfl_lineinfo(l, nullptr, &line, nullptr, nullptr, nullptr)) {
			f.file = src;
			f.line = line;
		}
	}
	return f;
}

bool ProcSymbols::dynsym_only(Dwfl_Module *m)
{
	if (auto it = dynsym_.find(m); it != dynsym_.end())
		return it->second;
	bool only = true;
	Dwarf_Addr bias;
	if (dwfl_module_getdwarf(m, &bias))
		only = false;
	Elf *elf = dwfl_module_getelf(m, &bias);
	for (Elf_Scn *scn = nullptr; only && elf && (scn = elf_nextscn(elf, scn));) {
		GElf_Shdr sh;
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			only = false;
	}
	dynsym_[m] = only;
	return only;
}

} // namespace cowtrace
