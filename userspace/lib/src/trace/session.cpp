// cowtrace_core: the session (session.hpp): load, attach, read the counters.
#include "session.hpp"

#include <unistd.h>

#include <bpf/libbpf.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "methods.hpp"

using cowscope::Error;

namespace cowtrace {

static_assert(kUnwindStackMax == COWTRACE_UNWIND_STACK_MAX && kUnwindPage == COWTRACE_UNWIND_PAGE);

namespace {

// Open the object for plan `p` and set its read-only globals and map sizes.
cowtrace_bpf *open_for(const Options &opts, const Plan &p, std::int64_t vme_delta)
{
	cowtrace_bpf *s = cowtrace_bpf::open(nullptr);
	if (!s)
		throw Error(fmt::format("failed to open BPF object: {}", errstr(errno)));
	s->rodata->follow_children = opts.follow_children;
	s->rodata->track_all = opts.track_all;
	s->rodata->by_comm = !opts.match_comm.empty();
	s->rodata->long_running = opts.long_running;
	std::strncpy(const_cast<char *>(s->rodata->match_comm), opts.match_comm.c_str(),
		     sizeof(s->rodata->match_comm) - 1);
	s->rodata->reuse_hook = p.reuse_hook;
	s->rodata->vme_rq_to_events = vme_delta;
	s->rodata->by_mapping = opts.by_mapping;
	s->rodata->sites = opts.sites;
	s->rodata->stack_hash_bits = std::min(opts.stack_hash_bits, 31U);
	static_assert(COWTRACE_PEND_SLOTS == 1U << 14);
	s->rodata->pend_slot_bits = std::min(opts.pend_slot_bits, 14U);
	if (opts.sites && opts.unwind_period) {
		if (opts.unwind_bytes == 0 || opts.unwind_bytes > kUnwindStackMax || opts.unwind_bytes % kUnwindPage)
			throw Error(fmt::format("unwind stack bytes: {} is not whole pages from {} to {}",
						opts.unwind_bytes, kUnwindPage, kUnwindStackMax));
		s->rodata->unwind_period = opts.unwind_period;
		s->rodata->unwind_pages = opts.unwind_bytes / kUnwindPage;
		// Room for about 480 samples: 4 MiB for 8 KiB of stack. Not more:
		// the ring is written where it was written least recently, so a
		// larger one is colder, and each sample paid for that (on the dev
		// host, BPF ns per copied page, medians of 3, 8 KiB: 16 MiB made
		// 1 in 1 cost 1937, 1 in 16 984; 4 MiB 1587, 773; 2 MiB 1496, 768
		// but lost samples at 1 in 1). The loader is woken once a quarter
		// of it is full; losses are counted.
		bpf_map__set_max_entries(s->maps.samples, std::bit_ceil(512U * opts.unwind_bytes));
	} else {
		bpf_map__set_max_entries(s->maps.samples, static_cast<__u32>(sysconf(_SC_PAGESIZE)));
		bpf_map__set_max_entries(s->maps.pyprocs, 1);
	}
	// maps of a feature that is off: one entry (a page for the ring buffer)
	if (!opts.by_mapping)
		bpf_map__set_max_entries(s->maps.vmas, 1);
	if (!opts.sites) {
		bpf_map__set_max_entries(s->maps.site_counts, 1);
		bpf_map__set_max_entries(s->maps.stacks, 1);
	}
	if (!opts.by_mapping && !opts.sites)
		bpf_map__set_max_entries(s->maps.events, static_cast<__u32>(sysconf(_SC_PAGESIZE)));
	select_programs(s, p);
	return s;
}

} // namespace

Session::Session(const Options &opts) : opts_(opts)
{
	set_verbose(opts.verbose);
	std::int64_t vme_delta = 0;
	std::vector<Plan> plans = probe_plans(opts.method, vme_delta);
	std::string errors;
	for (const Plan &p : plans) {
		cowtrace_bpf *s = open_for(opts, p, vme_delta);
		int err = cowtrace_bpf::load(s);
		const char *verb = "load";
		if (!err) {
			err = cowtrace_bpf::attach(s);
			verb = "attach";
		}
		if (!err) {
			skel_ = s;
			plan_ = p;
			break;
		}
		std::string e = fmt::format("failed to {} BPF programs ({}): {}", verb, method_name(p.method),
					    errstr(err));
		vlog(e);
		errors += (errors.empty() ? "" : "; ") + e;
		cowtrace_bpf::destroy(s);
	}
	if (!skel_)
		throw Error(errors);
	ncpus_ = libbpf_num_possible_cpus();
	if (ncpus_ <= 0) {
		cowtrace_bpf::destroy(skel_);
		throw Error(fmt::format("failed to count CPUs: {}", errstr(ncpus_)));
	}
	vlog("method " + plan_.describe());
}

Session::~Session()
{
	cowtrace_bpf::destroy(skel_);	// detaches links, frees maps
}

void Session::track(pid_t tgid, pid_t ppid, const std::string &comm)
{
	__u32 key = static_cast<__u32>(tgid);
	cow_info info{};
	info.ppid = static_cast<__u32>(ppid);
	std::strncpy(info.comm, comm.c_str(), sizeof(info.comm) - 1);
	// the BPF fork hook takes slots from the same queue and counter
	__u32 slot;
	if (bpf_map_lookup_and_delete_elem(bpf_map__fd(skel_->maps.free_slots), nullptr, &slot) != 0)
		slot = __atomic_fetch_add(&skel_->bss->next_slot, 1, __ATOMIC_SEQ_CST);
	if (slot >= COWTRACE_MAX_PROCS)
		throw Error(fmt::format("failed to track pid {}: all {} process slots are taken", tgid,
					COWTRACE_MAX_PROCS));
	std::vector<cow_counts> zero(static_cast<std::size_t>(ncpus_));
	if (bpf_map_update_elem(bpf_map__fd(skel_->maps.infos), &key, &info, BPF_ANY) ||
	    bpf_map_update_elem(bpf_map__fd(skel_->maps.pcounts), &slot, zero.data(), BPF_ANY) ||
	    bpf_map_update_elem(bpf_map__fd(skel_->maps.procs), &key, &slot, BPF_ANY))
		throw Error(fmt::format("failed to track pid {}: {}", tgid, errstr(errno)));
}

// Zero a pcounts slot on every CPU and queue it for reuse.
bool Session::free_slot(__u32 slot) const
{
	std::vector<cow_counts> zero(static_cast<std::size_t>(ncpus_));
	return bpf_map_update_elem(bpf_map__fd(skel_->maps.pcounts), &slot, zero.data(), BPF_ANY) == 0 &&
	       bpf_map_update_elem(bpf_map__fd(skel_->maps.free_slots), nullptr, &slot, BPF_ANY) == 0;
}

bool Session::untrack(pid_t tgid)
{
	__u32 key = static_cast<__u32>(tgid), slot;
	int procs = bpf_map__fd(skel_->maps.procs);
	if (bpf_map_lookup_elem(procs, &key, &slot) != 0)
		return false;
	bpf_map_delete_elem(procs, &key);
	bpf_map_delete_elem(bpf_map__fd(skel_->maps.infos), &key);
	// the process has exited: nothing counts into its slot any more
	free_slot(slot);
	return true;
}

std::size_t Session::recycle()
{
	std::size_t n = 0;
	__u32 slot;
	while (bpf_map_lookup_and_delete_elem(bpf_map__fd(skel_->maps.stale_slots), nullptr, &slot) == 0)
		n += free_slot(slot);
	return n;
}

std::optional<cow_info> Session::info(pid_t tgid) const
{
	cow_info info{};
	__u32 k = static_cast<__u32>(tgid);
	if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.infos), &k, &info) != 0)
		return std::nullopt;
	return info;
}

