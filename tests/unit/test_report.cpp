// report/: cowtrace's data model, its text and its one JSON schema. The
// reader must give back exactly what the writer was given (a round trip
// through the text of the JSON), refuse what is not schema 2 saying why,
// and the notes must be told apart by kind, not by their prose.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cowscope/base/error.hpp"
#include "cowscope/report/json.hpp"
#include "cowscope/report/text.hpp"

using namespace cowtrace;

namespace {

Plan fentry_plan()
{
	Plan p;
	p.method = Method::fentry;
	p.tp_btf = false;	// not recorded in the JSON: read back as false
	p.copy_hook = true;
	p.huge_hook = true;
	p.latency = true;
	p.reuse_hook = false;
	return p;
}

std::vector<ProcStats> two_procs()
{
	ProcStats a;
	a.pid = 100;
	a.ppid = 1;
	a.comm = "parent";
	a.wp_faults = 54;
	a.cow_copies = 30;
	a.cow_reuses = 20;
	a.zero_fills = 4;
	a.thp_wp_faults = 2;
	a.thp_fallbacks = 1;
	a.latency_log2_ns[0] = 1;
	a.latency_log2_ns[10] = 7;
	ProcStats b;
	b.pid = 101;
	b.ppid = 100;
	b.comm = "child with spaces";
	b.exited = true;
	b.wp_faults = 9;
	b.cow_copies = 9;
	b.unclassified = 1;
	return {a, b};
}

Frame frame(std::uint64_t ip, const char *func, const char *module, bool guess = false)
{
	Frame f;
	f.ip = ip;
	f.func = func;
	f.offset = 0x1a;
	f.module = module;
	f.file = *func ? "t.c" : "";
	f.line = *func ? 12 : 0;
	f.guess = guess;
	return f;
}

// A PostgreSQL backend's site: `copies` at ExecScan, in process `pid`.
Site exec_scan(pid_t pid, std::uint64_t copies)
{
	Site s;
	s.pid = pid;
	s.comm = "postgres";
	s.stackid = 1;
	s.copies = copies;
	s.frames = {frame(0x401000, "ExecScan", "/usr/lib/postgresql/15/bin/postgres")};
	return s;
}

Attribution attribution()
{
	Attribution a;
	a.by_mapping = a.sites = true;
	a.mappings = {{100, 0x1000, 0x5000, "heap", "", 44, 25, 15, 4}, {100, 0, 0, "unknown", "", 2, 2, 0},
		      {101, 0x7f0000, 0x7f8000, "file-private", "/usr/lib/libc.so.6", 9, 9, 0}};
	Site s1;
	s1.pid = 100;
	s1.comm = "parent";
	s1.stackid = 77;
	s1.copies = 25;
	s1.reuses = 15;
	s1.zero_fills = 4;
	s1.frames = {frame(0x401000, "write_pages", "/bin/t"), frame(0x401200, "main", "/bin/t"),
		     frame(0x7f0010, "", "")};
	s1.unwound = 2;
	Site s2;
	s2.pid = 101;
	s2.comm = "child with spaces";
	s2.stackid = 78;
	s2.copies = 9;
	s2.frames = {frame(0x401000, "write_pages", "/bin/t"), frame(0x7f0100, "memset", "/lib/x.so", true)};
	s2.unwound = 2;
	Site none;
	none.pid = 101;
	none.comm = "child with spaces";
	none.stackid = -1;
	none.copies = 0;
	none.reuses = 0;
	a.sites_by_pid = {s1, s2, none};
	a.merged = merge_sites(a.sites_by_pid);
	a.errors = {1, 2, 3, 4, 5, 6};
	a.symbolize_ms = 12.5;
	a.addresses = 5;
	a.notes = {Note{Note::Kind::huge_pmd, ""}, Note{Note::Kind::dynsym_guess, "/lib/x.so"}};
	return a;
}

} // namespace

TEST(ReportJson, AlwaysAnObjectWithTheSchema)
{
	auto j = report_json(two_procs(), fentry_plan(), nullptr);
	ASSERT_TRUE(j.is_object()) << j.dump();
	EXPECT_EQ(j["schema"], kSchema);
	EXPECT_EQ(j["processes"].size(), 2u);
	EXPECT_FALSE(j.contains("attribution_errors")) << "no attribution asked for";
	// an attribution with neither part asked for writes none either
	Attribution off;
	EXPECT_EQ(report_json(two_procs(), fentry_plan(), &off), j);
}

