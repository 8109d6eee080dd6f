/*
 * The COW workload of the cowtrace benchmarks (scripts/bench.d/20-cowtrace.sh,
 * 25-cowtrace-serve.sh): populate PAGES anonymous 4 KiB pages (no THP),
 * fork, and the child writes one byte to each (PAGES copy-on-write faults),
 * timing its loop; prints the child's loop time in ns.
 *   cow-workload PAGES
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	size_t pages = strtoul(argv[1], 0, 10), i;
	char *p = mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	madvise(p, pages * 4096, MADV_NOHUGEPAGE);
	memset(p, 1, pages * 4096);
	int fd[2];
	if (pipe(fd)) return 1;
	pid_t c = fork();
	if (c == 0) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (i = 0; i < pages; i++) p[i * 4096] = 2;
		clock_gettime(CLOCK_MONOTONIC, &b);
		long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
		if (write(fd[1], &ns, sizeof ns) != sizeof ns) _exit(1);
		_exit(0);
	}
	long long ns = 0;
	if (read(fd[0], &ns, sizeof ns) != sizeof ns) return 1;
	waitpid(c, 0, 0);
	printf("%lld\n", ns);
	return 0;
}
