// The CPython 3.11 frame reader (userspace/lib/src/trace/python.hpp)
// against the interpreter's own view: py_target.py prints the callers of
// each of its two threads' innermost frames as Python sees them, and
// blocks at lines marked in its comments; the reader must find the same
// functions, qualified names, files and lines from outside the process;
// and the offsets it reads from the DWARF must be those CPython's own
// headers give (py_offsets.c, built against libpython3.11-dev).
// Needs /usr/bin/python3 to be 3.11 and its DWARF (python3.11-dbg): skips,
// saying which, without them. No BPF; reading the target's memory needs
// ptrace rights over it (it is this program's child).
#include <gtest/gtest.h>

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/process.hpp"
#include "python.hpp"

namespace {

using cowtrace::PyFrame;
using cowtrace::PyLayout;
using cowtrace::PyReader;

const std::string kScript = PY_TARGET;
// COWSCOPE_TEST_PYTHON: another CPython 3.11 to read (one with its own
// DWARF, or libpython3.11.so: a PIE load address)
const char *const kOther = std::getenv("COWSCOPE_TEST_PYTHON");
const std::string kPython = kOther ? kOther : "/usr/bin/python3";
constexpr std::int64_t kDeadline = 20'000'000'000;	// ns

// "# @name" markers of the script: name -> line
std::map<std::string, int> markers()
{
	std::map<std::string, int> out;
	std::ifstream in(kScript);
	std::string line;
	for (int n = 1; std::getline(in, line); n++)
		if (auto at = line.find("# @"); at != std::string::npos) {
			auto name = line.substr(at + 3);
			name = name.substr(0, name.find(' '));
			out[name] = n;
		}
	return out;
}

// Why this machine cannot run these tests, or "" when it can.
std::string missing()
{
	if (kOther)
		return "";
	char real[4096];
	ssize_t n = readlink("/usr/bin/python3", real, sizeof(real) - 1);
	std::string target = n > 0 ? std::string(real, static_cast<std::size_t>(n)) : "";
	if (target != "python3.11" && target != "/usr/bin/python3.11")
		return "/usr/bin/python3 is not python3.11 (it links to \"" + target + "\")";
	try {
		cowtrace::python_layout("/usr/bin/python3.11");
	} catch (const cowtrace::PyNoDebugInfo &e) {
		return e.what();
	}
	return "";
}

#define SKIP_IF_MISSING()                                                                                \
	do {                                                                                            \
		static const std::string why = missing();                                               \
		if (!why.empty())                                                                       \
			GTEST_SKIP() << why;                                                            \
	} while (0)

// py_target.py, its stdin ours to close, its stdout ours to read.
struct Target {
	cowscope::Child kid;
	cowscope::UniqueFd in, out;
	std::string buf;
	pid_t thread_tid = 0, main_tid = 0;
	std::vector<PyFrame> main_callers, thread_callers;	// Python's view

	Target()
	{
		cowscope::Pipe to, from;
		pid_t pid = fork();
		if (pid < 0)
			throw cowscope::SysError("fork");
		if (pid == 0) {
			dup2(to.read_end.get(), 0);
			dup2(from.write_end.get(), 1);
			execl(kPython.c_str(), kPython.c_str(), kScript.c_str(), nullptr);
			_exit(127);
		}
		kid = cowscope::Child(pid);
		in = std::move(to.write_end);
		out = std::move(from.read_end);
		from.write_end.reset();
		thread_tid = std::stoi(field(line(), "thread"));
		main_tid = std::stoi(field(line(), "main"));
		main_callers = stack("main");
		thread_callers = stack("thread");
	}

