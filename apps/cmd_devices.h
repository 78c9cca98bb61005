/* cmd_devices.h — the `devices` subcommand, shared by kvtrace and kvsim. */
#ifndef CMD_DEVICES_H
#define CMD_DEVICES_H
int cmd_devices(int argc, char **argv);
#endif
