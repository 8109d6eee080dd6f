// The copy side combined and projected: several snapshots' records into one
// (their spread a prediction interval), and copies measured over one
// window moved to the snapshot's length (saturating: a page is copied once).
#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/stats.hpp"
#include "cowscope/forecast/forecast.hpp"

namespace cowscope::forecast {

namespace {

// Student's t, 95th percentile, for df = 1..30 (beyond: the normal's).
double t95(std::size_t df)
{
	static const double t[] = {6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
				   1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
				   1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697};
	return df >= 1 && df <= 30 ? t[df - 1] : 1.645;
}

// The snapshots' copies as a sample: the point is their median; the
// interval their range widened to a 90% prediction interval for a next
// snapshot like them (mean +- t * sd * sqrt(1 + 1/n)): the range of n alike
// snapshots alone holds the next one only (n-1)/(n+1) of the time (50% for
// three), and snapshots' write rates vary (Redis under a steady SET load
// here: 19-23 MiB/s).
void spread_of_snapshots(CopySide &c, const std::vector<double> &pts, double lo, double hi, double cap)
{
	Summary s = summarize(pts);
	c.pages_point = s.median;
	c.pages_lo = lo;
	c.pages_hi = hi;
	const std::size_t n = pts.size();
	if (n < 2) {
		c.note += "; one snapshot gives no spread: the interval holds only the projection's uncertainty";
		return;
	}
	const double mean = s.mean;
	double var = 0;
	for (double v : pts)
		var += (v - mean) * (v - mean);
	var /= static_cast<double>(n - 1);
	const double half = t95(n - 1) * std::sqrt(var) * std::sqrt(1.0 + 1.0 / static_cast<double>(n));
	c.pages_lo = std::max(0.0, std::min(c.pages_lo, mean - half));
	c.pages_hi = std::max(c.pages_hi, std::min(mean + half, cap));
	c.note += fmt::format("; interval: a 90% prediction interval for a next snapshot from the {} snapshots' "
			      "spread (Student's t)",
			      n);
}

} // namespace

CopySide combine_records(const std::vector<CopySide> &parts)
{
	if (parts.empty())
		throw Error("no cowtrace record to combine");
	if (parts.size() == 1) {
		CopySide c = parts.front();
		spread_of_snapshots(c, c.per_snapshot, c.pages_lo, c.pages_hi, INFINITY);
		return c;
	}
	CopySide c;
	c.source = "cowtrace record";
	c.note = fmt::format("{} records:", parts.size());
	for (const auto &p : parts) {
		c.per_snapshot.insert(c.per_snapshot.end(), p.per_snapshot.begin(), p.per_snapshot.end());
		c.per_snapshot_s.insert(c.per_snapshot_s.end(), p.per_snapshot_s.begin(), p.per_snapshot_s.end());
		c.note += " [" + p.note + "]";
	}
	c.window_s = c.snapshot_s = summarize(c.per_snapshot_s).median;
	Summary s = summarize(c.per_snapshot);
	spread_of_snapshots(c, c.per_snapshot, s.min, s.max, INFINITY);
	return c;
}

double saturating_copies(double c1, double t1, double T, double pages_total)
{
	if (!(c1 > 0) || !(t1 > 0))
		return 0;
	const double n = std::max(pages_total, c1);
	// (1 - c1/N)^(T/t1): the chance a page escapes T/t1 periods like the first.
	return n * (1.0 - std::pow(1.0 - c1 / n, T / t1));
}

namespace {

struct Projected {
	double point, lo, hi;
};

// One measured (t1, c1) moved to T; lo1/hi1 bound c1 itself (huge blocks).
Projected project_one(double c1, double lo1, double hi1, double t1, double T, double n)
{
	Projected p{};
	p.point = saturating_copies(c1, t1, T, n);
	if (T >= t1) {
		p.lo = lo1;
		p.hi = std::min(std::max(n, hi1), hi1 * T / t1);
	} else {
		p.lo = lo1 * T / t1;
		p.hi = hi1;
	}
	p.point = std::clamp(p.point, p.lo, p.hi);
	return p;
}

} // namespace

void project_copies(CopySide &c, double snapshot_s, double pages_total)
{
	if (!(snapshot_s > 0))
		throw UsageError("--snapshot: expected SECONDS > 0");
	if (c.source == "none")
		return;
	const double t1 = c.curve.size() > 1 ? c.curve.back().t_s : c.window_s;
	if (!(t1 > 0))
		return;
	c.snapshot_s = snapshot_s;
	if (!c.per_snapshot.empty()) {
		std::vector<double> pts;
		double lo = INFINITY, hi = 0;
		const bool own = c.per_snapshot_s.size() == c.per_snapshot.size();
		for (std::size_t i = 0; i < c.per_snapshot.size(); i++) {
			const double c1 = c.per_snapshot[i], ti = own ? c.per_snapshot_s[i] : t1;
			Projected p = project_one(c1, c1, c1, ti, snapshot_s, pages_total);
			pts.push_back(p.point);
			lo = std::min(lo, p.lo);
			hi = std::max(hi, p.hi);
		}
		// The note already holds the records' sample statement.
		std::string note = c.note;
		spread_of_snapshots(c, pts, lo, hi, std::max(pages_total, hi));
		c.note = note;
	} else if (c.curve.size() > 1 && snapshot_s <= t1) {
		// Measured that far: read the curve at T (linearly between samples).
		std::size_t i = 1;
		while (i + 1 < c.curve.size() && c.curve[i].t_s < snapshot_s)
			i++;
		const CopySample &a = c.curve[i - 1], &b = c.curve[i];
		double f = b.t_s > a.t_s ? std::clamp((snapshot_s - a.t_s) / (b.t_s - a.t_s), 0.0, 1.0) : 1.0;
		double at = static_cast<double>(a.pages) + f * (static_cast<double>(b.pages) - static_cast<double>(a.pages));
		double last = static_cast<double>(c.curve.back().pages);
		double k = last > 0 ? at / last : 0;
		c.pages_point *= k;
		c.pages_lo *= k;
		c.pages_hi *= k;
		c.note += fmt::format("; read at {:.3g} s of the measured curve", snapshot_s);
		return;
	} else {
		Projected p = project_one(c.pages_point, c.pages_lo, c.pages_hi, t1, snapshot_s, pages_total);
		c.pages_point = p.point;
		c.pages_lo = p.lo;
		c.pages_hi = p.hi;
	}
	bool moved = std::fabs(snapshot_s - t1) > 1e-9 * t1;
	for (double ti : c.per_snapshot_s)
		moved = moved || std::fabs(snapshot_s - ti) > 1e-9 * ti;
	if (moved)
		c.note += fmt::format("; projected from {} to a {:.3g} s snapshot at the same write rate: point "
				      "for writes spread uniformly over {:.0f} copyable pages, interval for any steady "
				      "writer (distinct pages grow at most linearly)",
				      std::any_of(c.per_snapshot_s.begin(), c.per_snapshot_s.end(),
						  [&](double ti) { return ti != c.per_snapshot_s.front(); })
					      ? std::string("each snapshot's length")
					      : fmt::format("{:.3g} s", c.per_snapshot_s.empty() ? t1 : c.per_snapshot_s.front()),
				      snapshot_s, pages_total);
}

nlohmann::json CopySide::to_json() const
{
	nlohmann::json curve_j = nlohmann::json::array();
	for (const auto &s : curve)
		curve_j.push_back({{"t_s", s.t_s}, {"pages", s.pages}, {"huge_blocks", s.huge_blocks}});
	return {{"source", source},	    {"note", note},   {"window_s", window_s}, {"snapshot_s", snapshot_s},
		{"per_snapshot", per_snapshot}, {"per_snapshot_s", per_snapshot_s}, {"curve", curve_j},
		{"pages", {{"point", pages_point}, {"lo", pages_lo}, {"hi", pages_hi}}}};
}

} // namespace cowscope::forecast