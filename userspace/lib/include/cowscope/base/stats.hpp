// Order statistics over repetitions: timings here are noisy, so results are
// reported as median with min and max (and the mean for reference).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <vector>

namespace cowscope {

struct Summary {
	std::size_t n = 0; // values counted (NaN = "not measured" is skipped)
	double median = 0, min = 0, max = 0, mean = 0;
};

// Summary of the finite values; n == 0 (all fields 0) when there are none.
Summary summarize(std::vector<double> values);
// Percentile p in [0, 100] by linear interpolation (NaN-free input).
double percentile(std::vector<double> values, double p);

// {"median":..,"min":..,"max":..,"mean":..,"n":..} (nulls when n == 0).
nlohmann::json to_json(const Summary &s);

} // namespace cowscope
