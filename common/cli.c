/* cli.c — subcommand dispatch and top-level help; see cli.h. */
#include "cli.h"

#include "wait_policy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void cli_print_help(const cli_program *prog)
{
    printf("usage: %s <command> [options]\n\n%s\n\ncommands:\n", prog->name, prog->tagline);
    for (int i = 0; i < prog->n_commands; i++) {
        const cli_command *c = &prog->commands[i];
        printf("  %-10s %-44s %s%s\n", c->name, c->args, c->summary,
               c->run ? "" : " (not built yet)");
    }
    printf("\n'%s <command> --help' describes one command.\n", prog->name);
    if (prog->footer)
        printf("\n%s", prog->footer);
}

static const cli_command *find(const cli_program *prog, const char *name)
{
    for (int i = 0; i < prog->n_commands; i++)
        if (strcmp(prog->commands[i].name, name) == 0)
            return &prog->commands[i];
    return NULL;
}

/* A run whose output did not reach standard output did not succeed (a full disk,
 * /dev/full, a closed pipe): checked once here for every command. */
static int flushed(const char *name, int status)
{
    if ((fflush(stdout) == 0 && !ferror(stdout)) || status != 0)
        return status;   /* a command that failed has said why */
    fprintf(stderr, "%s: standard output: write error: %s\n", name,
            errno ? strerror(errno) : "I/O error");
    return 1;
}

static int dispatch(const cli_program *prog, int argc, char **argv)
{
    if (argc < 2) {
        cli_print_help(prog);
        return 2;
    }
    const char *arg = argv[1];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "help")) {
        cli_print_help(prog);
        return 0;
    }
    if (!strcmp(arg, "--version")) {
        printf("%s %s\nOpenMP threads wait: %s\n", prog->name, KV_VERSION,
               wait_policy_describe());
        return 0;
    }
    const cli_command *cmd = find(prog, arg);
    if (!cmd) {
        fprintf(stderr, "%s: unknown command '%s'; commands:", prog->name, arg);
        for (int i = 0; i < prog->n_commands; i++)
            fprintf(stderr, "%s %s", i ? "," : "", prog->commands[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (!cmd->run) {
        fprintf(stderr, "%s %s: not built yet (usage will be: %s %s %s)\n", prog->name,
                cmd->name, prog->name, cmd->name, cmd->args);
        return 2;
    }
    return cmd->run(argc - 1, argv + 1);
}

int cli_main(const cli_program *prog, int argc, char **argv)
{
    return flushed(prog->name, dispatch(prog, argc, argv));
}
