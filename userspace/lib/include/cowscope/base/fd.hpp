// RAII owners for file descriptors and memory mappings.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

namespace cowscope {

class UniqueFd {
public:
	UniqueFd() noexcept = default;
	explicit UniqueFd(int fd) noexcept : fd_(fd) {}
	UniqueFd(UniqueFd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
	UniqueFd &operator=(UniqueFd &&o) noexcept
	{
		if (this != &o)
			reset(std::exchange(o.fd_, -1));
		return *this;
	}
	UniqueFd(const UniqueFd &) = delete;
	UniqueFd &operator=(const UniqueFd &) = delete;
	~UniqueFd() { reset(); }

	int get() const noexcept { return fd_; }
	explicit operator bool() const noexcept { return fd_ >= 0; }
	int release() noexcept { return std::exchange(fd_, -1); }
	void reset(int fd = -1) noexcept;

	// open(2) or throw SysError("open <path>: ...").
	static UniqueFd open(const std::string &path, int flags, int mode = 0);

private:
	int fd_ = -1;
};

// A private anonymous (or other) mapping, unmapped on destruction.
class Mapping {
public:
	Mapping() noexcept = default;
	Mapping(void *addr, std::size_t len) noexcept : addr_(addr), len_(len) {}
	Mapping(Mapping &&o) noexcept
		: addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0))
	{
	}
	Mapping &operator=(Mapping &&o) noexcept
	{
		if (this != &o) {
			reset();
			addr_ = std::exchange(o.addr_, nullptr);
			len_ = std::exchange(o.len_, 0);
		}
		return *this;
	}
	Mapping(const Mapping &) = delete;
	Mapping &operator=(const Mapping &) = delete;
	~Mapping() { reset(); }

	// mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS) or throw.
	static Mapping anonymous(std::size_t len);
	// The same, starting at a multiple of `align` (a power of two: 2 MiB
	// so that a THP can back the first bytes): over-map, trim both ends.
	static Mapping anonymous_aligned(std::size_t len, std::size_t align);

	char *data() const noexcept { return static_cast<char *>(addr_); }
	std::size_t size() const noexcept { return len_; }
	explicit operator bool() const noexcept { return addr_ != nullptr; }
	void reset() noexcept;

private:
	void *addr_ = nullptr;
	std::size_t len_ = 0;
};

// Whole-file helpers for /proc and /sys files (which report size 0).
std::string read_file(const std::string &path);
// The same without an exception: nullopt (errno set) when it cannot be
// opened or read (a process that is gone: the common case, cheap).
std::optional<std::string> try_read_file(const std::string &path);
// Write `data` to `path` atomically: a temporary file in the same folder,
// fsync, rename. Readers see the old file or the new one, never a part.
void write_file_atomic(const std::string &path, const std::string &data);

} // namespace cowscope
