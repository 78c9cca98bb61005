/* make_seed.c — writes the tiny GGUF of tests/gguf_builder.c as a fuzz seed: make_seed PATH */
#include <stdio.h>

#include "gguf_builder.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seed PATH\n");
        return 2;
    }
    gbuf b = {0};
    gguf_builder_tiny(&b, NULL);
    FILE *fp = fopen(argv[1], "wb");
    int ok = fp && fwrite(b.p, 1, b.n, fp) == b.n;
    if (fp && fclose(fp) != 0)
        ok = 0;
    gbuf_free(&b);
    if (!ok)
        perror(argv[1]);
    return ok ? 0 : 1;
}
