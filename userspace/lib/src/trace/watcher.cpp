// cowtrace_core: the maps watcher (watcher.hpp).
#include "watcher.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <sched.h>

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "methods.hpp"
#include "session.hpp"

namespace cowtrace {

Watcher::Watcher(const Session &s) : session_(s)
{
	wake_ = cowscope::UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!wake_)
		throw cowscope::SysError("failed to create the watcher's eventfd");
	events_ = ring_buffer__new(bpf_map__fd(s.skel()->maps.events), on_event, this, nullptr);
	if (!events_)
		throw cowscope::Error(fmt::format("failed to open the BPF ring buffer of fork/exec events: {}",
						  errstr(errno)));
	thread_ = std::thread([this] { run(); });
	// Ahead of the traced programs when woken by an event, so that it reads
	// a short-lived one's maps before it exits. It sleeps between rounds
	// (10 ms at most) and reads little in each. Best effort: needs
	// CAP_SYS_NICE (cowtrace runs as root); without it, the default policy.
	sched_param sp{};
	sp.sched_priority = 1;
	pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &sp);
}

Watcher::~Watcher()
{
	{
		std::lock_guard<std::mutex> g(mu_);
		stop_ = true;
	}
	std::uint64_t one = 1;
	(void)!write(wake_.get(), &one, sizeof one);	// out of its poll now
	thread_.join();
	ring_buffer__free(events_);
}

int Watcher::on_event(void *ctx, void *data, std::size_t size)
{
	if (size >= sizeof(cow_event)) {
		auto *w = static_cast<Watcher *>(ctx);
		const auto *e = static_cast<const cow_event *>(data);
		w->due_now_.insert(static_cast<pid_t>(e->tgid));
	}
	return 0;
}

bool Watcher::remember(pid_t pid)
{
	// the exec count first: an exec between it and the read makes the
	// maps look stale (read again), never a stale read look fresh
	auto info = session_.info(pid);
	std::shared_ptr<const ProcMemory> old;
	{
		std::lock_guard<std::mutex> g(mu_);
		if (auto it = memory_.find(pid); it != memory_.end())
			old = it->second;
	}
	auto mem = read_memory(pid, info ? info->execs : 0, old.get());
	if (!mem)
		return false;
	std::lock_guard<std::mutex> g(mu_);
	memory_[pid] = std::move(mem);
	return true;
}

void Watcher::refresh()
{
	for (const ProcStats &p : session_.snapshot())
		if (!p.exited)
			remember(p.pid);
}

MemoryMap Watcher::memory() const
{
	std::lock_guard<std::mutex> g(mu_);
	return memory_;
}

std::shared_ptr<const ProcMemory> Watcher::find(pid_t pid) const
{
	std::lock_guard<std::mutex> g(mu_);
	auto it = memory_.find(pid);
	return it != memory_.end() ? it->second : nullptr;
}

std::shared_ptr<const ProcMemory> memory_of(
	const Session &s, pid_t pid, const std::function<std::shared_ptr<const ProcMemory>(pid_t)> &find)
{
	for (int hops = 0; hops < 64 && pid > 0; hops++) {
		auto info = s.info(pid);
		// maps read before its last exec are another program's
		if (auto mem = find(pid); mem && (!info || mem->execs == info->execs))
			return mem;
		if (!info || info->execs != 0)
			break;
		pid = static_cast<pid_t>(info->ppid);
	}
	return nullptr;
}

void Watcher::forget(pid_t pid)
{
	std::lock_guard<std::mutex> g(mu_);
	memory_.erase(pid);
}

void Watcher::round()
{
	auto now = Clock::now();
	for (auto it = follow_ups_.begin(); it != follow_ups_.end() && it->first <= now;) {
		due_now_.insert(it->second);
		it = follow_ups_.erase(it);
	}
	// every tracked process's facts in a few batch reads (a lookup per
	// process each 10 ms cost more than the rest of cowtrace)
	const auto infos = session_.infos();
	// the thread's own records of processes no longer tracked (folded)
	std::erase_if(refreshed_, [&](const auto &e) { return !infos.count(e.first); });
	std::erase_if(snapshots_, [&](const auto &e) { return !infos.count(e.first); });
	for (const auto &[pid, facts] : infos) {
		bool known;
		{
			std::lock_guard<std::mutex> g(mu_);
			known = memory_.count(pid) > 0;
		}
		const cow_info *info = &facts;
		auto &[rounds, execs] = refreshed_[pid];
		bool exec_seen = info && info->execs != execs;
		bool event = due_now_.erase(pid) > 0;
		// soon after it appears or execs (ld.so maps the libraries
		// then), less often later: after 20, 40, 80, 160, 320, 500 ms
		int due = 2 << std::min(snapshots_[pid], 5);
		if (known && ++rounds < std::min(due, 50) && !exec_seen && !event)
			continue;
		// exited: nothing left to read (an unknown one too: retried
		// every round, it cost a churn of short-lived children more than
		// the children themselves)
		if (info && info->exited)
			continue;
		if (exec_seen || !known) {	// the libraries come after the exec
			follow_ups_.emplace(now + std::chrono::milliseconds(1), pid);
			follow_ups_.emplace(now + std::chrono::milliseconds(4), pid);
		}
		rounds = 0;
		snapshots_[pid] = exec_seen ? 0 : snapshots_[pid] + 1;
		if (info)
			execs = info->execs;
		remember(pid);
	}
	due_now_.clear();	// untracked meanwhile
}

void Watcher::run()
{
	for (;;) {
		{
			std::lock_guard<std::mutex> g(mu_);
			if (stop_)
				return;
		}
		round();
		// until the next round, a follow-up, an event (read at once) or
		// the destructor's wake-up
		auto wait = std::chrono::milliseconds(session_.options().watch_round_ms);
		if (!follow_ups_.empty())
			wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(
						      std::max(follow_ups_.begin()->first - Clock::now(), Clock::duration{})));
		pollfd fds[2] = {{ring_buffer__epoll_fd(events_), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
		poll(fds, 2, static_cast<int>(wait.count()));
		ring_buffer__consume(events_);
	}
}

} // namespace cowtrace