TEST(ReportJson, ReadsBackWhatItWrote)
{
	const Plan plan = fentry_plan();
	const auto procs = two_procs();
	const Attribution a = attribution();
	const auto written = report_json(procs, plan, &a);
	// through the text, as a consumer reads the file
	const Report r = read_report(nlohmann::json::parse(written.dump(2)), "test");
	EXPECT_EQ(r.schema, kSchema);
	EXPECT_EQ(r.processes, procs);
	EXPECT_EQ(r.plan.method, plan.method);
	EXPECT_EQ(r.plan.copy_hook, plan.copy_hook);
	EXPECT_EQ(r.plan.reuse_hook, plan.reuse_hook);
	EXPECT_EQ(r.plan.huge_hook, plan.huge_hook);
	EXPECT_EQ(r.plan.latency, plan.latency);
	EXPECT_STREQ(r.plan.zero_fills_by(), plan.zero_fills_by());
	EXPECT_EQ(r.processes[0].zero_fills, 4U);
	ASSERT_TRUE(r.attribution.has_value());
	const Attribution &b = *r.attribution;
	EXPECT_TRUE(b.by_mapping);
	EXPECT_TRUE(b.sites);
	EXPECT_EQ(b.mappings, a.mappings);
	EXPECT_EQ(b.sites_by_pid, a.sites_by_pid);
	EXPECT_EQ(b.merged, a.merged);
	EXPECT_EQ(b.errors, a.errors);
	EXPECT_EQ(b.notes, a.notes);
	EXPECT_EQ(b.addresses, a.addresses);
	EXPECT_DOUBLE_EQ(b.symbolize_ms, a.symbolize_ms);
	// and writing what was read gives the same JSON
	EXPECT_EQ(report_json(r.processes, r.plan, &b), written);
	// the text made of it is the same too
	EXPECT_EQ(format_sites(b, r.processes, 5), format_sites(a, procs, 5));
	EXPECT_EQ(format_mappings(b, r.processes), format_mappings(a, procs));
	EXPECT_EQ(folded(b, r.processes), folded(a, procs));
}

TEST(ReportJson, EveryMethodsPlanReadsBack)
{
	for (Method m : {Method::fentry, Method::kprobe, Method::vmevent, Method::tracepoint})
		for (int hooks = 0; hooks < 8; hooks++) {
			Plan p;
			p.method = m;
			bool windowed = m == Method::fentry || m == Method::kprobe;
			p.copy_hook = windowed && (hooks & 1);
			p.reuse_hook = windowed && (hooks & 2);
			p.zero_hook = !windowed && (hooks & 4);
			auto r = read_report(report_json(two_procs(), p, nullptr));
			EXPECT_EQ(r.plan.method, m) << method_name(m);
			EXPECT_EQ(r.plan.copy_hook, p.copy_hook) << method_name(m) << " hooks " << hooks;
			EXPECT_EQ(r.plan.reuse_hook, p.reuse_hook) << method_name(m) << " hooks " << hooks;
			EXPECT_EQ(r.plan.reuses_derived(), m == Method::tracepoint);
			EXPECT_EQ(r.plan.zero_fills_by() != nullptr, windowed || (hooks & 4))
				<< method_name(m) << " hooks " << hooks;
		}
}

TEST(ReportJson, RefusesWhatIsNotSchema2SayingWhy)
{
	auto says = [](const nlohmann::json &j, const std::string &what) {
		try {
			read_report(j, "--from-trace f.json");
		} catch (const cowscope::Error &e) {
			std::string m = e.what();
			EXPECT_EQ(m.rfind("--from-trace f.json: ", 0), 0u) << m;
			EXPECT_NE(m.find(what), std::string::npos) << m;
			return;
		}
		ADD_FAILURE() << "accepted " << j.dump();
	};
	auto ok = report_json(two_procs(), fentry_plan(), nullptr);
	says(ok["processes"], "a bare array of processes is cowtrace's JSON before schema 2");
	says(nlohmann::json{{"processes", ok["processes"]}}, "no \"schema\"");
	auto newer = ok;
	newer["schema"] = 3;
	says(newer, "schema 3, this reader knows schema 2 only");
	auto lacks = ok;
	lacks["processes"][1].erase("cow_copies");
	says(lacks, "processes[1]: no \"cow_copies\"");
	auto wrong = ok;
	wrong["processes"][0]["pid"] = "one";
	says(wrong, "processes[0]: \"pid\" is \"one\", not the expected type");
	auto method = ok;
	method["processes"][0]["method"] = "banana";
	says(method, "\"method\" is \"banana\", not a method");
	auto by = ok;
	by["processes"][0]["cow_copies_by"] = "guesswork";
	says(by, "\"cow_copies_by\" is \"guesswork\", not how the fentry method counts");
	Attribution a = attribution();
	auto attr = report_json(two_procs(), fentry_plan(), &a);
	attr["processes"][0]["sites"][0]["frames"][1]["ip"] = "401200";
	says(attr, "processes[0], sites, frame 1: \"ip\" is \"401200\", not a hexadecimal address");
	auto note = report_json(two_procs(), fentry_plan(), &a);
	note["notes"].push_back("something new");
	says(note, "\"something new\" is not a note this reader knows");
	says(nlohmann::json("text"), "not a cowtrace JSON record");
}

