/* trace_info.c — a trace's summary for `kvtrace info TRACE.h5`; see trace_file.h. */
#include "trace_file.h"

#include <inttypes.h>

static void print_bytes(FILE *out, uint64_t n)
{
    if (n >= 10ull << 30)
        fprintf(out, "%.1f GiB", (double)n / (1 << 30));
    else if (n >= 10ull << 20)
        fprintf(out, "%.1f MiB", (double)n / (1 << 20));
    else
        fprintf(out, "%.1f KiB", (double)n / 1024);
}

static void print_ratio(FILE *out, const char *what, uint64_t raw, uint64_t stored)
{
    fprintf(out, "  %-11s", what);
    print_bytes(out, raw);
    fprintf(out, " raw, ");
    print_bytes(out, stored);
    fprintf(out, " on disk");
    if (stored)
        fprintf(out, " (ratio %.2f)", (double)raw / (double)stored);
    fprintf(out, "\n");
}

static void print_model(FILE *out, const trace_meta *m)
{
    const trace_header *h = &m->header;
    fprintf(out, "  model:     %s (%s), sha256 %.16s…\n", h->model_file, h->architecture,
            h->model_sha256);
    fprintf(out, "  shapes:    %d layers, %d heads / %d KV heads, head_dim %d, n_embd %d, "
            "vocab %d\n", h->n_layer, h->n_head, h->n_head_kv, h->head_dim, h->n_embd,
            h->vocab_size);
    int windowed = 0;
    for (int i = 0; i < h->n_layers_rec; i++)
        windowed += h->window[i] > 0;
    fprintf(out, "  recorded:  %d layers x %d heads (%d KV heads)", h->n_layers_rec,
            h->n_heads_rec, m->n_kv_heads_rec);
    if (windowed)
        fprintf(out, ", %d of the layers with a sliding window", windowed);
    fprintf(out, "\n");
}

static void print_steps(FILE *out, const trace *tr)
{
    const trace_meta *m = trace_get_meta(tr);
    const trace_tokens *tk = trace_get_tokens(tr);
    int64_t prompt = 0;
    for (int64_t t = 0; t < m->steps; t++)
        prompt += tk->phase[t] == TRACE_PHASE_PROMPT;
    fprintf(out, "  steps:     T = %" PRId64 " (%" PRId64 " prompt, %" PRId64 " generated)",
            m->steps, prompt, m->steps - prompt);
    if (m->complete)
        fprintf(out, ", complete\n");
    else
        fprintf(out, ", truncated at step %" PRId64 " (the recording did not finish)\n",
                m->steps);
}

int trace_info_print(const char *path, FILE *out, kv_err *err)
{
    trace *tr = trace_open(path, err);
    if (!tr)
        return err ? err->code : KV_EFORMAT;
    const trace_meta *m = trace_get_meta(tr);
    trace_storage s;
    int rc = trace_get_storage(tr, &s, err);
    if (rc < 0) {
        trace_close(tr);
        return rc;
    }
    char comp[32];
    int64_t T = m->steps;
    fprintf(out, "%s: kvtrace format %d, written by kvtrace %s on %s, device %s\n", path,
            m->format_version, m->header.tool_version, m->header.created, m->header.device);
    print_model(out, m);
    print_steps(out, tr);
    const trace_options *o = &m->options;
    fprintf(out, "  storage:   rows and values %s, queries and keys %s, %s\n",
            trace_dtype_name(o->dtype), trace_dtype_name(o->qk_dtype),
            trace_compression_name(o->compression, comp, sizeof comp));
    if (o->rows == TRACE_ROWS_ALL)
        fprintf(out, "  rows:      stored, attn/probs [%d, %d, %" PRId64 ", %" PRId64 "]\n",
                o->n_row_layers, o->n_row_heads, T, T);
    else if (o->rows == TRACE_ROWS_NONE)
        fprintf(out, "  rows:      rebuilt from kv/queries and kv/keys when read\n");
    else
        fprintf(out, "  rows:      stored for %d layers x %d heads (attn/probs), the others "
                "rebuilt\n", o->n_row_layers, o->n_row_heads);
    fprintf(out, "  vectors:   kv/keys and kv/values [%d, %d, %" PRId64 ", %d]%s\n",
            m->header.n_layers_rec, m->n_kv_heads_rec, T, m->header.head_dim,
            o->record_queries ? ", kv/queries" : "");
    fprintf(out, "  elements:  %" PRIu64 " attention probabilities (causal), %" PRIu64
            " of them stored\n", s.row_elements, s.probs_elements);
    if (s.probs_elements)
        print_ratio(out, "attention:", s.probs_raw, s.probs_stored);
    print_ratio(out, "q, k, v:", s.kv_raw, s.kv_stored);
    fprintf(out, "  file:      ");
    print_bytes(out, s.file_bytes);
    fprintf(out, "\n");
    trace_close(tr);
    return KV_OK;
}
