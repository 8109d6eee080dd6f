/* Exercise 2: which pages does a child copy?
 *
 * A table of 65536 records of 64 bytes (4 MiB = 1024 pages) is built
 * before the fork. The child then sets each record's `flag` to say whether
 * its id is a multiple of 1024, as the specification below asks. Read
 * README.md and write down your predictions before you run it.
 *
 * Your change: make the child copy as few pages of the table as it can
 * while still leaving every flag right. mark_records() is the only
 * function to change.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab.h"

#define RECORDS 65536

struct record {
	uint32_t id;
	uint32_t flag; /* 1 when id % 1024 == 0, else 0 */
	char payload[56];
};

/* The child's job: every record's flag must end up right. */
static void mark_records(struct record *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		r[i].flag = (r[i].id % 1024 == 0);
}

int main(void)
{
	const size_t bytes = RECORDS * sizeof(struct record);
	struct record *table = lab_map(bytes);
	/* 4 KiB pages, so that one page holds 64 records (README, "Hints"). */
	madvise(table, bytes, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < RECORDS; i++) {
		table[i].id = (uint32_t)i;
		table[i].flag = 0;
		table[i].payload[0] = 1;
	}
	lab_range("table", table, bytes);

	pid_t child = fork();
	if (child < 0)
		lab_die("fork");
	if (child == 0) {
		lab_checkpoint("child-ready", 0);
		mark_records(table, RECORDS);
		lab_checkpoint("child-marked", 0);
		size_t wrong = 0;
		for (size_t i = 0; i < RECORDS; i++)
			wrong += table[i].flag != (table[i].id % 1024 == 0);
		if (wrong) {
			fprintf(stderr, "child: %zu records have the wrong flag\n", wrong);
			_exit(1);
		}
		_exit(0);
	}
	if (lab_reap(child, "the child") < 0)
		return 1;
	printf("child %d marked the records\n", (int)child);
	return 0;
}
