/*
 * test_policy_lib.c — a policy compiled apart against policies/policy.h alone loads
 * with --policy-lib and replays: the very example of docs/POLICIES.md ("Writing a
 * policy"), built here with the system's C compiler.  Libraries that are not policy
 * libraries, or are built for another ABI, are refused with the reason.
 */
#include "doc_blocks.h"
#include "policy_drive.h"
#include "test_shell.h"

#include <stdlib.h>
#include <unistd.h>

/* Compile `source` into dir/name.so against policies/ and common/; its path in so. */
static void build_lib(const char *dir, const char *name, const char *source, char *so,
                      size_t len)
{
    char c[512], cmd[2048], out[4096];
    snprintf(c, sizeof c, "%s/%s.c", dir, name);
    snprintf(so, len, "%s/%s.so", dir, name);
    FILE *f = fopen(c, "w");
    cr_assert_not_null(f, "%s", c);
    fputs(source, f);
    fclose(f);
    const char *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -Wall -Wextra -Werror -I'%s/policies' "
             "-I'%s/common' '%s' -o '%s' 2>&1", root, root, c, so);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s: %s", c, out);
}

static char *example(void) { return doc_block(doc_read("docs/POLICIES.md"), "c policy-lib-example"); }

Test(policy_lib, the_documented_example_is_short_and_builds)
{
    const char *src = example();
    int lines = 0;
    for (const char *s = src; *s; s++)
        lines += *s == '\n';
    cr_assert_leq(lines, 50, "the example has %d lines", lines);
}

/* Loaded in-process: values 3 1 4 1 5 9 2 6, B = 4, sinks 1: the largest norms stay. */
static double flat(int t, int i, void *ctx)
{
    (void)t, (void)i, (void)ctx;
    return 1;
}

Test(policy_lib, the_example_loads_and_keeps_the_largest_value_norms)
{
    char dir[] = "/tmp/kv_plib_XXXXXX", so[512];
    cr_assert_not_null(mkdtemp(dir));
    build_lib(dir, "vnorm", example(), so, sizeof so);
    kv_err err = {0};
    cr_assert_eq(policy_lib_load(so, &err), KV_OK, "%s", err.msg);
    cr_assert_not_null(policy_find("vnorm"));
    const float values[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    policy_config cfg = config_of("vnorm", "sinks=1", 4, 0);
    policy_layer *L = stream_new(&cfg);
    drive_input in = {.w = flat, .values = values};
    cr_assert_eq(drive_steps(L, 0, 8, &in, NULL, &err), 0, "%s", err.msg);
    assert_kept(L, (int[]){0, 4, 5, 7}, 4);   /* the sink, then 5, 9 and 6 */
    policy_layer_free(L);
    cr_assert_eq(policy_lib_load(so, &err), KV_EUSAGE, "a second load defines vnorm again");
    cr_assert(strstr(err.msg, "'vnorm' exists already"), "%s", err.msg);
}

Test(policy_lib, kvsim_replays_a_loaded_policy)
{
    char dir[] = "/tmp/kv_plib_XXXXXX", so[512], cmd[2048], out[8192];
    cr_assert_not_null(mkdtemp(dir));
    build_lib(dir, "vnorm", example(), so, sizeof so);
    snprintf(cmd, sizeof cmd, "'%s/kvsim' replay synth:T=80,layers=2,heads=4,kv=2,dim=8 "
             "--sinks 2 --policy-lib '%s' --policy vnorm --budget 16 --metrics mass,overlap "
             "2>&1", getenv("KV_BIN"), so);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, ",vnorm,,,kv-head,mean,16,16,1,stream,all,all,"), "%s", out);
    /* the listing outgrows out[]: keep the loaded policy's lines */
    snprintf(cmd, sizeof cmd, "'%s/kvsim' policies --policy-lib '%s' | grep -A3 '^vnorm '",
             getenv("KV_BIN"), so);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "vnorm        evict the smallest value L2 norm"), "%s", out);
}

Test(policy_lib, what_is_not_a_policy_library_is_refused_with_the_reason)
{
    char dir[] = "/tmp/kv_plib_XXXXXX", so[512];
    cr_assert_not_null(mkdtemp(dir));
    kv_err err = {0};
    build_lib(dir, "empty", "int not_a_policy = 1;\n", so, sizeof so);
    cr_assert_eq(policy_lib_load(so, &err), KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "no symbol 'policy_lib'"), "%s", err.msg);
    build_lib(dir, "future", "#include \"policy.h\"\n"
              "const policy_lib_info policy_lib = {POLICY_ABI_VERSION + 1, 0, 0};\n",
              so, sizeof so);
    cr_assert_eq(policy_lib_load(so, &err), KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "rebuild it against this policies/policy.h"), "%s", err.msg);
    cr_assert_eq(policy_lib_load("/nonexistent/x.so", &err), KV_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/x.so"), "%s", err.msg);
}
