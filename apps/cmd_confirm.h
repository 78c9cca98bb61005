/* cmd_confirm.h — `kvsim confirm`: experiments with real generation under eviction. */
#ifndef CMD_CONFIRM_H
#define CMD_CONFIRM_H

int cmd_confirm(int argc, char **argv);   /* argv[0] is "confirm"; the exit status */

#endif /* CMD_CONFIRM_H */
