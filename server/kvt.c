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
 * Tiers: KVT.MATCH takes a lease, reports each matched block's tier (kvt_lease_block_tier)
 * as runs, and releases it once the reply is built. KVT.GET streams blocks that are all in
 * DRAM from the lease; when some are on nvme/disk it runs on a worker (cmd_offload) and
 * reads them there block by block before replying, so that a block failing verification
 * (KVT_ECORRUPT) is known before the reply's length is: the reply is then the intact
 * blocks before it plus an error (never bad bytes). KVT.MATCH also returns the engine's load
 * plan (kvt_lease_plan: which blocks to load from which tier and which to recompute, with
 * the expected times); KVT.PUT's TTL hint goes to kvt_put_ex.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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

const char *tier_name(int tier)
{
    static const char *n[4] = {"hbm", "dram", "nvme", "disk"};
    return tier >= 0 && tier < 4 ? n[tier] : "?";
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
    char nm[KVT_NAME_MAX + 1];
    memcpy(nm, name->p, name->n);
    nm[name->n] = 0;
    int rc = 0;
    n = srv_ns_add(x->s, t, nm, &lay, &rc);
    pthread_mutex_unlock(&t->ns_mu);
    if (!n) {
        if (rc == KVT_EBADLAYOUT)
            rp_err(x->out, "namespace '%s' exists in the engine's catalog with another layout",
                   nm);
        else
            rp_err(x->out, "creating the namespace failed: %s", kvt_strerror(rc));
        return;
    }
    /* remembered across restarts (the engine has no namespace listing): registry.c */
    if ((rc = registry_save(x->s))) {
        rp_err(x->out, "namespace created, but the service's registry could not be written "
               "(%s): it will not be reopened after a restart", strerror(-rc));
        return;
    }
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

/*
 * The access log: one JSON line per request lookup (KVT.MATCH, or KVT.GET unless it repeats
 * the same client's previous KVT.MATCH), in the contract of docs/analytics.md that
 * `kvtier analyze` replays: ts_ms, tenant, ns, tokens, block_keys (16 hex digits, in prompt
 * order, the partial final block included: its key is computed the way the engine chains
 * whole blocks), matched (hit blocks per tier), block_tokens; plus the service's own fields
 * op, block_bytes, matched_tokens (and error on a failed read), which the analyser ignores.
 */
static void access_log(cmdctx *x, const srv_ns *n, const char *op, const uint32_t *tok,
                       size_t ntok, size_t matched, const size_t by_tier[4], const char *error)
{
    srv *s = x->s;
    if (!s->alog || ntok == 0)
        return;
    uint32_t bt = n->layout.block_tokens;
    size_t nb = ntok / bt, nk = (ntok + bt - 1) / bt;
    uint64_t *keys = NULL;
    if (s->cfg.access_log_hash_ids) {
        keys = malloc(nk * sizeof(*keys));
        if (keys && nb && kvt_block_keys(n->ns, tok, ntok, keys)) {
            free(keys);
            keys = NULL;
        }
        if (keys && nk > nb) { /* the partial final block: XXH3-64 seeded with its parent */
            size_t rest = ntok - nb * bt;
            unsigned char *le = malloc(rest * 4);
            if (le) {
                for (size_t i = 0; i < rest; i++) {
                    uint32_t v = tok[nb * bt + i];
                    le[4 * i] = (unsigned char)v;
                    le[4 * i + 1] = (unsigned char)(v >> 8);
                    le[4 * i + 2] = (unsigned char)(v >> 16);
                    le[4 * i + 3] = (unsigned char)(v >> 24);
                }
                keys[nb] = XXH3_64bits_withSeed(le, rest * 4, nb ? keys[nb - 1] : 0);
                free(le);
            } else {
                free(keys);
                keys = NULL;
            }
        }
    }
    pthread_mutex_lock(&s->alog_mu);
    fprintf(s->alog,
            "{\"ts_ms\":%" PRIu64 ",\"tenant\":\"%s\",\"ns\":\"%s\",\"tokens\":%zu", now_ms_real(),
            x->t->name, n->name, ntok);
    if (keys) {
        fputs(",\"block_keys\":[", s->alog);
        for (size_t i = 0; i < nk; i++)
            fprintf(s->alog, "%s\"%016" PRIx64 "\"", i ? "," : "", keys[i]);
        fputc(']', s->alog);
    }
    fputs(",\"matched\":{", s->alog);
    for (int ti = KVT_TIER_DRAM, first = 1; ti <= KVT_TIER_DISK; ti++, first = 0)
        fprintf(s->alog, "%s\"%s\":%zu", first ? "" : ",", tier_name(ti), by_tier[ti]);
    fprintf(s->alog,
            "},\"block_tokens\":%u,\"op\":\"%s\",\"block_bytes\":%" PRIu64
            ",\"matched_tokens\":%zu",
            bt, op, n->block_bytes, matched);
    if (error)
        fprintf(s->alog, ",\"error\":\"%s\"", error);
    fputs("}\n", s->alog);
    pthread_mutex_unlock(&s->alog_mu);
    free(keys);
}

/* Identity of a lookup for the MATCH-then-GET de-duplication of the access log. */
static uint64_t lookup_id(const srv_ns *n, const srv_arg *blob)
{
    return XXH3_64bits_withSeed(blob->p, blob->n, (uint64_t)(uintptr_t)n) | 1;
}

/* The tier of each of the lease's first nb blocks; counts per tier. */
static void lease_tiers(kvt_lease *l, size_t nb, unsigned char *tier, size_t by_tier[4])
{
    for (size_t i = 0; i < nb; i++) {
        kvt_tier t = KVT_TIER_DRAM;
        if (kvt_lease_block_tier(l, i, &t) || (unsigned)t > 3)
            t = KVT_TIER_DRAM;
        if (tier)
            tier[i] = (unsigned char)t;
        by_tier[t]++;
    }
}

static void count_tiers(srv_tenant *t, const size_t by_tier[4], uint32_t bt)
{
    for (int i = 0; i < 4; i++)
        if (by_tier[i])
            atomic_fetch_add_explicit(&t->px_hit_tier[i], (uint64_t)by_tier[i] * bt,
                                      memory_order_relaxed);
}

static void count_lookup(srv_tenant *t, size_t asked, size_t matched)
{
    atomic_fetch_add_explicit(&t->px_lookups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->px_tokens, asked, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->px_hit_tokens, matched, memory_order_relaxed);
}

/* The head of KVT.MATCH and KVT.GET: the namespace, the tokens and a leased match. 0, or -1
 * with the error reply written and nothing left to free. */
static int leased_match(cmdctx *x, srv_ns **n, uint32_t **tok, size_t *ntok, size_t *matched,
                        kvt_lease **l)
{
    if (!(*n = ns_or_err(x, &x->argv[1])) || !(*tok = tokens_of(x, &x->argv[2], ntok)))
        return -1;
    *matched = 0;
    *l = NULL;
    int rc = kvt_match((*n)->ns, *tok, *ntok, matched, l);
    if (rc) {
        free(*tok);
        rp_err(x->out, "match failed: %s", kvt_strerror(rc));
        return -1;
    }
    return 0;
}

/* load_plan: {load_blocks, recompute_blocks, load_s, compute_s, total_s, all_recompute_s,
 * steps: runs of [load|recompute, tier, first block, blocks] in prompt order} */
static void reply_plan(cmdctx *x, const kvt_plan *p, const kvt_plan_block *b, size_t n)
{
    rp_map(x->out, x->resp, 7);
    rp_bulkstr(x->out, "load_blocks");
    rp_int(x->out, (long long)p->n_load);
    rp_bulkstr(x->out, "recompute_blocks");
    rp_int(x->out, (long long)p->n_recompute);
    const struct {
        const char *name;
        double v;
    } t[] = {{"load_s", p->load_s}, {"compute_s", p->compute_s}, {"total_s", p->total_s},
             {"all_recompute_s", p->all_recompute_s}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        rp_bulkstr(x->out, t[i].name);
        rp_dbl(x->out, x->resp, t[i].v);
    }
    rp_bulkstr(x->out, "steps");
    size_t runs = 0;
    for (size_t i = 0; i < n; i++)
        runs += i == 0 || b[i].load != b[i - 1].load || b[i].tier != b[i - 1].tier;
    rp_arr(x->out, (long long)runs);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && b[j].load == b[i].load && b[j].tier == b[i].tier)
            j++;
        rp_arr(x->out, 4);
        rp_bulkstr(x->out, b[i].load ? "load" : "recompute");
        rp_bulkstr(x->out, tier_name((int)b[i].tier));
        rp_int(x->out, (long long)i);
        rp_int(x->out, (long long)(j - i));
        i = j;
    }
}

