// cowbench's forked repetition: cfg.children children over the prepared
// heap, each timed from fork to its first instruction, then the timed
// writes (the children's on their pipes, the parent's here), the eager
// copy of the same pages and the figures derived from them. Parent and
// children synchronise through pipes, waiting in poll(2); every child is
// killed and reaped by its Child's destructor whatever happens; a child
// past the timeout is killed and the repetition reported as "timeout".
#include "runner.hpp"

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/maps.hpp"
#include "child.hpp"

namespace cowscope::bench_run {

namespace {

using namespace fork_child;

// Read one Msg with a deadline. false = timeout.
bool read_msg(int fd, Msg &m, std::int64_t deadline, pid_t pid)
{
	std::size_t got = 0;
	auto *p = reinterpret_cast<char *>(&m);
	while (got < sizeof(m)) {
		if (stop_requested())
			throw Interrupted{};
		std::int64_t left = deadline - now_ns();
		if (left <= 0)
			return false;
		struct pollfd pf = {fd, POLLIN, 0};
		int r = ::poll(&pf, 1, static_cast<int>(std::min<std::int64_t>(left / 1000000 + 1, 1000)));
		if (r < 0 && errno != EINTR)
			throw SysError("poll");
		if (r <= 0)
			continue;
		ssize_t n = ::read(fd, p + got, sizeof(m) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw SysError(fmt::format("read from child {}", pid));
		if (n == 0)
			throw Error(fmt::format("child {} exited before reporting", pid));
		got += static_cast<std::size_t>(n);
	}
	return true;
}

std::uint64_t private_dirty_kb(pid_t pid)
{
	auto m = proc::smaps_rollup(pid);
	auto it = m.find("Private_Dirty");
	return it == m.end() ? 0 : it->second;
}

} // namespace

Runner::Family Runner::fork_children(char val, bool child_writes, Repetition &rep)
{
	const unsigned n = cfg.children;
	Family fam;
	fam.pipes = std::vector<ChildPipes>(n);
	auto &pipes = fam.pipes;
	auto &kids = fam.kids;
	auto &t0s = fam.t0s;
	t0s.resize(n);
	std::vector<int> raw;	// every end, for the children to close the others'
	for (const auto &p : pipes)
		for (const UniqueFd *fd : {&p.result.read_end, &p.result.write_end, &p.go.read_end,
					   &p.go.write_end})
			raw.push_back(fd->get());
	kids.reserve(n);
	const pid_t self = ::getpid();
	for (unsigned i = 0; i < n; i++) {
		ChildCtx c;
		c.heap = heap.data();
		c.psz = psz;
		c.wpages = wpages.data();
		c.nw = wpages.size();
		c.rpages = rpages.data();
		c.nr = rpages.size();
		c.write = child_writes;
		c.hang = cfg.debug_child_hang;
		c.res_fd = pipes[i].result.write_end.get();
		c.go_fd = pipes[i].go.read_end.get();
		c.all_fds = raw.data();
		c.nfds = raw.size();
		c.parent = self;
		c.val = val;
		std::int64_t t0 = now_ns();
		pid_t pid = ::fork();
		std::int64_t t1 = now_ns();
		if (pid == 0)
			child_main(c);
		if (pid < 0)
			throw SysError("fork");
		kids.emplace_back(pid);
		t0s[i] = t0;
		rep.fork_us_children.push_back(static_cast<double>(t1 - t0) / 1e3);
		pipes[i].result.write_end.reset();	// the child's ends
		pipes[i].go.read_end.reset();
	}
	return fam;
}

Repetition Runner::run_fork(unsigned index)
{
	Repetition rep;
	rep.index = index;
	const char val = static_cast<char>(index * 7 + 1);
	prepare(static_cast<char>(val + 1));
	const bool child_writes = cfg.writer != Writer::parent;
	const bool parent_writes = cfg.writer != Writer::child;
	const unsigned n = cfg.children;

	Family fam = fork_children(val, child_writes, rep);
	auto &pipes = fam.pipes;
	auto &kids = fam.kids;
	auto &t0s = fam.t0s;
	const pid_t self = ::getpid();
	rep.fork_us = rep.fork_us_children.front();
	auto timeout = [&](unsigned i, const char *what) {
		rep.status = fmt::format("timeout: child {} did not {} within {} s; killed with SIGKILL and reaped",
					 kids[i].pid(), what, cfg.timeout_s);
		return rep;
	};
	double start_sum = 0;
	for (unsigned i = 0; i < n; i++) {
		Msg m;
		if (!read_msg(pipes[i].result.read_end.get(), m, deadline(), kids[i].pid()))
			return timeout(i, "start");
		start_sum += static_cast<double>(m.start_ns - t0s[i]) / 1e3;
	}
	rep.child_start_us = start_sum / n;
	std::vector<std::uint64_t> pd0(n);
	std::uint64_t ppd0 = 0;
	if (child_writes)
		for (unsigned i = 0; i < n; i++)
			pd0[i] = private_dirty_kb(kids[i].pid());
	if (parent_writes)
		ppd0 = private_dirty_kb(self);
	for (unsigned i = 0; i < n; i++)
		if (!raw_write(pipes[i].go.write_end.get(), "g", 1))
			throw SysError("write to child");
	Writes w;
	if (parent_writes) {
		// this thread's faults: a host such as Python runs others
		Timed t = timed_write(heap.data(), psz, wpages.data(), wpages.size(), rpages.data(),
				      rpages.size(), val, RUSAGE_THREAD);
		w.pw_ns = static_cast<double>(t.write_ns);
		w.pr_ns = static_cast<double>(t.read_ns);
		w.pfaults = static_cast<double>(t.faults);
	}
	for (unsigned i = 0; i < n; i++) {
		Msg m;
		if (!read_msg(pipes[i].result.read_end.get(), m, deadline(), kids[i].pid()))
			return timeout(i, "finish writing");
		w.cw_max = std::max(w.cw_max, static_cast<double>(m.write_ns));
		w.cw_sum += static_cast<double>(m.write_ns);
		w.cr_max = std::max(w.cr_max, static_cast<double>(m.read_ns));
		w.cfaults += static_cast<double>(m.faults);
		if (child_writes)
			w.dirty_kb += static_cast<double>(private_dirty_kb(kids[i].pid())) -
				 static_cast<double>(pd0[i]);
	}
	if (parent_writes)
		w.dirty_kb += static_cast<double>(private_dirty_kb(self)) - static_cast<double>(ppd0);
	for (unsigned i = 0; i < n; i++)
		raw_write(pipes[i].go.write_end.get(), "x", 1);
	for (unsigned i = 0; i < n; i++) {
		int st = 0;
		if (!wait_exit(kids[i], deadline(), st))
			return timeout(i, "exit");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rep.status = fmt::format("error: child exited with status {}",
						 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}

	eager_copy(rep);
	derive(rep, w);
	return rep;
}

void Runner::eager_copy(Repetition &rep)
{
	if (wpages.empty())
		return;
	char *dst = eager.data();
	const char *src = heap.data();
	std::int64_t t0 = now_ns();
	for (std::size_t i = 0; i < wpages.size(); i++)
		std::memcpy(dst + i * psz, src + static_cast<std::size_t>(wpages[i]) * psz, psz);
	std::int64_t t1 = now_ns();
	asm volatile("" ::"r"(dst) : "memory");
	rep.eager_copy_us = static_cast<double>(t1 - t0) / 1e3;
	rep.ns_per_page_copy = static_cast<double>(t1 - t0) / static_cast<double>(wpages.size());
}

void Runner::derive(Repetition &rep, const Writes &w) const
{
	const bool child_writes = cfg.writer != Writer::parent;
	const bool parent_writes = cfg.writer != Writer::child;
	double writers_ns = 0, nwriters = 0, faults = 0;
	if (child_writes) {
		rep.child_write_us = w.cw_max / 1e3;
		writers_ns += w.cw_sum;
		nwriters += cfg.children;
		faults += w.cfaults;
	} else {
		rep.child_write_us = w.pw_ns / 1e3;
	}
	if (parent_writes) {
		writers_ns += w.pw_ns;
		nwriters += 1;
		faults += w.pfaults;
		rep.parent_write_us = w.pw_ns / 1e3;
		rep.parent_cow_faults = w.pfaults;
	}
	if (cfg.read)
		rep.child_read_us = (child_writes ? w.cr_max : w.pr_ns) / 1e3;
	rep.cow_faults = faults;
	rep.cow_private_dirty_kb = w.dirty_kb;
	if (faults > 0)
		rep.ns_per_cow_fault = writers_ns / faults;
	if (std::isfinite(rep.eager_copy_us) && rep.eager_copy_us > 0)
		rep.cow_eager_ratio = writers_ns / nwriters / 1e3 / rep.eager_copy_us;
}

} // namespace cowscope::bench_run
