// Errors carry what failed and why: "open /proc/123/smaps_rollup: No such
// file or directory". Programs print e.what() after their own name.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace cowscope {

// A failure the user can act on (bad input, a missing facility).
class Error : public std::runtime_error {
public:
	explicit Error(const std::string &what) : std::runtime_error(what) {}
};

// A command-line usage error: programs exit 2 for these.
class UsageError : public Error {
public:
	explicit UsageError(const std::string &what) : Error(what) {}
};

// A failed system call: "<what>: <strerror(err)>", errno kept.
class SysError : public Error {
public:
	SysError(const std::string &what, int err);
	explicit SysError(const std::string &what) : SysError(what, errno) {}
	int code() const noexcept { return err_; }

private:
	int err_;
};

} // namespace cowscope
