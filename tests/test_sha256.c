/* test_sha256.c — FIPS 180-4 test vectors and the embedded model's pinned hash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "test_shell.h"

static void hex_of(const char *msg, size_t n, char hex[65])
{
    sha256_ctx c;
    uint8_t d[32];
    sha256_init(&c);
    for (size_t i = 0; i < n; i++)   /* byte by byte: exercises the block boundary */
        sha256_update(&c, msg + i, 1);
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

Test(sha256, fips_180_4_vectors)
{
    char hex[65];
    hex_of("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(sha256, the_embedded_model_has_its_pinned_hash)
{
    char hex[65];
    kv_err err = {0};
    cr_assert_eq(sha256_file(test_model(), hex, &err), 0, "%s", err.msg);
    cr_assert_str_eq(hex, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
}

/* FIPS 180-4's million 'a's, in one update (whole blocks straight from the input):
 * with SHA-NI where the CPU has it, and with the portable loop. */
static void million_a(void)
{
    static char a[1000000];
    memset(a, 'a', sizeof a);
    sha256_ctx c;
    uint8_t d[32];
    char hex[65];
    sha256_init(&c);
    sha256_update(&c, a, 3);   /* a partial block first, then whole ones */
    sha256_update(&c, a + 3, sizeof a - 3);
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(sha256, a_million_as_on_the_fastest_path) { million_a(); }

Test(sha256, a_million_as_on_the_portable_path)
{
    setenv("KV_SHA256_PORTABLE", "1", 1);   /* read at the first hash of this worker */
    million_a();
}
