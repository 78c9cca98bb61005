/*
 * commands.h — the subcommands of kvtrace (apps/kvtrace_main.c) and kvsim
 * (apps/kvsim_main.c).  Each takes argv[0] = its own name and returns the process exit
 * status: 0 success, 1 runtime error, 2 usage error (common/kv_err.h).  Each parses
 * its options with common/opts.h, so `--help` comes from the same table.
 */
#ifndef COMMANDS_H
#define COMMANDS_H

/* kvtrace: the model and its traces */
int cmd_info(int argc, char **argv);       /* cmd_info.c */
int cmd_tokenize(int argc, char **argv);   /* cmd_tokenize.c */
int cmd_run(int argc, char **argv);        /* cmd_run.c */
int cmd_record(int argc, char **argv);     /* cmd_record.c */
int cmd_verify(int argc, char **argv);     /* cmd_verify.c */
int cmd_generate(int argc, char **argv);   /* cmd_generate.c */

/* kvsim: replay, analyses, figures, confirmation */
int cmd_replay(int argc, char **argv);     /* cmd_replay.c */
int cmd_sweep(int argc, char **argv);      /* cmd_replay.c */
int cmd_std(int argc, char **argv);        /* cmd_std.c */
int cmd_scope(int argc, char **argv);      /* cmd_scope.c */
int cmd_plot(int argc, char **argv);       /* cmd_plot.c */
int cmd_confirm(int argc, char **argv);    /* cmd_confirm.c */
int cmd_policies(int argc, char **argv);   /* cmd_policies.c */

/* both */
int cmd_devices(int argc, char **argv);    /* cmd_devices.c */

#endif /* COMMANDS_H */