	// one line of its output, to the deadline
	std::string line()
	{
		std::int64_t until = cowscope::monotonic_ns() + kDeadline;
		for (;;) {
			if (auto nl = buf.find('\n'); nl != std::string::npos) {
				std::string l = buf.substr(0, nl);
				buf.erase(0, nl + 1);
				return l;
			}
			std::int64_t left = (until - cowscope::monotonic_ns()) / 1'000'000;
			pollfd p{out.get(), POLLIN, 0};
			if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0)
				throw cowscope::Error("py_target.py: no line in time (have \"" + buf + "\")");
			char c[256];
			ssize_t n = read(out.get(), c, sizeof(c));
			if (n <= 0)
				throw cowscope::Error("py_target.py exited (have \"" + buf + "\")");
			buf.append(c, static_cast<std::size_t>(n));
		}
	}
	static std::string field(const std::string &l, const std::string &key)
	{
		if (l.rfind(key + " ", 0) != 0)
			throw cowscope::Error("py_target.py: expected \"" + key + " ...\", got \"" + l + "\"");
		return l.substr(key.size() + 1);
	}
	std::vector<PyFrame> stack(const std::string &name)
	{
		if (field(line(), "stack") != name)
			throw cowscope::Error("py_target.py: expected the stack of " + name);
		std::vector<PyFrame> v;
		for (std::string l; (l = line()) != "end";) {
			auto a = l.find('|'), b = l.rfind('|');
			PyFrame f;
			f.function = l.substr(0, a);
			f.file = l.substr(a + 1, b - a - 1);
			f.line = std::stoi(l.substr(b + 1));
			v.push_back(f);
		}
		return v;
	}
};

// The frames of `tid` once its innermost one is `func` at `line`: the
// thread is on its way there when the target prints; read until then.
std::vector<PyFrame> frames_at(PyReader &r, pid_t tid, const std::string &func, int line)
{
	std::int64_t until = cowscope::monotonic_ns() + kDeadline;
	std::string last = "nothing read";
	while (cowscope::monotonic_ns() < until) {
		try {
			auto f = r.thread_frames(tid);
			if (!f.empty() && f[0].function == func && f[0].line == line)
				return f;
			last = f.empty() ? "no frames" : fmt::format("{} line {}", f[0].function, f[0].line);
		} catch (const cowscope::Error &e) {	// a frame changed under the read
			last = e.what();
		}
		usleep(1000);
	}
	ADD_FAILURE() << "thread " << tid << " never reached " << func << " line " << line << " (last: " << last
		      << ")";
	return {};
}

std::string show(const PyFrame &f)
{
	return fmt::format("{} {}:{}{}", f.function, f.file, f.line, f.entry ? " [entry]" : "");
}

// the same function, file and line
void expect_same(const std::vector<PyFrame> &got, std::size_t from, const std::vector<PyFrame> &want)
{
	ASSERT_EQ(got.size(), from + want.size());
	for (std::size_t i = 0; i < want.size(); i++) {
		const PyFrame &g = got[from + i], &w = want[i];
		EXPECT_TRUE(g.function == w.function && g.file == w.file && g.line == w.line)
			<< "frame " << from + i << ": read " << show(g) << ", Python says " << show(w);
	}
}

