/* text_metrics.c — ROUGE-L, BLEU, METEOR (exact) and token agreement; see
 * text_metrics.h for the definitions, numbered as there. */
#include "text_metrics.h"

#include "kv_err.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- words -------------------------------------------------------------------------- */

/* A text cut into words: ids[i] is word i's rank among the distinct words of every
 * text passed to words_number() together, so equal words have equal ids. */
typedef struct words {
    char  *buf;     /* the normalised text, words NUL-separated */
    char **w;       /* (n,) into buf */
    int   *ids;     /* (n,) */
    int    n;
} words;

static void words_free(words *x)
{
    free(x->buf);
    free(x->w);
    free(x->ids);
    memset(x, 0, sizeof *x);
}

/* Split buf (owned by x afterwards) at spaces.  0 or KV_ENOMEM. */
static int words_split(words *x, char *buf)
{
    memset(x, 0, sizeof *x);
    x->buf = buf;
    size_t len = buf ? strlen(buf) : 0;
    x->w = malloc((len / 2 + 1) * sizeof *x->w);
    x->ids = malloc((len / 2 + 1) * sizeof *x->ids);
    if (!buf || !x->w || !x->ids)
        return KV_ENOMEM;
    for (char *p = buf; *p;) {
        while (*p == ' ')
            *p++ = '\0';
        if (*p)
            x->w[x->n++] = p;
        while (*p && *p != ' ')
            p++;
    }
    return KV_OK;
}

/* (1) rouge-score's tokenizer: lower-case, [^a-z0-9] → space. */
static int words_rouge(words *x, const char *text)
{
    char *buf = strdup(text);
    for (char *p = buf; p && *p; p++) {
        unsigned char c = (unsigned char)tolower((unsigned char)*p);
        *p = (c < 0x80 && isalnum(c)) ? (char)c : ' ';
    }
    return words_split(x, buf);
}

