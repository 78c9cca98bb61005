/* cmd_policies.h — `kvsim policies`: the registry, printed. */
#ifndef CMD_POLICIES_H
#define CMD_POLICIES_H
int cmd_policies(int argc, char **argv);
#endif
