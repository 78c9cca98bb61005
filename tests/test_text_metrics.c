/*
 * test_text_metrics.c — analysis/text_metrics.h against the PyPI packages rouge-score
 * and sacrebleu (tests/fixtures/text_metrics.tsv, made by
 * make_text_metric_fixtures.py) and against examples worked by hand.  Numbered items
 * refer to text_metrics.h.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_metrics.h"

#define MAX_PAIRS 64

typedef struct fixture {
    char  *hyp[MAX_PAIRS], *ref[MAX_PAIRS], *tok[MAX_PAIRS];
    double rouge[MAX_PAIRS], bleu[MAX_PAIRS], corpus;
    int    n;
} fixture;

/* "\n" written as two characters in the file becomes a newline again. */
static char *unescape(const char *s)
{
    char *out = strdup(s), *o = out;
    for (; *s; s++)
        if (s[0] == '\\' && s[1] == 'n')
            *o++ = '\n', s++;
        else
            *o++ = *s;
    *o = '\0';
    return out;
}

static void load(fixture *f)
{
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/text_metrics.tsv", getenv("KV_FIXTURES"));
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s", path);
    memset(f, 0, sizeof *f);
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#')
            continue;
        char *field[6] = {0}, *p = line;
        for (int i = 0; i < 6; i++) {
            field[i] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        if (!strcmp(field[0], "corpus")) {
            f->corpus = strtod(field[4], NULL);
            continue;
        }
        cr_assert_lt(f->n, MAX_PAIRS);
        f->hyp[f->n] = unescape(field[1]);
        f->ref[f->n] = unescape(field[2]);
        f->rouge[f->n] = strtod(field[3], NULL);
        f->bleu[f->n] = strtod(field[4], NULL);
        f->tok[f->n++] = strdup(field[5]);
    }
    fclose(fp);
    cr_assert_gt(f->n, 10);
}

static void release(fixture *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->hyp[i]), free(f->ref[i]), free(f->tok[i]);
}

/* (1) rouge-score's rougeL F-measure, pair by pair */
Test(text_metrics, rouge_l_matches_rouge_score)
{
    fixture f;
    load(&f);
    for (int i = 0; i < f.n; i++)
        cr_assert_float_eq(text_rouge_l(f.hyp[i], f.ref[i]), f.rouge[i], 1e-9, "pair %d: '%s'", i,
                           f.hyp[i]);
    release(&f);
}

/* (2) sacrebleu's 13a tokenizer, sentence_bleu and corpus_bleu */
Test(text_metrics, bleu_matches_sacrebleu)
{
    fixture f;
    load(&f);
    for (int i = 0; i < f.n; i++) {
        char *tok = text_tokenize_13a(f.hyp[i]);
        cr_assert_str_eq(tok, f.tok[i], "pair %d", i);
        free(tok);
        cr_assert_float_eq(text_bleu_sentence(f.hyp[i], f.ref[i]), f.bleu[i], 1e-6,
                           "pair %d: '%s' vs '%s'", i, f.hyp[i], f.ref[i]);
    }
    cr_assert_float_eq(text_bleu_corpus((const char *const *)f.hyp, (const char *const *)f.ref,
                                        f.n), f.corpus, 1e-6);
    release(&f);
}

/* (1) by hand: LCS "cat on mat" = 3 of 6 and 7 words */
Test(text_metrics, rouge_l_by_hand)
{
    cr_assert_float_eq(text_rouge_l("the cat sat on the mat", "a cat was sitting on a mat"),
                       2 * 0.5 * (3.0 / 7) / (0.5 + 3.0 / 7), 1e-12);
    cr_assert_float_eq(text_rouge_l("", "anything"), 0.0, 0);
    cr_assert_float_eq(text_rouge_l("A, B!", "a b"), 1.0, 1e-12);
}

/* (3) by hand: a scrambled sentence is 6 chunks of one (penalty 0.5), an identical
 * one a single chunk, and a partial match weighs recall nine times precision */
Test(text_metrics, meteor_exact_by_hand)
{
    cr_assert_float_eq(text_meteor_exact("the cat sat on the mat", "on the mat sat the cat"), 0.5,
                       1e-12);
    cr_assert_float_eq(text_meteor_exact("the cat sat on the mat", "the cat sat on the mat"),
                       1.0 - 0.5 / 216, 1e-12);
    const double p = 2.0 / 3, r = 0.5;
    cr_assert_float_eq(text_meteor_exact("a b c", "a b d e"),
                       p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * 0.125), 1e-12);
    cr_assert_float_eq(text_meteor_exact("x y", "z"), 0.0, 0);
}

/* (4) by hand */
Test(text_metrics, token_agreement_and_first_divergence)
{
    const int32_t a[] = {1, 2, 3, 4}, b[] = {1, 2, 5, 4, 6}, c[] = {1, 2};
    cr_assert_float_eq(text_token_agreement(a, 4, b, 5), 0.6, 1e-12);
    cr_assert_eq(text_first_divergence(a, 4, b, 5), 2);
    cr_assert_float_eq(text_token_agreement(a, 4, a, 4), 1.0, 0);
    cr_assert_eq(text_first_divergence(a, 4, a, 4), 4, "identical: the length");
    cr_assert_float_eq(text_token_agreement(c, 2, a, 4), 0.5, 1e-12);
    cr_assert_eq(text_first_divergence(c, 2, a, 4), 2, "a prefix diverges where it ends");
    cr_assert_float_eq(text_token_agreement(NULL, 0, NULL, 0), 1.0, 0);
}