ProcStats Session::sum(pid_t tgid, const cow_counts *per_cpu, const cow_info *info) const
{
	ProcStats s;
	s.pid = tgid;
	for (int cpu = 0; cpu < ncpus_; cpu++) {
		cow_counts c;
		std::memcpy(&c, per_cpu + cpu, sizeof(c));	// batch buffers are not aligned for it
		s.wp_faults += c.wp_faults;
		s.cow_copies += c.cow_copies;
		s.cow_reuses += c.cow_reuses;
		s.unclassified += c.unclassified;
		s.zero_fills += c.zero_fills;
		s.thp_wp_faults += c.thp_wp_faults;
		s.thp_fallbacks += c.thp_fallbacks;
		for (int i = 0; i < kHistSlots; i++)
			s.latency_log2_ns[static_cast<std::size_t>(i)] += c.hist[i];
	}
	// The tracepoint method does not count reuses. A copy counted on one
	// CPU may be read before the fault's count on another; never report a
	// negative reuse.
	if (plan_.reuses_derived()) {
		std::uint64_t told = s.cow_copies + s.zero_fills;
		s.cow_reuses = s.wp_faults > told ? s.wp_faults - told : 0;
	}
	if (info) {
		s.ppid = static_cast<pid_t>(info->ppid);
		s.exited = info->exited != 0;
		s.execs = info->execs;
		s.comm.assign(info->comm, strnlen(info->comm, sizeof(info->comm)));
	}
	return s;
}

