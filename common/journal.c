/* journal.c — the append-only unit journal; see journal.h. */
#include "journal.h"

#include "sha256.h"
#include "vec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "kvsim-unit1"

typedef struct record {
    char    key[JOURNAL_KEY + 1];
    double *v;
    size_t  n;
} record;

struct journal {
    int     fd;
    char   *path;
    record *rec;
    size_t  n, cap;
    size_t *index;   /* open addressing over rec: record number + 1, 0 = empty */
    size_t  slots;   /* a power of two, at least twice n: a sweep restores 1e5 units */
};

/* FNV-1a of a key: keys are digests already, any mixing spreads them. */
static size_t key_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return (size_t)h;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t *slot_of(const journal *j, const char *key)
{
    for (size_t h = key_hash(key) & (j->slots - 1);; h = (h + 1) & (j->slots - 1))
        if (!j->index[h] || !strcmp(j->rec[j->index[h] - 1].key, key))
            return &j->index[h];
}

/* Room in the index for one more record. */
static int index_reserve(journal *j)
{
    if (2 * (j->n + 1) <= j->slots)
        return 0;
    size_t *old = j->index, old_slots = j->slots;
    j->slots = old_slots ? 2 * old_slots : 64;
    if (!(j->index = calloc(j->slots, sizeof *j->index))) {
        j->index = old, j->slots = old_slots;
        return -1;
    }
    for (size_t i = 0; i < old_slots; i++)
        if (old[i])
            *slot_of(j, j->rec[old[i] - 1].key) = old[i];
    free(old);
    return 0;
}

void journal_key(const char *text, size_t len, char key[JOURNAL_KEY + 1])
{
    sha256_ctx c;
    uint8_t d[32];
    sha256_init(&c);
    sha256_update(&c, text, len);
    sha256_final(&c, d);
    for (int i = 0; i < JOURNAL_KEY / 2; i++)
        snprintf(key + 2 * i, 3, "%02x", d[i]);
}

/* Parse one line (without its newline); 0 when it is a whole, checked record. */
static int parse_line(char *line, size_t len, record *out)
{
    char *sep = len > JOURNAL_KEY ? line + len - JOURNAL_KEY - 1 : NULL;
    char check[JOURNAL_KEY + 1];
    if (!sep || *sep != ' ')
        return -1;
    journal_key(line, (size_t)(sep - line), check);
    if (memcmp(check, sep + 1, JOURNAL_KEY) != 0)
        return -1;
    *sep = '\0';
    char *p = line, *end;
    if (strncmp(p, MAGIC " ", sizeof MAGIC) != 0)
        return -1;
    p += sizeof MAGIC;
    if (strlen(p) < JOURNAL_KEY + 1 || p[JOURNAL_KEY] != ' ')
        return -1;
    memcpy(out->key, p, JOURNAL_KEY);
    out->key[JOURNAL_KEY] = '\0';
    unsigned long n = strtoul(p + JOURNAL_KEY + 1, &end, 10);
    if (end == p + JOURNAL_KEY + 1 || n > (1UL << 30) || !(out->v = malloc((n ? n : 1) * sizeof *out->v)))
        return -1;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        p = end;
        out->v[i] = strtod(p, &end);
        if (end == p) {
            free(out->v);
            return -1;
        }
    }
    return 0;
}

/* The records of f; *torn = 1 when the last line has no newline (a writer was killed
 * inside it). */
static int read_records(journal *j, FILE *f, int *torn)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n') {
            *torn = 1;
            break;
        }
        record r;
        if (parse_line(line, (size_t)len - 1, &r) != 0)
            continue;
        if (journal_find(j, r.key, &(size_t){0})) {   /* a unit journaled twice */
            free(r.v);
            continue;
        }
        if (vec_reserve((void **)&j->rec, sizeof *j->rec, j->n + 1, &j->cap) != 0 ||
            index_reserve(j) != 0) {
            free(r.v);
            free(line);
            return -1;
        }
        j->rec[j->n++] = r;
        *slot_of(j, r.key) = j->n;
    }
    free(line);
    return 0;
}

journal *journal_open(const char *path, kv_err *err)
{
    journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return NULL;
    }
    j->fd = -1;
    FILE *f = fopen(path, "r");
    int torn = 0, rc = f ? read_records(j, f, &torn) : (errno == ENOENT ? 0 : -1);
    if (f)
        fclose(f);
    if (rc == 0)
        j->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    /* end a torn line, so that it stays one bad line and the next record is whole */
    if (j->fd >= 0 && torn && write(j->fd, "\n", 1) != 1) {
        close(j->fd);
        j->fd = -1;
    }
    if (j->fd < 0) {
        kv_errorf(err, KV_EIO, "--resume %s: cannot read and append to it (%s)", path,
                  strerror(errno));
        journal_close(j);
        return NULL;
    }
    return j;
}

const double *journal_find(const journal *j, const char *key, size_t *n)
{
    const size_t at = j->slots ? *slot_of(j, key) : 0;
    *n = at ? j->rec[at - 1].n : 0;
    return at ? j->rec[at - 1].v : NULL;
}

int journal_append(journal *j, const char *key, const double *v, size_t n, kv_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    fprintf(m, MAGIC " %s %zu", key, n);
    for (size_t i = 0; i < n; i++)
        fprintf(m, " %a", v[i]);
    fclose(m);
    char check[JOURNAL_KEY + 1];
    journal_key(text, len, check);
    char *line = realloc(text, len + JOURNAL_KEY + 3);
    if (!line) {
        free(text);
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    }
    snprintf(line + len, JOURNAL_KEY + 3, " %s\n", check);
    const size_t total = len + JOURNAL_KEY + 2;
    const ssize_t wrote = write(j->fd, line, total);   /* one write: one record */
    free(line);
    if (wrote != (ssize_t)total)
        return kv_errorf(err, KV_EIO, "--resume %s: appending a record failed (%s)", j->path,
                         wrote < 0 ? strerror(errno) : "short write");
    return KV_OK;
}

int journal_records(const journal *j) { return (int)j->n; }

void journal_close(journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    for (size_t i = 0; i < j->n; i++)
        free(j->rec[i].v);
    free(j->rec);
    free(j->index);
    free(j->path);
    free(j);
}
