/*
 * test_layers.c — the layer order of the Makefile holds (`make check-layers`), and the
 * check is real: an include planted in a copy of the tree, pointing up the order, is
 * named with its file and line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_shell.h"

Test(layers, every_include_points_down)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "make -s -C '%s' check-layers 2>&1", getenv("KV_ROOT"));
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "every include points down"), "%s", out);
}

Test(layers, an_upward_include_is_named)
{
    char dir[] = "/tmp/kv_layers_XXXXXX", cmd[2048], out[4096];
    cr_assert_not_null(mkdtemp(dir));
    const char *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp -r Makefile scripts common policies gpu plots model analysis trace "
             "sim confirm apps '%s' && printf '#include \"replay.h\"\\n' >> '%s/common/fp16.c' && "
             "make -s -C '%s' check-layers 2>&1; echo \"status $?\"; rm -rf '%s'",
             root, dir, dir, dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "common/fp16.c:"), "the file is named: %s", out);
    cr_assert(strstr(out, "\"replay.h\" from sim/, which is above common/"), "%s", out);
    cr_assert(strstr(out, "status 2"), "make fails: %s", out);
}

/* README's drawing lists the folders top first: the Makefile's LAYERS reversed. */
Test(layers, the_readme_draws_the_makefile_order)
{
    char cmd[1024], drawn[1024], made[1024];
    const char *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "sed -n '/^## Layout/,/^## /p' '%s/README.md' | "
             "sed -n '/^```$/,/^```$/p' | grep -o '^[a-z]*/' | tr -d / | tac | tr '\\n' ' '",
             root);
    cr_assert_eq(test_shell(cmd, drawn, sizeof drawn), 0);
    snprintf(cmd, sizeof cmd, "sed -n 's/^LAYERS *:= *//p' '%s/Makefile' | tr -s ' ' | "
             "sed 's/$/ /'", root);
    cr_assert_eq(test_shell(cmd, made, sizeof made), 0);
    made[strcspn(made, "\n")] = '\0';
    cr_assert_str_eq(drawn, made, "README draws '%s', the Makefile orders '%s'", drawn, made);
}
