// cowtrace_core: --unwind's consumer (sampler.hpp).
#include "sampler.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "methods.hpp"
#include "session.hpp"
#include "watcher.hpp"

namespace cowtrace {

Sampler::Sampler(const Session &s, const Watcher &w) : session_(s), watcher_(w)
{
	wake_ = cowscope::UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!wake_)
		throw cowscope::SysError("failed to create the unwinder's eventfd");
	rb_ = ring_buffer__new(bpf_map__fd(s.skel()->maps.samples), on_record, this, nullptr);
	if (!rb_)
		throw cowscope::Error(
			fmt::format("failed to open the BPF ring buffer of stack samples: {}", errstr(errno)));
	thread_ = std::thread([this] { run(); });
}

Sampler::~Sampler()
{
	stop_ = true;
	std::uint64_t one = 1;
	(void)!write(wake_.get(), &one, sizeof one);	// out of its poll now
	thread_.join();
	ring_buffer__free(rb_);
}

void Sampler::run()
{
	while (!stop_) {
		pollfd fds[2] = {{ring_buffer__epoll_fd(rb_), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
		// 10 ms: the BPF side wakes this thread only once a quarter of
		// the ring is full (BPF_RB_NO_WAKEUP otherwise)
		poll(fds, 2, 10);
		drain();
	}
}

void Sampler::drain()
{
	std::lock_guard<std::mutex> g(mu_);
	ring_buffer__consume(rb_);
}

// Called by ring_buffer__consume(), under mu_.
int Sampler::on_record(void *ctx, void *data, std::size_t size)
{
	auto *self = static_cast<Sampler *>(ctx);
	std::uint32_t type = 0;
	if (size >= sizeof type)
		std::memcpy(&type, data, sizeof type);
	if (type == COWTRACE_SAMPLE_STACK)
		self->on_sample(data, size);
	else if (type == COWTRACE_SAMPLE_KIND)
		self->on_kind(data, size);
	return 0;
}

void Sampler::on_sample(const void *data, std::size_t size)
{
	if (size < sizeof(cow_sample))
		return;
	const auto *s = static_cast<const cow_sample *>(data);
	std::size_t len = std::min<std::size_t>(s->stack_len, size - sizeof(cow_sample));
	stats_.samples++;
	auto t0 = std::chrono::steady_clock::now();
	auto mem = memory_of(session_, static_cast<pid_t>(s->tgid),
			     [this](pid_t p) { return watcher_.find(p); });
	Unwound u;
	if (mem) {
		StackSample smp;
		smp.regs = from_pt_regs({reinterpret_cast<const std::uint8_t *>(s->regs), sizeof s->regs});
		smp.stack_addr = s->stack_addr;
		smp.stack = {s->stack, len};
		u = unwinder_.unwind(*mem, smp, COWTRACE_STACK_DEPTH);
	} else {
		stats_.no_maps++;
		UserRegs r = from_pt_regs({reinterpret_cast<const std::uint8_t *>(s->regs), sizeof s->regs});
		u.frames.push_back({r.r[UserRegs::rip], FrameSource::regs});
		u.stop = Stop::no_module;
		u.why = "no maps of the process to unwind by (it exited before they were read)";
	}
	stats_.unwind_ns += static_cast<std::uint64_t>(
		std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());

	Key key{static_cast<pid_t>(s->tgid), s->stackid};
	auto &list = chains_[key];
	auto same = [&](const Chain &c) { return c.unwound.frames == u.frames && c.unwound.stop == u.stop; };
	auto it = std::find_if(list.begin(), list.end(), same);
	if (it == list.end()) {
		if (list.size() >= max_chains_per_site) {
			stats_.chains_dropped++;
			pending_.erase(s->tid);
			return;
		}
		list.push_back({std::move(u), {}});
		it = list.end() - 1;
	}
	it->n.unclassified++;	// until its kind comes
	pending_[s->tid] = {key, static_cast<std::size_t>(it - list.begin())};
}

void Sampler::on_kind(const void *data, std::size_t size)
{
	if (size < sizeof(cow_sample_kind))
		return;
	const auto *k = static_cast<const cow_sample_kind *>(data);
	auto p = pending_.find(k->tid);
	auto c = p == pending_.end() ? chains_.end() : chains_.find(p->second.key);
	if (c == chains_.end() || p->second.chain >= c->second.size()) {
		stats_.kinds_orphaned++;
		return;
	}
	ChainCounts &n = c->second[p->second.chain].n;
	if (k->kind == COWTRACE_KIND_COPY_WAS_ZERO) {
		if (n.copies) {
			n.copies--;
			n.zero_fills++;
		}
		return;
	}
	if (n.unclassified)
		n.unclassified--;
	if (k->kind == COWTRACE_KIND_COPY)
		n.copies++;
	else if (k->kind == COWTRACE_KIND_REUSE)
		n.reuses++;
	else
		n.zero_fills++;
}

std::vector<Chain> Sampler::chains(pid_t tgid, std::int32_t stackid, bool erase)
{
	std::lock_guard<std::mutex> g(mu_);
	auto it = chains_.find({tgid, stackid});
	if (it == chains_.end())
		return {};
	if (!erase)
		return it->second;
	std::vector<Chain> out = std::move(it->second);
	chains_.erase(it);
	std::erase_if(pending_, [&](const auto &kv) { return kv.second.key == Key{tgid, stackid}; });
	return out;
}

Sampler::Stats Sampler::stats() const
{
	std::lock_guard<std::mutex> g(mu_);
	return stats_;
}

Unwinding Sampler::unwinding() const
{
	const Options &o = session_.options();
	const auto *bss = session_.skel()->bss;
	Stats st = stats();
	return {.period = o.unwind_period,
		.stack_bytes = o.unwind_bytes,
		.samples = st.samples,
		.lost = __atomic_load_n(&bss->unwind_lost, __ATOMIC_RELAXED),
		.no_stack = __atomic_load_n(&bss->unwind_noread, __ATOMIC_RELAXED),
		.no_maps = st.no_maps,
		.chains_dropped = st.chains_dropped,
		.unwind_ms = static_cast<double>(st.unwind_ns) / 1e6};
}

} // namespace cowtrace