TEST(PythonFrames, Offsets)
{
	SKIP_IF_MISSING();
	PyLayout l = cowtrace::python_layout("/usr/bin/python3.11");
	std::printf("python3.11: build id %s, DWARF from %s\n%s", l.build_id.c_str(), l.debug_file.c_str(),
		    l.off.text().c_str());
	EXPECT_NE(l.off.runtime, 0u);
	EXPECT_EQ(l.off.code_unit, 2u);	// _Py_CODEUNIT is a uint16_t in every 3.x
	// the DWARF read itself (a debug root spelled differently: not cached)
	auto t0 = std::chrono::steady_clock::now();
	PyLayout again = cowtrace::python_layout("/usr/bin/python3.11", "/usr/lib/debug/.");
	std::printf("reading the offsets from DWARF: %.0f ms\n",
		    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
	EXPECT_EQ(again.off.text(), l.off.text());
#ifdef PY_OFFSETS
	// every offset the headers give (py_offsets.c) is the DWARF's
	std::string oracle;
	if (FILE *p = popen(PY_OFFSETS, "r")) {
		char b[256];
		while (std::fgets(b, sizeof(b), p))
			oracle += b;
		EXPECT_EQ(pclose(p), 0);
	}
	ASSERT_FALSE(oracle.empty()) << PY_OFFSETS << " printed nothing";
	std::string have = "\n" + l.off.text();
	for (std::size_t at = 0, nl; (nl = oracle.find('\n', at)) != std::string::npos; at = nl + 1) {
		std::string line = oracle.substr(at, nl - at);
		EXPECT_NE(have.find("\n" + line + "\n"), std::string::npos)
			<< "the headers say " << line << ", the DWARF does not";
	}
#else
	std::printf("no py_offsets: libpython3.11-dev's internal headers were absent at build time\n");
#endif
}

// py_target.py started, its markers read and a reader on it: the tests
// that read a live interpreter.
class PythonTarget : public ::testing::Test {
protected:
	void SetUp() override
	{
		SKIP_IF_MISSING();
		mark = markers();
		target = std::make_unique<Target>();
		reader = std::make_unique<PyReader>(target->kid.pid(), cowtrace::find_python(target->kid.pid()));
	}
	// Thread `tid`'s frames once `func` runs at line `marker`, printed,
	// checked against Python's own view of its callers (empty: never got
	// there, said).
	std::vector<PyFrame> walked(pid_t tid, const char *func, const char *marker, const std::vector<PyFrame> &callers)
	{
		auto f = frames_at(*reader, tid, func, mark.at(marker));
		for (const auto &p : f)
			std::printf("  %s\n", show(p).c_str());
		if (!f.empty()) {
			EXPECT_EQ(f[0].file, kScript);
			expect_same(f, 1, callers);
		}
		return f;
	}
	std::map<std::string, int> mark;
	std::unique_ptr<Target> target;
	std::unique_ptr<PyReader> reader;
};

TEST_F(PythonTarget, MainThread)
{
	Target &t = *target;
	auto f = walked(t.main_tid, "inner", "inner-block", t.main_callers);
	ASSERT_FALSE(f.empty());
	// the marked lines and the qualified name, by name
	ASSERT_EQ(f.size(), 5u);
	EXPECT_EQ(show(f[1]), fmt::format("Worker.method {}:{}", kScript, mark.at("method-call")));
	EXPECT_EQ(show(f[2]), fmt::format("middle {}:{}", kScript, mark.at("middle-call")));
	EXPECT_EQ(show(f[3]), fmt::format("outer {}:{}", kScript, mark.at("outer-call")));
	// Python-to-Python calls run in the one _PyEval_EvalFrameDefault that
	// the module's code entered
	EXPECT_EQ(show(f[4]), fmt::format("<module> {}:{} [entry]", kScript, mark.at("module-call")));
}

TEST_F(PythonTarget, SecondThread)
{
	Target &t = *target;
	PyReader &r = *reader;
	auto tids = r.threads();
	EXPECT_NE(std::find(tids.begin(), tids.end(), t.main_tid), tids.end());
	EXPECT_NE(std::find(tids.begin(), tids.end(), t.thread_tid), tids.end());
	auto f = walked(t.thread_tid, "background", "thread-block", t.thread_callers);
	ASSERT_FALSE(f.empty());
	ASSERT_EQ(f.size(), 4u);
	EXPECT_EQ(f[1].function, "Thread.run");
	EXPECT_TRUE(f.back().entry) << show(f.back());	// t_bootstrap (C) called it
	EXPECT_THROW(r.thread_frames(1), cowscope::Error);	// no such thread state
}

TEST_F(PythonTarget, Resolve)
{
	Target &t = *target;
	PyReader &r = *reader;
	auto f = frames_at(r, t.main_tid, "inner", mark.at("inner-block"));
	ASSERT_FALSE(f.empty());
	// what the BPF side will hand over: (code object, prev_instr)
	PyFrame p = r.resolve(f[0].code, f[0].instr);
	EXPECT_EQ(show(p), show(f[0]));
	// not started (prev_instr one unit before the code): its first line
	const auto &o = r.layout().off;
	std::uint64_t start = f[0].code + o.code_adaptive;
	p = r.resolve(f[0].code, start - o.code_unit);
	EXPECT_EQ(p.function, "inner");
	EXPECT_EQ(p.line, mark.at("inner-def"));
	// wrong instruction pointers: line unknown, the function still known
	for (std::uint64_t bad : {std::uint64_t{0}, start - 2 * o.code_unit, f[0].instr + 1, start + (1u << 24),
				  ~std::uint64_t{0}}) {
		p = r.resolve(f[0].code, bad);
		EXPECT_EQ(p.function, "inner") << fmt::format("0x{:x}", bad);
		EXPECT_EQ(p.line, 0) << fmt::format("0x{:x}", bad);
	}
	// a cache of two code objects starts over, and still resolves the five
	PyReader::Limits lim;
	lim.max_cached = 2;
	PyReader small(t.kid.pid(), r.layout(), lim);
	for (int round = 0; round < 2; round++)
		for (const auto &want : f) {
			PyFrame got = small.resolve(want.code, want.instr);
			EXPECT_EQ(fmt::format("{}:{}", got.function, got.line), fmt::format("{}:{}", want.function, want.line));
			EXPECT_LE(small.cached(), 2u);
		}
	// garbage code addresses: an error
	for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{0x1234}, r.layout().runtime(), f[0].code + 8,
				  ~std::uint64_t{0} - 4}) {
		EXPECT_THROW(r.resolve(bad, f[0].instr), cowscope::Error) << fmt::format("0x{:x}", bad);
	}
}

