/*
 * policy_registry.c — every policy: those compiled in (POLICY_LIST, one line each, in
 * the order `kvsim policies` shows them) and those loaded with --policy-lib.
 */
#include "policy_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_LIST(X)                                                                  \
    X(full) X(scored) X(random) X(recency) X(streaming) X(h2o) X(mas) X(roco) X(tova)    \
    X(scissorhands) X(knorm) X(oracle) X(snapkv) X(pyramidkv) X(fastgen) X(adakv)       \
    X(pace) X(vatp) X(snapkv_lite)                                                      \
    X(streaming_kvpress) X(tova_kvpress) X(knorm_kvpress) X(snapkv_kvpress)             \
    X(pyramidkv_kvpress) X(observed_attention) X(keydiff) X(lagkv) X(cur) X(chunkkv)   \
    X(simlayerkv) X(duo_attention) X(expected_attention) X(criticalkv)

#define POLICY_DECLARE(name) extern const policy_def policy_##name;
POLICY_LIST(POLICY_DECLARE)
#undef POLICY_DECLARE

static const policy_def *const built_in[] = {
#define POLICY_ENTRY(name) &policy_##name,
    POLICY_LIST(POLICY_ENTRY)
#undef POLICY_ENTRY
};
#define N_BUILT_IN ((int)(sizeof built_in / sizeof built_in[0]))

/* Policies of --policy-lib files, after the built-in ones.  Loading happens while a
 * command line is parsed, before any thread runs. */
#define LOADED_MAX 64
static const policy_def *loaded[LOADED_MAX];
static int n_loaded;

int policy_count(void) { return N_BUILT_IN + n_loaded; }

const policy_def *policy_def_at(int i)
{
    return i < N_BUILT_IN ? built_in[i] : loaded[i - N_BUILT_IN];
}

const policy_def *policy_find(const char *name)
{
    for (int i = 0; name && i < policy_count(); i++)
        if (!strcmp(policy_def_at(i)->name, name))
            return policy_def_at(i);
    return NULL;
}

const policy_param *policy_param_find(const char *key)
{
    for (int i = 0; key && i < policy_common_count(); i++)
        if (policy__key_equal(policy_common_at(i)->key, key))
            return policy_common_at(i);
    for (int i = 0; key && i < policy_count(); i++)
        for (const policy_param *pm = policy_def_at(i)->params; pm && pm->key; pm++)
            if (policy__key_equal(pm->key, key))
                return pm;
    return NULL;
}

const char *policy_names(char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < policy_count() && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                                 policy_def_at(i)->name);
    return buf;
}

/* --- --policy-lib ------------------------------------------------------------------ */

/* A loaded definition must be complete, and a key it shares with another policy must
 * mean the same kind of value (policy_config_set checks values by the first row). */
static int check_def(const char *path, const policy_def *def, kv_err *err)
{
    if (!def || !def->name || !*def->name || !def->ops.choose)
        return kv_errorf(err, KV_EUSAGE, "%s: a policy without a name or a choose op",
                         path);
    if (policy_find(def->name))
        return kv_errorf(err, KV_EUSAGE, "%s: policy '%s' exists already", path, def->name);
    for (const policy_param *pm = def->params; pm && pm->key; pm++) {
        const policy_param *other = policy_param_find(pm->key);
        if (policy__is_common(pm->key))
            return kv_errorf(err, KV_EUSAGE, "%s: policy '%s': '%s' is a common parameter; "
                             "a policy cannot declare it", path, def->name, pm->key);
        if (pm->kind > POLICY_PARAM_SPAN || (other && other->kind != pm->kind))
            return kv_errorf(err, KV_EUSAGE, "%s: policy '%s': parameter '%s' has another "
                             "kind than the parameter of that name already known", path,
                             def->name, pm->key);
    }
    return KV_OK;
}

int policy_lib_load(const char *path, kv_err *err)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return kv_errorf(err, KV_EIO, "--policy-lib %s: %s", path, dlerror());
    const policy_lib_info *info = dlsym(lib, "policy_lib");
    int rc = KV_OK;
    if (!info)
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--policy-lib %s: no symbol 'policy_lib': not a "
                       "policy library (list its policies with POLICY_LIB, policies/policy.h)",
                       path);
    else if (info->abi != POLICY_ABI_VERSION)
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--policy-lib %s: built for policy ABI %d, this "
                       "program has ABI %d: rebuild it against this policies/policy.h", path,
                       info->abi, POLICY_ABI_VERSION);
    else if (info->n < 1 || n_loaded + info->n > LOADED_MAX)
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--policy-lib %s: %d policies (at most %d may "
                       "be loaded)", path, info->n, LOADED_MAX - n_loaded);
    for (int i = 0; rc == KV_OK && i < info->n; i++)
        rc = check_def(path, info->defs[i], err);
    if (rc != KV_OK) {
        dlclose(lib);
        return rc;
    }
    for (int i = 0; i < info->n; i++)   /* the library stays loaded for the process */
        loaded[n_loaded++] = info->defs[i];
    return KV_OK;
}
