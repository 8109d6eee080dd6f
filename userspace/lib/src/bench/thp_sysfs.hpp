// The THP controls in sysfs (thp_sysfs_root(): the real tree, or a test's
// fake one), as folio.cpp reads them and folio_guard.cpp changes them.
// Private to bench/.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace cowscope::thp_sysfs {

constexpr std::uint64_t kKiB = 1024;

bool exists(const std::string &p);
// A control's value: "always inherit madvise [never]" -> "never".
std::string control_value(const std::string &path);
void write_control(const std::string &path, const std::string &value);
// Per-size folders: size in bytes -> folder path, for those with `enabled`.
std::map<std::uint64_t, std::string> size_dirs();
// Whether a control value lets a MADV_HUGEPAGE mapping have that size.
bool allows_madvised(const std::string &v, const std::string &top);

} // namespace cowscope::thp_sysfs
