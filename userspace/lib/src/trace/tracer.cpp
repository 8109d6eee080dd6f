// cowtrace_core: the Tracer, a session and its maps watcher (trace.hpp).
#include "cowscope/trace/trace.hpp"

#include "attribution.hpp"
#include "fold.hpp"
#include "sampler.hpp"
#include "session.hpp"
#include "symbols.hpp"
#include "watcher.hpp"

namespace cowtrace {

struct Tracer::Impl {
	Session session;
	std::unique_ptr<Watcher> watcher;	// --by-mapping, --sites
	std::unique_ptr<Sampler> sampler;	// --unwind; stops before the watcher
	Symbolizer sym;		// shared by the folding and the attribution
	std::unique_ptr<Folder> folder;	// not with long_running: --serve untracks
	explicit Impl(const Options &opts) : session(opts) {}
};

Tracer::Tracer(const Options &opts) : impl_(std::make_unique<Impl>(opts))
{
	if (opts.by_mapping || opts.sites)
		impl_->watcher = std::make_unique<Watcher>(impl_->session);
	if (opts.sites && opts.unwind_period)
		impl_->sampler = std::make_unique<Sampler>(impl_->session, *impl_->watcher);
	if (!opts.long_running)
		impl_->folder = std::make_unique<Folder>(impl_->session, impl_->watcher.get(), impl_->sampler.get(),
							 impl_->sym, opts.fold_batch);
}

Tracer::~Tracer() = default;	// the watcher stops before the session goes

void Tracer::track(pid_t tgid, pid_t ppid, const std::string &comm)
{
	impl_->session.track(tgid, ppid, comm);
	if (impl_->watcher)
		impl_->watcher->remember(tgid);
}

std::vector<ProcStats> Tracer::snapshot() const { return impl_->session.snapshot(); }
std::optional<ProcStats> Tracer::stats(pid_t tgid) const { return impl_->session.stats(tgid); }
const Plan &Tracer::plan() const { return impl_->session.plan(); }
std::uint64_t Tracer::dropped() const { return impl_->session.dropped(); }
bool Tracer::untrack(pid_t tgid) { return impl_->session.untrack(tgid); }
std::size_t Tracer::recycle() { return impl_->session.recycle(); }
Tracer::Usage Tracer::usage() const { return impl_->session.usage(); }
std::uint64_t Tracer::python_processes() const
{
	return impl_->sampler ? impl_->sampler->stats().py_processes : 0;
}
bool Tracer::wait_python_processes(std::chrono::milliseconds timeout) const
{
	return impl_->sampler && impl_->sampler->wait_python(timeout);
}
std::vector<ProgStats> Tracer::prog_stats() const { return impl_->session.prog_stats(); }

std::vector<ProcStats> Tracer::snapshot_batch(Usage *usage) const
{
	return impl_->session.snapshot_batch(usage);
}

std::pair<std::uint64_t, std::uint64_t> Tracer::run_stats() const
{
	std::uint64_t ns = 0, cnt = 0;
	for (const ProgStats &p : prog_stats()) {
		ns += p.run_time_ns;
		cnt += p.run_cnt;
	}
	return {ns, cnt};
}

Attribution Tracer::attribution() const
{
	static const Attribution none;
	if (impl_->sampler)
		impl_->sampler->drain();
	Attribution a = attribute(impl_->session, impl_->watcher ? impl_->watcher->memory() : MemoryMap{}, impl_->sym,
				  impl_->sampler.get(), impl_->folder ? impl_->folder->attribution() : none);
	if (impl_->sampler)
		a.unwinding = impl_->sampler->unwinding();
	return a;
}

std::size_t Tracer::fold_exited(bool force)
{
	return impl_->folder ? impl_->folder->fold(force) : 0;
}

Folding Tracer::folding() const
{
	return impl_->folder ? impl_->folder->folding() : Folding{};
}

void Tracer::refresh_memory()
{
	if (impl_->watcher)
		impl_->watcher->refresh();
}

} // namespace cowtrace
