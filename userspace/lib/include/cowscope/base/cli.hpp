// The command line, once for every program (cowbench, cowscope, cowtrace,
// cowdemo, snapdemo): how numbers, sizes, durations and pids are read, the
// one usage-error message, and the main() wrapper that maps what went wrong
// to an exit status.
//
// The rules, the same for every kind and every program:
//   - the whole argument is the value: no leading or trailing blanks
//     (" 1", "1 "), nothing after it ("2x");
//   - decimal only: no sign ("+5", "-1"), no hex ("0x10"), no exponent
//     ("1e-3"), no "nan" or "inf", never empty;
//   - whole numbers (COUNT, PID) are digits only; real numbers (SIZE,
//     RATIO, SECONDS) are digits with at most one '.' and at least one
//     digit ("0.5", ".5" and "1." are all one half or one);
//   - SIZE: such a number, then optionally K, M, G or T (binary: K is 1024,
//     either case: "1K" == "1k"), then optionally "B" or "iB" after the
//     letter ("64M" == "64MB" == "64MiB"); the bytes must be whole
//     ("1.5K" yes, "3.3" no) and fit 64 bits;
//   - RATIO: a real number from 0 to 1;
//   - SECONDS: a real number in the range the option states (the lower
//     bound may be exclusive: "greater than 0");
//   - PID: a whole number from 1 to 2147483647 (what pid_t holds; a pid
//     above the kernel's pid_max is "no such process", not a usage error).
// A value out of its range is rejected like a malformed one.
//
// Every rejection throws UsageError reading
//   WHAT: expected FORM, got "TEXT"
// (e.g. `--heap: expected SIZE like 64M (...), got "banana"`); run_main()
// prints it after the program's name and exits 2.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "cowscope/base/error.hpp"

namespace CLI {
class App;
}

namespace cowscope::cli {

// The one usage-error form: `WHAT: expected FORM, got "TEXT"`.
std::string usage_message(std::string_view what, std::string_view form, std::string_view text);
[[noreturn]] void usage_error(std::string_view what, std::string_view form, std::string_view text);

// A whole number in [lo, hi]. FORM defaults to "a whole number from LO to HI".
std::uint64_t parse_count(std::string_view text, std::string_view what, std::uint64_t lo,
			  std::uint64_t hi, std::string_view form = {});
// A real number in [lo, hi] (or (lo, hi] when lo_exclusive). FORM defaults
// to "a number from LO to HI" ("... greater than LO ..." when exclusive).
double parse_real(std::string_view text, std::string_view what, double lo, double hi,
		  bool lo_exclusive = false, std::string_view form = {});
// A duration in seconds, greater than 0 and at most max_s (other bounds:
// parse_real). FORM defaults to "SECONDS greater than 0, like 60 or 0.5".
double parse_seconds(std::string_view text, std::string_view what, double max_s = 86400,
		     std::string_view form = {});
// An idle time: SECONDS from 0 (none) to max_s, like 3 or 0.25.
double parse_idle_seconds(std::string_view text, std::string_view what, double max_s = 3600);
// Bytes: "4096", "64K", "1.5G", "64MiB".
std::uint64_t parse_size(std::string_view text, std::string_view what);
// A ratio from 0 to 1.
double parse_ratio(std::string_view text, std::string_view what);
// A process id, 1..2147483647.
pid_t parse_pid(std::string_view text, std::string_view what);
// An address range "START-END": two hex numbers of at most 16 digits, each
// with an optional 0x, START < END ({0, 0} for "": no range).
std::pair<std::uint64_t, std::uint64_t> parse_range(std::string_view text, std::string_view what);

// One --json convention for every program:
//   --json FILE  the JSON goes to FILE (written atomically), the text to
//                standard output as without it;
//   --json -     the JSON alone on standard output, the text on standard
//                error (for pipes: `cowscope diff P C --json - | jq`).
// add_json_option() declares it ("--json FILE: WHAT as JSON ..."),
// refuse_bare_json() turns the old spelling, a bare `--json` (last, or
// before another option), into a UsageError that shows the new one (call
// it before CLI::App::parse), and emit() prints as the convention says.
void add_json_option(CLI::App &app, std::string &file, std::string_view what);
void refuse_bare_json(int argc, const char *const *argv);
void emit(const std::string &json_file, const std::string &text, const std::string &json);

// Thrown by a program's body when SIGINT (or SIGTERM) ended it early, after
// it kept what it had measured: run_main() exits 130. A body may also just
// return 130.
class Interrupted : public Error {
public:
	explicit Interrupted(const std::string &what = {}) : Error(what) {}
};

// main() for every program:
//   return cowscope::cli::run_main("cowscope", app, [&] {
//           app.parse(argc, argv);
//           ...
//           return 0;
//   });
// Exit status: the body's return value; 0 with the text for CLI11's --help,
// --help-all and --version; 2 for CLI11's parse errors and UsageError
// ("PROG: message", CLI11's followed by parse_hint when given); 130 for
// Interrupted (its message, if any, printed); 1 for everything else
// ("PROG: message").
int run_main(const char *prog, CLI::App &app, const std::function<int()> &body,
	     std::string_view parse_hint = {});

} // namespace cowscope::cli
