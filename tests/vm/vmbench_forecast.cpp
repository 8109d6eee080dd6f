// What the forecast's soft-dirty window costs its target (in the VM lab:
// make vm-bench, or scripts/vm --kernel K bench --filter 'forecast*'): a
// writer child stores to random pages of a 256 MiB heap as fast as it can;
// its stores per second are measured untouched (2 s), and from 0.1 s to 2 s
// after a soft-dirty reset: the kernel's own ("4" to clear_refs, nothing
// else) and `measure_soft_dirty`'s (the same reset plus pagemap sampling
// every 0.1 s). The writer's first store to each page after a reset takes a
// soft-dirty fault either way. Three rounds; name=value lines with medians
// and min..max.
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

#include "cowscope/forecast/forecast.hpp"
#include "cowscope/base/stats.hpp"

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
	std::vector<double> base, reset, window, ratio_reset, ratio_window, window_slow;
	std::string clear = "/proc/" + std::to_string(pid) + "/clear_refs";
	for (int round = 0; round < 3; round++) {
		double b = rate([] { std::this_thread::sleep_for(std::chrono::seconds(2)); });
		// The same stretch of time after the reset in both: from 0.1 s
		// (the window's first sample) to its end, 2 s after the reset.
		double r = 0, w = 0;
		{
			int fd = ::open(clear.c_str(), O_WRONLY);
			(void)!::write(fd, "4", 1);
			::close(fd);
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
			r = rate([] { std::this_thread::sleep_for(std::chrono::milliseconds(1900)); });
		}
		auto window_rate = [&](double step) {
			std::uint64_t c0 = 0;
			std::chrono::steady_clock::time_point t0;
			forecast::measure_soft_dirty(pid, 2.0, step, [&](double) {
				if (c0 == 0) {
					c0 = counter->load();
					t0 = std::chrono::steady_clock::now();
				}
			});
			double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
			return static_cast<double>(counter->load() - c0) / sec;
		};
		w = window_rate(0.1);
		window_slow.push_back(window_rate(0.5) / b);
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
	pr("forecast_window_step_0_5s_vs_untouched", window_slow, " (pagemap every 0.5 s; from its first sample)");
	Summary a = summarize(ratio_window), b = summarize(ratio_reset);
	std::printf("forecast_window_vs_kernel_soft_dirty=%.3f target>=0.9 %s\n", a.median / b.median,
		    a.median / b.median >= 0.9 ? "OK" : "MISSED");
	return 0;
}
