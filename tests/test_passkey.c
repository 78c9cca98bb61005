/*
 * test_passkey.c — the passkey generator (confirm/passkey.h) with the model's
 * tokenizer: keys from seeds, the key's place at a depth, the prompt's length, the
 * answer check.  Numbered items refer to passkey.h.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "passkey.h"
#include "test_shell.h"

static gguf_file *file;
static tokenizer *tok;

static void open_tokenizer(void)
{
    kv_err err = {0};
    file = gguf_open(test_model(), &err);
    cr_assert_not_null(file, "%s", err.msg);
    tok = tokenizer_from_gguf(file, &err);
    cr_assert_not_null(tok, "%s", err.msg);
}

static void close_tokenizer(void)
{
    tokenizer_free(tok);
    gguf_close(file);
}

TestSuite(passkey, .init = open_tokenizer, .fini = close_tokenizer);

/* (3) five digits, a function of the seed alone */
Test(passkey, keys_are_five_digits_fixed_by_the_seed)
{
    int distinct = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        int k = passkey_key(seed);
        cr_assert(k >= 10000 && k <= 99999, "%d", k);
        cr_assert_eq(k, passkey_key(seed));
        distinct += k != passkey_key(seed + 1);
    }
    cr_assert_geq(distinct, 19);
}

/* (1) about the asked length; (2) depth 0 puts the key first, 1 last */
Test(passkey, the_key_sits_at_its_depth_in_a_prompt_of_the_asked_length)
{
    kv_err err = {0};
    const int lengths[] = {128, 256, 512};
    for (int i = 0; i < 3; i++) {
        passkey_sample s;
        cr_assert_eq(passkey_make(tok, lengths[i], 0.5, 7, &s, &err), 0, "%s", err.msg);
        cr_assert_lt(abs(s.n_tokens - lengths[i]), 8, "%d tokens for %d", s.n_tokens, lengths[i]);
        passkey_sample_free(&s);
    }
    char needle[64];
    passkey_sample first, last;
    cr_assert_eq(passkey_make(tok, 256, 0, 3, &first, &err), 0);
    cr_assert_eq(passkey_make(tok, 256, 1, 3, &last, &err), 0);
    snprintf(needle, sizeof needle, "there. The pass key is %d.", first.key);
    cr_assert(strstr(first.prompt, needle), "%s", first.prompt);
    snprintf(needle, sizeof needle, "%d is the pass key.\nWhat is the pass key?", last.key);
    cr_assert(strstr(last.prompt, needle), "%s", last.prompt);
    cr_assert_eq(first.key, last.key, "same seed, same key");
    passkey_sample_free(&first);
    passkey_sample_free(&last);
}

/* (4) the first number generated must be the key */
Test(passkey, an_answer_is_right_when_its_first_number_is_the_key)
{
    cr_assert(passkey_correct(" 48213.", 48213));
    cr_assert(passkey_correct("48213 is the pass key", 48213));
    cr_assert_not(passkey_correct(" 4821", 48213));
    cr_assert_not(passkey_correct(" 12345, no: 48213", 48213));
    cr_assert_not(passkey_correct("048213", 48213));
    cr_assert_not(passkey_correct("", 48213));
}

Test(passkey, rejects_bad_depths_and_lengths)
{
    kv_err err = {0};
    passkey_sample s;
    cr_assert_eq(passkey_make(tok, 256, 1.5, 1, &s, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "depth"), "%s", err.msg);
    cr_assert_eq(passkey_make(tok, 10, 0.5, 1, &s, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "cannot hold"), "%s", err.msg);
    passkey_sample_free(NULL);
}
