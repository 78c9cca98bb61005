/*
 * test_shell.h — run a shell command from a test: the tests that drive bin/kvtrace
 * and bin/kvsim as a user would share this one helper.
 */
#ifndef TEST_SHELL_H
#define TEST_SHELL_H

#include <stddef.h>

/* Run `cmd` with /bin/sh; its standard output (redirect stderr with 2>&1 to see it)
 * goes to out[len], NUL-terminated and truncated to fit.  Returns the exit status, or
 * -1 when the command did not exit normally (a signal). */
int test_shell(const char *cmd, char *out, size_t len);

#endif
