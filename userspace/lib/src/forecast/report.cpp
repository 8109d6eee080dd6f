// The forecast: the calibrated model applied to a live process's shape and
// copy side, and its text and JSON forms.
#include <unistd.h>

#include <cmath>
#include <fmt/format.h>

#include "cowscope/forecast/forecast.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope::forecast {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

Interval scale(const Interval &iv, double f)
{
	return {iv.point * f, iv.lo * f, iv.hi * f};
}

std::string fmt_iv(const Interval &iv, const char *unit, int prec = 1)
{
	return fmt::format("{:.{}f} {} [{:.{}f}, {:.{}f}]", iv.point, prec, unit, iv.lo, prec, iv.hi, prec);
}

} // namespace

double copyable_pages(const Shape &s)
{
	return static_cast<double>(s.ptes_cow_writable) + static_cast<double>(s.huge_pmds) * 512.0;
}

Forecast make_forecast(const Calibration &cal, const Shape &shape, const CopySide &copy)
{
	Forecast f;
	f.shape = shape;
	f.calibration_settle_s = cal.settle_s;
	const double all = static_cast<double>(shape.ptes_cow_writable + shape.ptes_other);
	ForkInputs base;
	base.huge_pmds = static_cast<double>(shape.huge_pmds);
	base.vmas = static_cast<double>(shape.vma_count);
	base.large_folio_ptes = shape.large_folios_known ? static_cast<double>(shape.large_folio_ptes) : 0;
	// Scatter: measured from the PFNs (root); hidden, the middle, with an
	// interval covering in-order to fully scattered pages.
	f.scatter_known = std::isfinite(shape.scatter());
	base.scatter = f.scatter_known ? shape.scatter() : 0.5;
	const bool scatter_matters = cal.fit.used[kWritableScattered] || cal.fit.used[kWpScattered];
	auto predict = [&](ForkInputs in) {
		Interval iv = predict_interval(cal.fit, in);
		if (f.scatter_known || !scatter_matters)
			return iv;
		in.scatter = 0;
		Interval a = predict_interval(cal.fit, in);
		in.scatter = 1;
		Interval b = predict_interval(cal.fit, in);
		iv.lo = std::min(a.lo, b.lo);
		iv.hi = std::max(a.hi, b.hi);
		return iv;
	};
	f.writable_case = base;
	f.writable_case.writable_ptes = static_cast<double>(shape.ptes_cow_writable);
	f.writable_case.wp_ptes = static_cast<double>(shape.ptes_other);
	f.wp_case = base;
	f.wp_case.wp_ptes = all;
	f.fork_writable_ms = scale(predict(f.writable_case), 1e-3);
	f.fork_wp_ms = scale(predict(f.wp_case), 1e-3);
	f.state_known = shape.state_source == "module";
	if (f.state_known) {
		f.inputs = base;
		f.inputs.writable_ptes = std::min<double>(static_cast<double>(shape.module_writable), all);
		f.inputs.wp_ptes = all - f.inputs.writable_ptes;
		f.fork_ms = scale(predict(f.inputs), 1e-3);
	} else {
		f.inputs = f.writable_case;
		f.fork_ms.point = f.fork_writable_ms.point;
		f.fork_ms.lo = std::min(f.fork_writable_ms.lo, f.fork_wp_ms.lo);
		f.fork_ms.hi = std::max(f.fork_writable_ms.hi, f.fork_wp_ms.hi);
	}
	auto row = f.inputs.row();
	for (std::size_t i = 0; i < kTerms; i++)
		if (cal.fit.used[i] && row[i] != 0)
			f.contributions_ms.emplace_back(term_names()[i], cal.fit.coef[i] * row[i] / 1e3);
	if (cal.fit.used[kHugePmds]) {
		// The private writable PTEs as PMD-mapped THPs instead.
		ForkInputs t = f.inputs;
		t.huge_pmds += t.writable_ptes / 512.0;
		t.writable_ptes = 0;
		f.thp_what_if_ms = cal.fit.predict(t) / 1e3;
	}
	f.copy = copy;
	const double page_mib = 4096.0 / kMiB;
	f.cow_mib = {copy.pages_point * page_mib, copy.pages_lo * page_mib, copy.pages_hi * page_mib};
	// The child's page tables: one PTE table per 2 MiB block with PTEs, and
	// the PMD tables above them (one per GiB touched, at least one).
	double pt_mib = static_cast<double>(shape.pte_tables) * page_mib +
			std::ceil(static_cast<double>(shape.pte_tables + shape.huge_pmds) / 512.0) * page_mib;
	f.peak_extra_mib = {f.cow_mib.point + pt_mib, f.cow_mib.lo + pt_mib, f.cow_mib.hi + pt_mib};
	if (std::isfinite(cal.copy.ns_per_4k_copy))
		f.copy_cpu_ms = copy.pages_point * cal.copy.ns_per_4k_copy / 1e6;
	return f;
}