/* KVT.MATCH ns tokens -> {matched_tokens, block_tokens, matched_blocks, tiers, load_plan}
 * A lease is taken to learn each block's tier (so the match counts as a use: LRU, hit
 * counters) and released once the reply is built. */
void cmd_kvt_match(cmdctx *x)
{
    srv_ns *n;
    uint32_t *tok;
    size_t ntok, matched;
    kvt_lease *l;
    if (leased_match(x, &n, &tok, &ntok, &matched, &l))
        return;
    uint32_t bt = n->layout.block_tokens;
    size_t whole = ntok - ntok % bt;
    count_lookup(x->t, whole, matched);
    size_t mb = matched / bt;
    size_t by_tier[4] = {0};
    unsigned char *tier = mb ? malloc(mb) : NULL;
    if (mb && !tier) {
        kvt_release(l);
        free(tok);
        rp_err(x->out, "OOM");
        return;
    }
    lease_tiers(l, mb, tier, by_tier);
    /* the load plan for this request: its uncached tail is computed anyway */
    kvt_plan plan;
    kvt_plan_block *pb = mb ? malloc(mb * sizeof *pb) : NULL;
    int have_plan = mb && pb && kvt_lease_plan(l, NULL, ntok - matched, &plan, pb) == 0;
    kvt_release(l);
    count_tiers(x->t, by_tier, bt);
    rp_map(x->out, x->resp, 5);
    rp_bulkstr(x->out, "matched_tokens");
    rp_int(x->out, (long long)matched);
    rp_bulkstr(x->out, "block_tokens");
    rp_int(x->out, bt);
    rp_bulkstr(x->out, "matched_blocks");
    rp_int(x->out, (long long)mb);
    /* where they are: runs of [tier, first block, blocks], in prompt order */
    rp_bulkstr(x->out, "tiers");
    size_t runs = 0;
    for (size_t i = 0; i < mb; i++)
        runs += i == 0 || tier[i] != tier[i - 1];
    rp_arr(x->out, (long long)runs);
    for (size_t i = 0; i < mb;) {
        size_t j = i;
        while (j < mb && tier[j] == tier[i])
            j++;
        rp_arr(x->out, 3);
        rp_bulkstr(x->out, tier_name(tier[i]));
        rp_int(x->out, (long long)i);
        rp_int(x->out, (long long)(j - i));
        i = j;
    }
    rp_bulkstr(x->out, "load_plan");
    if (have_plan)
        reply_plan(x, &plan, pb, mb);
    else
        rp_nil(x->out, x->resp); /* nothing matched (or no memory to plan): nothing to load */
    free(pb);
    free(tier);
    access_log(x, n, "match", tok, ntok, matched, by_tier, NULL);
    *client_last_match(x->c) = lookup_id(n, &x->argv[2]);
    free(tok);
}

