#include "cowscope/base/version.hpp"

#include <fmt/format.h>

#include "cowscope/base/meta.hpp"

#ifndef COWSCOPE_VERSION
#error "COWSCOPE_VERSION must come from the top-level VERSION file (CMakeLists.txt)"
#endif

namespace cowscope {

const char *version()
{
	return COWSCOPE_VERSION;
}

std::string version_line(std::string_view program)
{
	return fmt::format("{} {} (commit {})", program, version(), build_commit());
}

} // namespace cowscope