nlohmann::json Forecast::to_json() const
{
	nlohmann::json contrib = nlohmann::json::object();
	for (const auto &[k, v] : contributions_ms)
		contrib[k] = v;
	return {
		{"pid", shape.pid},
		{"calibration", calibration_path},
		{"calibration_settle_s", calibration_settle_s},
		{"shape", shape.to_json()},
		{"pte_state", state_known ? "module" : "unknown: range between writable and write-protected"},
		{"scatter", scatter_known ? "measured from the PFNs" : "unknown (PFNs hidden): 0.5, interval 0..1"},
		{"fork_stall_ms", fork_ms.to_json()},
		{"fork_stall_writable_ms", fork_writable_ms.to_json()},
		{"fork_stall_write_protected_ms", fork_wp_ms.to_json()},
		{"inputs", inputs.to_json()},
		{"contributions_ms", contrib},
		{"thp_what_if_ms", std::isfinite(thp_what_if_ms) ? nlohmann::json(thp_what_if_ms) : nlohmann::json()},
		{"copy", copy.to_json()},
		{"cow_memory_mib", cow_mib.to_json()},
		{"peak_extra_memory_mib", peak_extra_mib.to_json()},
		{"copy_cpu_ms", std::isfinite(copy_cpu_ms) ? nlohmann::json(copy_cpu_ms) : nlohmann::json()},
	};
}

std::string Forecast::to_text() const
{
	const Shape &s = shape;
	std::string out;
	if (!calibration_path.empty())
		out += fmt::format("calibration: {} ({})\n", calibration_path,
				   calibration_settle_s > 0
					   ? fmt::format("forks timed after {:g} s idle", calibration_settle_s)
					   : "forks timed right after the heap was touched: the forks of memory that sat "
					     "idle can run up to 2x above it; `cowbench calibrate` again to time them idle");
	out += fmt::format(
		"pid {}: {} VMAs; {} present PTEs fork copies ({} in private writable mappings, {}), {} huge PMDs, "
		"{} PTE tables; read in {:.1f} ms without stopping it\n",
		s.pid, s.vma_count, s.ptes_cow_writable + s.ptes_other, s.ptes_cow_writable,
		format_size((s.ptes_cow_writable + s.ptes_other) * 4096), s.huge_pmds, s.pte_tables, s.read_ms);
	if (scatter_known)
		out += fmt::format("pages physically scattered: {:.0f}% of virtual neighbours are more than {} frames "
				   "apart (fork touches each page's struct page: scattered ones miss the cache)\n",
				   s.scatter() * 100, kNearPfns);
	else
		out += "pages' physical scatter: unknown (the kernel hides PFNs from non-root readers): the "
		       "forecast assumes half, its interval covers none to all\n";
	if (state_known)
		out += fmt::format("PTE state (cowscope module): {} writable PTEs, {} write-protected (cow-pending {}); "
				   "large-folio PTEs {}\n",
				   static_cast<std::uint64_t>(inputs.writable_ptes),
				   static_cast<std::uint64_t>(inputs.wp_ptes), s.module_cow, s.large_folio_ptes);
	else
		out += "PTE state: unknown without the cowscope module (pagemap has no write bit): the stall is the "
		       "range between writable PTEs (the first fork after writes) and write-protected ones (a fork "
		       "right after another)\n";
	if (state_known)
		out += fmt::format("fork stall: {}\n", fmt_iv(fork_ms, "ms", 2));
	else
		out += fmt::format("fork stall: {:.2f} .. {:.2f} ms  (writable: {}; write-protected: {})\n", fork_ms.lo,
				   fork_ms.hi, fmt_iv(fork_writable_ms, "ms", 2), fmt_iv(fork_wp_ms, "ms", 2));
	out += fmt::format("what drives it{}:", state_known ? "" : " (writable case)");
	for (const auto &[k, v] : contributions_ms)
		out += fmt::format(" {} {:.2f} ms;", k, v);
	out += "\n";
	if (std::isfinite(thp_what_if_ms))
		out += fmt::format("lever: the private writable memory in 2 MiB THPs instead: {:.2f} ms\n", thp_what_if_ms);
	if (copy.source == "none") {
		out += fmt::format("copies: not forecast (--window SECONDS measures the write rate by soft-dirty; "
				   "--from-trace FILE uses a cowtrace record); peak extra memory at least the child's "
				   "page tables, {:.1f} MiB\n",
				   peak_extra_mib.lo);
		return out;
	}
	out += fmt::format("copies over a {:.3g} s snapshot ({}): {:.0f} pages [{:.0f}, {:.0f}]\n", copy.snapshot_s,
			   copy.source, copy.pages_point, copy.pages_lo, copy.pages_hi);
	out += fmt::format("  {}\n", copy.note);
	if (copy.curve.size() > 2) {
		out += "  distinct pages written against time:";
		std::size_t step = std::max<std::size_t>(1, copy.curve.size() / 6);
		for (std::size_t i = 0; i < copy.curve.size(); i += step)
			out += fmt::format(" {:.2f}s:{}", copy.curve[i].t_s, copy.curve[i].pages);
		if ((copy.curve.size() - 1) % step)
			out += fmt::format(" {:.2f}s:{}", copy.curve.back().t_s, copy.curve.back().pages);
		out += "\n";
	}
	out += fmt::format("COW memory: {}\n", fmt_iv(cow_mib, "MiB"));
	out += fmt::format("peak extra memory (copies + the child's page tables): {}\n", fmt_iv(peak_extra_mib, "MiB"));
	if (std::isfinite(copy_cpu_ms))
		out += fmt::format("copy faults' CPU time at the calibrated cost: {:.1f} ms\n", copy_cpu_ms);
	return out;
}