/* KVT.PUT ns tokens kv [FROM block] [TTL 5m|1h] */
void cmd_kvt_put(cmdctx *x)
{
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    size_t from = 0;
    kvt_put_opts po = {0};
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
            /* a hint for the blocks this put stores: a miss once unused for that long */
            char ttl[32];
            const srv_arg *a = &x->argv[i + 1];
            if (a->n == 0 || a->n >= sizeof ttl) {
                rp_err(x->out, "TTL hint: like 30s, 5m, 1h or 2h30m");
                return;
            }
            memcpy(ttl, a->p, a->n);
            ttl[a->n] = 0;
            if (kvt_ttl_parse(ttl, &po.ttl_s)) {
                rp_err(x->out, "TTL hint '%s': like 30s, 5m, 1h or 2h30m", ttl);
                return;
            }
            i++;
        } else {
            rp_err(x->out, "syntax error: KVT.PUT ns tokens kv [FROM block] [TTL 5m|1h]");
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
    int rc = kvt_put_ex(n->ns, tok, ntok, blocks, po.ttl_s > 0 ? &po : NULL, &stored);
    free(blocks);
    atomic_fetch_add_explicit(&x->t->px_puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->t->px_blocks_stored, stored, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->t->px_bytes_in, (uint64_t)stored * n->block_bytes,
                              memory_order_relaxed);
    free(tok); /* not an access-log line: the log's records are lookups (docs/analytics.md) */
    if (rc == -ENODATA)
        rp_err(x->out, "blocks before FROM %zu are not cached (any more): send them", from);
    else if (rc == -ENOSPC)
        rp_err(x->out, "OOM stored %zu blocks, then no space in tenant '%s''s quota or the "
               "tiers", stored, x->t->name);
    else if (rc)
        rp_err(x->out, "put failed: %s", kvt_strerror(rc));
    else
        rp_int(x->out, (long long)stored);
}

