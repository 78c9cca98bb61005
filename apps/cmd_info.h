/* cmd_info.h — `kvtrace info FILE`: describe a GGUF model (or, later, an HDF5 trace). */
#ifndef CMD_INFO_H
#define CMD_INFO_H
int cmd_info(int argc, char **argv);
#endif
