/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cowscope_version.h - the module's release version string, shown in
 * /proc/cowscope/version and modinfo. The build defines COWSCOPE_VERSION
 * from the project's single version source; a build that does not (a
 * bare `make -C kmod`) says "unknown" rather than guess.
 */
#ifndef COWSCOPE_VERSION_H
#define COWSCOPE_VERSION_H

#ifndef COWSCOPE_VERSION
#define COWSCOPE_VERSION "unknown"
#endif

#endif /* COWSCOPE_VERSION_H */
