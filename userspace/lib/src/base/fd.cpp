#include "cowscope/base/fd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "cowscope/base/error.hpp"

namespace cowscope {

void UniqueFd::reset(int fd) noexcept
{
	if (fd_ >= 0)
		::close(fd_);
	fd_ = fd;
}

UniqueFd UniqueFd::open(const std::string &path, int flags, int mode)
{
	int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
	if (fd < 0)
		throw SysError("open " + path);
	return UniqueFd(fd);
}

Mapping Mapping::anonymous(std::size_t len)
{
	void *p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		throw SysError("mmap " + std::to_string(len) + " bytes");
	return Mapping(p, len);
}

Mapping Mapping::anonymous_aligned(std::size_t len, std::size_t align)
{
	std::size_t total = len + align;
	void *p = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		throw SysError("mmap " + std::to_string(len) + " bytes");
	auto base = reinterpret_cast<std::uintptr_t>(p);
	std::uintptr_t aligned = (base + align - 1) & ~(align - 1);
	if (aligned > base)
		::munmap(p, aligned - base);
	if (std::size_t tail = base + total - (aligned + len))
		::munmap(reinterpret_cast<void *>(aligned + len), tail);
	return Mapping(reinterpret_cast<void *>(aligned), len);
}

void Mapping::reset() noexcept
{
	if (addr_)
		::munmap(addr_, len_);
	addr_ = nullptr;
	len_ = 0;
}

namespace {

// The rest of `fd` appended to `out`; false on a read error (errno set).
bool read_all(int fd, std::string &out)
{
	char buf[65536];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0;
		out.append(buf, static_cast<std::size_t>(n));
	}
}

} // namespace

std::string read_file(const std::string &path)
{
	UniqueFd fd = UniqueFd::open(path, O_RDONLY);
	std::string out;
	if (!read_all(fd.get(), out))
		throw SysError("read " + path);
	return out;
}

std::optional<std::string> try_read_file(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	std::string out;
	if (!fd || !read_all(fd.get(), out))
		return std::nullopt;
	return out;
}

void write_file_atomic(const std::string &path, const std::string &data)
{
	namespace fs = std::filesystem;
	fs::path target(path);
	fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
	std::string tmpl = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
	int raw = ::mkostemp(tmpl.data(), O_CLOEXEC);
	if (raw < 0)
		throw SysError("create temporary file for " + path);
	UniqueFd fd(raw);
	try {
		const char *p = data.data();
		std::size_t left = data.size();
		while (left > 0) {
			ssize_t n = ::write(fd.get(), p, left);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				throw SysError("write " + tmpl);
			}
			p += n;
			left -= static_cast<std::size_t>(n);
		}
		if (::fchmod(fd.get(), 0644) < 0)
			throw SysError("chmod " + tmpl);
		if (::fsync(fd.get()) < 0)
			throw SysError("fsync " + tmpl);
		fd.reset();
		if (::rename(tmpl.c_str(), path.c_str()) < 0)
			throw SysError("rename " + tmpl + " to " + path);
	} catch (...) {
		::unlink(tmpl.c_str());
		throw;
	}
}

} // namespace cowscope
