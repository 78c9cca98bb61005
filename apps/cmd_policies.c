/* cmd_policies.c — `kvsim policies`: every policy with its rule, parameters and source,
 * and every parameter with its default, all read from the policies' own tables. */
#include "commands.h"

#include "opts.h"
#include "policy.h"

#include <stdio.h>
#include <string.h>

/* "score=aas,scope=window" as "score=aas scope=window". */
static void print_defaults(const char *defaults)
{
    for (const char *s = defaults; s && *s; s++)
        putchar(*s == ',' ? ' ' : *s);
}

static void print_policies(void)
{
    char params[1024];
    for (int i = 0; i < policy_count(); i++) {
        const policy_def *def = policy_def_at(i);
        printf("%-12s %s\n", def->name, def->summary);
        if (def->defaults && def->defaults[0]) {
            printf("%-12s   ", "");
            print_defaults(def->defaults);
            printf("\n");
        }
        if (policy_params_of(def, NULL, params, sizeof params)[0])
            printf("%-12s   parameters: %s\n", "", params);
        printf("%-12s   provenance: %s\n", "", def->provenance);
    }
}

static void print_param(const policy_param *pm)
{
    printf("  %-12s [%s] %s\n", pm->key, pm->def[0] ? pm->def : "-", pm->help);
}

static void print_params(void)
{
    printf("\ncommon parameters (--key value; default in brackets):\n");
    for (int i = 0; i < policy_common_count(); i++)
        print_param(policy_common_at(i));
    printf("\npolicy parameters (each read by the policies listing it above):\n");
    for (int i = 0; i < policy_count(); i++)
        for (const policy_param *pm = policy_def_at(i)->params; pm && pm->key; pm++)
            if (policy_param_find(pm->key) == pm)   /* a key shared by policies, once */
                print_param(pm);
}

static int load_policy_lib(const char *path, kv_err *err) { return policy_lib_load(path, err); }

static int list(void *ctx, kv_err *err)
{
    (void)ctx;
    print_policies();
    print_params();
    (void)err;   /* a failed write to standard output is cli_main's to report */
    return KV_OK;
}

int cmd_policies(int argc, char **argv)
{
    const char *lib = NULL;
    static const opts_row rows[] = {
        {"policy-lib", 0, OPTS_EARLY, 0, "FILE.so",
         "also list the policies of FILE.so (docs/POLICIES.md)", 0, 0, load_policy_lib},
        {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
    };
    const opts_command cmd = {
        .prog = "kvsim policies",
        .usage = "kvsim policies [--policy-lib FILE.so]",
        .about = "List every eviction policy: its rule, preset score and scope, parameters with\n"
                 "defaults, and provenance; then every parameter.  Definitions and worked\n"
                 "examples: docs/POLICIES.md.",
        .groups = {{"options", rows, &lib}},
    };
    return opts_main(&cmd, argc, argv, list, &lib);
}
