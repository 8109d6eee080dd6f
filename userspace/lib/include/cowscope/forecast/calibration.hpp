// This machine's calibration: the file (calibration_file.cpp) and the
// runs that make it (`cowbench calibrate`, calibrate.cpp).
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cowscope/forecast/model.hpp"

namespace cowscope::forecast {

// ---- the calibration file -----------------------------------------------

struct CopyCost {
	double ns_per_4k_copy = NAN;       // a COW fault in a 4 KiB mapping (median)
	double ns_per_4k_copy_min = NAN, ns_per_4k_copy_max = NAN;
	double ns_per_huge_copy = NAN;     // a COW fault in a PMD-mapped THP (split + 4 KiB copy)
	double ns_per_huge_copy_min = NAN, ns_per_huge_copy_max = NAN;
	double kb_per_written_4k = NAN;    // Private_Dirty growth per written page, 4 KiB heap
	double kb_per_written_huge = NAN;  // the same with a THP heap
};

struct Calibration {
	Fit fit;
	CopyCost copy;
	std::vector<Observation> observations;
	std::vector<HeldOut> held_out;
	nlohmann::json machine; // machine_metadata()
	std::string kernel, hostname;
	double settle_s = 0; // CalibrateConfig::settle_s of the run (0 in files from before it)
	nlohmann::json to_json() const;
	static Calibration from_json(const nlohmann::json &j); // throws Error naming the bad field
};

// Where this machine's calibration lives: $COWSCOPE_CALIBRATION_DIR, else
// /var/lib/cowscope/calibration as root, else $XDG_STATE_HOME/cowscope/
// calibration (~/.local/state/...); the file is <hostname>-<kernel>.json.
std::string default_calibration_path();
// Atomic write (mkdir -p the folder first).
void save_calibration(const Calibration &c, const std::string &path);
// Throws Error: "no calibration at PATH: run `cowbench calibrate` (as root:
// ...) on this machine first, or pass --calibration FILE" when missing.
Calibration load_calibration(const std::string &path);

// ---- calibration runs (cowbench calibrate) --------------------------------

struct CalibrateConfig {
	std::vector<std::uint64_t> heaps = {16ull << 20, 64ull << 20, 256ull << 20, 1ull << 30};
	std::vector<unsigned> extra_vmas = {0, 4000};
	bool thp = true;           // also THP heaps (when the kernel has THP)
	bool large_folios = true;  // also 64K folio heaps (root, mTHP controls)
	unsigned repeat = 7;
	unsigned boot_rounds = 200;
	// Idle before each timed fork (BenchConfig::settle_s). A process that
	// is forecast has rarely just touched all its memory; here a heap that
	// sat even 50 ms idle forked up to 2x slower than one forked at once
	// (110 MiB: 1.7 ms hot, 2.7-3.7 ms after 0.25-5 s idle; caches of a
	// shared host gone cold), and Redis forked like the idle heap.
	double settle_s = 0.25;
};

using CalibrateProgress = std::function<void(unsigned done, unsigned total, const std::string &label)>;

// Runs cowbench's fork measurement (run_bench) over the grid, every other
// configuration held out for the check, fits on the rest (the check), then
// on all (the saved model); measures the copy costs. Stops early (keeping
// what it measured) on request_stop().
Calibration run_calibration(const CalibrateConfig &cfg, const CalibrateProgress &progress = {});
std::string calibration_report(const Calibration &c);

} // namespace cowscope::forecast
