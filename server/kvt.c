/*
 * kvt.c — the native prefix commands (KVT.*) over a tenant's token namespaces.
 *
 * A KVT namespace is the engine namespace ("ns/" + name, tenant) opened with the layout
 * given to KVT.NS.CREATE; namespaces are per tenant, so isolation is structural: another
 * tenant's lookups run in another radix tree and never see these blocks.
 *
 * Token blobs are little-endian uint32 arrays (4 bytes per token). KV blobs are whole
 * blocks in the engine's block layout ([layers][2][block_tokens][kv_heads][head_dim]).
 *
 * This engine version has one tier (DRAM): KVT.MATCH reports every matched block in
 * "dram"; the load plan (issue 4) and prefetch (no lower tier to prefetch from) are absent
 * and say so; TTL hints for token namespaces are refused (the engine has no TTLs yet).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

static int name_ok(const srv_arg *a)
{
    if (a->n == 0 || a->n > 200)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned char ch = (unsigned char)a->p[i];
        if (ch <= ' ' || ch > '~')
            return 0;
    }
    return 1;
}

static srv_ns *ns_find(srv_tenant *t, const srv_arg *name)
{
    pthread_mutex_lock(&t->ns_mu);
    srv_ns *n = t->ns_list;
    while (n && !(strlen(n->name) == name->n && memcmp(n->name, name->p, name->n) == 0))
        n = n->next;
    pthread_mutex_unlock(&t->ns_mu);
    return n;
}

static int ns_allowed(const srv_tenant *t, const srv_arg *name)
{
    if (t->ns_any)
        return 1;
    for (size_t i = 0; i < t->n_ns_allow; i++)
        if (strlen(t->ns_allow[i]) == name->n && memcmp(t->ns_allow[i], name->p, name->n) == 0)
            return 1;
    return 0;
}

static const char *dtype_name(kvt_dtype d)
{
    switch (d) {
    case KVT_DTYPE_FP16: return "fp16";
    case KVT_DTYPE_BF16: return "bf16";
    case KVT_DTYPE_FP32: return "fp32";
    case KVT_DTYPE_FP8: return "fp8";
    }
    return "?";
}

static int dtype_parse(const srv_arg *a, kvt_dtype *d)
{
    if (arg_eq(a, "fp16") || arg_eq(a, "float16") || arg_eq(a, "half"))
        *d = KVT_DTYPE_FP16;
    else if (arg_eq(a, "bf16") || arg_eq(a, "bfloat16"))
        *d = KVT_DTYPE_BF16;
    else if (arg_eq(a, "fp32") || arg_eq(a, "float32"))
        *d = KVT_DTYPE_FP32;
    else if (arg_eq(a, "fp8") || arg_eq(a, "e4m3") || arg_eq(a, "e5m2"))
        *d = KVT_DTYPE_FP8;
    else
        return -1;
    return 0;
}

static int u32_arg(const srv_arg *a, uint32_t *out)
{
    long long v;
    if (arg_ll(a, &v) || v < 1 || v > 1000000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* KVT.NS.CREATE name layers kv_heads head_dim dtype block_tokens */
