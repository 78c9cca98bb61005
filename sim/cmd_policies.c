/* cmd_policies.c — `kvsim policies`: every policy with its rule, parameters and source. */
#include "cmd_policies.h"

#include "policy.h"

#include <stdio.h>
#include <string.h>

int cmd_policies(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: kvsim policies\n\nList every eviction policy: its rule, parameters "
               "with defaults, and provenance.\nDefinitions: docs/POLICIES.md.\n");
        return 0;
    }
    const policy_info *info = policy_list();
    for (int i = 0; i < policy_count(); i++) {
        printf("%-12s %s\n", info[i].name, info[i].summary);
        if (info[i].params[0])
            printf("%-12s   parameters: %s\n", "", info[i].params);
        printf("%-12s   provenance: %s\n", "", info[i].provenance);
    }
    printf("\ncommon options: --budget (0.4 = fraction of T, 512 = entries), --stride s (default 1),\n"
           "  --phase stream|oneshot|decode, --gqa mean|max|sum, --sinks 4, --window 0.3*B, --seed\n");
    return 0;
}
