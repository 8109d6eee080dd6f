// vm-bench: reading cowscope's binary view of a populated 256 MiB heap
// against reading /proc/self/pagemap for the same range, in the same run;
// and the text view's (ptes) pages per second.
//   view_vs_pagemap_ratio=<x>   (target <= 2.0)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include <cowscope_uapi.h>

#include "cowscope/error.hpp"
#include "cowscope/fd.hpp"
#include "cowscope/view.hpp"

using namespace cowscope;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0)
{
	return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Read [off, off + len) of path with preads of `chunk` bytes; seconds.
double timed_read(const std::string &path, off_t off, size_t len, size_t chunk)
{
	UniqueFd fd = UniqueFd::open(path, O_RDONLY);
	std::vector<char> buf(chunk);
	auto t0 = Clock::now();
	size_t done = 0;
	while (done < len) {
		size_t want = std::min(chunk, len - done);
		ssize_t n = pread(fd.get(), buf.data(), want,
				  off + static_cast<off_t>(done));
		if (n <= 0)
			throw SysError("pread " + path);
		done += static_cast<size_t>(n);
	}
	return seconds_since(t0);
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v[v.size() / 2];
}

} // namespace

int main()
{
	try {
		view::require_module();
		const size_t len = 256u << 20, page = 4096, pages = len / page;
		Mapping m = Mapping::anonymous(len);
		madvise(m.data(), len, MADV_NOHUGEPAGE);
		std::memset(m.data(), 1, len);
		const auto start = reinterpret_cast<std::uintptr_t>(m.data());
		const pid_t self = getpid();
		view::track(self);
		const std::string ours = view::dir(self) + "/pagemap";
		const int reps = 7;
		std::vector<double> tv, tp;
		for (int i = 0; i < reps; i++) {
			// same number of pages per read call for both: 512
			tv.push_back(timed_read(ours,
					static_cast<off_t>(start / page * COWSCOPE_REC_SIZE),
					pages * COWSCOPE_REC_SIZE, 512 * COWSCOPE_REC_SIZE));
			tp.push_back(timed_read("/proc/self/pagemap",
					static_cast<off_t>(start / page * 8), pages * 8,
					512 * 8));
		}
		const double v = median(tv), p = median(tp);
		std::printf("heap_mib=256 pages=%zu\n", pages);
		std::printf("view_read_s=%.6f pagemap_read_s=%.6f\n", v, p);
		std::printf("view_pages_per_s=%.0f pagemap_pages_per_s=%.0f\n",
			    pages / v, pages / p);
		std::printf("view_vs_pagemap_ratio=%.3f\n", v / p);

		view::set_range(self, start, start + len);
		std::vector<double> tt;
		size_t lines = 0;
		for (int i = 0; i < 3; i++) {
			auto t0 = Clock::now();
			std::string text = read_file(view::dir(self) + "/ptes");
			tt.push_back(seconds_since(t0));
			lines = static_cast<size_t>(
				std::count(text.begin(), text.end(), '\n'));
		}
		view::set_range(self, 0, ~0ULL);
		const double t = median(tt);
		std::printf("ptes_lines=%zu ptes_read_s=%.6f\n", lines, t);
		std::printf("text_view_pages_per_s=%.0f\n", (lines - 1) / t);
		view::untrack(self);
		return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "vmbench_view: %s\n", e.what());
		return 1;
	}
}
