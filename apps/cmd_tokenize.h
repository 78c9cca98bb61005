/* cmd_tokenize.h — `kvtrace tokenize`: show a model's token ids and pieces for a text. */
#ifndef CMD_TOKENIZE_H
#define CMD_TOKENIZE_H

int cmd_tokenize(int argc, char **argv);   /* argv[0] is "tokenize"; returns the exit status */

#endif /* CMD_TOKENIZE_H */