static int cmp_word(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Give the words of texts[0..k-1] shared ids (equal words, equal ids). */
static int words_number(words *texts, int k)
{
    int total = 0;
    for (int t = 0; t < k; t++)
        total += texts[t].n;
    char ***all = malloc((size_t)(total ? total : 1) * sizeof *all);
    if (!all)
        return KV_ENOMEM;
    int at = 0;
    for (int t = 0; t < k; t++)
        for (int i = 0; i < texts[t].n; i++)
            all[at++] = &texts[t].w[i];
    qsort(all, (size_t)total, sizeof *all, cmp_word);
    int id = -1;
    for (int i = 0; i < total; i++) {
        if (i == 0 || strcmp(*all[i], *all[i - 1]))
            id++;
        for (int t = 0; t < k; t++)   /* which text's slot this is */
            if (all[i] >= texts[t].w && all[i] < texts[t].w + texts[t].n)
                texts[t].ids[all[i] - texts[t].w] = id;
    }
    free(all);
    return KV_OK;
}

/* Two texts tokenized by `split` and numbered together. */
static int words_pair(words pair[2], const char *hyp, const char *ref,
                      int (*split)(words *, const char *))
{
    int rc = split(&pair[0], hyp);
    rc = rc ? rc : split(&pair[1], ref);
    rc = rc ? rc : words_number(pair, 2);
    if (rc) {
        words_free(&pair[0]);
        words_free(&pair[1]);
    }
    return rc;
}

/* --- (1) ROUGE-L ----------------------------------------------------------------------- */

static int lcs(const int *a, int n, const int *b, int m)
{
    int *row = calloc((size_t)m + 1, sizeof *row);
    if (!row)
        return KV_ENOMEM;
    for (int i = 0; i < n; i++) {
        int diag = 0;   /* row[j] of the previous i, before it was overwritten */
        for (int j = 1; j <= m; j++) {
            int up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    int len = row[m];
    free(row);
    return len;
}

double text_rouge_l(const char *hyp, const char *ref)
{
    words x[2];
    if (words_pair(x, hyp, ref, words_rouge))
        return KV_ENOMEM;
    int l = x[0].n && x[1].n ? lcs(x[0].ids, x[0].n, x[1].ids, x[1].n) : 0;
    double p = x[0].n ? (double)l / x[0].n : 0, r = x[1].n ? (double)l / x[1].n : 0;
    words_free(&x[0]);
    words_free(&x[1]);
    if (l < 0)
        return l;
    return l > 0 ? 2 * p * r / (p + r) : 0.0;
}

/* --- (2) BLEU ------------------------------------------------------------------------ */

/* sacrebleu's 13a: punctuation split off, '.' and ',' unless next to digits, '-'
 * after a digit; whitespace collapsed. */
static const char PUNCT_13A[] = "{|}~[\\]^_` !\"#$%&()*+:;<=>?@/";

char *text_tokenize_13a(const char *text)
{
    size_t len = strlen(text);
    char *a = malloc(4 * len + 3), *b = malloc(4 * len + 3);
    if (!a || !b) {
        free(a);
        free(b);
        return NULL;
    }
    size_t o = 0;
    a[o++] = ' ';   /* sacrebleu pads the line with spaces */
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || (p[0] == '-' && p[1] == '\n')) {   /* "-\n" joins; "\n" is a space */
            if (*p == '-')
                p++;
            else
                a[o++] = ' ';
            continue;
        }
        if (strchr(PUNCT_13A, *p))
            a[o++] = ' ', a[o++] = *p, a[o++] = ' ';
        else
            a[o++] = *p;
    }
    a[o++] = ' ';
    a[o] = '\0';
    /* re.sub(r'([^0-9])([\.,])', r'\1 \2 '): non-overlapping, left to right */
    o = 0;
    for (size_t i = 0; a[i]; i++)
        if (!isdigit((unsigned char)a[i]) && (a[i + 1] == '.' || a[i + 1] == ','))
            b[o++] = a[i], b[o++] = ' ', b[o++] = a[i + 1], b[o++] = ' ', i++;
        else
            b[o++] = a[i];
    b[o] = '\0';
    /* re.sub(r'([\.,])([^0-9])', r' \1 \2') */
    o = 0;
    for (size_t i = 0; b[i]; i++)
        if ((b[i] == '.' || b[i] == ',') && b[i + 1] && !isdigit((unsigned char)b[i + 1]))
            a[o++] = ' ', a[o++] = b[i], a[o++] = ' ', a[o++] = b[i + 1], i++;
        else
            a[o++] = b[i];
    a[o] = '\0';
    /* re.sub(r'([0-9])(-)', r'\1 \2 '), then ' '.join(split()) */
    o = 0;
    for (size_t i = 0; a[i]; i++) {
        char c[4];
        int k = 0;
        if (isdigit((unsigned char)a[i]) && a[i + 1] == '-')
            c[k++] = a[i], c[k++] = ' ', c[k++] = '-', c[k++] = ' ', i++;
        else
            c[k++] = a[i];
        for (int j = 0; j < k; j++) {
            int space = isspace((unsigned char)c[j]);
            if (!space)
                b[o++] = c[j];
            else if (o > 0 && b[o - 1] != ' ')
                b[o++] = ' ';
        }
    }
    if (o > 0 && b[o - 1] == ' ')
        o--;
    b[o] = '\0';
    free(a);
    return b;
}

static int words_13a(words *x, const char *text) { return words_split(x, text_tokenize_13a(text)); }

typedef struct ngram_sort { const int *ids; int n; } ngram_sort;

static int cmp_ngram(const void *a, const void *b, void *ctx)
{
    const ngram_sort *s = ctx;
    const int *x = s->ids + *(const int *)a, *y = s->ids + *(const int *)b;
    for (int k = 0; k < s->n; k++)
        if (x[k] != y[k])
            return x[k] < y[k] ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* Sorted starts of the order-n n-grams of ids[len]; their count in *count. */
static int *ngrams(const int *ids, int len, int n, int *count)
{
    *count = len >= n ? len - n + 1 : 0;
    int *at = malloc((size_t)(*count ? *count : 1) * sizeof *at);
    if (!at)
        return NULL;
    for (int i = 0; i < *count; i++)
        at[i] = i;
    ngram_sort s = {ids, n};
    qsort_r(at, (size_t)*count, sizeof *at, cmp_ngram, &s);
    return at;
}

static int ngram_cmp(const int *x, const int *y, int n)
{
    for (int k = 0; k < n; k++)
        if (x[k] != y[k])
            return x[k] < y[k] ? -1 : 1;
    return 0;
}

/* Clipped matches of order n: Σ over distinct n-grams of min(count_hyp, count_ref). */
static long clipped(const words *h, const words *r, int n, long *total)
{
    int nh, nr;
    int *a = ngrams(h->ids, h->n, n, &nh), *b = ngrams(r->ids, r->n, n, &nr);
    long match = 0;
    *total = nh;
    for (int i = 0, j = 0; a && b && i < nh && j < nr;) {
        int c = ngram_cmp(h->ids + a[i], r->ids + b[j], n);
        if (c < 0)
            i++;
        else if (c > 0)
            j++;
        else
            match++, i++, j++;   /* sorted runs pair off one by one: the min of counts */
    }
    free(a);
    free(b);
    return a && b ? match : KV_ENOMEM;
}

typedef struct bleu_counts {
    long correct[4], total[4];
    long sys_len, ref_len;
} bleu_counts;

static int bleu_add(bleu_counts *c, const char *hyp, const char *ref)
{
    words x[2];
    if (words_pair(x, hyp, ref, words_13a))
        return KV_ENOMEM;
    int rc = KV_OK;
    for (int n = 1; n <= 4 && rc == KV_OK; n++) {
        long total, m = clipped(&x[0], &x[1], n, &total);
        if (m < 0)
            rc = KV_ENOMEM;
        c->correct[n - 1] += m;
        c->total[n - 1] += total;
    }
    c->sys_len += x[0].n;
    c->ref_len += x[1].n;
    words_free(&x[0]);
    words_free(&x[1]);
    return rc;
}

/* sacrebleu's BLEU.compute_bleu with smooth_method = 'exp'. */
static double bleu_score(const bleu_counts *c, int effective_order)
{
    double bp = c->sys_len >= c->ref_len ? 1.0
                : c->sys_len > 0 ? exp(1.0 - (double)c->ref_len / c->sys_len) : 0.0;
    if (!c->correct[0] && !c->correct[1] && !c->correct[2] && !c->correct[3])
        return 0.0;
    double precision[4] = {0}, smooth = 1.0;
    int order = 4;
    for (int n = 0; n < 4 && c->total[n] > 0; n++) {
        if (effective_order)
            order = n + 1;
        if (c->correct[n] == 0) {
            smooth *= 2;
            precision[n] = 100.0 / (smooth * c->total[n]);
        } else {
            precision[n] = 100.0 * c->correct[n] / c->total[n];
        }
    }
    double sum = 0;
    for (int n = 0; n < order; n++)
        sum += precision[n] > 0 ? log(precision[n]) : -9999999999.0;
    return bp * exp(sum / order);
}

double text_bleu_sentence(const char *hyp, const char *ref)
{
    bleu_counts c = {0};
    return bleu_add(&c, hyp, ref) ? KV_ENOMEM : bleu_score(&c, 1);
}

double text_bleu_corpus(const char *const *hyps, const char *const *refs, int n)
{
    bleu_counts c = {0};
    for (int i = 0; i < n; i++)
        if (bleu_add(&c, hyps[i], refs[i]))
            return KV_ENOMEM;
    return bleu_score(&c, 0);
}

/* --- (3) METEOR, exact stage ---------------------------------------------------------- */

double text_meteor_exact(const char *hyp, const char *ref)
{
    words x[2];
    if (words_pair(x, hyp, ref, words_rouge))
        return KV_ENOMEM;
    unsigned char *used = calloc((size_t)x[1].n + 1, 1);
    int m = 0, chunks = 0, prev_ref = -2, prev_hyp = -2;
    for (int i = 0; used && i < x[0].n; i++)
        for (int j = 0; j < x[1].n; j++)
            if (!used[j] && x[0].ids[i] == x[1].ids[j]) {
                used[j] = 1;
                chunks += !(i == prev_hyp + 1 && j == prev_ref + 1);
                prev_hyp = i, prev_ref = j;
                m++;
                break;
            }
    const double p = m ? (double)m / x[0].n : 0, r = m ? (double)m / x[1].n : 0;
    const int ok = used != NULL;
    free(used);
    words_free(&x[0]);
    words_free(&x[1]);
    if (!ok)
        return KV_ENOMEM;
    if (m == 0)
        return 0.0;
    const double fmean = p * r / (0.9 * p + 0.1 * r), frag = (double)chunks / m;
    return fmean * (1.0 - 0.5 * frag * frag * frag);
}

/* --- (4) tokens ------------------------------------------------------------------------ */

double text_token_agreement(const int32_t *a, int n, const int32_t *b, int m)
{
    const int longest = n > m ? n : m, shortest = n < m ? n : m;
    int same = 0;
    for (int i = 0; i < shortest; i++)
        same += a[i] == b[i];
    return longest ? (double)same / longest : 1.0;
}

int text_first_divergence(const int32_t *a, int n, const int32_t *b, int m)
{
    const int shortest = n < m ? n : m;
    for (int i = 0; i < shortest; i++)
        if (a[i] != b[i])
            return i;
    return n == m ? n : shortest;
}
