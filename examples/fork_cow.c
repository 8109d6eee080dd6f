/*
 * fork_cow: the smallest copy-on-write demonstration.
 *
 *   cc -O2 -o fork_cow fork_cow.c
 *   ./fork_cow [MIB] [PAUSE_SECONDS]
 *
 * Fills MIB MiB (default 64) so that every page is present, forks, and the
 * child writes one byte into every fourth page: each such write takes a
 * copy-on-write fault and copies the page. Both pause PAUSE_SECONDS
 * (default 0) after the child's writes so that `cowscope diff PARENT CHILD`
 * can look at them. Watch the faults with `sudo cowtrace -- ./fork_cow`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	unsigned pause_s = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
	long page = sysconf(_SC_PAGESIZE);
	size_t size;
	char *buf;
	pid_t child;
	int status;

	if (mib <= 0 || mib > 65536) {
		fprintf(stderr, "fork_cow: expected a size in MiB from 1 to 65536, got \"%s\"\n", argv[1]);
		return 2;
	}
	size = (size_t)mib << 20;
	buf = malloc(size);
	if (!buf) {
		perror("fork_cow: malloc");
		return 1;
	}
	memset(buf, 1, size);

	child = fork();
	if (child < 0) {
		perror("fork_cow: fork");
		return 1;
	}
	if (child == 0) {
		size_t off, n = 0;

		for (off = 0; off < size; off += 4 * (size_t)page, n++)
			buf[off] = 2; /* a COW fault: the page is copied */
		printf("child %d: wrote %zu of %zu pages (each one a copy-on-write copy)\n",
		       (int)getpid(), n, size / (size_t)page);
		fflush(stdout);
		sleep(pause_s);
		_exit(0);
	}
	printf("parent %d: forked child %d over a %ld MiB buffer\n", (int)getpid(), (int)child, mib);
	fflush(stdout);
	if (waitpid(child, &status, 0) < 0) {
		perror("fork_cow: waitpid");
		return 1;
	}
	free(buf);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