/* KVT.GET ns tokens -> bulk string: the KV bytes of the matched prefix's blocks.
 * All in DRAM: streamed from the lease (1 MiB windows as the socket drains). Some on
 * nvme/disk: re-run on a worker, which reads block by block (each read verified by the
 * engine); if block i fails (KVT_ECORRUPT, -EIO), the reply is the array
 * [bytes of blocks 0..i-1, error "CORRUPT ..."] and the engine has dropped block i and
 * everything cached after it: never bad bytes, and a client expecting a bulk string cannot
 * mistake the shorter prefix for the whole one. */
void cmd_kvt_get(cmdctx *x)
{
    srv_ns *n;
    uint32_t *tok;
    size_t ntok, matched;
    kvt_lease *l;
    if (leased_match(x, &n, &tok, &ntok, &matched, &l))
        return;
    uint32_t bt = n->layout.block_tokens;
    size_t mb = matched / bt;
    size_t by_tier[4] = {0};
    lease_tiers(l, mb, NULL, by_tier);
    uint64_t bytes = (uint64_t)mb * n->block_bytes;
    if (by_tier[KVT_TIER_DRAM] != mb && bytes <= x->s->cfg.output_buffer_limit &&
        cmd_offload(x)) {
        kvt_release(l); /* again on a worker: reading nvme/disk must not stall the loop */
        free(tok);
        return;
    }
    size_t whole = ntok - ntok % bt;
    count_lookup(x->t, whole, matched);
    count_tiers(x->t, by_tier, bt);
    uint64_t id = lookup_id(n, &x->argv[2]);
    int dup = *client_last_match(x->c) == id;
    *client_last_match(x->c) = 0;
    if (bytes > x->s->cfg.output_buffer_limit) {
        kvt_release(l);
        if (!dup)
            access_log(x, n, "get", tok, ntok, matched, by_tier, NULL);
        free(tok);
        rp_err(x->out, "reply of %" PRIu64 " bytes exceeds the output buffer limit (%" PRIu64
               " bytes); ask for a shorter prefix", bytes, x->s->cfg.output_buffer_limit);
        return;
    }
    if (by_tier[KVT_TIER_DRAM] == mb) {
        if (!dup)
            access_log(x, n, "get", tok, ntok, matched, by_tier, NULL);
        free(tok);
        atomic_fetch_add_explicit(&x->t->px_bytes_out, bytes, memory_order_relaxed);
        rp_bulk_stream(x->out, l, 0, mb, n->block_bytes, bytes);
        return;
    }
    /* some blocks on nvme/disk: read them now (on a worker when there is one) */
    char *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        kvt_release(l);
        free(tok);
        rp_err(x->out, "OOM reading %" PRIu64 " bytes", bytes);
        return;
    }
    size_t good = 0;
    int rc = 0;
    for (; good < mb; good++) {
        rc = kvt_read_contig(l, good, 1, buf + good * n->block_bytes, n->block_bytes);
        if (rc)
            break;
    }
    kvt_release(l); /* a block that failed verification is dropped now */
    if (rc) {
        if (rc == KVT_ECORRUPT)
            atomic_fetch_add_explicit(&x->t->px_corrupt, 1, memory_order_relaxed);
        srv_log(x->s, 0, "tenant %s namespace %s: block %zu of a prefix failed to read (%s): "
                "served the %zu blocks before it; the engine dropped it and the blocks after it",
                x->t->name, n->name, good, kvt_strerror(rc), good);
    }
    if (!dup || rc)
        access_log(x, n, "get", tok, ntok, matched, by_tier,
                   rc == KVT_ECORRUPT ? "corrupt" : rc ? "read" : NULL);
    free(tok);
    uint64_t out = (uint64_t)good * n->block_bytes;
    atomic_fetch_add_explicit(&x->t->px_bytes_out, out, memory_order_relaxed);
    if (!rc) {
        rp_bulk(x->out, buf, out);
    } else {
        rp_arr(x->out, 2);
        rp_bulk(x->out, buf, out);
        rp_err(x->out, "%s block %zu of the prefix failed %s and was dropped; the %zu blocks "
               "before it (%zu tokens) are intact: the first element",
               rc == KVT_ECORRUPT ? "CORRUPT" : "IOERR", good,
               rc == KVT_ECORRUPT ? "verification" : "to read", good, good * bt);
    }
    free(buf);
}

/* KVT.PREFETCH ns tokens -> integer: blocks of the cached prefix (those not in DRAM are
 * promoted in the background; a KVT.GET of them waits only for blocks still in flight) */
