/* cmd_record.h — `kvtrace record`: see cmd_record.c. */
#ifndef CMD_RECORD_H
#define CMD_RECORD_H
int cmd_record(int argc, char **argv);
#endif
