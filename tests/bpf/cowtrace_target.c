// The --by-mapping / --sites test program. It fills a malloc heap (brk) and
// an anonymous mmap, forks, and then the parent writes PH heap pages from
// write_heap_pages() and PM mmap pages from write_mmap_pages(), the child CH
// and CM pages (other pages: every write copies). Both exit before the
// tracer stops.
//   cowtrace_target PH PM CH CM [--unlink-self]
// --unlink-self: the parent deletes its own binary after the fork (frames of
// a deleted binary must still resolve).
// No sleep to let cowtrace read its maps: cowtrace's watcher reads them at
// the exec event (its whole run once fit between two 10 ms polls, and
// every frame went unresolved).
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define HEAP_PAGES 2048UL	/* 8 MiB: under the mmap threshold set below */
#define MMAP_PAGES 2048UL

__attribute__((noinline)) void write_heap_pages(volatile char *p, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		p[i * PAGE] = 2;
}

__attribute__((noinline)) void write_mmap_pages(volatile char *p, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		p[i * PAGE] = 3;
}

static unsigned long arg(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == 0 || *end || v > HEAP_PAGES / 2) {
		fprintf(stderr, "cowtrace_target: expected a page count 0..%lu, got \"%s\"\n", HEAP_PAGES / 2, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: cowtrace_target PH PM CH CM [--unlink-self]\n");
		return 2;
	}
	unsigned long ph = arg(argv[1]), pm = arg(argv[2]), ch = arg(argv[3]), cm = arg(argv[4]);
	int unlink_self = argc > 5 && !strcmp(argv[5], "--unlink-self");

	mallopt(M_MMAP_THRESHOLD, 16 << 20);	/* the heap comes from brk */
	char *heap = malloc((HEAP_PAGES + 1) * PAGE);
	char *map = mmap(NULL, MMAP_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!heap || map == MAP_FAILED) {
		perror("cowtrace_target: allocating");
		return 1;
	}
	heap = (char *)(((unsigned long)heap + PAGE - 1) & ~(PAGE - 1));
	madvise(heap, HEAP_PAGES * PAGE, MADV_NOHUGEPAGE);
	madvise(map, MMAP_PAGES * PAGE, MADV_NOHUGEPAGE);
	memset(heap, 1, HEAP_PAGES * PAGE);
	memset(map, 1, MMAP_PAGES * PAGE);

	/* Both stay alive until both have written: a page written after the
	 * other process exited would be reused, not copied. */
	int done[2];
	if (pipe(done)) {
		perror("cowtrace_target: pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("cowtrace_target: fork");
		return 1;
	}
	if (pid == 0) {
		/* the child writes the upper half, the parent the lower */
		write_heap_pages(heap + HEAP_PAGES / 2 * PAGE, ch);
		write_mmap_pages(map + MMAP_PAGES / 2 * PAGE, cm);
		char c;
		close(done[1]);
		_exit(read(done[0], &c, 1) == 0 ? 0 : 1);	/* until the parent is done */
	}
	close(done[0]);
	if (unlink_self && unlink("/proc/self/exe") != 0) {
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n > 0) {
			self[n] = 0;
			unlink(self);
		}
	}
	write_heap_pages(heap, ph);
	write_mmap_pages(map, pm);
	close(done[1]);		/* the child may exit now */
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "cowtrace_target: child failed\n");
		return 1;
	}
	return 0;
}
