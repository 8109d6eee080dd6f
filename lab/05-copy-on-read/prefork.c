/* Exercise 5: copy-on-read in a pre-fork server.
 *
 * A toy interpreter keeps its objects in an arena: 32768 objects of 64
 * bytes (2 MiB = 512 pages), each with a reference count in its header,
 * like CPython's ob_refcnt. The server builds them, then forks 2 workers
 * (a pre-fork server such as gunicorn or uWSGI does just this) that only
 * READ the objects to answer requests. Read README.md and predict how
 * many pages each worker copies.
 *
 * Your change: make each worker copy at most 64 pages in all (cowtrace
 * counts them), while the workers still answer every request right. Keep
 * the object model's interface (obj_get/obj_put around every use of an
 * object): code you do not control calls it. The functions above main()
 * are yours to change; you may also add a step before the fork.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab.h"

#define OBJECTS 32768
#define WORKERS 2
#define REQUESTS 4

/* obj_get() and obj_put() stay functions of their own (noinline), as in a
 * real interpreter, where the compiler cannot see through them: here it
 * would otherwise fold each ++ and -- pair into nothing. */
struct object {
	int64_t refcnt;
	int64_t type;
	int64_t value;
	char name[40];
};

static struct object *arena;

/* The object model: every use of an object takes a reference first and
 * drops it after, so that the object cannot go away meanwhile. */
__attribute__((noinline)) static struct object *obj_get(int i)
{
	struct object *o = &arena[i];
	o->refcnt++;
	return o;
}

__attribute__((noinline)) static void obj_put(struct object *o)
{
	if (--o->refcnt == 0)
		fprintf(stderr, "object %ld freed while in use\n", (long)(o - arena));
}

static void build_objects(void)
{
	arena = lab_map(OBJECTS * sizeof(struct object));
	madvise(arena, OBJECTS * sizeof(struct object), MADV_NOHUGEPAGE); /* 4 KiB pages */
	for (int i = 0; i < OBJECTS; i++) {
		arena[i].refcnt = 1; /* the interpreter's own reference */
		arena[i].type = 1;
		arena[i].value = i;
		snprintf(arena[i].name, sizeof(arena[i].name), "obj%d", i);
	}
}

/* A request: sum the values of every object (read-only, as far as the
 * request's author knows). */
static int64_t serve_request(void)
{
	int64_t sum = 0;
	for (int i = 0; i < OBJECTS; i++) {
		struct object *o = obj_get(i);
		sum += o->value;
		obj_put(o);
	}
	return sum;
}

int main(void)
{
	build_objects();
	lab_range("arena", arena, OBJECTS * sizeof(struct object));
	const int64_t want = (int64_t)OBJECTS * (OBJECTS - 1) / 2;

	pid_t workers[WORKERS];
	for (int w = 0; w < WORKERS; w++) {
		workers[w] = fork();
		if (workers[w] < 0)
			lab_die("fork");
		if (workers[w] == 0) {
			for (int r = 0; r < REQUESTS; r++)
				if (serve_request() != want)
					_exit(3);
			/* Let a tracer read this process's maps before it goes. */
			usleep(200000);
			lab_checkpoint("worker-served", 0);
			_exit(0);
		}
	}
	int failed = 0;
	for (int w = 0; w < WORKERS; w++)
		if (lab_reap(workers[w], "a worker") < 0)
			failed++;
	if (failed) {
		fprintf(stderr, "%d worker(s) answered wrong or died\n", failed);
		return 1;
	}
	lab_checkpoint("all-served", 0);
	printf("%d workers served %d requests each\n", WORKERS, REQUESTS);
	return 0;
}
