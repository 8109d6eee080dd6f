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
	python_of(static_cast<pid_t>(s->tgid));
	std::vector<PyFrame> py = python_frames(static_cast<pid_t>(s->tgid), s);
	stats_.unwind_ns += static_cast<std::uint64_t>(
		std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());

	Key key{static_cast<pid_t>(s->tgid), s->stackid};
	auto &list = chains_[key];
	// Python frames by line, not by instruction: one chain per line
	auto same_py = [](const std::vector<PyFrame> &a, const std::vector<PyFrame> &b) {
		return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const PyFrame &x, const PyFrame &y) {
			return x.code == y.code && x.line == y.line && x.entry == y.entry && x.function == y.function;
		});
	};
	auto same = [&](const Chain &c) {
		return c.unwound.frames == u.frames && c.unwound.stop == u.stop && same_py(c.py, py);
	};
	auto it = std::find_if(list.begin(), list.end(), same);
	if (it == list.end()) {
		if (list.size() >= max_chains_per_site) {
			stats_.chains_dropped++;
			pending_.erase(s->tid);
			return;
		}
		list.push_back({std::move(u), std::move(py), {}});
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

// Under mu_, from on_sample().
void Sampler::python_of(pid_t tgid)
{
	auto info = session_.info(tgid);
	const std::uint32_t execs = info ? info->execs : 0;
	if (auto it = py_checked_.find(tgid); it != py_checked_.end() && it->second == execs)
		return;
	int fd = bpf_map__fd(session_.skel()->maps.pyprocs);
	__u32 key = static_cast<__u32>(tgid);
	py_target t{};
	if (bpf_map_lookup_elem(fd, &key, &t) == 0)
		return;	// its parent's, copied at fork
	// looked at once its maps are read (the watcher's, a few ms after exec)
	auto mem = watcher_.find(tgid);
	if (!mem || mem->execs != execs)
		return;
	if (py_checked_.size() > (1U << 16))
		py_checked_.clear();	// bounded under churn; a second look is cheap
	py_checked_[tgid] = execs;
	if (mem->maps.find("/python3.11") == std::string::npos && mem->maps.find("/libpython3.11") == std::string::npos)
		return;
	try {
		PyLayout l = find_python(tgid);
		const PyOffsets &o = l.off;
		t = {.interp_head = l.runtime() + o.runtime_interp_head,
		     .interp_threads_head = o.interp_threads_head,
		     .tstate_next = o.tstate_next,
		     .tstate_native_thread_id = o.tstate_native_thread_id,
		     .tstate_cframe = o.tstate_cframe,
		     .cframe_current_frame = o.cframe_current_frame,
		     .frame_code = o.frame_code,
		     .frame_previous = o.frame_previous,
		     .frame_prev_instr = o.frame_prev_instr,
		     .frame_is_entry = o.frame_is_entry};
		if (bpf_map_update_elem(fd, &key, &t, BPF_ANY) == 0) {
			stats_.py_processes++;
			py_registered_.notify_all();
		}
		if (py_readers_.size() >= 64)
			py_readers_.clear();
		py_readers_.try_emplace(tgid, tgid, std::move(l));
	} catch (const cowscope::Error &e) {
		if (py_errors_.size() < 16)
			py_errors_.emplace(std::to_string(tgid), e.what());
	}
}

// Under mu_: the sample's Python frames, resolved through the reader of
// the process or of its nearest ancestor that has one (a forked family
// shares its code objects: the process's own memory first, the ancestor's
// when the process has gone).
std::vector<PyFrame> Sampler::python_frames(pid_t tgid, const void *sample)
{
	const auto *s = static_cast<const cow_sample *>(sample);
	std::vector<PyFrame> out;
	const std::uint32_t n = std::min<std::uint32_t>(s->py_n, COWTRACE_PY_FRAMES);
	if (!n)
		return out;
	pid_t owner = tgid;
	auto r = py_readers_.find(owner);
	for (int hops = 0; r == py_readers_.end() && hops < 64; hops++) {
		auto info = session_.info(owner);
		if (!info || static_cast<pid_t>(info->ppid) == owner)
			break;
		owner = static_cast<pid_t>(info->ppid);
		r = py_readers_.find(owner);
	}
	for (std::uint32_t i = 0; i < n; i++) {
		PyFrame f;
		bool ok = false;
		for (pid_t from : {tgid, owner}) {
			if (r == py_readers_.end() || ok)
				break;
			try {
				r->second.set_pid(from);
				f = r->second.resolve(s->py[i].code, s->py[i].instr);
				ok = true;
			} catch (const cowscope::Error &) {
			}
		}
		if (!ok) {
			stats_.py_unresolved++;
			f = PyFrame{.function = "", .file = "", .line = 0, .code = s->py[i].code, .instr = s->py[i].instr};
		}
		f.entry = (s->py_entry >> i) & 1;
		stats_.py_frames += ok;
		out.push_back(std::move(f));
	}
	if (r != py_readers_.end())
		r->second.set_pid(owner);
	return out;
}

std::string Sampler::py_note() const
{
	std::lock_guard<std::mutex> g(mu_);
	return py_errors_.empty() ? "" : "pid " + py_errors_.begin()->first + ": " + py_errors_.begin()->second;
}

bool Sampler::wait_python(std::chrono::milliseconds timeout) const
{
	std::unique_lock<std::mutex> g(mu_);
	return py_registered_.wait_for(g, timeout, [this] { return stats_.py_processes > 0; });
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
		.short_stack = __atomic_load_n(&bss->unwind_short, __ATOMIC_RELAXED),
		.no_maps = st.no_maps,
		.chains_dropped = st.chains_dropped,
		.unwind_ms = static_cast<double>(st.unwind_ns) / 1e6,
		.py_processes = st.py_processes,
		.py_frames = st.py_frames,
		.py_unresolved = st.py_unresolved,
		.py_note = py_note()};
}

} // namespace cowtrace
