/* cmd_policies.c — `kvsim policies`: every policy with its rule, parameters and source,
 * and every parameter with its default, all read from the policies' own tables. */
#include "cmd_policies.h"

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

int cmd_policies(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: kvsim policies\n\nList every eviction policy: its rule, preset score "
               "and scope, parameters with defaults, and provenance; then every parameter.\n"
               "Definitions and worked examples: docs/POLICIES.md.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "kvsim policies: unexpected argument '%s' (try --help)\n", argv[1]);
        return 2;
    }
    print_policies();
    print_params();
    return 0;
}