std::optional<ProcStats> Session::stats(pid_t tgid) const
{
	__u32 key = static_cast<__u32>(tgid), slot;
	std::vector<cow_counts> per_cpu(static_cast<std::size_t>(ncpus_));
	if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.procs), &key, &slot) ||
	    bpf_map_lookup_elem(bpf_map__fd(skel_->maps.pcounts), &slot, per_cpu.data()))
		return std::nullopt;
	auto facts = info(tgid);
	return sum(tgid, per_cpu.data(), facts ? &*facts : nullptr);
}

std::vector<ProcStats> Session::snapshot() const
{
	std::vector<ProcStats> out;
	for (__u32 key : map_keys<__u32>(bpf_map__fd(skel_->maps.procs)))
		if (auto s = stats(static_cast<pid_t>(key)))
			out.push_back(*s);
	std::sort(out.begin(), out.end(), [](const ProcStats &a, const ProcStats &b) { return a.pid < b.pid; });
	return out;
}

std::uint64_t Session::dropped() const
{
	return __atomic_load_n(&skel_->bss->dropped, __ATOMIC_RELAXED);
}

std::uint64_t Session::slots_used() const
{
	return std::min<std::uint64_t>(__atomic_load_n(&skel_->bss->next_slot, __ATOMIC_RELAXED), COWTRACE_MAX_PROCS);
}

MapUsage Session::usage() const
{
	MapUsage u;
	u.procs = map_keys<__u32>(bpf_map__fd(skel_->maps.procs)).size();
	u.infos = map_keys<__u32>(bpf_map__fd(skel_->maps.infos)).size();
	u.slots_used = slots_used();
	// a queue has no keys to walk: count by peeking is not possible, so
	// the free slots are what was handed out less what is in use
	u.free_slots = u.slots_used > u.procs ? u.slots_used - u.procs : 0;
	return u;
}

