// vm-bench: reading cowscope's binary view of a populated 256 MiB heap
// against reading /proc/self/pagemap for the same range, in the same run;
// against what one read of the view replaces: pagemap, then kpagecount
// and kpageflags for every present PFN (one pread per run of contiguous
// PFNs, the best case for them); and the text view's (ptes) pages per
// second. Medians of 7 alternating repetitions, with min-max.
//   view_vs_pagemap_ratio=<x>       (target <= 1.16, aim 1.0)
//   view_vs_three_files_ratio=<x>
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

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/view/view.hpp"

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

double lo(const std::vector<double> &v) { return *std::min_element(v.begin(), v.end()); }
double hi(const std::vector<double> &v) { return *std::max_element(v.begin(), v.end()); }

void pread_all(int fd, void *buf, size_t len, off_t off, const char *what)
{
	if (pread(fd, buf, len, off) != static_cast<ssize_t>(len))
		throw SysError(std::string("pread ") + what);
}

// pagemap in 512-entry reads, and for each read's present PFNs the
// kpagecount and kpageflags words, one pread per contiguous PFN run.
double timed_three_files(std::uintptr_t start, size_t pages)
{
	UniqueFd pm = UniqueFd::open("/proc/self/pagemap", O_RDONLY);
	UniqueFd kc = UniqueFd::open("/proc/kpagecount", O_RDONLY);
	UniqueFd kf = UniqueFd::open("/proc/kpageflags", O_RDONLY);
	std::vector<std::uint64_t> ent(512), cnt(512), flg(512);
	auto t0 = Clock::now();
	for (size_t done = 0; done < pages; done += 512) {
		const size_t n = std::min<size_t>(512, pages - done);
		pread_all(pm.get(), ent.data(), n * 8,
			  static_cast<off_t>((start / 4096 + done) * 8), "/proc/self/pagemap");
		for (size_t i = 0; i < n;) {
			if (!(ent[i] >> 63 & 1)) {
				i++;
				continue;
			}
			const std::uint64_t pfn0 = ent[i] & ((1ull << 55) - 1);
			size_t j = i + 1;
			while (j < n && (ent[j] >> 63 & 1) &&
			       (ent[j] & ((1ull << 55) - 1)) == pfn0 + (j - i))
				j++;
			pread_all(kc.get(), &cnt[i], (j - i) * 8, static_cast<off_t>(pfn0 * 8),
				  "/proc/kpagecount");
			pread_all(kf.get(), &flg[i], (j - i) * 8, static_cast<off_t>(pfn0 * 8),
				  "/proc/kpageflags");
			i = j;
		}
	}
	return seconds_since(t0);
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
		std::vector<double> tv, tp, t3, rp, r3;
		for (int i = 0; i < reps; i++) {
			// same number of pages per read call for both: 512
			tv.push_back(timed_read(ours,
					static_cast<off_t>(start / page * COWSCOPE_REC_SIZE),
					pages * COWSCOPE_REC_SIZE, 512 * COWSCOPE_REC_SIZE));
			tp.push_back(timed_read("/proc/self/pagemap",
					static_cast<off_t>(start / page * 8), pages * 8,
					512 * 8));
			t3.push_back(timed_three_files(start, pages));
			rp.push_back(tv.back() / tp.back());
			r3.push_back(tv.back() / t3.back());
		}
		const double v = median(tv), p = median(tp), p3 = median(t3);
		std::printf("heap_mib=256 pages=%zu record_bytes=%u (with folio_order) reps=%d\n",
			    pages, COWSCOPE_REC_SIZE, reps);
		std::printf("view_read_s=%.6f [%.6f-%.6f] pagemap_read_s=%.6f [%.6f-%.6f]\n", v,
			    lo(tv), hi(tv), p, lo(tp), hi(tp));
		std::printf("three_files_read_s=%.6f [%.6f-%.6f] (pagemap+kpagecount+kpageflags)\n",
			    p3, lo(t3), hi(t3));
		std::printf("view_pages_per_s=%.0f pagemap_pages_per_s=%.0f three_files_pages_per_s=%.0f\n",
			    pages / v, pages / p, pages / p3);
		std::printf("view_vs_pagemap_ratio=%.3f (per-rep ratios %.3f-%.3f)\n", v / p, lo(rp),
			    hi(rp));
		std::printf("view_vs_three_files_ratio=%.3f (per-rep ratios %.3f-%.3f)\n", v / p3,
			    lo(r3), hi(r3));

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