TEST(ReportNotes, ToldApartByKindNotByProse)
{
	for (const Note &n : {Note{Note::Kind::no_reuses, ""}, Note{Note::Kind::huge_pmd, ""},
			      Note{Note::Kind::dynsym_guess, "/opt/method/huge-PMD/lib.so"}})
		EXPECT_EQ(Note::parse(n.text()), n) << n.text();
	EXPECT_FALSE(Note::parse("names are guesses"));
	// a module whose path says "method" and "huge-PMD" is still a sites
	// note: not repeated under the mappings (a prose search would)
	Attribution a;
	a.by_mapping = a.sites = true;
	a.notes = {Note{Note::Kind::dynsym_guess, "/opt/method/huge-PMD/lib.so"}};
	EXPECT_EQ(format_mappings(a, two_procs()).find("lib.so"), std::string::npos) << format_mappings(a, two_procs());
	EXPECT_NE(format_sites(a, two_procs(), 3).find("sites: /opt/method/huge-PMD/lib.so: no .symtab"),
		  std::string::npos);
	a.notes = {Note{Note::Kind::huge_pmd, ""}};
	EXPECT_NE(format_mappings(a, two_procs()).find("mappings: huge-PMD write faults kept in place"),
		  std::string::npos);
}

TEST(ReportText, StackCollisionsAreSaid)
{
	Attribution a;
	a.sites = true;
	EXPECT_EQ(format_sites(a, two_procs(), 3).find("stack hash"), std::string::npos) << "none, nothing said";
	a.errors.stack_collisions = 3;
	EXPECT_NE(format_sites(a, two_procs(), 3)
			  .find("sites: 3 faults whose stack hash met another stack's (told apart by their addresses "
				"and kept apart, not merged)\n"),
		  std::string::npos)
		<< format_sites(a, two_procs(), 3);
	EXPECT_EQ(report_json(two_procs(), fentry_plan(), &a)["attribution_errors"]["stack_collisions"], 3);
}

TEST(ReportText, TableAndSitesAsBefore)
{
	// The layout the programs print (compared with 0.2.0's output when
	// report/ was split out of the tracer).
	auto procs = two_procs();
	std::string t = format_table(procs, fentry_plan());
	EXPECT_EQ(t.substr(0, t.find('\n') + 1),
		  "    PID    PPID COMM               WP_FAULTS  COW_COPIES  COW_REUSES  ZERO_FILLS METHOD    \n");
	EXPECT_NE(t.find("   *101     100 child with spaces           9           9           0           0 fentry    \n"),
		  std::string::npos)
		<< t;
	// a method that cannot tell zero-page fills apart shows "-" and says why
	Plan old = fentry_plan();
	old.method = Method::vmevent;
	old.zero_hook = false;
	std::string o = format_table(procs, old);
	EXPECT_NE(o.find("           0           - vmevent"), std::string::npos) << o;
	EXPECT_NE(o.find("ZERO_FILLS -: this method cannot tell writes to the shared zero page from copies"),
		  std::string::npos)
		<< o;
	EXPECT_NE(t.find("pid 101: 1 write faults neither copy nor reuse"), std::string::npos) << t;
	EXPECT_NE(t.find("do_wp_page latency, pid 100:\n"), std::string::npos) << t;
	Attribution a = attribution();
	std::string s = format_sites(a, procs, 5);
	EXPECT_NE(s.find("copy sites of pid 100 (parent) (1 stacks, top 1):\n"
			 "  #1   25 copies, 15 reuses, 4 zero fills, unwound 2 of 3 frames (frame-pointer walk left the "
			 "mapped files)\n"
			 "        =0  write_pages+0x1a (/bin/t) t.c:12\n"),
		  std::string::npos)
		<< s;
	EXPECT_NE(s.find("zero-fill sites of pid 100 (parent) (1 stacks, top 1):\n"
			 "  #1   4 zero fills, 25 copies, 15 reuses,"),
		  std::string::npos)
		<< s;
	EXPECT_NE(s.find("copy sites, all processes merged"), std::string::npos) << s;
	EXPECT_EQ(folded(a, procs), "child_with_spaces;memset;write_pages 9\nparent;[unknown];main;write_pages 25\n");
}

