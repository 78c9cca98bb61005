/*
 * test_shell.h — what tests share besides Criterion: running bin/kvtrace and bin/kvsim
 * as a user would, and the model and trace of the full tier.
 */
#ifndef TEST_SHELL_H
#define TEST_SHELL_H

#include <stddef.h>

/* Run `cmd` with /bin/sh; its standard output (redirect stderr with 2>&1 to see it)
 * goes to out[len], NUL-terminated and truncated to fit.  Returns the exit status, or
 * -1 when the command did not exit normally (a signal). */
int test_shell(const char *cmd, char *out, size_t len);

/* The embedded model ($KV_MODEL) and the shared short trace ($KV_TRACE).  In the fast
 * tier (`make test-fast`) they are not there: a test that needs them is reported as
 * skipped, never as passed. */
const char *test_model(void);
const char *test_trace(void);

/* Gemma 3 270M ($KV_GEMMA_MODEL: make model MODEL=gemma3-270m), skipped the same way. */
const char *test_gemma_model(void);

#endif
