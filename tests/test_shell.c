/* test_shell.c — see test_shell.h. */
#include "test_shell.h"

#include <criterion/criterion.h>
#include <stdio.h>
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