// Families: processes forked without exec under the process they forked
// from; exec'd ones and untraced parents start their own; copies per member.
TEST(ReportFamilies, ForkedWithoutExecUnderTheirRoot)
{
	auto p = [](pid_t pid, pid_t ppid, std::uint64_t copies, std::uint32_t execs, const char *comm) {
		ProcStats s;
		s.pid = pid;
		s.ppid = ppid;
		s.cow_copies = copies;
		s.wp_faults = copies + 1;
		s.cow_reuses = 1;
		s.execs = execs;
		s.comm = comm;
		return s;
	};
	// 10 (exec'd, its parent 1 untraced) forks backends 11..15 (12 forks
	// 16 without exec: still 10's family); 20 was exec'd by 10 and forks 21
	std::vector<ProcStats> procs = {p(10, 1, 5, 1, "postgres"),   p(11, 10, 10, 0, "postgres"),
					p(12, 10, 20, 0, "postgres"), p(13, 10, 30, 0, "postgres"),
					p(14, 10, 40, 0, "postgres"), p(15, 10, 100, 0, "postgres"),
					p(16, 12, 1, 0, "helper"),    p(20, 10, 7, 1, "sh"),
					p(21, 20, 3, 0, "sh")};
	auto f = families(procs);
	ASSERT_EQ(f.size(), 1U);	// 20's family has one member: below min_members
	EXPECT_EQ(f[0].root, 10);
	EXPECT_EQ(f[0].root_comm, "postgres");
	EXPECT_EQ(f[0].comm, "*");	// a helper among the postgres backends
	EXPECT_EQ(f[0].members, (std::vector<pid_t>{11, 12, 13, 14, 15, 16}));
	EXPECT_EQ(f[0].counts.cow_copies, 201U);
	EXPECT_EQ(f[0].counts.wp_faults, 207U);
	EXPECT_DOUBLE_EQ(f[0].copies_mean, 201.0 / 6);
	EXPECT_EQ(f[0].copies_p50, 20U);	// nearest rank of 1 10 20 30 40 100
	EXPECT_EQ(f[0].copies_p99, 100U);
	EXPECT_EQ(f[0].copies_max, 100U);
	auto one = families(procs, 1);
	ASSERT_EQ(one.size(), 2U);
	EXPECT_EQ(one[1].root, 20);
	EXPECT_EQ(one[1].members, (std::vector<pid_t>{21}));
	// shown one by one: all up to `top`, else the top by copies and the roots
	EXPECT_EQ(shown_processes(procs, f, false, 9).size(), 9U);
	auto shown = shown_processes(procs, f, false, 2);
	std::vector<pid_t> pids;
	for (const auto &s : shown)
		pids.push_back(s.pid);
	EXPECT_EQ(pids, (std::vector<pid_t>{10, 14, 15}));
	EXPECT_EQ(shown_processes(procs, f, true, 2).size(), 9U);
	// the record: families, and per-process sites only for the shown
	Grouping g{f, {10, 14, 15}, 1};
	Attribution a;
	a.sites = true;
	a.sites_by_pid = {exec_scan(12, 20), exec_scan(13, 30)};
	a.merged = merge_sites(a.sites_by_pid);
	auto j = report_json(procs, Plan{}, &a, g);
	ASSERT_EQ(j["families"].size(), 1U);
	EXPECT_EQ(j["families"][0]["processes"], 6);
	EXPECT_EQ(j["families"][0]["sites"].size(), 1U);
	EXPECT_EQ(j["families"][0]["sites"][0]["copies"], 50);
	EXPECT_EQ(j["families"][0]["sites"][0]["processes"], 2);
	EXPECT_FALSE(j["processes"][2].contains("sites"));	// 12: counts only
	EXPECT_TRUE(j["processes"][0].contains("sites"));
	EXPECT_EQ(read_report(j).processes, procs);	// every process's counts read back
	std::string t = format_families(f, Plan{}, procs, shown);
	EXPECT_NE(t.find("     10 postgres         *                     6         207         201           6"),
		  std::string::npos)
		<< t;
	// 6 left out of the table: 11, 12, 13, 16 in the family, 20 and 21 not
	EXPECT_NE(t.find("33.5 20 100 100\n(6 more processes not in the table above, 4 of them in these families"),
		  std::string::npos)
		<< t;
	// processes left out and no family: still said
	EXPECT_NE(format_families({}, Plan{}, procs, shown).find("(6 more processes not in the table above, 0 of them"),
		  std::string::npos);
}

