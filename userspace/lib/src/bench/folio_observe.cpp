// Large-folio observation (see cowscope/bench/folio.hpp): which folio backs
// each page of a mapping (pagemap's PFNs and /proc/kpageflags' compound
// head and tail bits), and the share of each size.
#include "cowscope/bench/folio.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "thp_sysfs.hpp"

namespace cowscope {

using thp_sysfs::kKiB;

namespace {

constexpr int kKpfCompoundHead = 15;
constexpr int kKpfCompoundTail = 16;

} // namespace

std::vector<PageFolio> page_folios(const void *addr, std::size_t len, pid_t pid)
{
	const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	const std::size_t n = (len + ps - 1) / ps;
	std::vector<PageFolio> out(n);
	if (!n)
		return out;
	std::vector<PagemapEntry> pm(n);
	Pagemap(pid ? pid : ::getpid()).read(reinterpret_cast<std::uintptr_t>(addr), n, pm.data());
	const KpageFile kpf("/proc/kpageflags");
	std::vector<std::uint64_t> buf(512);
	auto flags_at = [&](std::uint64_t pfn, std::size_t count) {
		buf.assign(count, 0);
		buf.resize(kpf.read(pfn, count, buf.data()));
	};
	auto is = [](std::uint64_t f, int bit) { return (f >> bit & 1) != 0; };
	std::uint64_t cur_head = 0, cur_pages = 0; // the last folio found
	for (std::size_t i = 0; i < n; i++) {
		if (!pm[i].present())
			continue;
		std::uint64_t pfn = pm[i].pfn();
		if (pfn == 0)
			throw Error("/proc/PID/pagemap hides PFNs: observing folios needs root (CAP_SYS_ADMIN)");
		if (!(cur_pages && pfn >= cur_head && pfn < cur_head + cur_pages)) {
			flags_at(pfn, 1);
			std::uint64_t f = buf.empty() ? 0 : buf[0];
			if (!is(f, kKpfCompoundHead) && !is(f, kKpfCompoundTail)) {
				cur_head = pfn;
				cur_pages = 1;
			} else {
				std::uint64_t head = pfn;
				// A tail: walk back to the head (at most 2^18 pages: 1G).
				while (is(f, kKpfCompoundTail) && head > 0 && pfn - head < (1u << 18)) {
					std::uint64_t chunk = std::min<std::uint64_t>(512, head);
					flags_at(head - chunk, chunk);
					std::size_t j = buf.size();
					while (j > 0 && is(buf[j - 1], kKpfCompoundTail))
						j--;
					head -= buf.size() - j;
					if (j > 0) { // buf[j-1] is the head
						head -= 1;
						f = buf[j - 1];
						break;
					}
					if (buf.size() < chunk)
						break;
				}
				std::uint64_t pages = 1;
				for (;;) {
					flags_at(head + pages, 512);
					std::size_t k = 0;
					while (k < buf.size() && is(buf[k], kKpfCompoundTail))
						k++;
					pages += k;
					if (k < 512 || pages >= (1u << 18))
						break;
				}
				cur_head = head;
				cur_pages = pages;
			}
		}
		out[i] = {pfn, cur_pages * ps, cur_head};
	}
	return out;
}

double FolioObservation::fraction(std::uint64_t bytes) const
{
	if (source == "none" || pages == 0)
		return NAN;
	auto it = pages_by_size.find(bytes);
	return static_cast<double>(it == pages_by_size.end() ? 0 : it->second) / static_cast<double>(pages);
}

nlohmann::json FolioObservation::to_json() const
{
	nlohmann::json by = nlohmann::json::object();
	for (const auto &[b, p] : pages_by_size)
		by[b ? folio_name(b) : "unknown"] = p;
	return {{"source", source}, {"note", note},
		{"pages", pages},   {"pages_present", pages_present},
		{"pages_by_folio_size", by}, {"large_folios_partly_mapped", folios_partial}};
}

std::string FolioObservation::summary() const
{
	if (source == "none")
		return "unknown (" + note + ")";
	std::vector<std::pair<std::uint64_t, std::uint64_t>> v(pages_by_size.begin(), pages_by_size.end());
	std::sort(v.begin(), v.end(), [](auto &a, auto &b) { return a.second > b.second; });
	std::string s;
	for (const auto &[b, p] : v)
		s += fmt::format("{}{} {:.1f}%", s.empty() ? "" : ", ", b ? folio_name(b) : "unknown",
				 pages ? 100.0 * static_cast<double>(p) / static_cast<double>(pages) : 0.0);
	return s + " of " + std::to_string(pages) + " pages (" + source + ")";
}

FolioObservation observe_folios(const void *addr, std::size_t len, pid_t pid)
{
	FolioObservation o;
	const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	o.pages = (len + ps - 1) / ps;
	try {
		auto pf = page_folios(addr, len, pid);
		o.source = "kpageflags";
		std::map<std::uint64_t, std::uint64_t> mapped_of_head; // head -> pages mapped here
		std::map<std::uint64_t, std::uint64_t> size_of_head;
		for (const auto &p : pf) {
			if (!p.folio_bytes)
				continue;
			o.pages_present++;
			o.pages_by_size[p.folio_bytes]++;
			if (p.folio_bytes > ps) {
				mapped_of_head[p.head_pfn]++;
				size_of_head[p.head_pfn] = p.folio_bytes / ps;
			}
		}
		for (const auto &[h, m] : mapped_of_head)
			if (m != size_of_head[h])
				o.folios_partial++;
		return o;
	} catch (const Error &e) {
		o.note = e.what();
	}
	// Without PFNs: smaps' AnonHugePages of the mapping (PMD-mapped THP only).
	try {
		auto start = reinterpret_cast<std::uintptr_t>(addr);
		for (const proc::SmapsEntry &e : proc::read_smaps(pid ? pid : ::getpid())) {
			if (!e.vma.contains(start))
				continue;
			std::uint64_t rss = e.field("Rss"), huge = e.field("AnonHugePages");
			o.source = "smaps";
			o.note += "; smaps sees only PMD-mapped 2M folios: the rest is \"unknown\"";
			o.pages_present = rss * kKiB / ps;
			if (huge)
				o.pages_by_size[2048 * kKiB] = huge * kKiB / ps;
			if (rss > huge)
				o.pages_by_size[0] = (rss - huge) * kKiB / ps;
			break;
		}
	} catch (const std::exception &) {
	}
	return o;
}

} // namespace cowscope