// What the forecast's soft-dirty window costs its target (in the VM lab:
// make vm-bench, or scripts/vm --kernel K bench --filter 'forecast*'): a
// writer child stores to random pages of a 256 MiB heap as fast as it can;
// its stores per second are measured in 2 s phases: untouched, after the
// kernel's own soft-dirty reset alone ("4" to clear_refs, no sampling), and
// during `measure_soft_dirty` (the same reset plus pagemap sampling every
// 0.1 s). Three rounds; name=value lines with medians and min..max.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cowscope/forecast.hpp"
#include "cowscope/stats.hpp"

using namespace cowscope;

int main()
{
	std::string why;
	if (!forecast::soft_dirty_supported(&why)) {
		std::printf("forecast_bench=skipped (%s)\n", why.c_str());
		return 0;
	}
	const std::size_t pages = 65536; // 256 MiB
	auto *counter = static_cast<std::atomic<std::uint64_t> *>(
		::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
	new (counter) std::atomic<std::uint64_t>(0);
	pid_t pid = ::fork();
	if (pid == 0) {
		char *h = static_cast<char *>(
			::mmap(nullptr, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
		::madvise(h, pages * 4096, MADV_NOHUGEPAGE);
		for (std::size_t i = 0; i < pages; i++)
			h[i * 4096] = 1;
		std::minstd_rand rng(1);
		counter->store(1);
		for (;;) {
			for (int k = 0; k < 1024; k++)
				h[(rng() % pages) * 4096]++;
			counter->fetch_add(1024, std::memory_order_relaxed);
		}
	}
	while (counter->load() == 0)
		::usleep(10000);
	auto rate = [&](const std::function<void()> &during) {
		std::uint64_t c0 = counter->load();
		auto t0 = std::chrono::steady_clock::now();
		during();
		std::uint64_t c1 = counter->load();
		double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
		return static_cast<double>(c1 - c0) / s;
	};
	std::vector<double> base, reset, window, ratio_reset, ratio_window;
	std::string clear = "/proc/" + std::to_string(pid) + "/clear_refs";
	for (int round = 0; round < 3; round++) {
		double b = rate([] { std::this_thread::sleep_for(std::chrono::seconds(2)); });
		double r = rate([&] {
			int fd = ::open(clear.c_str(), O_WRONLY);
			(void)!::write(fd, "4", 1);
			::close(fd);
			std::this_thread::sleep_for(std::chrono::seconds(2));
		});
		double w = rate([&] { forecast::measure_soft_dirty(pid, 2.0, 0.1); });
		base.push_back(b);
		reset.push_back(r);
		window.push_back(w);
		ratio_reset.push_back(r / b);
		ratio_window.push_back(w / b);
	}
	::kill(pid, SIGKILL);
	::waitpid(pid, nullptr, 0);
	auto pr = [](const char *name, std::vector<double> v, const char *unit) {
		Summary s = summarize(std::move(v));
		std::printf("%s=%.3g (min %.3g max %.3g, n=%zu)%s\n", name, s.median, s.min, s.max, s.n, unit);
	};
	pr("forecast_writer_stores_per_s_untouched", base, "");
	pr("forecast_writer_stores_per_s_clear_refs_only", reset, "");
	pr("forecast_writer_stores_per_s_window", window, " (clear_refs + pagemap every 0.1 s)");
	pr("forecast_window_vs_untouched", ratio_window, "");
	pr("forecast_clear_refs_only_vs_untouched", ratio_reset, "");
	Summary a = summarize(ratio_window), b = summarize(ratio_reset);
	std::printf("forecast_window_vs_kernel_soft_dirty=%.3f target>=0.9 %s\n", a.median / b.median,
		    a.median / b.median >= 0.9 ? "OK" : "MISSED");
	return 0;
}
