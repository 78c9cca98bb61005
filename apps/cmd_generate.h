/* cmd_generate.h — `kvtrace generate`: generate text under live KV-cache eviction. */
#ifndef CMD_GENERATE_H
#define CMD_GENERATE_H

int cmd_generate(int argc, char **argv);   /* argv[0] is "generate"; the exit status */

#endif /* CMD_GENERATE_H */
