/* confirm_experiments.h — the `kvsim confirm` experiments, one file each; argv[0] is
 * the experiment's name, the return value the exit status (docs/CONFIRM.md). */
#ifndef CONFIRM_EXPERIMENTS_H
#define CONFIRM_EXPERIMENTS_H

int confirm_ppl(int argc, char **argv);        /* apps/cmd_confirm.c */
int confirm_passkey(int argc, char **argv);    /* confirm/confirm_passkey.c */
int confirm_fidelity(int argc, char **argv);   /* confirm/confirm_fidelity.c */
int confirm_predict(int argc, char **argv);    /* confirm/confirm_predict.c */
int confirm_reconstruct(int argc, char **argv); /* confirm/confirm_reconstruct.c */

#endif /* CONFIRM_EXPERIMENTS_H */
