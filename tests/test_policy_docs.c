/*
 * test_policy_docs.c — docs/POLICIES.md's worked examples are run, not trusted.
 *
 * The doc holds one 6-token stream in a ```example-stream block and, in an
 * ```example-results block, one line per policy: "name | params | evictions | kept".
 * This test parses both blocks, drives each policy through the contract's step order
 * on that stream, and requires the doc's evictions and kept set, character for
 * character: the doc and the code cannot drift apart.
 */
#include "doc_blocks.h"
#include "policy_drive.h"

#include <stdlib.h>

#define EX_T 6

typedef struct example {
    double w[EX_T][EX_T];      /* full-cache weights, renormalised over kept entries */
    float  key_norm[EX_T];
    float  value_norm[EX_T];   /* one-float values: the norm is the value */
    uint32_t flags[EX_T];
} example;

static void parse_stream(char *text, example *ex)
{
    memset(ex, 0, sizeof *ex);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *end;
        if (!strncmp(line, "key_norm:", 9)) {
            char *s = line + 9;
            for (int i = 0; i < EX_T; i++, s = end)
                ex->key_norm[i] = strtof(s, &end);
        } else if (!strncmp(line, "value_norm:", 11)) {
            char *s = line + 11;
            for (int i = 0; i < EX_T; i++, s = end)
                ex->value_norm[i] = strtof(s, &end);
        } else if (!strncmp(line, "special:", 8)) {
            char *s = line + 8;
            for (int i = 0; i < EX_T; i++, s = end)
                ex->flags[i] |= strtol(s, &end, 10) ? POLICY_FLAG_SPECIAL : 0u;
        } else if (line[0] >= '0' && line[0] <= '9') {
            int t = (int)strtol(line, &end, 10);
            cr_assert(t >= 0 && t < EX_T && *end == ':', "bad stream line '%s'", line);
            char *s = end + 1;
            for (int i = 0; i <= t; i++, s = end)
                ex->w[t][i] = strtod(s, &end);
        }
    }
}

static double example_w(int t, int i, void *ctx)
{
    return ((const example *)ctx)->w[t][i];
}

/* Drive one policy over the example; write "3:0 4:1 5:2 | 3 4 5" to out. */
static void run(const example *ex, const char *name, const char *params, char *out, size_t len)
{
    policy_config cfg = config_of(name, params[0] == '-' ? NULL : params, 0, EX_T);
    policy_layer *L = stream_new(&cfg);
    drive_input in = {.w = example_w, .ctx = (void *)ex, .keys = ex->key_norm,
                      .values = ex->value_norm};
    memcpy(in.flags, ex->flags, sizeof ex->flags);
    drive_log log;
    kv_err err = {0};
    memset(&log, 0, sizeof log);
    cr_assert_eq(drive_steps(L, 0, EX_T, &in, &log, &err), 0, "%s %s: %s", name, params,
                 err.msg);
    size_t used = 0;
    out[0] = '\0';
    for (int t = 0; t < EX_T; t++)
        for (int j = 0; j < log.n_gone[t]; j++)
            used += (size_t)snprintf(out + used, len - used, "%s%d:%d", used ? " " : "", t,
                                     log.gone[t][j]);
    used += (size_t)snprintf(out + used, len - used, "%s|", used ? " " : "- ");
    const policy *p = stream_of(L);
    for (int i = 0; i < policy_size(p); i++)
        used += (size_t)snprintf(out + used, len - used, " %d", policy_entries(p)[i].position);
    policy_layer_free(L);
}

/* Trim spaces at both ends, in place. */
static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    char *e = s + strlen(s);
    while (e > s && e[-1] == ' ')
        *--e = '\0';
    return s;
}

Test(policy_docs, worked_examples_in_POLICIES_md_are_what_the_code_does)
{
    char *doc = doc_read("docs/POLICIES.md");
    example ex;
    char *results = doc_block(doc, "example-results");
    parse_stream(doc_block(doc, "example-stream"), &ex);
    int rows = 0;
    for (char *line = strtok(results, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !strchr(line, '|'))
            continue;
        char *f[4] = {0};
        char *s = line;
        for (int i = 0; i < 4; i++) {
            f[i] = s;
            s = strchr(s, '|');
            if (s)
                *s++ = '\0';
            else
                break;
        }
        cr_assert_not_null(f[3], "results line lacks 4 columns");
        char want[256], got[256];
        snprintf(want, sizeof want, "%s | %s", trim(f[2]), trim(f[3]));
        run(&ex, trim(f[0]), trim(f[1]), got, sizeof got);
        cr_expect_str_eq(got, want, "%s (%s): the code does '%s', the doc says '%s'",
                         trim(f[0]), f[1], got, want);
        rows++;
    }
    cr_assert_geq(rows, 18, "only %d example rows", rows);
}
