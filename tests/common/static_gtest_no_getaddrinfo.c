/*
 * Linked into the static GoogleTest programs only (the VM lab's and the BPF
 * suite's: the VM's initramfs has no shared libraries), in place of glibc's
 * getaddrinfo(3) and freeaddrinfo(3).
 *
 * Their one caller is GoogleTest's result streaming
 * (--gtest_stream_result_to=HOST:PORT, a TCP client), which nothing here
 * uses. glibc's static getaddrinfo would need the build machine's glibc and
 * its NSS modules at run time, which is what the linker warns about in every
 * static program that links libgtest.a. With these, the warning cannot arise
 * and a streaming request fails cleanly: "getaddrinfo() failed" (EAI_FAIL).
 * The unit tests link dynamically and use glibc's own.
 */
#include <netdb.h>
#include <stddef.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	(void)node;
	(void)service;
	(void)hints;
	*res = NULL;
	return EAI_FAIL;
}

void freeaddrinfo(struct addrinfo *ai)
{
	(void)ai;
}
