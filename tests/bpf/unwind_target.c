// The userspace CFI unwinder's target (tests/bpf/test_unwind.cpp): a known
// call chain main -> f1 -> f2 -> f3 -> f4 -> f5 built WITHOUT frame pointers
// (-O1 -g -fomit-frame-pointer, CMakeLists.txt), each function with a stack
// frame of its own size, the innermost blocked in read() on a pipe.
//
// Protocol: f5 writes "R" to stdout (a pipe the test reads) and then reads
// stdin (a pipe the test holds open), so the test knows the chain is built;
// it then waits until /proc/PID/syscall says the process is in read(0, ...).
//
// `unwind_target cow N` (cowtrace --unwind, tests/bpf/test_cowtrace.cpp):
// main writes N anonymous pages and forks; the child's f5 writes each page
// once (N COW copies, each at the same instruction of f5, under the chain
// f5 f4 f3 f2 f1 main) and exits; the parent waits for it.
// `unwind_target cow-thread N`: the same, but the child's writes run in a
// thread it starts (f5 f4 f3 f2 f1 thread_main, then glibc's thread start),
// on a stack whose end BPF takes from the thread's TCB (fsbase).
// `unwind_target cow-alt N`: the child's f5 writes the even pages through
// write_even() and the odd ones through write_odd(), strictly alternating:
// every other fault at each of two sites (--unwind 2 must sample both).
//
// No function sets up rbp as a frame pointer, and f3 keeps six values live
// across its call (rbx, rbp, r12-r15: rbp as a general register), so the
// frame-pointer walk from f5's registers follows a data value, not a chain.
// objdump -d --no-show-raw-insn of this file at -O1 -g -fomit-frame-pointer,
// gcc 12.2 (Debian 12):
//   f5:   sub $0x178,%rsp ... ret        f4: sub $0x128,%rsp ... ret
//   f3:   push %r15 %r14 %r13 %r12 %rbp %rbx; sub $0xe8,%rsp;
//         mov sink(%rip),%ebp; or %edi,%ebp   (rbp = sink | x, a value)
//   f2:   sub $0xa8,%rsp ... ret         f1: sub $0x68,%rsp ... ret
//   main: sub $0x8,%rsp ... ret          (no "push %rbp; mov %rsp,%rbp" anywhere)
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

volatile int sink;
static char *volatile cow_pages;	/* cow mode: the pages f5 writes */
static long cow_n;
static int cow_alternate;	/* cow-alt: through write_even(), write_odd() */

NOINLINE void write_even(char *p, char v)
{
	*p = v;
}

NOINLINE void write_odd(char *p, char v)
{
	*p = (char)(v ^ 1);
}

NOINLINE int f5(int x)
{
	volatile char pad[352];
	char c;
	pad[0] = (char)x;
	pad[sizeof(pad) - 1] = (char)x;
	if (cow_pages) {
		for (long i = 0; i < cow_n; i++) {
			if (!cow_alternate)
				cow_pages[i * 4096] = (char)(x + i);
			else if (i & 1)
				write_odd(cow_pages + i * 4096, (char)(x + i));
			else
				write_even(cow_pages + i * 4096, (char)(x + i));
		}
		return pad[0] + pad[sizeof(pad) - 1];
	}
	if (write(1, "R", 1) != 1)
		return -1;
	if (read(0, &c, 1) < 0)	/* the test stops the process here */
		return -2;
	return pad[0] + pad[sizeof(pad) - 1];
}

NOINLINE int f4(int x)
{
	volatile char pad[288];
	pad[0] = (char)x;
	pad[sizeof(pad) - 1] = (char)x;
	int r = f5(x + 1);
	return r + pad[0] + pad[sizeof(pad) - 1];
}

NOINLINE int f3(int x)
{
	volatile char pad[224];
	/* six values live across the call: every callee-saved register,
	 * rbp included */
	int a = sink + x, b = sink * 3 + x, c = sink * 5 - x, d = sink ^ x, e = sink | x, g = sink - 7 * x;
	pad[0] = (char)x;
	pad[sizeof(pad) - 1] = (char)x;
	int r = f4(x + 1);
	return r + a * b + c * d + e * g + pad[0] + pad[sizeof(pad) - 1] + a + b + c + d + e + g;
}

NOINLINE int f2(int x)
{
	volatile char pad[160];
	pad[0] = (char)x;
	pad[sizeof(pad) - 1] = (char)x;
	int r = f3(x + 1);
	return r + pad[0] + pad[sizeof(pad) - 1];
}

NOINLINE int f1(int x)
{
	volatile char pad[96];
	pad[0] = (char)x;
	pad[sizeof(pad) - 1] = (char)x;
	int r = f2(x + 1);
	return r + pad[0] + pad[sizeof(pad) - 1];
}

static void *thread_main(void *arg)
{
	sink = f1(1);
	return arg;
}

static int cow_mode(long n, int in_thread)
{
	char *p = mmap(NULL, (size_t)n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int status;

	if (p == MAP_FAILED)
		return 1;
	for (long i = 0; i < n; i++)
		p[i * 4096] = 1;
	cow_n = n;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		pthread_t t;

		cow_pages = p;
		if (!in_thread)
			sink = f1(1);
		else if (pthread_create(&t, NULL, thread_main, NULL) || pthread_join(t, NULL))
			_exit(1);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return 1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "cow-alt"))
		cow_alternate = 1;
	if (argc == 3 && (!strcmp(argv[1], "cow") || !strcmp(argv[1], "cow-thread") || cow_alternate))
		return cow_mode(atol(argv[2]), !strcmp(argv[1], "cow-thread"));
	int r = f1(argc);
	sink = r;
	return r < 0 ? 1 : 0;
}
