/*
 * doc_blocks.h — the docs' fenced blocks, for the tests that run what a page shows
 * (docs/POLICIES.md's worked example and its --policy-lib example).
 */
#ifndef DOC_BLOCKS_H
#define DOC_BLOCKS_H

/* The whole of $KV_ROOT/<path> (a static buffer, rewritten by the next call). */
char *doc_read(const char *path);

/* The body of the block fenced "```<tag>" in doc, NUL-terminated in place. */
char *doc_block(char *doc, const char *tag);

#endif
