/* test_shell.c — see test_shell.h. */
#include "test_shell.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

int test_shell(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen(%s)", cmd);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *needed(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        cr_skip_test("$%s is not set: this test needs the model (make test, not test-fast)", name);
    return v;
}

const char *test_model(void) { return needed("KV_MODEL"); }
const char *test_gemma_model(void) { return needed("KV_GEMMA_MODEL"); }
const char *test_trace(void) { return needed("KV_TRACE"); }
