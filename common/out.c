/* out.c — result files by one rule, and CSV/JSON values; see out.h. */
#include "out.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct out_file {
    FILE *f;
    int   direct;           /* (1), (4): written in place */
    int   fd;               /* the temporary's descriptor (2) */
    mode_t mode;            /* the mode the finished file gets */
    char  path[PATH_MAX];   /* where it goes (a link's target, (3)) */
    char  tmp[PATH_MAX];    /* the temporary sibling */
};

/* --- where a path really goes ---------------------------------------------------------- */

int out_target(const char *path, char *out, size_t len, kv_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) {
        snprintf(out, len, "%s", path);
        return KV_OK;
    }
    char link[PATH_MAX];
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0)
        return kv_errorf(err, KV_EIO, "%s: cannot read the link: %s", path, strerror(errno));
    link[n] = '\0';
    const char *slash = strrchr(path, '/');
    int n_out = link[0] == '/' || !slash
                    ? snprintf(out, len, "%s", link)
                    : snprintf(out, len, "%.*s/%s", (int)(slash - path), path, link);
    return n_out >= 0 && (size_t)n_out < len
               ? KV_OK : kv_errorf(err, KV_EIO, "%s: the link's target is too long", path);
}

/* The directory part of path ("." when there is none) into out. */
static void dir_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* A new temporary sibling of path, ".<name>.XXXXXX", open in *fd. */
static int make_temporary(const char *path, char *tmp, size_t len, int *fd, kv_err *err)
{
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof dir);
    const char *slash = strrchr(path, '/');
    int n = snprintf(tmp, len, "%s/.%s.XXXXXX", dir, slash ? slash + 1 : path);
    if (n < 0 || (size_t)n >= len)
        return kv_errorf(err, KV_EIO, "%s: the path is too long", path);
    if ((*fd = mkstemp(tmp)) < 0)
        return kv_errorf(err, KV_EIO, "%s: cannot create a file in %s: %s", path, dir,
                         strerror(errno));
    return KV_OK;
}

static mode_t default_mode(void)
{
    mode_t mask = umask(0);
    umask(mask);
    return 0666 & ~mask;
}

/* --- checks ------------------------------------------------------------------------- */

int out_check(const char *path, const char *const *inputs, int n_inputs, kv_err *err)
{
    if (!path || !strcmp(path, "-"))
        return KV_OK;
    char target[PATH_MAX];
    struct stat st, in;
    if (out_target(path, target, sizeof target, err) != KV_OK)
        return KV_EIO;
    const int exists = stat(target, &st) == 0;
    for (int i = 0; exists && i < n_inputs; i++)
        if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev &&
            in.st_ino == st.st_ino)
            return kv_errorf(err, KV_EUSAGE, "%s is an input of this command (%s): refusing "
                             "to overwrite it", path, inputs[i]);
    if (exists && S_ISDIR(st.st_mode))
        return kv_errorf(err, KV_EIO, "%s: is a directory", path);
    if (exists && !S_ISREG(st.st_mode))   /* (4): written in place, never created */
        return access(target, W_OK) == 0 ? KV_OK
                                         : kv_errorf(err, KV_EIO, "%s: cannot write: %s", path,
                                                     strerror(errno));
    char tmp[PATH_MAX];
    int fd;
    if (make_temporary(target, tmp, sizeof tmp, &fd, err) != KV_OK)
        return KV_EIO;
    close(fd);
    unlink(tmp);
    return KV_OK;
}

/* Do a and b name one file: the same target, or the same inode once it exists? */
static int same_output(const char *a, const char *b)
{
    char ta[PATH_MAX], tb[PATH_MAX];
    kv_err ignored = {0};
    if (out_target(a, ta, sizeof ta, &ignored) != KV_OK ||
        out_target(b, tb, sizeof tb, &ignored) != KV_OK)
        return 0;
    struct stat sa, sb;
    const int ea = stat(ta, &sa) == 0, eb = stat(tb, &sb) == 0;
    if ((ea && !S_ISREG(sa.st_mode)) || (eb && !S_ISREG(sb.st_mode)))
        return 0;   /* /dev/null, a FIFO: written in place (rule 4), never replaced */
    if (ea && eb)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return !strcmp(ta, tb);
}

