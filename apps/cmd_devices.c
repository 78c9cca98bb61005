/* cmd_devices.c — `devices`: which compute devices this build can use. */
#include "cmd_devices.h"

#include "gpu.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

int cmd_devices(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: devices\n\nList the CPU threads and CUDA devices this build can use.\n");
        return 0;
    }
    char desc[256];
    int n = gpu_device_count(desc, sizeof desc);
    printf("cpu:  %d OpenMP threads available\n", omp_get_max_threads());
    printf("cuda: %d device%s: %s\n", n, n == 1 ? "" : "s", desc);
    return 0;
}
