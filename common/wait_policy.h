/*
 * wait_policy.h — how idle OpenMP threads (and so OpenBLAS's, in its OpenMP build)
 * wait, chosen for every program before libgomp reads its environment.
 *
 * libgomp's default lets a thread that reaches a barrier spin for about 3 ms before it
 * sleeps.  On a machine whose cores are shared with other processes (laptops, shared
 * servers, CI runners) the partner a spinning thread waits for is often not scheduled,
 * so every barrier costs a time slice and a run collapses (measured: 14 s instead of
 * 1.2 s for 24 tokens beside other work, docs/RUNTIME.md "Threads on a shared
 * machine").  Sleeping at once (passive) is the best measured beside other work but
 * halves an idle machine's decode; a short spin keeps the idle speed but loses 3x
 * beside other work.  So the choice is made per process, at its start: passive when
 * the machine is busy (1-minute load average or tasks runnable now at half the cores
 * or more), GOMP_SPINCOUNT=WAIT_POLICY_SPINCOUNT when it is quiet.
 *
 * libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its own constructor, before
 * main() and before this program's constructors; so the choice is made in the
 * executable's .preinit_array, which the dynamic loader runs before any library's
 * initialiser, and handed to libgomp by one execve of the program itself.  A user who
 * sets either variable keeps their choice; a child process chooses again.
 */
#ifndef WAIT_POLICY_H
#define WAIT_POLICY_H

/* The spin count set when the user sets neither variable (libgomp counts about 100
 * spins per microsecond). */
#define WAIT_POLICY_SPINCOUNT "1000"

/* One line saying how threads wait in this process and who chose it, e.g.
 * "OMP_WAIT_POLICY=passive (chosen: the machine was busy at start; ...)" or
 * "OMP_WAIT_POLICY=active (set in the environment)".  Every program that calls it
 * (cli_main does, for --version) links the pre-init chooser in. */
const char *wait_policy_describe(void);

#endif
