#include "cowscope/base/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace cowscope {

double percentile(std::vector<double> v, double p)
{
	if (v.empty())
		return std::nan("");
	std::sort(v.begin(), v.end());
	double pos = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
	auto lo = static_cast<std::size_t>(std::floor(pos));
	std::size_t hi = std::min(lo + 1, v.size() - 1);
	double f = pos - static_cast<double>(lo);
	return v[lo] + (v[hi] - v[lo]) * f;
}

Summary summarize(std::vector<double> values)
{
	std::erase_if(values, [](double x) { return !std::isfinite(x); });
	Summary s;
	if (values.empty())
		return s;
	std::sort(values.begin(), values.end());
	s.n = values.size();
	s.min = values.front();
	s.max = values.back();
	s.median = s.n % 2 ? values[s.n / 2] : (values[s.n / 2 - 1] + values[s.n / 2]) / 2;
	s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(s.n);
	return s;
}

nlohmann::json to_json(const Summary &s)
{
	if (s.n == 0)
		return {{"median", nullptr}, {"min", nullptr}, {"max", nullptr}, {"mean", nullptr}, {"n", 0}};
	return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"n", s.n}};
}

} // namespace cowscope
