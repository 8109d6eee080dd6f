// The calibration file: its JSON (format "cowscope-calibration",
// versions 1 and 2), where it lives, atomic save and load. See
// cowscope/forecast/forecast.hpp.
#include "cowscope/forecast/forecast.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/stats.hpp"

namespace cowscope::forecast {

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

// One function over 80 lines on purpose: a linear read of the file, each
// field named in `field` first, so that every error says which field was
// wrong; split up, its parts would pass that context around.
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
