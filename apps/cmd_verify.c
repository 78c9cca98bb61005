/* cmd_verify.c — `kvtrace verify TRACE.h5`: the checks of trace/trace_verify.c. */
#include "commands.h"

#include "opts.h"
#include "trace_file.h"

#include <stdio.h>

static int verify(void *ctx, kv_err *err)
{
    const char *const *path = ctx;
    return trace_verify(*path, stdout, err);
}

int cmd_verify(int argc, char **argv)
{
    const char *path = NULL;
    const opts_command cmd = {
        .prog = "kvtrace verify",
        .usage = "kvtrace verify TRACE.h5",
        .about = "Check a trace: every row sums to 1 within the dtype's tolerance, has zeros\n"
                 "above the diagonal, the token arrays are consistent, and, when queries were\n"
                 "recorded, every row matches softmax(q.k) recomputed from queries and keys.\n"
                 "See docs/TRACE_FORMAT.md.",
        .positional = {&path},
        .required = 1,
        .footer = "exit status: 0 all checks passed, 1 a check failed or the trace is "
                  "incomplete or\nunreadable, 2 usage\n",
    };
    return opts_main(&cmd, argc, argv, verify, &path);
}