// Members folded after they exited (the tracer's Folding) count in their
// family with the live ones: processes, counts, the per-process copies
// distribution, a live process whose parent was folded, the JSON's
// "folded" read back, and the folded sites merged into the family's.
TEST(ReportFamilies, FoldedMembersCountInTheirFamily)
{
	auto p = [](pid_t pid, pid_t ppid, std::uint64_t copies) {
		ProcStats s;
		s.pid = pid;
		s.ppid = ppid;
		s.cow_copies = copies;
		s.wp_faults = copies;
		s.comm = "postgres";
		s.exited = true;
		return s;
	};
	ProcStats root = p(10, 1, 5);
	root.execs = 1;
	root.exited = false;
	Folding fo;
	// 100 backends of 10 copied 3 pages each, one copied 500; 31 (folded)
	// forked 40, which lives on
	for (pid_t pid = 1000; pid < 1100; pid++)
		fo.add(10, "postgres", p(pid, 10, 3));
	fo.add(10, "postgres", p(31, 10, 500));
	EXPECT_EQ(fo.processes(), 101U);
	std::vector<ProcStats> live = {root, p(11, 10, 7), p(40, 31, 9)};
	auto f = families(live, 2, &fo);
	ASSERT_EQ(f.size(), 1U);
	EXPECT_EQ(f[0].root, 10);
	EXPECT_EQ(f[0].processes, 103U);
	EXPECT_EQ(f[0].folded, 101U);
	EXPECT_EQ(f[0].members, (std::vector<pid_t>{11, 40}));	// 40 through its folded parent
	EXPECT_EQ(f[0].counts.cow_copies, 300U + 500 + 7 + 9);
	EXPECT_EQ(f[0].copies_p50, 3U);
	EXPECT_EQ(f[0].copies_p99, 9U);	// rank 102 of 103 in 3 (x100), 7, 9, 500
	EXPECT_EQ(f[0].copies_max, 500U);
	EXPECT_DOUBLE_EQ(f[0].copies_mean, 816.0 / 103);
	// without the folding, 40 is a root of its own and the family is 11
	EXPECT_EQ(families(live, 1).size(), 1U);
	EXPECT_EQ(families(live, 1)[0].processes, 1U);

	// their sites: merged with the live members' by frame names
	Attribution a;
	a.sites = true;
	a.sites_by_pid = {exec_scan(11, 7)};
	Site folded_site = exec_scan(0, 800);
	folded_site.pids = 101;
	fold_sites(a.folded_sites, {folded_site}, 10);
	fold_sites(a.folded_sites, {folded_site}, 10);	// a second batch: added
	ASSERT_EQ(a.folded_sites.size(), 1U);
	EXPECT_EQ(a.folded_sites[0].pid, 10);
	EXPECT_EQ(a.folded_sites[0].copies, 1600U);
	EXPECT_EQ(a.folded_sites[0].pids, 202U);
	auto fs = family_sites(a, f[0]);
	ASSERT_EQ(fs.size(), 1U);
	EXPECT_EQ(fs[0].copies, 1607U);
	EXPECT_EQ(fs[0].pids, 203U);

	// JSON: the family counts them, "folded" keeps them, read back exact
	Grouping g;
	g.families = f;
	g.folding = &fo;
	g.detailed = {10, 11, 40};
	auto j = report_json(live, Plan{}, nullptr, g);
	EXPECT_EQ(j["families"][0]["processes"], 103);
	EXPECT_EQ(j["families"][0]["folded"], 101);
	ASSERT_EQ(j["folded"].size(), 1U);
	EXPECT_EQ(j["folded"][0]["copies_per_process"]["3"], 100);
	auto back = read_report(j);
	ASSERT_EQ(back.folding.families.size(), 1U);
	EXPECT_EQ(back.folding.families.at(10).copies, fo.families.at(10).copies);
	EXPECT_EQ(back.folding.families.at(10).counts.cow_copies, 800U);
	// a distribution that does not add up to its processes is refused
	j["folded"][0]["processes"] = 100;
	EXPECT_THROW(read_report(j), cowscope::Error);

	std::string t = format_families(f, Plan{}, live, live);
	EXPECT_NE(t.find("     10 postgres         postgres            103"), std::string::npos) << t;
	EXPECT_NE(t.find("(101 exited processes folded into these families"), std::string::npos) << t;
}
