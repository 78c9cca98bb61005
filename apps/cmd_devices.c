/* cmd_devices.c — `devices`: which compute devices this build can use. */
#include "commands.h"

#include "gpu.h"
#include "opts.h"

#include <omp.h>
#include <stdio.h>

static int list(void *ctx, kv_err *err)
{
    (void)ctx;
    char desc[256];
    int n = gpu_device_count(desc, sizeof desc);
    printf("cpu:  %d OpenMP threads available\n", omp_get_max_threads());
    printf("cuda: %d device%s: %s\n", n, n == 1 ? "" : "s", desc);
    (void)err;   /* a failed write to standard output is cli_main's to report */
    return KV_OK;
}

int cmd_devices(int argc, char **argv)
{
    const opts_command cmd = {
        .prog = "devices",
        .usage = "kvtrace devices | kvsim devices",
        .about = "List the CPU threads and CUDA devices this build can use.",
    };
    return opts_main(&cmd, argc, argv, list, NULL);
}
