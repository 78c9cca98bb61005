/* cmd_run.h — `kvtrace run`: generate text with the full KV cache. */
#ifndef CMD_RUN_H
#define CMD_RUN_H

int cmd_run(int argc, char **argv);   /* argv[0] is "run"; returns the exit status */

#endif /* CMD_RUN_H */
