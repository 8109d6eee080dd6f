/*
 * Linked into every static program that links libdw.a (cowtrace and the
 * static tests, through cowtrace_core's INTERFACE sources), in place of
 * glibc's dlopen(3), dlsym(3) and dlclose(3): the build's copy of libdw.a
 * calls these names instead (objcopy --redefine-sym, userspace/lib/
 * CMakeLists.txt), since any reference to dlopen itself makes the linker
 * warn.
 *
 * Their one caller is libdw's debuginfod client, which loads
 * libdebuginfod.so at start-up to fetch debug information over HTTP. A
 * static program cannot load a shared library built for another libc
 * safely, glibc's static dlopen needs the build machine's glibc at run time
 * (what the linker warned about in every such program), and cowtrace must
 * not reach the network to symbolize: with these, libdw finds no
 * debuginfod (as where it is not installed) and symbolizes from the files
 * and their local debug information. The dynamic builds (the Debian
 * package, the Python module) use glibc's own.
 */
#include <stddef.h>

void *cowscope_static_dlopen(const char *file, int mode)
{
	(void)file;
	(void)mode;
	return NULL;
}

void *cowscope_static_dlsym(void *handle, const char *name)
{
	(void)handle;
	(void)name;
	return NULL;
}

int cowscope_static_dlclose(void *handle)
{
	(void)handle;
	return 0;
}
