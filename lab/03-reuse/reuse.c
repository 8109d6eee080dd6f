/* Exercise 3: make the parent's writes reuse pages instead of copying them.
 *
 * A parent holds a 4 MiB buffer (1024 pages). It forks a child that
 * updates the even pages and reports back; the parent then rewrites the
 * whole buffer, and only after that tells the child it may go and reaps
 * it. Read README.md and predict how many of the parent's 1024 pages keep
 * their physical page (PFN) through its rewrite.
 *
 * Your change: make every write of the parent reuse its page in place
 * (at least 973 of the 1024 keep their PFN), without dropping any write:
 * the buffer must still end up holding the parent's values, and the child
 * must still do its part. Only main() needs changing; keep the two
 * checkpoints around the parent's rewrite.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab.h"

#define PAGES 1024
#define PAGE 4096

int main(void)
{
	char *buf = lab_map(PAGES * PAGE);
	madvise(buf, PAGES * PAGE, MADV_NOHUGEPAGE); /* 4 KiB pages */
	memset(buf, 'a', PAGES * PAGE);
	lab_range("buffer", buf, PAGES * PAGE);

	int done[2], bye[2];
	if (pipe(done) < 0 || pipe(bye) < 0)
		lab_die("pipe");
	pid_t child = fork();
	if (child < 0)
		lab_die("fork");
	if (child == 0) {
		close(done[0]);
		close(bye[1]);
		for (int p = 0; p < PAGES; p += 2)
			buf[p * PAGE] = 'c'; /* the child's update of the even pages */
		if (write(done[1], "d", 1) != 1)
			_exit(1);
		char c;
		/* Stay until the parent says goodbye (or closes the pipe). */
		while (read(bye[0], &c, 1) < 0)
			;
		_exit(0);
	}
	close(done[1]);
	close(bye[0]);

	char c;
	if (read(done[0], &c, 1) != 1) {
		fprintf(stderr, "the child died before it finished\n");
		return 1;
	}

	lab_checkpoint("parent-writes", child);
	for (int p = 0; p < PAGES; p++)
		memset(buf + p * PAGE, 'p', PAGE); /* the parent's rewrite */
	lab_checkpoint("parent-wrote", child);

	if (write(bye[1], "q", 1) != 1)
		lab_die("write");
	if (lab_reap(child, "the child") < 0)
		return 1;
	for (int p = 0; p < PAGES * PAGE; p++)
		if (buf[p] != 'p') {
			fprintf(stderr, "byte %d of the buffer is '%c', not the parent's 'p'\n", p, buf[p]);
			return 1;
		}
	printf("parent %d rewrote the buffer; child %d updated the even pages and exited\n", (int)getpid(),
	       (int)child);
	return 0;
}