void cmd_kvt_ns_create(cmdctx *x)
{
    srv_tenant *t = x->t;
    const srv_arg *name = &x->argv[1];
    if (!name_ok(name)) {
        rp_err(x->out, "invalid namespace name (1..200 printable characters, no spaces)");
        return;
    }
    if (!ns_allowed(t, name)) {
        rp_err(x->out, "NOPERM tenant '%s' may not use namespace '%.*s' (see its namespaces = "
               "list in the configuration)", t->name, (int)name->n, name->p);
        return;
    }
    kvt_layout lay = {0};
    if (u32_arg(&x->argv[2], &lay.layers) || u32_arg(&x->argv[3], &lay.kv_heads) ||
        u32_arg(&x->argv[4], &lay.head_dim) || dtype_parse(&x->argv[5], &lay.dtype) ||
        u32_arg(&x->argv[6], &lay.block_tokens)) {
        rp_err(x->out, "usage: KVT.NS.CREATE name layers kv_heads head_dim "
               "fp16|bf16|fp32|fp8 block_tokens (positive integers)");
        return;
    }
    uint64_t bb = kvt_layout_block_bytes(&lay);
    if (!bb) {
        rp_err(x->out, "invalid KV layout (block_tokens must be a power of two in [1, 4096]; "
               "a block must fit in 4 GiB)");
        return;
    }
    if (bb > x->s->cfg.max_value_bytes || bb > x->s->cfg.dram_bytes) {
        rp_err(x->out, "a block of this layout is %" PRIu64 " bytes: larger than "
               "max_value_bytes or the DRAM tier", bb);
        return;
    }
    pthread_mutex_lock(&t->ns_mu);
    srv_ns *n = t->ns_list;
    while (n && !(strlen(n->name) == name->n && memcmp(n->name, name->p, name->n) == 0))
        n = n->next;
    if (n) {
        int same = memcmp(&n->layout, &lay, sizeof(lay)) == 0;
        pthread_mutex_unlock(&t->ns_mu);
        if (same)
            rp_ok(x->out);
        else
            rp_err(x->out, "namespace '%.*s' exists with another layout (see KVT.NS.INFO)",
                   (int)name->n, name->p);
        return;
    }
    if (t->n_ns >= t->max_ns) {
        pthread_mutex_unlock(&t->ns_mu);
        rp_err(x->out, "tenant '%s' has its maximum of %u namespaces", t->name, t->max_ns);
        return;
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        pthread_mutex_unlock(&t->ns_mu);
        rp_err(x->out, "OOM");
        return;
    }
    memcpy(n->name, name->p, name->n);
    n->layout = lay;
    n->block_bytes = bb;
    char ename[KVT_NAME_MAX + 1];
    snprintf(ename, sizeof(ename), "ns/%.200s", n->name); /* names are <= 200 bytes */
    int rc = kvt_ns_open(x->s->eng, ename, t->name, &lay, 0, &n->ns);
    if (rc) {
        pthread_mutex_unlock(&t->ns_mu);
        free(n);
        rp_err(x->out, "creating the namespace failed: %s", kvt_strerror(rc));
        return;
    }
    n->next = t->ns_list;
    t->ns_list = n;
    t->n_ns++;
    pthread_mutex_unlock(&t->ns_mu);
    rp_ok(x->out);
}

static srv_ns *ns_or_err(cmdctx *x, const srv_arg *name)
{
    srv_ns *n = ns_find(x->t, name);
    if (!n)
        rp_err(x->out, "no namespace '%.*s' (create it with KVT.NS.CREATE)",
               (int)(name->n > 64 ? 64 : name->n), name->p);
    return n;
}

void cmd_kvt_ns_info(cmdctx *x)
{
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    const kvt_layout *l = &n->layout;
    uint64_t per_token = n->block_bytes / l->block_tokens;
    rp_map(x->out, x->resp, 9);
    rp_bulkstr(x->out, "name");
    rp_bulkstr(x->out, n->name);
    rp_bulkstr(x->out, "layers");
    rp_int(x->out, l->layers);
    rp_bulkstr(x->out, "kv_heads");
    rp_int(x->out, l->kv_heads);
    rp_bulkstr(x->out, "head_dim");
    rp_int(x->out, l->head_dim);
    rp_bulkstr(x->out, "dtype");
    rp_bulkstr(x->out, dtype_name(l->dtype));
    rp_bulkstr(x->out, "block_tokens");
    rp_int(x->out, l->block_tokens);
    rp_bulkstr(x->out, "block_bytes");
    rp_int(x->out, (long long)n->block_bytes);
    rp_bulkstr(x->out, "bytes_per_token");
    rp_int(x->out, (long long)per_token);
    rp_bulkstr(x->out, "block_layout");
    rp_bulkstr(x->out, "[layers][2 (K,V)][block_tokens][kv_heads][head_dim]");
}