TEST(PythonFrames, NoDebugInfo)
{
	SKIP_IF_MISSING();
	char dir[] = "/tmp/cowscope-nodebug-XXXXXX";
	ASSERT_NE(mkdtemp(dir), nullptr);
	try {
		cowtrace::python_layout("/usr/bin/python3.11", dir);
		ADD_FAILURE() << "offsets without any DWARF";
	} catch (const cowtrace::PyNoDebugInfo &e) {
		std::printf("%s\n", e.what());
		EXPECT_NE(std::string(e.what()).find("python3.11-dbg"), std::string::npos) << e.what();
	}
	rmdir(dir);
}

TEST(PythonFrames, LineTable)
{
	// one entry (code 13: no columns) of 3 units, line +2; a second (code
	// 10: one line, +0) of 2 units; a third (15: no line) of 1 unit
	std::vector<std::uint8_t> t = {0x80 | 13 << 3 | 2, 4, 0x80 | 10 << 3 | 1, 0, 5, 0x80 | 15 << 3 | 0};
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, -1), 10);
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 0), 12);
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 2), 12);
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 3), 12);
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 4), 12);
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 5), 0);	// no line
	EXPECT_EQ(cowtrace::py_addr2line(t, 10, 6), 0);	// past the end
	// garbled: not an entry's first byte; a varint that never ends
	EXPECT_EQ(cowtrace::py_addr2line({0x05, 0x80}, 10, 0), 0);
	EXPECT_EQ(cowtrace::py_addr2line({0x80 | 13 << 3, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f}, 10, 0), 0);
}

// Rates, printed: whole-thread reads, and resolve() with a warm cache.
TEST_F(PythonTarget, Rate)
{
	Target &t = *target;
	PyReader &r = *reader;
	auto f = frames_at(r, t.main_tid, "inner", mark.at("inner-block"));
	ASSERT_FALSE(f.empty());
	using clock = std::chrono::steady_clock;
	auto run = [](auto &&fn) {
		int n = 0;
		auto t0 = clock::now();
		double s;
		do {
			for (int i = 0; i < 256; i++, n++)
				fn();
			s = std::chrono::duration<double>(clock::now() - t0).count();
		} while (s < 0.5);
		return n / s;
	};
	std::size_t nframes = f.size();
	double walks = run([&] { EXPECT_EQ(r.thread_frames(t.main_tid).size(), nframes); });
	double resolves = run([&] { EXPECT_EQ(r.resolve(f[1].code, f[1].instr).line, f[1].line); });
	std::printf("thread_frames: %.0f walks/s of %zu frames = %.0f frames/s; resolve (warm): %.0f/s\n", walks,
		    nframes, walks * nframes, resolves);
	// a cold layout and cache: the DWARF is read once per build id
	auto t0 = clock::now();
	PyReader cold(t.kid.pid(), cowtrace::find_python(t.kid.pid()));
	cold.thread_frames(t.main_tid);
	std::printf("find_python + first walk (DWARF cached): %.3f ms\n",
		    std::chrono::duration<double, std::milli>(clock::now() - t0).count());
}

} // namespace
