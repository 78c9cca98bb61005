/* doc_blocks.c — see doc_blocks.h. */
#include "doc_blocks.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *doc_read(const char *path)
{
    const char *root = getenv("KV_ROOT");
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", root ? root : ".", path);
    FILE *f = fopen(full, "rb");
    cr_assert_not_null(f, "cannot open %s", full);
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

char *doc_block(char *doc, const char *tag)
{
    char fence[64];
    snprintf(fence, sizeof fence, "```%s\n", tag);
    char *s = strstr(doc, fence);
    cr_assert_not_null(s, "no %s block", tag);
    s += strlen(fence);
    char *end = strstr(s, "```");
    cr_assert_not_null(end, "the %s block is not closed", tag);
    *end = '\0';
    return s;
}
