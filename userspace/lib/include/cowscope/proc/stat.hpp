// /proc/PID/stat: one parser, and the one rule for whether a process is
// still there (see fs/proc/array.c do_task_stat() for the format).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace cowscope::proc {

struct Stat {
	pid_t pid = 0;
	std::string comm;	// between the first '(' and the last ')': any bytes but NUL
	char state = '?';	// R S D T t Z X I ...
	pid_t ppid = 0;
	unsigned long flags = 0;	// PF_* (include/linux/sched.h)
	// Gone: a zombie (Z) or dead (X) task, whose memory is already released.
	bool gone() const { return state == 'Z' || state == 'X'; }
	bool kernel_thread() const { return flags & 0x00200000UL; }	// PF_KTHREAD
};

// The text of a stat file, or nullopt when it is not one (no "(comm)", too
// few fields, a field that is not a number).
std::optional<Stat> parse_stat(std::string_view text);
// nullopt when the process does not exist (or its stat cannot be read).
std::optional<Stat> read_stat(pid_t pid);
// /proc/PID/status, the fields stat lacks: a thread id's thread group
// (Tgid), and PPid and State for it (fs/proc/array.c task_state()).
struct Status {
	pid_t tgid = 0, ppid = 0;
	char state = '?';
	bool gone() const { return state == 'Z' || state == 'X'; }
};
// nullopt without a Tgid line (not a status file).
std::optional<Status> parse_status(std::string_view text);
// nullopt when the process (or thread) does not exist.
std::optional<Status> read_status(pid_t pid);

// The process exists and is not gone (see Stat::gone): the one zombie rule
// every reader of a live process applies.
bool alive(pid_t pid);

} // namespace cowscope::proc