Forecast forecast_pid(const ForecastRequest &req, const std::function<void(double)> &window_progress)
{
	if (req.window_s > 0 && !req.from_trace.empty())
		throw UsageError("--window and --from-trace: give one source of the copy side, not both");
	if (!req.from_trace.empty() && req.trace_seconds.size() != 1 && req.trace_seconds.size() != req.from_trace.size())
		throw UsageError(fmt::format("--from-trace: needs --trace-seconds SECONDS, the length of each snapshot in "
					     "the record: once for every record, or once per record ({} records, {} "
					     "--trace-seconds)",
					     req.from_trace.size(), req.trace_seconds.size()));
	if (req.snapshot_s > 0 && !(req.window_s > 0) && req.from_trace.empty())
		throw UsageError("--snapshot: needs a copy side to project (--window SECONDS or --from-trace FILE)");
	std::string path = req.calibration.empty() ? default_calibration_path() : req.calibration;
	Calibration cal = load_calibration(path);
	Shape shape = read_shape(req.pid, req.use_module);
	CopySide copy;
	if (req.window_s > 0) {
		copy = measure_soft_dirty(req.pid, req.window_s, 0, window_progress);
	} else if (!req.from_trace.empty()) {
		std::vector<CopySide> parts;
		for (std::size_t i = 0; i < req.from_trace.size(); i++) {
			const std::string &file = req.from_trace[i];
			nlohmann::json rec;
			try {
				rec = nlohmann::json::parse(read_file(file));
			} catch (const nlohmann::json::exception &e) {
				throw Error(fmt::format("--from-trace {}: not JSON ({})", file, e.what()));
			}
			double secs = req.trace_seconds.size() == 1 ? req.trace_seconds[0] : req.trace_seconds[i];
			parts.push_back(copies_from_trace(rec, req.pid, secs, "--from-trace " + file));
		}
		copy = combine_records(parts);
	}
	if (req.snapshot_s > 0)
		project_copies(copy, req.snapshot_s, copyable_pages(shape));
	else if (!copy.per_snapshot.empty())
		project_copies(copy, copy.window_s, copyable_pages(shape)); // to their median length, capped at N
	Forecast f = make_forecast(cal, shape, copy);
	f.calibration_path = path;
	return f;
}

} // namespace cowscope::forecast
