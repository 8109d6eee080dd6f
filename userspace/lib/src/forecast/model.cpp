// The fork/COW model (fit, intervals), its calibration file, the page-table
// shape reader and the forecast. See cowscope/forecast.hpp.
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

// ---- calibration file ----------------------------------------------------

namespace {

nlohmann::json num(double v)
{
	return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

double num_of(const nlohmann::json &j, const char *key)
{
	if (!j.contains(key) || j.at(key).is_null())
		return NAN;
	return j.at(key).get<double>();
}

} // namespace

nlohmann::json Calibration::to_json() const
{
	nlohmann::json coef = nlohmann::json::object(), boot = nlohmann::json::array();
	for (std::size_t i = 0; i < kTerms; i++) {
		std::vector<double> v;
		for (const auto &b : fit.boot)
			v.push_back(b[i]);
		nlohmann::json c = {{"used", fit.used[i]}, {"varied", fit.varied[i]}, {"value", fit.coef[i]}};
		if (fit.used[i] && !v.empty()) {
			c["p2_5"] = percentile(v, 2.5);
			c["p97_5"] = percentile(v, 97.5);
		}
		coef[term_names()[i]] = c;
	}
	for (const auto &b : fit.boot)
		boot.push_back(std::vector<double>(b.begin(), b.end()));
	nlohmann::json obs = nlohmann::json::array();
	for (const auto &o : observations)
		obs.push_back({{"label", o.label}, {"inputs", o.in.to_json()}, {"fork_us", o.fork_us},
			       {"held_out", o.held_out}});
	nlohmann::json ho = nlohmann::json::array();
	for (const auto &h : held_out)
		ho.push_back({{"label", h.label}, {"actual_us", h.actual_us}, {"predicted_us", h.predicted_us},
			      {"lo_us", h.lo_us}, {"hi_us", h.hi_us}, {"error", h.error}, {"inside", h.inside}});
	return {
		{"format", "cowscope-calibration"},
		{"format_version", 2},
		{"scatter_near_pfns", kNearPfns},
		{"knee_ptes", kKneePtes},
		{"kernel", kernel},
		{"hostname", hostname},
		{"machine", machine},
		{"settle_s", settle_s},
		{"model", "fork_us = fixed + sum(coef * input); units: us per unit"},
		{"coefficients_us", coef},
		{"bootstrap_us", boot},
		{"noise_ratio_q05", fit.ratio_q05},
		{"noise_ratio_q95", fit.ratio_q95},
		{"fit_observations", fit.observations},
		{"fit_repetitions", fit.repetitions},
		{"copy", {{"ns_per_4k_copy", num(copy.ns_per_4k_copy)},
			  {"ns_per_4k_copy_min", num(copy.ns_per_4k_copy_min)},
			  {"ns_per_4k_copy_max", num(copy.ns_per_4k_copy_max)},
			  {"ns_per_huge_copy", num(copy.ns_per_huge_copy)},
			  {"ns_per_huge_copy_min", num(copy.ns_per_huge_copy_min)},
			  {"ns_per_huge_copy_max", num(copy.ns_per_huge_copy_max)},
			  {"kb_per_written_4k", num(copy.kb_per_written_4k)},
			  {"kb_per_written_huge", num(copy.kb_per_written_huge)}}},
		{"observations", obs},
		{"held_out", ho},
	};
}

Calibration Calibration::from_json(const nlohmann::json &j)
{
	const char *field = "format";
	try {
		if (j.at("format").get<std::string>() != "cowscope-calibration")
			throw Error("format: not a cowscope calibration");
		field = "format_version";
		// Version 1 had no knee terms: read as unused.
		const int version = j.at("format_version").get<int>();
		if (version != 1 && version != 2)
			throw Error(fmt::format("format_version {} (this cowscope reads 1 and 2)", j.at("format_version").dump()));
		field = "knee_ptes";
		if (version >= 2 && j.at("knee_ptes").get<double>() != kKneePtes)
			throw Error(fmt::format("{} (this cowscope's model bends at {} PTEs)", j.at("knee_ptes").dump(),
						kKneePtes));
		const std::size_t terms = version == 1 ? kWritableAboveKnee : kTerms; // version 1: up to large folios
		field = "scatter_near_pfns";
		if (version >= 2 && j.at("scatter_near_pfns").get<std::uint64_t>() != kNearPfns)
			throw Error(fmt::format("{} (this cowscope counts pages more than {} frames apart)",
						j.at("scatter_near_pfns").dump(), kNearPfns));
		Calibration c;
		field = "kernel";
		c.kernel = j.at("kernel").get<std::string>();
		c.hostname = j.value("hostname", "");
		c.machine = j.value("machine", nlohmann::json::object());
		field = "settle_s";
		c.settle_s = j.value("settle_s", 0.0);
		if (!std::isfinite(c.settle_s) || c.settle_s < 0)
			throw Error("not a time");
		field = "coefficients_us";
		const auto &co = j.at("coefficients_us");
		for (std::size_t i = 0; i < kTerms; i++) {
			if (i >= terms)
				continue;
			const auto &t = co.at(term_names()[i]);
			c.fit.used[i] = t.at("used").get<bool>();
			// Files written before "varied" existed: a used term was varied.
			c.fit.varied[i] = t.value("varied", c.fit.used[i]);
			if (c.fit.used[i] && !c.fit.varied[i])
				throw Error(fmt::format("{} is used but was not varied", term_names()[i]));
			c.fit.coef[i] = t.at("value").get<double>();
			if (!std::isfinite(c.fit.coef[i]))
				throw Error("a coefficient is not a number");
		}
		if (!c.fit.used[kFixed])
			throw Error("the fixed term is not used");
		field = "bootstrap_us";
		for (const auto &b : j.at("bootstrap_us")) {
			if (b.size() != terms)
				throw Error(fmt::format("a row has {} values, not {}", b.size(), terms));
			std::array<double, kTerms> a{};
			for (std::size_t i = 0; i < terms; i++)
				a[i] = b.at(i).get<double>();
			c.fit.boot.push_back(a);
		}
		field = "noise_ratio_q05";
		c.fit.ratio_q05 = j.at("noise_ratio_q05").get<double>();
		field = "noise_ratio_q95";
		c.fit.ratio_q95 = j.at("noise_ratio_q95").get<double>();
		c.fit.observations = j.value("fit_observations", 0u);
		c.fit.repetitions = j.value("fit_repetitions", 0u);
		field = "copy";
		const auto &cp = j.at("copy");
		c.copy.ns_per_4k_copy = num_of(cp, "ns_per_4k_copy");
		c.copy.ns_per_4k_copy_min = num_of(cp, "ns_per_4k_copy_min");
		c.copy.ns_per_4k_copy_max = num_of(cp, "ns_per_4k_copy_max");
		c.copy.ns_per_huge_copy = num_of(cp, "ns_per_huge_copy");
		c.copy.ns_per_huge_copy_min = num_of(cp, "ns_per_huge_copy_min");
		c.copy.ns_per_huge_copy_max = num_of(cp, "ns_per_huge_copy_max");
		c.copy.kb_per_written_4k = num_of(cp, "kb_per_written_4k");
		c.copy.kb_per_written_huge = num_of(cp, "kb_per_written_huge");
		field = "observations";
		for (const auto &o : j.value("observations", nlohmann::json::array())) {
			Observation ob;
			ob.label = o.at("label").get<std::string>();
			ob.in = ForkInputs::from_json(o.at("inputs"));
			ob.fork_us = o.at("fork_us").get<std::vector<double>>();
			ob.held_out = o.value("held_out", false);
			c.observations.push_back(ob);
		}
		field = "held_out";
		for (const auto &h : j.value("held_out", nlohmann::json::array())) {
			HeldOut x;
			x.label = h.at("label").get<std::string>();
			x.actual_us = h.at("actual_us").get<double>();
			x.predicted_us = h.at("predicted_us").get<double>();
			x.lo_us = h.at("lo_us").get<double>();
			x.hi_us = h.at("hi_us").get<double>();
			x.error = h.at("error").get<double>();
			x.inside = h.at("inside").get<bool>();
			c.held_out.push_back(x);
		}
		return c;
	} catch (const nlohmann::json::exception &e) {
		throw Error(fmt::format("calibration field \"{}\": {}", field, e.what()));
	} catch (const Error &e) {
		throw Error(fmt::format("calibration field \"{}\": {}", field, e.what()));
	}
}

std::string default_calibration_path()
{
	struct utsname u {};
	::uname(&u);
	std::string dir;
	if (const char *d = std::getenv("COWSCOPE_CALIBRATION_DIR"); d && *d)
		dir = d;
	else if (::geteuid() == 0)
		dir = "/var/lib/cowscope/calibration";
	else if (const char *x = std::getenv("XDG_STATE_HOME"); x && *x)
		dir = std::string(x) + "/cowscope/calibration";
	else if (const char *h = std::getenv("HOME"); h && *h)
		dir = std::string(h) + "/.local/state/cowscope/calibration";
	else
		dir = "/tmp/cowscope-calibration";
	return fmt::format("{}/{}-{}.json", dir, u.nodename, u.release);
}

void save_calibration(const Calibration &c, const std::string &path)
{
	auto slash = path.rfind('/');
	if (slash != std::string::npos && slash > 0) {
		std::string dir = path.substr(0, slash);
		for (std::size_t p = 1; p <= dir.size(); p++)
			if (p == dir.size() || dir[p] == '/') {
				std::string part = dir.substr(0, p);
				if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
					throw SysError(fmt::format("mkdir {}", part));
			}
	}
	write_file_atomic(path, c.to_json().dump(1) + "\n");
}

Calibration load_calibration(const std::string &path)
{
	if (::access(path.c_str(), F_OK) != 0)
		throw Error(fmt::format("no calibration for this machine and kernel at {}: run `cowbench calibrate` "
					"first (as the same user, or root for the system-wide file), or pass "
					"--calibration FILE",
					path));
	std::string text = read_file(path);
	nlohmann::json j;
	try {
		j = nlohmann::json::parse(text);
	} catch (const nlohmann::json::exception &e) {
		throw Error(fmt::format("{}: not JSON ({}); rerun `cowbench calibrate`", path, e.what()));
	}
	try {
		return Calibration::from_json(j);
	} catch (const Error &e) {
		throw Error(fmt::format("{}: {}; rerun `cowbench calibrate`", path, e.what()));
	}
}

} // namespace cowscope::forecast
