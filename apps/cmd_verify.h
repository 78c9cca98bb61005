/* cmd_verify.h — `kvtrace verify TRACE.h5`: check a trace's rows, shapes and tokens. */
#ifndef CMD_VERIFY_H
#define CMD_VERIFY_H

int cmd_verify(int argc, char **argv);

#endif /* CMD_VERIFY_H */