namespace {

// Every (key, value) of a map, by bpf_map_lookup_batch; false if the kernel
// cannot (ENOTSUPP/EINVAL before 5.6). `max` bounds the elements read.
template <class K>
bool lookup_all(int fd, std::size_t value_size, std::size_t max, std::vector<K> &keys, std::vector<char> &values)
{
	// in chunks: the kernel allocates a buffer for the count asked
	constexpr std::size_t kChunk = 1024;
	keys.clear();
	values.clear();
	std::size_t got = 0;
	__u32 token = 0;
	bool first = true;
	while (got < max) {
		__u32 count = static_cast<__u32>(std::min(max - got, kChunk));
		keys.resize(got + count);
		values.resize((got + count) * value_size);
		__u32 next = 0;
		int err = bpf_map_lookup_batch(fd, first ? nullptr : &token, &next, keys.data() + got,
					       values.data() + got * value_size, &count, nullptr);
		if (err && errno != ENOENT) {
			if (first && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP || errno == 524))
				return false;
			throw Error(fmt::format("failed to read a BPF map in batches: {}", errstr(errno)));
		}
		got += count;
		if (err)	// ENOENT: that was the last batch
			break;
		token = next;
		first = false;
	}
	keys.resize(got);
	values.resize(got * value_size);
	return true;
}

} // namespace

std::map<pid_t, cow_info> Session::infos() const
{
	std::map<pid_t, cow_info> out;
	std::vector<__u32> keys;
	std::vector<char> values;
	int fd = bpf_map__fd(skel_->maps.infos);
	if (lookup_all(fd, sizeof(cow_info), COWTRACE_MAX_PROCS, keys, values)) {
		for (std::size_t i = 0; i < keys.size(); i++)
			std::memcpy(&out[static_cast<pid_t>(keys[i])], values.data() + i * sizeof(cow_info),
				    sizeof(cow_info));
		return out;
	}
	for (__u32 k : map_keys<__u32>(fd))
		if (auto i = info(static_cast<pid_t>(k)))
			out[static_cast<pid_t>(k)] = *i;
	return out;
}

std::vector<ProcStats> Session::snapshot_batch(MapUsage *usage) const
{
	std::uint64_t used = slots_used();
	std::vector<__u32> tgids, infokeys, slots;
	std::vector<char> slotv, infov, countv;
	std::size_t percpu = sizeof(cow_counts) * static_cast<std::size_t>(ncpus_);
	if (!lookup_all(bpf_map__fd(skel_->maps.procs), sizeof(__u32), COWTRACE_MAX_PROCS, tgids, slotv) ||
	    !lookup_all(bpf_map__fd(skel_->maps.infos), sizeof(cow_info), COWTRACE_MAX_PROCS, infokeys, infov) ||
	    !lookup_all(bpf_map__fd(skel_->maps.pcounts), percpu, used, slots, countv)) {
		if (usage)
			*usage = this->usage();
		return snapshot();
	}
	std::map<__u32, cow_info> info;
	for (std::size_t i = 0; i < infokeys.size(); i++)
		std::memcpy(&info[infokeys[i]], infov.data() + i * sizeof(cow_info), sizeof(cow_info));
	std::vector<ProcStats> out;
	out.reserve(tgids.size());
	for (std::size_t i = 0; i < tgids.size(); i++) {
		__u32 slot;
		std::memcpy(&slot, slotv.data() + i * sizeof(__u32), sizeof(slot));
		if (slot >= slots.size())
			continue;	// taken after `used` was read: next time
		auto it = info.find(tgids[i]);
		const auto *per_cpu = reinterpret_cast<const cow_counts *>(countv.data() + std::size_t{slot} * percpu);
		out.push_back(sum(static_cast<pid_t>(tgids[i]), per_cpu, it != info.end() ? &it->second : nullptr));
	}
	if (usage) {
		usage->procs = tgids.size();
		usage->infos = infokeys.size();
		usage->slots_used = used;
		usage->free_slots = used > tgids.size() ? used - tgids.size() : 0;
	}
	return out;
}

std::vector<ProgStats> Session::prog_stats() const
{
	std::vector<ProgStats> out;
	bpf_program *prog;
	bpf_object__for_each_program(prog, skel_->obj)
	{
		int fd = bpf_program__fd(prog);
		if (fd < 0)
			continue;
		bpf_prog_info info{};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			out.push_back({bpf_program__name(prog), info.run_time_ns, info.run_cnt, info.recursion_misses});
	}
	return out;
}

} // namespace cowtrace
