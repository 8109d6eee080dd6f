// cowtrace_core internals: symbolization with elfutils libdwfl, after the
// run (never in the fault path): a Dwfl over one ProcMemory (symbols.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "cowscope/report/model.hpp"
#include "memory.hpp"

typedef struct Dwfl Dwfl;
typedef struct Dwfl_Module Dwfl_Module;

namespace cowtrace {

// The maps of `mem` with each path replaced by /proc/self/fd/N of the fd
// kept for it, reported to a Dwfl.
class ProcSymbols {
public:
	explicit ProcSymbols(const ProcMemory &mem);
	~ProcSymbols();
	ProcSymbols(const ProcSymbols &) = delete;
	ProcSymbols &operator=(const ProcSymbols &) = delete;

	// `ret`: a return address (frames past #0): look up ip - 1, the call.
	// Modules whose names are .dynsym guesses go to `guessed`.
	Frame resolve(std::uint64_t ip, bool ret, std::set<std::string> &guessed);

private:
	// Only .dynsym to go by: no .symtab in the file nor debug information.
	bool dynsym_only(Dwfl_Module *m);
	Dwfl *dwfl_ = nullptr;
	std::map<std::string, std::string> names_;	// /proc/self/fd/N -> path in maps
	std::map<Dwfl_Module *, bool> dynsym_;
};

} // namespace cowtrace
