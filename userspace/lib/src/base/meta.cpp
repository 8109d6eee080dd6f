#include "cowscope/base/meta.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <sstream>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

#include "cowscope_commit.h"

#ifndef COWSCOPE_COMMIT
#define COWSCOPE_COMMIT "unknown"
#endif

namespace cowscope {

const char *build_commit()
{
	return COWSCOPE_COMMIT;
}

std::string thp_mode()
{
	std::string s;
	try {
		s = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
	} catch (const Error &) {
		return "unavailable";
	}
	auto a = s.find('['), b = s.find(']');
	if (a == std::string::npos || b == std::string::npos || b < a)
		return "unknown";
	return s.substr(a + 1, b - a - 1);
}

std::uint64_t mem_available()
{
	std::istringstream in(read_file("/proc/meminfo"));
	std::string key;
	std::uint64_t kb;
	std::string unit;
	while (in >> key >> kb) {
		std::getline(in, unit);
		if (key == "MemAvailable:")
			return kb * 1024;
	}
	throw Error("/proc/meminfo: no MemAvailable line");
}

static std::string cpu_model(bool &hypervisor)
{
	hypervisor = false;
	std::string model = "unknown";
	try {
		std::istringstream in(read_file("/proc/cpuinfo"));
		std::string line;
		while (std::getline(in, line)) {
			if (model == "unknown" && line.rfind("model name", 0) == 0) {
				auto c = line.find(':');
				if (c != std::string::npos)
					model = line.substr(line.find_first_not_of(" \t", c + 1));
			}
			if (line.rfind("flags", 0) == 0 && line.find(" hypervisor") != std::string::npos)
				hypervisor = true;
		}
	} catch (const Error &) {
	}
	return model;
}

nlohmann::json machine_metadata()
{
	struct utsname u {};
	::uname(&u);
	bool hv;
	std::string model = cpu_model(hv);
	auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
	char ts[32];
	struct tm tm {};
	::gmtime_r(&now, &tm);
	std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return {
		{"kernel", u.release},
		{"machine", u.machine},
		{"hostname", u.nodename},
		{"cpu_model", model},
		{"cores", ::sysconf(_SC_NPROCESSORS_ONLN)},
		{"page_size", ::sysconf(_SC_PAGESIZE)},
		{"thp", thp_mode()},
		{"mem_total_kb", ::sysconf(_SC_PHYS_PAGES) * (::sysconf(_SC_PAGESIZE) / 1024)},
		{"virtualized", hv},
		{"commit", build_commit()},
		{"version", COWSCOPE_VERSION},
		{"timestamp", ts},
	};
}

} // namespace cowscope
