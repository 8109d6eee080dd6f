// A process that lives about a millisecond, for cowtrace's maps watcher: it
// writes 64 pages of its .bss, forks, the child rewrites 16 of them from
// write_brief_pages() (16 copies) and exits, the parent reaps it and exits.
// Both are gone long before the watcher's 10 ms rounds; cowtrace must still
// resolve these copy sites (the watcher reads the maps at the exec event).
// Prints how long it lived (from main to exit) on stderr.
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define PAGES 64UL
#define CHILD_WRITES 16UL

static char buf[PAGES * PAGE] __attribute__((aligned(4096)));	/* its own pages, no other data */

__attribute__((noinline)) void write_brief_pages(volatile char *p, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		p[i * PAGE] = 2;
}

int main(void)
{
	struct timespec t0, t1;
	int st;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long i = 0; i < PAGES; i++)
		buf[i * PAGE] = 1;
	pid_t pid = fork();
	if (pid < 0) {
		perror("cowtrace_brief: fork");
		return 1;
	}
	if (pid == 0) {
		write_brief_pages(buf, CHILD_WRITES);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "cowtrace_brief: child failed\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "cowtrace_brief: lived %ld us from main to exit\n",
		(t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
	return 0;
}