void cmd_kvt_ns_list(cmdctx *x)
{
    srv_tenant *t = x->t;
    pthread_mutex_lock(&t->ns_mu);
    rp_arr(x->out, t->n_ns);
    for (srv_ns *n = t->ns_list; n; n = n->next)
        rp_bulkstr(x->out, n->name);
    pthread_mutex_unlock(&t->ns_mu);
}

/* Tokens from a little-endian uint32 blob: a copy, aligned (the blob may sit at any offset
 * of the input buffer). NULL with an error reply on bad input. */
static uint32_t *tokens_of(cmdctx *x, const srv_arg *blob, size_t *n)
{
    if (blob->n % 4) {
        rp_err(x->out, "token blob of %zu bytes is not a whole number of little-endian uint32 "
               "tokens", blob->n);
        return NULL;
    }
    *n = blob->n / 4;
    uint32_t *t = malloc(blob->n ? blob->n : 4);
    if (!t) {
        rp_err(x->out, "OOM");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)blob->p;
    for (size_t i = 0; i < *n; i++)
        t[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    return t;
}

/* One JSON line per KVT request (docs/service.md, "Access log"). */
static void access_log(cmdctx *x, const srv_ns *n, const char *op, const uint32_t *tok,
                       size_t ntok, size_t matched, long long stored)
{
    srv *s = x->s;
    if (!s->alog)
        return;
    size_t nb = ntok / n->layout.block_tokens;
    uint64_t *keys = NULL;
    if (s->cfg.access_log_hash_ids && nb) {
        keys = malloc(nb * sizeof(*keys));
        if (keys && kvt_block_keys(n->ns, tok, ntok, keys)) {
            free(keys);
            keys = NULL;
        }
    }
    pthread_mutex_lock(&s->alog_mu);
    fprintf(s->alog,
            "{\"ts_ms\":%" PRIu64 ",\"tenant\":\"%s\",\"ns\":\"%s\",\"op\":\"%s\",\"tokens\":%zu,"
            "\"block_tokens\":%u,\"block_bytes\":%" PRIu64 ",\"matched_tokens\":%zu,"
            "\"matched_by_tier\":{\"dram\":%zu}",
            now_ms_real(), x->t->name, n->name, op, ntok, n->layout.block_tokens, n->block_bytes,
            matched, matched);
    if (stored >= 0)
        fprintf(s->alog, ",\"stored_blocks\":%lld", stored);
    if (keys) {
        fputs(",\"hash_ids\":[", s->alog);
        for (size_t i = 0; i < nb; i++)
            fprintf(s->alog, "%s%" PRIu64, i ? "," : "", keys[i]);
        fputc(']', s->alog);
    }
    fputs("}\n", s->alog);
    pthread_mutex_unlock(&s->alog_mu);
    free(keys);
}

static void count_lookup(srv_tenant *t, size_t asked, size_t matched)
{
    atomic_fetch_add_explicit(&t->px_lookups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->px_tokens, asked, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->px_hit_tokens, matched, memory_order_relaxed);
}

/* KVT.MATCH ns tokens -> {matched_tokens, block_tokens, matched_blocks, tiers, load_plan} */
void cmd_kvt_match(cmdctx *x)
{
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    size_t ntok;
    uint32_t *tok = tokens_of(x, &x->argv[2], &ntok);
    if (!tok)
        return;
    size_t matched = 0;
    /* measure only: no lease, nothing pinned or touched (KVT.GET is the use) */
    int rc = kvt_match(n->ns, tok, ntok, &matched, NULL);
    if (rc) {
        free(tok);
        rp_err(x->out, "match failed: %s", kvt_strerror(rc));
        return;
    }
    size_t whole = ntok - ntok % n->layout.block_tokens;
    count_lookup(x->t, whole, matched);
    size_t mb = matched / n->layout.block_tokens;
    rp_map(x->out, x->resp, 5);
    rp_bulkstr(x->out, "matched_tokens");
    rp_int(x->out, (long long)matched);
    rp_bulkstr(x->out, "block_tokens");
    rp_int(x->out, n->layout.block_tokens);
    rp_bulkstr(x->out, "matched_blocks");
    rp_int(x->out, (long long)mb);
    /* where they are: runs of [tier, first block, blocks]; this engine has the DRAM tier only */
    rp_bulkstr(x->out, "tiers");
    if (mb) {
        rp_arr(x->out, 1);
        rp_arr(x->out, 3);
        rp_bulkstr(x->out, "dram");
        rp_int(x->out, 0);
        rp_int(x->out, (long long)mb);
    } else {
        rp_arr(x->out, 0);
    }
    rp_bulkstr(x->out, "load_plan");
    rp_nil(x->out, x->resp); /* absent until the engine plans loads (issue 4) */
    access_log(x, n, "match", tok, ntok, matched, -1);
    free(tok);
}

/* KVT.PUT ns tokens kv [FROM block] [TTL 5m|1h] */
void cmd_kvt_put(cmdctx *x)
{
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    size_t from = 0;
    for (int i = 4; i < x->argc; i++) {
        if (arg_eq(&x->argv[i], "FROM") && i + 1 < x->argc) {
            uint64_t v;
            if (arg_u64(&x->argv[i + 1], &v)) {
                rp_err(x->out, "FROM needs a block index");
                return;
            }
            from = (size_t)v;
            i++;
        } else if (arg_eq(&x->argv[i], "TTL") && i + 1 < x->argc) {
            rp_err(x->out, "TTL hints are not supported by this engine version (token "
                   "namespaces have no expiry yet); omit TTL");
            return;
        } else {
            rp_err(x->out, "syntax error: KVT.PUT ns tokens kv [FROM block]");
            return;
        }
    }
    size_t ntok;
    uint32_t *tok = tokens_of(x, &x->argv[2], &ntok);
    if (!tok)
        return;
    size_t nb = ntok / n->layout.block_tokens;
    const srv_arg *kv = &x->argv[3];
    if (from > nb || kv->n != (uint64_t)(nb - from) * n->block_bytes) {
        rp_err(x->out, "kv blob is %zu bytes; %zu whole blocks from block %zu need %" PRIu64
               " bytes (%" PRIu64 " per block)", kv->n, nb > from ? nb - from : 0, from,
               (uint64_t)(nb > from ? nb - from : 0) * n->block_bytes, n->block_bytes);
        free(tok);
        return;
    }
    const void **blocks = calloc(nb ? nb : 1, sizeof(*blocks));
    if (!blocks) {
        free(tok);
        rp_err(x->out, "OOM");
        return;
    }
    /* zero copy: block pointers into the client's input buffer */
    for (size_t i = from; i < nb; i++)
        blocks[i] = kv->p + (i - from) * n->block_bytes;
    size_t stored = 0;
    int rc = kvt_put(n->ns, tok, ntok, blocks, &stored);
    free(blocks);
    atomic_fetch_add_explicit(&x->t->px_puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->t->px_blocks_stored, stored, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->t->px_bytes_in, (uint64_t)stored * n->block_bytes,
                              memory_order_relaxed);
    access_log(x, n, "put", tok, ntok, 0, (long long)stored);
    free(tok);
    if (rc == -ENODATA)
        rp_err(x->out, "blocks before FROM %zu are not cached (any more): send them", from);
    else if (rc == -ENOSPC)
        rp_err(x->out, "OOM stored %zu blocks, then no space in tenant '%s''s DRAM quota or the "
               "tier", stored, x->t->name);
    else if (rc)
        rp_err(x->out, "put failed: %s", kvt_strerror(rc));
    else
        rp_int(x->out, (long long)stored);
}

/* KVT.GET ns tokens -> bulk string: the KV bytes of the matched prefix's blocks, streamed */
void cmd_kvt_get(cmdctx *x)
{
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    size_t ntok;
    uint32_t *tok = tokens_of(x, &x->argv[2], &ntok);
    if (!tok)
        return;
    size_t matched = 0;
    kvt_lease *l = NULL;
    int rc = kvt_match(n->ns, tok, ntok, &matched, &l);
    if (rc) {
        free(tok);
        rp_err(x->out, "match failed: %s", kvt_strerror(rc));
        return;
    }
    size_t whole = ntok - ntok % n->layout.block_tokens;
    count_lookup(x->t, whole, matched);
    size_t mb = matched / n->layout.block_tokens;
    uint64_t bytes = (uint64_t)mb * n->block_bytes;
    access_log(x, n, "get", tok, ntok, matched, -1);
    free(tok);
    if (bytes > x->s->cfg.output_buffer_limit) {
        kvt_release(l);
        rp_err(x->out, "reply of %" PRIu64 " bytes exceeds the output buffer limit (%" PRIu64
               " bytes); ask for a shorter prefix", bytes, x->s->cfg.output_buffer_limit);
        return;
    }
    atomic_fetch_add_explicit(&x->t->px_bytes_out, bytes, memory_order_relaxed);
    rp_bulk_stream(x->out, l, 0, mb, n->block_bytes, bytes);
}

void cmd_kvt_prefetch(cmdctx *x)
{
    rp_err(x->out, "KVT.PREFETCH is not supported by this engine version: it has only the DRAM "
           "tier, so there is nothing to prefetch from (arrives with the nvme/disk tiers)");
}

/* KVT.STATS [ns]: this tenant's counters and the engine's (tier-wide) figures */
void cmd_kvt_stats(cmdctx *x)
{
    srv_tenant *t = x->t;
    kvt_stats st;
    memset(&st, 0, sizeof(st));
    kvt_engine_stats(x->s->eng, &st, sizeof(st));
    if (x->argc > 2) {
        rp_err(x->out, "usage: KVT.STATS [ns]");
        return;
    }
    if (x->argc == 2 && !ns_or_err(x, &x->argv[1]))
        return;
#define U(v) atomic_load_explicit(&(v), memory_order_relaxed)
    struct { const char *k; uint64_t v; } kv[] = {
        {"tenant_kv_hits", U(t->kv_hits)},
        {"tenant_kv_misses", U(t->kv_misses)},
        {"tenant_kv_keys", (uint64_t)(U(t->keys) < 0 ? 0 : U(t->keys))},
        {"tenant_prefix_lookups", U(t->px_lookups)},
        {"tenant_prefix_tokens", U(t->px_tokens)},
        {"tenant_prefix_hit_tokens_dram", U(t->px_hit_tokens)},
        {"tenant_prefix_puts", U(t->px_puts)},
        {"tenant_prefix_blocks_stored", U(t->px_blocks_stored)},
        {"tenant_dram_quota_bytes", t->quota_dram},
        {"engine_dram_capacity_bytes", st.dram_capacity},
        /* engine-wide figures reveal other tenants' activity: admin tenants only */
        {"engine_dram_used_bytes", st.dram_used},
        {"engine_blocks_cached", st.blocks_cached},
        {"engine_blocks_evicted", st.blocks_evicted},
    };
#undef U
    size_t nkv = sizeof(kv) / sizeof(kv[0]) - (t->admin ? 0 : 3);
    rp_map(x->out, x->resp, (long long)nkv);
    for (size_t i = 0; i < nkv; i++) {
        rp_bulkstr(x->out, kv[i].k);
        rp_int(x->out, (long long)kv[i].v);
    }
}

void srv_ns_free_all(srv *s)
{
    for (int i = 0; i < s->cfg.n_tenants; i++) {
        srv_tenant *t = s->cfg.tenants[i];
        while (t->ns_list) {
            srv_ns *n = t->ns_list;
            t->ns_list = n->next;
            free(n);
        }
        t->n_ns = 0;
    }
}
