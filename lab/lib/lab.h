/* lab.h: the calls an exercise uses to let its checker look at it:
 *
 *   lab_checkpoint(name, child)  tell the checker "I reached NAME" (with my
 *                                pid and CHILD's, 0 for none) and wait until
 *                                it has looked: the checker reads the
 *                                module's views (/proc/cowscope) of both
 *                                processes while they stand still.
 *   lab_range(name, addr, len)   tell the checker where a buffer lies, so
 *                                it can look at just those pages.
 *   lab_fork()                   fork(), timed: the parent reports how long
 *                                the fork() call took (exercise 4).
 *
 * and the few the programs share to stay short:
 *
 *   lab_map(bytes)               mmap() BYTES of private anonymous memory,
 *                                readable and writable (page-aligned, not
 *                                touched yet); exits when it cannot.
 *   lab_reap(child, who)         waitpid() for CHILD; 0 when it exited with
 *                                status 0, else -1 after a line on standard
 *                                error saying how WHO ended.
 *   lab_die(what)                "lab: WHAT: <why>" (errno's reason) on
 *                                standard error, and exit with status 99
 *                                (_exit: a child's copy of the parent's
 *                                unflushed stdio buffers is not written).
 *
 * Under the grader (in the VM lab) the environment names LAB_EVENTS, a file
 * where each event is appended as one line, and LAB_CONTROL, a path prefix:
 * at a checkpoint the process makes the FIFO LAB_CONTROL.PID and waits for
 * the checker to write "go" into it once it is done looking. Run by hand
 * (neither set) a checkpoint prints itself to standard error and goes on at
 * once, so you can run the program anywhere; set LAB_STEP=1 to make it wait
 * for Enter instead (then look with `cowscope diff PARENT CHILD` in another
 * terminal). Leave these calls where the starting file has them: the
 * checker waits for each one.
 */
#ifndef COWSCOPE_LAB_H
#define COWSCOPE_LAB_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline void lab_die(const char *what)
{
	fprintf(stderr, "lab: %s: %s\n", what, strerror(errno));
	_exit(99);
}

/* One line appended to LAB_EVENTS in one write(2), so that lines of the
 * parent and the child never mix. */
static inline void lab_event(const char *line)
{
	const char *path = getenv("LAB_EVENTS");
	if (!path) {
		fprintf(stderr, "lab: %s", line);
		return;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		lab_die("open LAB_EVENTS");
	size_t len = strlen(line);
	if (write(fd, line, len) != (ssize_t)len)
		lab_die("write LAB_EVENTS");
	close(fd);
}

static inline void lab_checkpoint(const char *name, pid_t child)
{
	char line[256];
	const char *ctl = getenv("LAB_CONTROL");
	char fifo[4096];
	if (ctl) {
		/* This process's own FIFO, made before the checker hears of the
		 * checkpoint: a parent and a child may stand at checkpoints at
		 * the same time, each waiting for its own "go". */
		snprintf(fifo, sizeof(fifo), "%s.%d", ctl, (int)getpid());
		if (mkfifo(fifo, 0600) < 0 && errno != EEXIST)
			lab_die("mkfifo LAB_CONTROL.PID");
	}
	snprintf(line, sizeof(line), "CHECKPOINT %s pid=%d child=%d\n", name, (int)getpid(), (int)child);
	lab_event(line);
	if (!ctl) {
		if (getenv("LAB_STEP")) {
			fprintf(stderr, "lab: press Enter to go on\n");
			int c;
			while ((c = getchar()) != EOF && c != '\n')
				;
		}
		return;
	}
	/* Blocks until the checker opens the FIFO to write "go". */
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		lab_die("open LAB_CONTROL.PID");
	char buf[16];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) < 0 && errno == EINTR)
		;
	if (n <= 0) {
		errno = n < 0 ? errno : EPIPE;
		lab_die("read LAB_CONTROL.PID (the checker went away)");
	}
	close(fd);
	unlink(fifo);
}

static inline void lab_range(const char *name, const void *addr, size_t len)
{
	char line[256];
	unsigned long start = (unsigned long)addr;
	snprintf(line, sizeof(line), "RANGE %s 0x%lx-0x%lx\n", name, start, start + (unsigned long)len);
	lab_event(line);
}

static inline pid_t lab_fork(void)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid != 0) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (pid > 0) {
			long us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
			char line[128];
			snprintf(line, sizeof(line), "FORK us=%ld pid=%d child=%d\n", us, (int)getpid(),
				 (int)pid);
			lab_event(line);
		}
	}
	return pid;
}

static inline void *lab_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		lab_die("mmap");
	return p;
}

static inline int lab_reap(pid_t child, const char *who)
{
	int st;
	while (waitpid(child, &st, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "waitpid for %s (%d): %s\n", who, (int)child, strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st))
		fprintf(stderr, "%s (%d) exited with status %d\n", who, (int)child, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		fprintf(stderr, "%s (%d) was killed by signal %d (%s)\n", who, (int)child, WTERMSIG(st),
			strsignal(WTERMSIG(st)));
	else
		fprintf(stderr, "%s (%d) ended with wait status %#x\n", who, (int)child, st);
	return -1;
}

#endif
