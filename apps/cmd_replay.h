/* cmd_replay.h — `kvsim replay`, `kvsim sweep`, `kvsim std` and `kvsim scope`. */
#ifndef CMD_REPLAY_H
#define CMD_REPLAY_H
int cmd_replay(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_std(int argc, char **argv);
int cmd_scope(int argc, char **argv);
#endif
