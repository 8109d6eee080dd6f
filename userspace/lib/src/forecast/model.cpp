// The fork/COW model: its terms, the fit and the prediction intervals
// (see cowscope/forecast/forecast.hpp). The calibration file is
// calibration_file.cpp's.
#include "cowscope/forecast/forecast.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <fstream>
#include <random>
#include <sstream>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/stats.hpp"

namespace cowscope::forecast {

const std::array<const char *, kTerms> &term_names()
{
	static const std::array<const char *, kTerms> n = {
		"fixed", "writable_ptes",	     "wp_ptes",	     "huge_pmds",
		"vmas",	 "large_folio_ptes", "writable_ptes_above_knee", "wp_ptes_above_knee",
		"writable_ptes_scattered", "wp_ptes_scattered"};
	return n;
}

bool term_may_be_negative(std::size_t i)
{
	return i == kLargeFolioPtes || i == kWritableAboveKnee || i == kWpAboveKnee;
}

std::array<double, kTerms> ForkInputs::row() const
{
	// The PTEs beyond the knee, shared between the states in proportion.
	const double all = writable_ptes + wp_ptes;
	const double above = all > kKneePtes ? (all - kKneePtes) / all : 0;
	return {1.0,
		writable_ptes,
		wp_ptes,
		huge_pmds,
		vmas,
		large_folio_ptes,
		writable_ptes * above,
		wp_ptes * above,
		writable_ptes * scatter,
		wp_ptes * scatter};
}

nlohmann::json ForkInputs::to_json() const
{
	return {{"writable_ptes", writable_ptes}, {"wp_ptes", wp_ptes},	  {"huge_pmds", huge_pmds},
		{"vmas", vmas},			  {"large_folio_ptes", large_folio_ptes}, {"scatter", scatter}};
}

ForkInputs ForkInputs::from_json(const nlohmann::json &j)
{
	ForkInputs in;
	in.writable_ptes = j.at("writable_ptes").get<double>();
	in.wp_ptes = j.at("wp_ptes").get<double>();
	in.huge_pmds = j.at("huge_pmds").get<double>();
	in.vmas = j.at("vmas").get<double>();
	in.large_folio_ptes = j.value("large_folio_ptes", 0.0);
	in.scatter = j.value("scatter", 0.0);
	return in;
}

double Fit::predict(const ForkInputs &in) const
{
	auto r = in.row();
	double y = 0;
	for (std::size_t i = 0; i < kTerms; i++)
		if (used[i])
			y += coef[i] * r[i];
	return std::max(y, 0.0); // a knee's negative slope change extrapolated far: never below nothing
}

namespace {

double median_of(std::vector<double> v)
{
	return summarize(std::move(v)).median;
}

// Solve the weighted normal equations for the terms in `use`; false when
// singular.
bool solve_wls(const std::vector<std::array<double, kTerms>> &X, const std::vector<double> &y,
	       const std::vector<double> &w, const std::array<bool, kTerms> &use, std::array<double, kTerms> &out)
{
	std::vector<std::size_t> idx;
	for (std::size_t i = 0; i < kTerms; i++)
		if (use[i])
			idx.push_back(i);
	const std::size_t k = idx.size();
	if (k == 0)
		return false;
	// Columns scaled to unit RMS so that PTE counts (1e5) and the
	// intercept (1) condition alike.
	std::vector<double> scale(k, 0);
	for (std::size_t c = 0; c < k; c++) {
		for (std::size_t r = 0; r < X.size(); r++)
			scale[c] += X[r][idx[c]] * X[r][idx[c]] * w[r] * w[r];
		scale[c] = std::sqrt(scale[c] / X.size());
		if (scale[c] == 0)
			return false;
	}
	std::vector<std::vector<double>> A(k, std::vector<double>(k + 1, 0));
	for (std::size_t r = 0; r < X.size(); r++)
		for (std::size_t a = 0; a < k; a++) {
			double xa = X[r][idx[a]] / scale[a] * w[r];
			for (std::size_t b = 0; b < k; b++)
				A[a][b] += xa * X[r][idx[b]] / scale[b] * w[r];
			A[a][k] += xa * y[r] * w[r];
		}
	for (std::size_t c = 0; c < k; c++) {
		std::size_t p = c;
		for (std::size_t r = c + 1; r < k; r++)
			if (std::fabs(A[r][c]) > std::fabs(A[p][c]))
				p = r;
		if (std::fabs(A[p][c]) < 1e-12)
			return false;
		std::swap(A[p], A[c]);
		for (std::size_t r = 0; r < k; r++) {
			if (r == c)
				continue;
			double f = A[r][c] / A[c][c];
			for (std::size_t q = c; q <= k; q++)
				A[r][q] -= f * A[c][q];
		}
	}
	out.fill(0);
	for (std::size_t c = 0; c < k; c++)
		out[idx[c]] = A[c][k] / A[c][c] / scale[c];
	return true;
}

// Fit with terms that come out negative (all but large_folio_ptes) dropped.
bool fit_nonneg(const std::vector<std::array<double, kTerms>> &X, const std::vector<double> &y,
		std::array<bool, kTerms> use, std::array<double, kTerms> &coef, std::array<bool, kTerms> &used)
{
	const std::vector<double> w = [&] {
		std::vector<double> w(y.size());
		for (std::size_t i = 0; i < y.size(); i++)
			w[i] = 1.0 / std::max(y[i], 1e-3);
		return w;
	}();
	for (std::size_t round = 0; round < kTerms; round++) {
		if (!solve_wls(X, y, w, use, coef))
			return false;
		std::size_t worst = kTerms;
		for (std::size_t i = 1; i < kTerms; i++) // not fixed, not the terms that may be negative
			if (use[i] && !term_may_be_negative(i) && coef[i] < 0 && (worst == kTerms || coef[i] < coef[worst]))
				worst = i;
		if (worst == kTerms) {
			used = use;
			return true;
		}
		// A scattered-pages term refines its PTE term (cost per PTE =
		// base + scattered * scatter). When every heap of the grid is
		// somewhat scattered (an in-order heap measured 0.5 on a
		// fragmented machine), the two are nearly collinear and noise can
		// hand the whole per-PTE cost to the refinement, driving the base
		// negative. Dropping the base then would leave a model in which an
		// unscattered heap forks for free; drop the refinement instead.
		const std::size_t refinement = worst == kWritablePtes ? kWritableScattered
					       : worst == kWpPtes     ? kWpScattered
								      : kTerms;
		if (refinement != kTerms && use[refinement])
			worst = refinement;
		use[worst] = false;
	}
	return false;
}

} // namespace

Fit fit_model(const std::vector<Observation> &obs_all, unsigned boot_rounds, std::uint64_t seed)
{
	std::vector<const Observation *> obs;
	for (const auto &o : obs_all)
		if (!o.held_out && !o.fork_us.empty())
			obs.push_back(&o);
	std::array<bool, kTerms> use{};
	use[kFixed] = true;
	double scatter_lo = INFINITY, scatter_hi = -INFINITY;
	for (const auto *o : obs) {
		auto r = o->in.row();
		for (std::size_t i = kWritablePtes; i <= kWpAboveKnee; i++)
			// A knee term needs observations well past the knee: a few
			// thousand PTEs beyond it cannot tell its slope from noise.
			if (i >= kWritableAboveKnee ? r[i] >= kKneePtes / 2 : r[i] != 0)
				use[i] = true;
		scatter_lo = std::min(scatter_lo, o->in.scatter);
		scatter_hi = std::max(scatter_hi, o->in.scatter);
	}
	// The scatter terms need heaps of both kinds (in order and scattered).
	use[kWritableScattered] = use[kWritablePtes] && scatter_hi - scatter_lo >= 0.3;
	use[kWpScattered] = use[kWpPtes] && scatter_hi - scatter_lo >= 0.3;
	std::size_t nuse = std::count(use.begin(), use.end(), true);
	if (obs.size() < nuse + 1)
		throw Error(fmt::format("calibration: {} observations cannot fit {} terms (need at least {})",
					obs.size(), nuse, nuse + 1));
	std::vector<std::array<double, kTerms>> X;
	std::vector<double> y;
	for (const auto *o : obs) {
		X.push_back(o->in.row());
		y.push_back(median_of(o->fork_us));
	}
	Fit f;
	f.varied = use;
	if (!fit_nonneg(X, y, use, f.coef, f.used))
		throw Error("calibration: the observations do not determine the model (singular normal equations): "
			    "vary heap size, THP and VMAs independently");
	f.observations = obs.size();
	std::vector<double> ratios;
	for (const auto *o : obs) {
		double p = f.predict(o->in);
		for (double v : o->fork_us)
			if (std::isfinite(v) && p > 0) {
				ratios.push_back(v / p);
				f.repetitions++;
			}
	}
	if (!ratios.empty()) {
		f.ratio_q05 = std::min(1.0, percentile(ratios, 5));
		f.ratio_q95 = std::max(1.0, percentile(ratios, 95));
	}
	std::mt19937_64 rng(seed);
	for (unsigned b = 0; b < boot_rounds; b++) {
		std::vector<double> yb;
		for (const auto *o : obs) {
			std::uniform_int_distribution<std::size_t> pick(0, o->fork_us.size() - 1);
			std::vector<double> s;
			for (std::size_t i = 0; i < o->fork_us.size(); i++)
				s.push_back(o->fork_us[pick(rng)]);
			yb.push_back(median_of(s));
		}
		std::array<double, kTerms> c{};
		std::array<bool, kTerms> u{};
		// Same terms as the main fit; a resample that drops one keeps it at 0.
		if (fit_nonneg(X, yb, f.used, c, u))
			f.boot.push_back(c);
	}
	return f;
}

nlohmann::json Interval::to_json() const
{
	return {{"point", point}, {"lo", lo}, {"hi", hi}};
}

Interval predict_interval(const Fit &fit, const ForkInputs &in)
{
	Interval iv;
	iv.point = fit.predict(in);
	std::vector<double> preds;
	auto r = in.row();
	for (const auto &c : fit.boot) {
		double y = 0;
		for (std::size_t i = 0; i < kTerms; i++)
			if (fit.used[i])
				y += c[i] * r[i];
		preds.push_back(y);
	}
	double lo = iv.point, hi = iv.point;
	if (!preds.empty()) {
		lo = std::min(lo, percentile(preds, 5));
		hi = std::max(hi, percentile(preds, 95));
	}
	iv.lo = std::max(0.0, lo * fit.ratio_q05);
	iv.hi = hi * fit.ratio_q95;
	return iv;
}

} // namespace cowscope::forecast
