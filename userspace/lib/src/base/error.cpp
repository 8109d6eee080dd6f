#include "cowscope/base/error.hpp"

#include <cstring>

namespace cowscope {

SysError::SysError(const std::string &what, int err)
	: Error(what + ": " + std::strerror(err)), err_(err)
{
}

} // namespace cowscope
