/* cmd_policies.c — `kvsim policies`: every policy with its rule, parameters and source,
 * and every parameter with its default, all read from the registry (policies/). */
#include "cmd_policies.h"

#include "policy.h"

#include <stdio.h>
#include <string.h>

/* "window=0.3 history=400": a preset's keys with their defaults. */
static void print_keys(const char *keys)
{
    char key[64];
    for (const char *s = keys; *s;) {
        size_t n = strcspn(s, " ");
        snprintf(key, sizeof key, "%.*s", (int)n, s);
        const policy_param_info *pi = policy_param_find(key);
        printf(" %s=%s", key, pi && pi->def[0] ? pi->def : "(required)");
        s += n + (s[n] == ' ');
    }
}

static void print_policies(void)
{
    const policy_info *info = policy_list();
    for (int i = 0; i < policy_count(); i++) {
        printf("%-12s %s\n", info[i].name, info[i].summary);
        if (info[i].score[0] || info[i].scope[0])
            printf("%-12s   score=%s scope=%s\n", "", info[i].score[0] ? info[i].score : "(required)",
                   info[i].scope);
        if (info[i].params[0]) {
            printf("%-12s   parameters:", "");
            print_keys(info[i].params);
            printf("\n");
        }
        printf("%-12s   provenance: %s\n", "", info[i].provenance);
    }
}

static void print_params(void)
{
    const policy_param_info *pi = policy_param_list();
    printf("\nparameters (--key value, or key=value in a params list; default in brackets):\n");
    for (int i = 0; i < policy_param_count(); i++)
        printf("  %-12s [%s] %s\n", pi[i].key, pi[i].def[0] ? pi[i].def : "-", pi[i].help);
}

int cmd_policies(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: kvsim policies\n\nList every eviction policy: its rule, score and scope, "
               "parameters with defaults, and provenance; then every parameter.\n"
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
