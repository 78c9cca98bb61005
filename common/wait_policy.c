/* wait_policy.c — the OpenMP waiting behaviour chosen before libgomp starts; see
 * wait_policy.h. */
#include "wait_policy.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPIN_VAR   "GOMP_SPINCOUNT="
#define POLICY_VAR "OMP_WAIT_POLICY="
#define CHOSEN_VAR "KV_WAIT_CHOSEN="
#define NO_RESTART_VAR "KV_WAIT_NO_RESTART="   /* set (to anything): keep OpenMP's defaults */

/* Everything below up to choose() runs before the C library (and, in the sanitizer
 * build, its interceptors) is initialised: system calls and plain loops only. */

__attribute__((no_sanitize("address")))
static int starts(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

/* /proc/loadavg is "1.25 0.80 0.40 3/180 1234": the 1-minute load average (tenths)
 * and the tasks runnable right now, this one included.  -1 where it cannot be read. */
__attribute__((no_sanitize("address")))
static int read_load(int *load_tenths, int *runnable)
{
    char buf[128];
    int fd = open("/proc/loadavg", O_RDONLY), n = fd < 0 ? -1 : (int)read(fd, buf, 127);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    int i = 0, v = 0;
    for (; buf[i] >= '0' && buf[i] <= '9'; i++)
        v = 10 * v + buf[i] - '0';
    *load_tenths = 10 * v + (buf[i] == '.' ? buf[i + 1] - '0' : 0);
    for (int field = 0; buf[i] && field < 3; i++)   /* to the 4th field */
        field += buf[i] == ' ';
    for (v = 0; buf[i] >= '0' && buf[i] <= '9'; i++)
        v = 10 * v + buf[i] - '0';
    *runnable = v;
    return 0;
}

/* Busy: other work holds half the cores or more, by the 1-minute load average or by
 * the tasks runnable now (which sees work that started seconds ago). */
__attribute__((no_sanitize("address")))
static int machine_busy(void)
{
    cpu_set_t set;
    int load, runnable;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || read_load(&load, &runnable) != 0)
        return 0;
    const int cores = CPU_COUNT(&set);
    return 2 * load >= 10 * cores || 2 * (runnable - 1) >= cores;
}

/* The marker a restart carries: "KV_WAIT_CHOSEN=busy:PID" (or quiet).  The same pid
 * means this process is the restart; another pid, that a parent chose for itself and
 * its variables were inherited, so this process chooses again for the load of now. */
static char marker[64];

__attribute__((no_sanitize("address")))
static const char *mark(int busy, long pid)
{
    char digits[24];
    int nd = 0, k = 0;
    do
        digits[nd++] = (char)('0' + pid % 10);
    while ((pid /= 10) > 0);
    for (const char *p = busy ? CHOSEN_VAR "busy:" : CHOSEN_VAR "quiet:"; *p; p++)
        marker[k++] = *p;
    while (nd > 0)
        marker[k++] = digits[--nd];
    marker[k] = 0;
    return marker;
}

/* Which of envp's variables this program set: 1 the restart itself, 2 a parent's
 * choice (inherited), 0 none (the user's variables, if any, are kept). */
__attribute__((no_sanitize("address")))
static int chosen_before(char **envp, long pid)
{
    for (int i = 0; envp && envp[i]; i++)
        if (starts(envp[i], CHOSEN_VAR)) {
            const char *v = envp[i] + sizeof CHOSEN_VAR - 1;
            while (*v && *v != ':')
                v++;
            long p = 0;
            for (v += *v == ':'; *v >= '0' && *v <= '9'; v++)
                p = 10 * p + *v - '0';
            return p == pid ? 1 : 2;
        }
    return 0;
}

/* Runs from .preinit_array, before libc's and libgomp's initialisers.  The C
 * library's environ is not set yet (and will be reset to envp), so the only way to hand
 * libgomp a variable is to start again with it: execve of this same program, once (the
 * restart finds its marker and goes on).  If the exec fails, OpenMP's defaults stay. */
__attribute__((no_sanitize("address")))
static void choose(int argc, char **argv, char **envp)
{
    (void)argc;
    const long pid = getpid();
    const int before = chosen_before(envp, pid);
    int n = 0, kept = 0;
    for (; envp && envp[n]; n++)
        if ((!before && (starts(envp[n], SPIN_VAR) || starts(envp[n], POLICY_VAR))) ||
            starts(envp[n], NO_RESTART_VAR))
            return;   /* the user's choice, or no restart wanted */
    if (before == 1)
        return;
    const int busy = machine_busy();
    char *env[n + 3];
    for (int i = 0; i < n; i++)   /* a parent's choice is dropped, with its marker */
        if (!starts(envp[i], SPIN_VAR) && !starts(envp[i], POLICY_VAR) &&
            !starts(envp[i], CHOSEN_VAR))
            env[kept++] = envp[i];
    env[kept] = busy ? POLICY_VAR "passive" : SPIN_VAR WAIT_POLICY_SPINCOUNT;
    env[kept + 1] = (char *)mark(busy, pid);
    env[kept + 2] = NULL;
    /* The program's own path, not /proc/self/exe: the kernel names a process after the
     * path it was exec'd by ("exe" in ps, top, pkill), and under valgrind or
     * `ld.so ./kvsim` /proc/self/exe is the tool or the loader (valgrind answers this
     * readlink with the real program).  Started by a loader: no restart. */
    static char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return;
    self[len] = '\0';
    const char *base = strrchr(self, '/') ? strrchr(self, '/') + 1 : self;
    if (starts(base, "ld-") || starts(base, "ld.so"))
        return;
    execve(self, argv, env);
}

__attribute__((section(".preinit_array"), used))
static void (*const preinit_choose)(int, char **, char **) = choose;

const char *wait_policy_describe(void)
{
    static char line[192];
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    const char *chosen = getenv("KV_WAIT_CHOSEN");
    if (!policy && !spin)
        return getenv("KV_WAIT_NO_RESTART") ? "OpenMP's defaults (KV_WAIT_NO_RESTART is set)"
                                            : "OpenMP's defaults (the restart that chooses "
                                              "failed, or a loader started the program)";
    if (chosen && starts(chosen, "busy") && policy && !spin)
        return POLICY_VAR "passive (chosen: the machine was busy at start; set "
               "OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)";
    if (chosen && starts(chosen, "quiet") && spin && !policy)
        return SPIN_VAR WAIT_POLICY_SPINCOUNT " (chosen: the machine was quiet at start; "
               "set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)";
    snprintf(line, sizeof line, "%s%s%s%s%s (set in the environment)",
             policy ? POLICY_VAR : "", policy ? policy : "", policy && spin ? " " : "",
             spin ? SPIN_VAR : "", spin ? spin : "");
    return line;
}
