// The project's version, for every program's --version.
#pragma once

#include <string>
#include <string_view>

namespace cowscope {

// The release, from the top-level VERSION file (e.g. "0.2.0").
const char *version();

// What `PROGRAM --version` prints: "cowbench 0.2.0 (commit abc123)".
// help2man reads this line for the man pages' headers.
std::string version_line(std::string_view program);

} // namespace cowscope