void cmd_kvt_prefetch(cmdctx *x)
{
    if (x->argc != 3) {
        rp_err(x->out, "usage: KVT.PREFETCH ns tokens");
        return;
    }
    srv_ns *n = ns_or_err(x, &x->argv[1]);
    if (!n)
        return;
    size_t ntok;
    uint32_t *tok = tokens_of(x, &x->argv[2], &ntok);
    if (!tok)
        return;
    size_t matched = 0;
    int rc = kvt_match(n->ns, tok, ntok, &matched, NULL); /* measure only */
    if (!rc)
        rc = kvt_prefetch(n->ns, tok, ntok);
    free(tok);
    if (rc) {
        rp_err(x->out, "prefetch failed: %s", kvt_strerror(rc));
        return;
    }
    atomic_fetch_add_explicit(&x->t->px_prefetches, 1, memory_order_relaxed);
    rp_int(x->out, (long long)(matched / n->layout.block_tokens));
}

/* KVT.FLUSH (and SAVE): the durability point. Every value and prefix stored before it is
 * on its persistent tier and in the catalog (kvt_flush), and the service's registry is
 * written: a crash (kill -9) after +OK loses none of them. Runs on a worker. */
void cmd_kvt_flush(cmdctx *x)
{
    if (!x->s->cfg.data_dir[0]) {
        rp_err(x->out, "no persistent tiers (data_dir = none): nothing to flush");
        return;
    }
    if (cmd_offload(x))
        return;
    int rc = srv_flush(x->s);
    if (rc)
        rp_err(x->out, "flush failed: %s (the blocks concerned stay cached in DRAM but are not "
               "persistent)", rc < 0 && rc > -4096 && rc != -EIO && rc != -ENOSPC ?
               strerror(-rc) : kvt_strerror(rc));
    else
        rp_ok(x->out);
}

void cmd_lastsave(cmdctx *x)
{
    uint64_t ms = atomic_load(&x->s->last_flush_ms);
    rp_int(x->out, (long long)((ms ? ms : x->s->start_ms) / 1000));
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
        {"tenant_kv_corrupt_reads", U(t->kv_corrupt)},
        {"tenant_prefix_lookups", U(t->px_lookups)},
        {"tenant_prefix_tokens", U(t->px_tokens)},
        {"tenant_prefix_hit_tokens", U(t->px_hit_tokens)},
        {"tenant_prefix_hit_tokens_dram", U(t->px_hit_tier[KVT_TIER_DRAM])},
        {"tenant_prefix_hit_tokens_nvme", U(t->px_hit_tier[KVT_TIER_NVME])},
        {"tenant_prefix_hit_tokens_disk", U(t->px_hit_tier[KVT_TIER_DISK])},
        {"tenant_prefix_puts", U(t->px_puts)},
        {"tenant_prefix_blocks_stored", U(t->px_blocks_stored)},
        {"tenant_prefix_prefetches", U(t->px_prefetches)},
        {"tenant_prefix_corrupt_reads", U(t->px_corrupt)},
        {"tenant_dram_quota_bytes", t->quota_dram},
        {"tenant_nvme_quota_bytes", t->quota_nvme},
        {"tenant_disk_quota_bytes", t->quota_disk},
        {"engine_dram_capacity_bytes", st.dram_capacity},
        {"engine_nvme_capacity_bytes", st.tier_capacity[KVT_TIER_NVME]},
        {"engine_disk_capacity_bytes", st.tier_capacity[KVT_TIER_DISK]},
        {"engine_persistent", st.persistent},
        /* engine-wide figures reveal other tenants' activity: admin tenants only */
        {"engine_dram_used_bytes", st.dram_used},
        {"engine_nvme_used_bytes", st.tier_used[KVT_TIER_NVME]},
        {"engine_disk_used_bytes", st.tier_used[KVT_TIER_DISK]},
        {"engine_nvme_blocks", st.tier_blocks[KVT_TIER_NVME]},
        {"engine_disk_blocks", st.tier_blocks[KVT_TIER_DISK]},
        {"engine_blocks_cached", st.blocks_cached},
        {"engine_blocks_evicted", st.blocks_evicted},
        {"engine_demotions", st.demotions},
        {"engine_promotions", st.promotions},
        {"engine_checksum_failures", st.checksum_failures},
        {"engine_io_errors", st.io_errors},
        {"engine_persisted_blocks", st.persisted_blocks},
        {"engine_unpersisted_blocks", st.unpersisted_blocks},
        {"engine_restored_blocks", st.restored_blocks},
    };
#undef U
    size_t nkv = sizeof(kv) / sizeof(kv[0]) - (t->admin ? 0 : 14);
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
