// The fork-time model: its terms, the observations a calibration makes,
// the fit and its prediction intervals (forecast.hpp says what the model
// is; model.cpp fits it).
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cowscope::forecast {

// ---- the model -----------------------------------------------------------

inline constexpr std::size_t kTerms = 10;
// "fixed", "writable_ptes", "wp_ptes", "huge_pmds", "vmas", "large_folio_ptes",
// "writable_ptes_above_knee", "wp_ptes_above_knee", "writable_ptes_scattered",
// "wp_ptes_scattered"
const std::array<const char *, kTerms> &term_names();
// The terms' positions in ForkInputs::row(), Fit::coef and Fit::used.
enum Term : std::size_t {
	kFixed,
	kWritablePtes,
	kWpPtes,
	kHugePmds,
	kVmas,
	kLargeFolioPtes,
	kWritableAboveKnee,
	kWpAboveKnee,
	kWritableScattered,
	kWpScattered,
};
static_assert(kWpScattered + 1 == kTerms, "a name for every term");
// Terms whose coefficient may come out negative (a saving, a change of slope).
bool term_may_be_negative(std::size_t i);
inline constexpr double kKneePtes = 65536;
inline constexpr std::uint64_t kNearPfns = 8; // struct pages 512 bytes apart: still a stream

struct ForkInputs {
	double writable_ptes = 0, wp_ptes = 0, huge_pmds = 0, vmas = 0, large_folio_ptes = 0;
	double scatter = 0; // 0..1, Shape::scatter()
	// {1, writable, wp, huge, vmas, large, writable above the knee, wp above
	// the knee, writable * scatter, wp * scatter}
	std::array<double, kTerms> row() const;
	nlohmann::json to_json() const;
	static ForkInputs from_json(const nlohmann::json &j);
};

// One calibration point: the inputs and every repetition's fork time.
struct Observation {
	std::string label; // "heap=64M thp=never pte=writable vmas=0"
	ForkInputs in;
	std::vector<double> fork_us;
	bool held_out = false; // kept out of the fit for the held-out check
};

struct Fit {
	// Coefficients in microseconds per unit (fixed: microseconds); a term
	// the observations do not vary (all zero) is not fitted: varied[i] and
	// used[i] false. A varied term whose coefficient came out negative (or,
	// for a scatter term, whose PTE term did) was dropped (held at 0, the
	// rest refitted): varied[i] true, used[i] false.
	std::array<double, kTerms> coef{};
	std::array<bool, kTerms> used{};
	std::array<bool, kTerms> varied{};
	// Bootstrap over repetitions: one coefficient vector per resample.
	std::vector<std::array<double, kTerms>> boot;
	// Quantiles of (a repetition's fork time / the fit's prediction) over the
	// fitted observations: the run-to-run noise around the model.
	double ratio_q05 = 1, ratio_q95 = 1;
	std::size_t observations = 0, repetitions = 0;
	double predict(const ForkInputs &in) const;
};

// Weighted least squares on the repetitions' medians (relative errors:
// weight 1/y), non-negative except for term_may_be_negative() (terms that come out
// negative are dropped and the rest refitted; a PTE term's scattered-pages
// refinement goes before the PTE term itself), then `boot_rounds` bootstrap
// resamples of each observation's repetitions. Throws Error when fewer
// observations than used terms. Deterministic for a given seed.
Fit fit_model(const std::vector<Observation> &obs, unsigned boot_rounds = 200, std::uint64_t seed = 1);

// An interval for one prediction: the bootstrap predictions' 5th..95th
// percentiles widened by the run-to-run noise quantiles.
struct Interval {
	double point = 0, lo = 0, hi = 0;
	nlohmann::json to_json() const;
};
Interval predict_interval(const Fit &fit, const ForkInputs &in);

// The held-out check: each held-out observation's median against the fit.
struct HeldOut {
	std::string label;
	double actual_us = 0, predicted_us = 0, lo_us = 0, hi_us = 0, error = 0; // error: |p-a|/a
	bool inside = false;
};

} // namespace cowscope::forecast
