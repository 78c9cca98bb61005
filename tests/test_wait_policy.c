/*
 * test_wait_policy.c — common/wait_policy: the waiting behaviour every program chooses
 * before libgomp starts.  What libgomp really received is read back from libgomp itself
 * (OMP_DISPLAY_ENV=verbose prints its settings), independently of the program's own
 * description; nothing here is timed.
 */
#include "test_shell.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `kvsim --version` under the environment prefix `env_args`, stdout and stderr. */
static void version(const char *env_args, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u KV_WAIT_CHOSEN "
             "OMP_DISPLAY_ENV=verbose %s \"%s/kvsim\" --version 2>&1", env_args,
             getenv("KV_BIN"));
    cr_assert_eq(test_shell(cmd, out, len), 0, "%s", out);
}

Test(wait_policy, a_user_setting_is_kept)
{
    char out[8192];
    version("OMP_WAIT_POLICY=active GOMP_SPINCOUNT=7", out, sizeof out);
    cr_assert(strstr(out, "GOMP_SPINCOUNT = '7'"), "libgomp: %s", out);
    cr_assert(strstr(out, "OMP_WAIT_POLICY=active GOMP_SPINCOUNT=7 (set in the environment)"),
              "%s", out);
}

/* Unset: the program chooses, and libgomp holds exactly what it says it chose. */
Test(wait_policy, the_choice_reaches_libgomp)
{
    char out[8192];
    version("", out, sizeof out);
    if (strstr(out, "passive (chosen: the machine was busy"))
        cr_assert(strstr(out, "GOMP_SPINCOUNT = '0'"), "libgomp: %s", out);
    else
        cr_assert(strstr(out, "GOMP_SPINCOUNT=1000 (chosen: the machine was quiet") &&
                  strstr(out, "GOMP_SPINCOUNT = '1000'"), "%s", out);
}

/* Variables a parent's choice left in the environment are chosen again (for the load
 * of now), not taken for the user's. */
Test(wait_policy, a_parents_choice_is_made_again)
{
    char out[8192];
    version("KV_WAIT_CHOSEN=quiet:1 GOMP_SPINCOUNT=1000", out, sizeof out);
    cr_assert(strstr(out, "(chosen: the machine was"), "%s", out);
    cr_assert_null(strstr(out, "set in the environment"), "%s", out);
}
