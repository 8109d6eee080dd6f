#include "cowscope/bench/sweep.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <fmt/format.h>
#include <set>
#include <sstream>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowscope {

namespace {

std::vector<std::string> split(const std::string &s)
{
	std::vector<std::string> out;
	std::string cur;
	std::istringstream in(s);
	while (std::getline(in, cur, ','))
		out.push_back(cur);
	if (s.empty() || s.back() == ',')
		out.push_back("");
	return out;
}

std::string canon(std::string name)
{
	while (!name.empty() && name.front() == '-')
		name.erase(0, 1);
	std::replace(name.begin(), name.end(), '_', '-');
	return name;
}

bool file_exists(const std::string &p)
{
	struct stat st;
	return ::stat(p.c_str(), &st) == 0;
}

} // namespace

std::vector<BenchConfig> expand_sweep(const std::map<std::string, std::string> &options)
{
	static const std::vector<std::string> order = {"heap", "write-ratio", "writer", "pattern",
						       "thp", "folio", "children", "spawn", "read"};
	BenchConfig base;
	std::vector<std::pair<std::string, std::vector<std::string>>> lists;
	std::map<std::string, std::string> rest;
	for (const auto &[k, v] : options) {
		std::string c = canon(k);
		if (std::find(order.begin(), order.end(), c) != order.end()) {
			auto vals = split(v);
			for (const auto &x : vals) {
				BenchConfig probe;
				set_option(probe, c, x); // validates each list element
			}
		} else {
			set_option(base, c, v);
		}
	}
	for (const auto &name : order)
		for (const auto &[k, v] : options)
			if (canon(k) == name)
				lists.emplace_back(name, split(v));
	// A bound before any point is built: a kilobyte of lists made a
	// million points (minutes and gigabytes before the first run).
	std::uint64_t points = 1;
	std::string names, sizes;
	for (const auto &[name, vals] : lists) {
		points = std::min<std::uint64_t>(points * vals.size(), kMaxSweepPoints + 1);
		names += fmt::format("{}--{}", names.empty() ? "" : ", ", name);
		sizes += fmt::format("{}{}", sizes.empty() ? "" : " x ", vals.size());
	}
	if (points > kMaxSweepPoints)
		throw UsageError(fmt::format("{}: {} values make more than the {} points one sweep may have; "
					     "split it into several sweeps",
					     names, sizes, kMaxSweepPoints));
	std::vector<BenchConfig> out{base};
	for (const auto &[name, vals] : lists) {
		std::vector<BenchConfig> next;
		for (const auto &cfg : out)
			for (const auto &v : vals) {
				BenchConfig c = cfg;
				set_option(c, name, v);
				next.push_back(c);
			}
		out = std::move(next);
	}
	for (const auto &c : out)
		validate(c);
	return out;
}

std::string point_key(const BenchConfig &cfg)
{
	nlohmann::json p = params_json(cfg);
	p.erase("timeout_s");
	p.erase("heap");
	return p.dump();
}

SweepOutcome run_sweep(const std::vector<BenchConfig> &points, const std::string &out_path,
		       const SweepProgressFn &progress)
{
	SweepOutcome o;
	o.total = static_cast<unsigned>(points.size());
	std::string content;
	std::set<std::string> done;
	if (file_exists(out_path)) {
		content = read_file(out_path);
		std::istringstream in(content);
		std::string line;
		unsigned lineno = 0;
		while (std::getline(in, line)) {
			lineno++;
			if (line.empty())
				continue;
			try {
				auto j = nlohmann::json::parse(line);
				if (j.contains("point") && j["point"].is_string() &&
				    j.value("status", "") != "interrupted")
					done.insert(j["point"].get<std::string>());
			} catch (const nlohmann::json::exception &) {
				throw Error(fmt::format("{}:{}: not a cowbench sweep line (not JSON)", out_path, lineno));
			}
		}
		if (!content.empty() && content.back() != '\n')
			content += '\n';
	}
	SweepProgress pr;
	pr.total = o.total;
	for (const auto &cfg : points) {
		if (stop_requested()) {
			o.interrupted = true;
			break;
		}
		std::string key = point_key(cfg);
		if (done.count(key)) {
			o.skipped++;
			pr.skipped++;
			pr.done++;
			continue;
		}
		pr.current = &cfg;
		if (progress)
			progress(pr);
		BenchResult r = run_bench(cfg);
		if (r.interrupted) {
			o.interrupted = true;
			break;
		}
		nlohmann::json j = to_json(r);
		j["point"] = key;
		content += j.dump() + "\n";
		write_file_atomic(out_path, content);
		done.insert(key);
		o.ran++;
		pr.done++;
	}
	pr.current = nullptr;
	if (progress)
		progress(pr);
	return o;
}

} // namespace cowscope