int out_check_all(const char *const *outputs, int n_outputs, const char *const *inputs,
                  int n_inputs, kv_err *err)
{
    for (int i = 0; i < n_outputs; i++) {
        if (!outputs[i] || !strcmp(outputs[i], "-"))
            continue;
        int rc = out_check(outputs[i], inputs, n_inputs, err);
        if (rc != KV_OK)
            return rc;
        for (int j = 0; j < i; j++)
            if (outputs[j] && strcmp(outputs[j], "-") && same_output(outputs[i], outputs[j]))
                return kv_errorf(err, KV_EUSAGE, "%s and %s are the same file: two outputs "
                                 "of this command cannot share it", outputs[j], outputs[i]);
    }
    return KV_OK;
}

/* --- writing ------------------------------------------------------------------------ */

static out_file *fail(out_file *o)
{
    if (o && o->fd >= 0 && !o->f)
        close(o->fd);
    if (o && o->tmp[0])
        unlink(o->tmp);
    free(o);
    return NULL;
}

out_file *out_open(const char *path, kv_err *err)
{
    out_file *o = calloc(1, sizeof *o);
    if (!o) {
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return NULL;
    }
    o->fd = -1;
    if (!strcmp(path, "-")) {
        o->f = stdout;
        o->direct = 1;
        snprintf(o->path, sizeof o->path, "standard output");
        return o;
    }
    if (out_target(path, o->path, sizeof o->path, err) != KV_OK)
        return fail(o);
    struct stat st;
    const int exists = stat(o->path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) {
        kv_errorf(err, KV_EIO, "%s: is a directory", path);
        return fail(o);
    }
    if (exists && !S_ISREG(st.st_mode)) {   /* (4) */
        o->direct = 1;
        if (!(o->f = fopen(o->path, "w"))) {
            kv_errorf(err, KV_EIO, "%s: cannot write: %s", path, strerror(errno));
            return fail(o);
        }
        return o;
    }
    o->mode = exists ? st.st_mode & 07777 : default_mode();
    if (make_temporary(o->path, o->tmp, sizeof o->tmp, &o->fd, err) != KV_OK) {
        o->tmp[0] = '\0';
        return fail(o);
    }
    if (!(o->f = fdopen(o->fd, "w"))) {
        kv_errorf(err, KV_EIO, "%s: %s", o->tmp, strerror(errno));
        return fail(o);
    }
    return o;
}

FILE *out_stream(out_file *o) { return o->f; }

int out_close(out_file *o, int commit, kv_err *err)
{
    if (!o)
        return KV_OK;
    int rc = KV_OK, bad = fflush(o->f) != 0 || ferror(o->f);
    if (bad && commit)
        rc = kv_errorf(err, KV_EIO, "%s: write failed: %s", o->path,
                       errno ? strerror(errno) : "I/O error");
    if (!o->direct) {
        if (commit && rc == KV_OK && (fchmod(o->fd, o->mode) != 0 || fsync(o->fd) != 0))
            rc = kv_errorf(err, KV_EIO, "%s: %s", o->path, strerror(errno));
        if (fclose(o->f) != 0 && commit && rc == KV_OK)
            rc = kv_errorf(err, KV_EIO, "%s: write failed: %s", o->path, strerror(errno));
        if (commit && rc == KV_OK && rename(o->tmp, o->path) != 0)
            rc = kv_errorf(err, KV_EIO, "%s: cannot put in place: %s", o->path, strerror(errno));
        if (!commit || rc != KV_OK)
            unlink(o->tmp);
    } else if (o->f != stdout && fclose(o->f) != 0 && commit && rc == KV_OK) {
        rc = kv_errorf(err, KV_EIO, "%s: write failed: %s", o->path, strerror(errno));
    }
    free(o);
    return rc;
}

int out_write(const char *path, void (*write)(FILE *f, const void *ctx), const void *ctx,
              kv_err *err)
{
    out_file *o = out_open(path, err);
    if (!o)
        return err && err->code ? err->code : KV_EIO;
    write(out_stream(o), ctx);
    return out_close(o, 1, err);
}

int out_place(const char *tmp, const char *path, kv_err *err)
{
    char target[PATH_MAX];
    struct stat st;
    if (out_target(path, target, sizeof target, err) != KV_OK)
        return KV_EIO;
    const mode_t mode = stat(target, &st) == 0 ? st.st_mode & 07777 : default_mode();
    if (chmod(tmp, mode) != 0 || rename(tmp, target) != 0)
        return kv_errorf(err, KV_EIO, "%s: cannot put in place: %s", path, strerror(errno));
    return KV_OK;
}

/* --- values ------------------------------------------------------------------------- */

void out_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

void out_json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

void out_csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void out_csv_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
}
