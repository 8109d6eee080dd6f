// cowtrace_core internals: symbolization with elfutils libdwfl, after the
// run (never in the fault path), by file rather than by process
// (symbols.cpp). A process's address goes through its maps to (file, file
// offset); each mapped file is opened once, as one offline Dwfl module,
// and each (file, offset) is resolved once, whichever process and address
// it came from: a family of forked processes running one binary costs what
// one process costs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cowscope/report/model.hpp"
#include "memory.hpp"

typedef struct Dwfl Dwfl;
typedef struct Dwfl_Module Dwfl_Module;

namespace cowtrace {

// One mapped file, by its open fd, as an offline Dwfl module at its
// link-time addresses.
class FileSymbols {
public:
	explicit FileSymbols(int fd);
	~FileSymbols();
	FileSymbols(const FileSymbols &) = delete;
	FileSymbols &operator=(const FileSymbols &) = delete;

	// The frame at file offset `off` (a return address when `ret`: the
	// call, off - 1, is looked up); module, ip left for the caller. With
	// no ELF behind the fd, or an offset in no loaded segment: offset only.
	Frame resolve(std::uint64_t off, bool ret);
	// names come from .dynsym alone (no .symtab, no debug information)
	bool dynsym_only() const { return dynsym_only_; }

private:
	Dwfl *dwfl_ = nullptr;
	Dwfl_Module *mod_ = nullptr;
	bool dynsym_only_ = true;
};

// The symbolizer of one attribution: the files of every process, each once.
class Symbolizer {
public:
	// The frames of user stack `ips` (0-terminated, at most `depth`) of a
	// process whose memory was `mem` (null: addresses only).
	std::vector<Frame> frames(const ProcMemory *mem, const std::uint64_t *ips, int depth);
	// Drop what was parsed of `mem` (before it is freed: a later
	// ProcMemory at the same address is another process's).
	void forget(const ProcMemory *mem) { maps_.erase(mem); }
	// distinct (file, offset) pairs resolved
	std::size_t resolved() const { return cache_.size(); }
	// files whose names are .dynsym guesses
	const std::set<std::string> &guessed() const { return guessed_; }

private:
	Frame resolve(const ProcMemory &mem, const std::vector<MapsLine> &maps, std::uint64_t ip, bool ret);
	std::map<const ProcMemory *, std::vector<MapsLine>> maps_;
	std::map<std::pair<dev_t, ino_t>, std::unique_ptr<FileSymbols>> files_;
	std::map<std::tuple<dev_t, ino_t, std::uint64_t, bool>, Frame> cache_;
	std::set<std::string> guessed_;
};

} // namespace cowtrace
