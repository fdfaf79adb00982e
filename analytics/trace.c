/*
 * trace.c — JSONL trace readers: Mooncake (hash_ids), token ids, and the service's access
 * log (the contract in docs/analytics.md). Parsing is jansson's; this file validates.
 *
 * Every line is one JSON object. A line that is not, or that breaks a rule below, is
 * reported as "file:line: why; skipped" and skipped (or fails the load under strict).
 *
 *   mooncake  {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [id...],
 *              "tenant": "t"?}     ids >= 0; (len-1)*bt < input_length <= len*bt
 *   tokens    {"timestamp": ms, "tokens": [id...], "output_length": n?, "tenant": "t"?}
 *   log       {"ts_ms": ms, "tenant": "t", "ns": "model", "tokens": n,
 *              "hash_ids": [id...] | "block_keys": ["16 hex digits"|id ...],
 *              "matched": {"hbm"|"dram"|"nvme"|"disk": blocks}?, "ttl_s": s?,
 *              "block_tokens": bt?, "output_length": n?}
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "an.h"

const char *const an_tier_name[AN_TIERS] = {"hbm", "dram", "nvme", "disk"};
const char *const an_miss_name[AN_MISS_N] = {"first_use", "evicted_capacity", "expired_ttl",
                                              "partial_block", "other_namespace"};

#define AN_MAX_BLOCKS (1u << 24) /* per request: 8.6e9 tokens at bt 512; sanity bound */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static long intern(char ***names, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*names)[i], s) == 0)
            return (long)i;
    char **q = realloc(*names, (*n + 1) * sizeof *q);
    if (!q)
        return -ENOMEM;
    *names = q;
    if (!(q[*n] = strdup(s)))
        return -ENOMEM;
    return (long)(*n)++;
}

/* The namespace (name, tenant), created if new. */
static long ns_intern(an_trace *t, const char *name, uint32_t tenant)
{
    for (size_t i = 0; i < t->n_ns; i++)
        if (t->ns_tenant[i] == tenant && strcmp(t->ns_name[i], name) == 0)
            return (long)i;
    char **q = realloc(t->ns_name, (t->n_ns + 1) * sizeof *q);
    if (!q)
        return -ENOMEM;
    t->ns_name = q;
    uint32_t *u = realloc(t->ns_tenant, (t->n_ns + 1) * sizeof *u);
    if (!u)
        return -ENOMEM;
    t->ns_tenant = u;
    if (!(q[t->n_ns] = strdup(name)))
        return -ENOMEM;
    u[t->n_ns] = tenant;
    return (long)t->n_ns++;
}

/* A non-negative integer field (reals accepted when integral-valued, e.g. 1.7e3). */
static int get_uint(json_t *o, const char *k, uint64_t max, uint64_t *v)
{
    json_t *j = json_object_get(o, k);
    if (json_is_integer(j)) {
        json_int_t x = json_integer_value(j);
        if (x < 0 || (uint64_t)x > max)
            return -ERANGE;
        *v = (uint64_t)x;
        return 0;
    }
    if (json_is_real(j)) {
        double d = json_real_value(j);
        if (!(d >= 0) || d > (double)max || d != floor(d))
            return -ERANGE;
        *v = (uint64_t)d;
        return 0;
    }
    return j ? -EINVAL : -ENOENT;
}

/* A block key: a JSON integer >= 0, or a string of 1..16 hex digits (optionally "0x"). */
static int get_key(json_t *j, uint64_t *v)
{
    if (json_is_integer(j)) {
        if (json_integer_value(j) < 0)
            return -ERANGE;
        *v = (uint64_t)json_integer_value(j);
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
            s += 2;
        size_t n = strlen(s);
        if (n == 0 || n > 16 || strspn(s, "0123456789abcdefABCDEF") != n)
            return -EINVAL;
        *v = strtoull(s, NULL, 16);
        return 0;
    }
    return -EINVAL;
}

typedef struct rd {
    const char *path;
    const an_load_opts *o;
    an_trace *t;
    size_t line;
    char why[256];
} rd;

#define BAD(...)                                                                           \
    do {                                                                                   \
        snprintf(r->why, sizeof r->why, __VA_ARGS__);                                      \
        return -EINVAL;                                                                    \
    } while (0)

static an_format detect(json_t *o)
{
    if (json_object_get(o, "ts_ms"))
        return AN_FMT_LOG;
    if (json_object_get(o, "hash_ids"))
        return AN_FMT_MOONCAKE;
    if (json_object_get(o, "tokens"))
        return AN_FMT_TOKENS;
    return AN_FMT_AUTO;
}

static uint32_t default_bt(an_format f) { return f == AN_FMT_TOKENS ? 16 : 512; }

/* Parse one object into a new request appended to t. -EINVAL with r->why set: malformed
 * (nothing appended); -ENOMEM. */
static int parse_obj(rd *r, json_t *o)
{
    an_trace *t = r->t;
    an_format f = detect(o);
    if (f == AN_FMT_AUTO)
        BAD("not a trace record (no \"hash_ids\", \"tokens\" or \"ts_ms\")");
    if (t->format == AN_FMT_AUTO) {
        t->format = f;
        t->keyed = f != AN_FMT_TOKENS;
        if (!t->bt)
            t->bt = default_bt(f);
    } else if (f != t->format) {
        BAD("record format differs from the trace's (%s)",
            t->format == AN_FMT_LOG ? "access log" : t->format == AN_FMT_MOONCAKE ? "mooncake"
                                                                                : "tokens");
    }
    const uint32_t bt = t->bt;
    an_req q;
    memset(&q, 0, sizeof q);
    q.ttl_ms = -1;
    q.line = (uint32_t)r->line;
    for (int i = 0; i < AN_TIERS; i++)
        q.obs_matched[i] = -1;
    uint64_t v;
    int rc;
    const char *tenant = "default", *nsname = "trace";
    json_t *jt = json_object_get(o, "tenant");
    if (jt) {
        if (!json_is_string(jt) || !json_string_length(jt) ||
            json_string_length(jt) > KVT_NAME_MAX || strlen(json_string_value(jt)) != json_string_length(jt))
            BAD("\"tenant\" must be a string of 1..%d bytes", KVT_NAME_MAX);
        tenant = json_string_value(jt);
    } else if (f == AN_FMT_LOG) {
        BAD("missing \"tenant\"");
    }
    if ((rc = get_uint(o, f == AN_FMT_LOG ? "ts_ms" : "timestamp", UINT64_MAX / 2, &v)))
        BAD("\"%s\" missing or not a non-negative integer", f == AN_FMT_LOG ? "ts_ms" : "timestamp");
    q.ts_ms = v;
    rc = get_uint(o, "output_length", UINT32_MAX, &v);
    if (rc && rc != -ENOENT)
        BAD("\"output_length\" is not a non-negative integer");
    q.output_tokens = rc ? 0 : (uint32_t)v;

    size_t nk = 0;
    if (f == AN_FMT_TOKENS) {
        json_t *a = json_object_get(o, "tokens");
        if (!json_is_array(a) || json_array_size(a) == 0)
            BAD("\"tokens\" must be a non-empty array of token ids");
        size_t n = json_array_size(a);
        if (n / bt + 1 > AN_MAX_BLOCKS)
            BAD("prompt too long (%zu tokens)", n);
        if (grow((void **)&t->tokens, &t->cap_tokens, t->n_tokens + n, sizeof(uint32_t)))
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(a, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > (json_int_t)UINT32_MAX)
                BAD("\"tokens\"[%zu] is not a token id in [0, 2^32)", i);
            t->tokens[t->n_tokens + i] = (uint32_t)json_integer_value(e);
        }
        q.tok_off = t->n_tokens;
        q.input_tokens = n;
        nk = (n + bt - 1) / bt;
        if (grow((void **)&t->keys, &t->cap_keys, t->n_keys + nk, sizeof(uint64_t)))
            return -ENOMEM;
        memset(&t->keys[t->n_keys], 0, nk * sizeof(uint64_t)); /* filled after the load */
        t->n_tokens += n;
    } else {
        json_t *a = json_object_get(o, "hash_ids");
        const char *an = "hash_ids";
        if (f == AN_FMT_LOG && !a) {
            a = json_object_get(o, "block_keys");
            an = "block_keys";
        }
        if (!json_is_array(a) || json_array_size(a) == 0)
            BAD("\"%s\" must be a non-empty array of block keys", an);
        nk = json_array_size(a);
        if (nk > AN_MAX_BLOCKS)
            BAD("too many blocks (%zu)", nk);
        if (f == AN_FMT_LOG) {
            json_t *jb = json_object_get(o, "block_tokens");
            if (jb && (get_uint(o, "block_tokens", UINT32_MAX, &v) || v != bt))
                BAD("\"block_tokens\" is not the block size %" PRIu32 " (--block-size)", bt);
            if (get_uint(o, "tokens", UINT64_MAX / 2, &v))
                BAD("\"tokens\" missing or not a non-negative integer");
        } else if (get_uint(o, "input_length", UINT64_MAX / 2, &v)) {
            BAD("\"input_length\" missing or not a non-negative integer");
        }
        q.input_tokens = v;
        if (v <= (uint64_t)(nk - 1) * bt || v > (uint64_t)nk * bt)
            BAD("%" PRIu64 " input tokens do not fill %zu blocks of %" PRIu32 " (need %zu..%zu)",
                v, nk, bt, (nk - 1) * bt + 1, nk * bt);
        if (grow((void **)&t->keys, &t->cap_keys, t->n_keys + nk, sizeof(uint64_t)))
            return -ENOMEM;
        for (size_t i = 0; i < nk; i++)
            if (get_key(json_array_get(a, i), &t->keys[t->n_keys + i]))
                BAD("\"%s\"[%zu] is not a block key (integer >= 0 or up to 16 hex digits)", an, i);
        if (f == AN_FMT_LOG) {
            json_t *jn = json_object_get(o, "ns");
            if (!json_is_string(jn) || !json_string_length(jn) || json_string_length(jn) > KVT_NAME_MAX ||
                strlen(json_string_value(jn)) != json_string_length(jn))
                BAD("\"ns\" must be a string of 1..%d bytes", KVT_NAME_MAX);
            nsname = json_string_value(jn);
            json_t *m = json_object_get(o, "matched");
            if (m) {
                if (!json_is_object(m))
                    BAD("\"matched\" must be an object of tier: blocks");
                const char *k;
                json_t *val;
                json_object_foreach(m, k, val) {
                    int ti = -1;
                    for (int i = 0; i < AN_TIERS; i++)
                        if (strcmp(k, an_tier_name[i]) == 0)
                            ti = i;
                    if (ti < 0)
                        BAD("\"matched\" has an unknown tier \"%s\"", k);
                    if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                        json_integer_value(val) > (json_int_t)nk)
                        BAD("\"matched\".\"%s\" must be blocks in [0, %zu]", k, nk);
                    q.obs_matched[ti] = (int32_t)json_integer_value(val);
                }
            }
            json_t *jl = json_object_get(o, "ttl_s");
            if (jl) {
                double s = json_is_number(jl) ? json_number_value(jl) : -1;
                if (!(s > 0) || s > 1e12)
                    BAD("\"ttl_s\" must be a positive number of seconds");
                q.ttl_ms = (int64_t)llround(s * 1000.0);
            }
        }
    }
    q.n_blocks = (uint32_t)nk;
    q.last_tokens = (uint32_t)(q.input_tokens - (uint64_t)(nk - 1) * bt);
    long ti = intern(&t->tenants, &t->n_tenants, tenant);
    if (ti < 0)
        return -ENOMEM;
    long ni = ns_intern(t, nsname, (uint32_t)ti);
    if (ni < 0)
        return -ENOMEM;
    q.tenant = (uint32_t)ti;
    q.ns = (uint32_t)ni;
    q.keys_off = t->n_keys;
    t->n_keys += nk;
    if (grow((void **)&t->req, &t->cap_req, t->n_req + 1, sizeof(an_req)))
        return -ENOMEM;
    t->req[t->n_req++] = q;
    return 0;
}

/* ---------------------------------------------------------------- Mooncake fast path
 * Most of a load's time went to jansson building and freeing a JSON tree per line (hash_ids
 * are ~25 integers a line). A plain Mooncake line, an object with exactly the keys
 * "timestamp", "input_length", "hash_ids" and optionally "output_length", each value a
 * plain integer (digits only, at most 18, no leading zero) or, for hash_ids, a non-empty
 * array of them, is read here directly. Anything else (a tenant, a real, an escape, a
 * duplicate key, a bad length, invalid JSON) returns 0 and goes through jansson, which
 * accepts or reports it exactly as before; the tests compare both paths. */

static const char *fp_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

static const char *fp_uint(const char *p, uint64_t *v)
{
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
        return NULL;
    uint64_t x = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9') {
        if (++n > 18)
            return NULL;
        x = x * 10 + (uint64_t)(*p++ - '0');
    }
    if (*p == '.' || *p == 'e' || *p == 'E')
        return NULL;
    *v = x;
    return p;
}

/* 1: the line was a plain Mooncake record and is appended; 0: not handled (use jansson);
 * -ENOMEM. */
static int fast_mooncake(rd *r, const char *p)
{
    an_trace *t = r->t;
    if (t->format != AN_FMT_MOONCAKE && t->format != AN_FMT_AUTO)
        return 0;
    const uint32_t bt = t->bt ? t->bt : default_bt(AN_FMT_MOONCAKE);
    uint64_t ts = 0, in = 0, out = 0;
    unsigned seen = 0; /* 1 timestamp, 2 input_length, 4 output_length, 8 hash_ids */
    size_t nk = 0;
    p = fp_ws(p);
    if (*p++ != '{')
        return 0;
    for (;;) {
        p = fp_ws(p);
        if (*p++ != '"')
            return 0;
        const char *k = p;
        while (*p && *p != '"' && *p != '\\')
            p++;
        if (*p != '"')
            return 0;
        size_t kl = (size_t)(p - k);
        p = fp_ws(p + 1);
        if (*p++ != ':')
            return 0;
        p = fp_ws(p);
        unsigned bit = kl == 9 && !memcmp(k, "timestamp", 9)        ? 1
                       : kl == 12 && !memcmp(k, "input_length", 12)  ? 2
                       : kl == 13 && !memcmp(k, "output_length", 13) ? 4
                       : kl == 8 && !memcmp(k, "hash_ids", 8)        ? 8
                                                                     : 0;
        if (!bit || (seen & bit))
            return 0;
        seen |= bit;
        if (bit == 8) {
            if (*p++ != '[')
                return 0;
            p = fp_ws(p);
            if (*p == ']')
                return 0; /* empty: jansson reports it */
            for (;;) {
                uint64_t v;
                if (!(p = fp_uint(p, &v)))
                    return 0;
                if (nk >= AN_MAX_BLOCKS)
                    return 0;
                if (grow((void **)&t->keys, &t->cap_keys, t->n_keys + nk + 1, sizeof(uint64_t)))
                    return -ENOMEM;
                t->keys[t->n_keys + nk++] = v;
                p = fp_ws(p);
                if (*p == ']')
                    break;
                if (*p++ != ',')
                    return 0;
                p = fp_ws(p);
            }
            p++;
        } else {
            uint64_t v;
            if (!(p = fp_uint(p, &v)))
                return 0;
            if (bit == 1)
                ts = v;
            else if (bit == 2)
                in = v;
            else
                out = v;
        }
        p = fp_ws(p);
        if (*p == '}')
            break;
        if (*p++ != ',')
            return 0;
    }
    if (*fp_ws(p + 1) || (seen & 11) != 11 || out > UINT32_MAX)
        return 0;
    if (in <= (uint64_t)(nk - 1) * bt || in > (uint64_t)nk * bt)
        return 0; /* jansson's path explains it */
    if (t->format == AN_FMT_AUTO) {
        t->format = AN_FMT_MOONCAKE;
        t->keyed = 1;
        t->bt = bt;
    }
    long ti = intern(&t->tenants, &t->n_tenants, "default");
    if (ti < 0)
        return -ENOMEM;
    long ni = ns_intern(t, "trace", (uint32_t)ti);
    if (ni < 0)
        return -ENOMEM;
    if (grow((void **)&t->req, &t->cap_req, t->n_req + 1, sizeof(an_req)))
        return -ENOMEM;
    an_req q = {.ts_ms = ts, .input_tokens = in, .keys_off = t->n_keys, .ttl_ms = -1,
                .n_blocks = (uint32_t)nk, .last_tokens = (uint32_t)(in - (uint64_t)(nk - 1) * bt),
                .output_tokens = (uint32_t)out, .tenant = (uint32_t)ti, .ns = (uint32_t)ni,
                .line = (uint32_t)r->line, .obs_matched = {-1, -1, -1, -1}};
    t->n_keys += nk;
    t->req[t->n_req++] = q;
    return 1;
}

static int req_cmp(const void *a, const void *b)
{
    const an_req *x = a, *y = b;
    if (x->ts_ms != y->ts_ms)
        return x->ts_ms < y->ts_ms ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Token traces: block keys as the engine computes them (XXH3 chain, kvtier.h "Block keys"),
 * from a token namespace of a small engine (kvt_block_keys is pure). */
static int token_keys(an_trace *t)
{
    kvt_options *o = NULL;
    kvt_engine *e = NULL;
    kvt_ns *ns = NULL;
    kvt_layout lay = {.layers = 1, .kv_heads = 1, .head_dim = 1, .dtype = KVT_DTYPE_FP8,
                      .block_tokens = t->bt};
    uint64_t bb = kvt_layout_block_bytes(&lay);
    int rc = kvt_options_create(&o);
    if (rc)
        return rc;
    if ((rc = kvt_options_set_dram_bytes(o, (bb + 63) & ~63ull)) ||
        (rc = kvt_options_set_hugepages(o, KVT_HUGEPAGES_OFF)) ||
        (rc = kvt_options_set_cuda_pin(o, 0)) || (rc = kvt_engine_open(o, &e)) ||
        (rc = kvt_ns_open(e, "keys", "keys", &lay, 0, &ns)))
        goto out;
    for (size_t r = 0; r < t->n_req && !rc; r++) {
        const an_req *q = &t->req[r];
        rc = kvt_block_keys(ns, &t->tokens[q->tok_off], q->input_tokens, &t->keys[q->keys_off]);
    }
out:
    if (e)
        kvt_engine_close(e);
    kvt_options_destroy(o);
    return rc;
}

int an_trace_load(const char *path, const an_load_opts *o, an_trace *t)
{
    memset(t, 0, sizeof *t);
    if (!path || !o)
        return -EINVAL;
    t->format = o->format;
    t->keyed = o->format != AN_FMT_TOKENS && o->format != AN_FMT_AUTO;
    t->bt = o->block_tokens ? o->block_tokens : (o->format ? default_bt(o->format) : 0);
    if (t->bt && (t->bt > 4096 || (t->bt & (t->bt - 1))))
        return -EINVAL;
    FILE *errs = o->errs ? o->errs : stderr;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f)
        return -errno;
    rd r = {.path = path, .o = o, .t = t};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    errno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        r.line++;
        t->lines++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        line[len] = 0; /* getline's buffer holds len + 1 bytes at least */
        if (strspn(line, " \t") == (size_t)len)
            continue; /* blank line */
        size_t keys0 = t->n_keys, tok0 = t->n_tokens;
        if (!o->no_fast) {
            rc = fast_mooncake(&r, line);
            if (rc == 1) {
                rc = 0;
                continue;
            }
            t->n_keys = keys0; /* what a line the fast path gave up on appended */
            if (rc == -ENOMEM)
                goto out;
        }
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, 0, &je);
        if (!j) {
            snprintf(r.why, sizeof r.why, "invalid JSON at column %d: %.120s", je.column, je.text);
            rc = -EINVAL;
        } else if (!json_is_object(j)) {
            snprintf(r.why, sizeof r.why, "not a JSON object");
            rc = -EINVAL;
        } else {
            rc = parse_obj(&r, j);
        }
        json_decref(j);
        if (rc == -ENOMEM)
            goto out;
        if (rc) {
            t->n_keys = keys0; /* drop what the bad line appended */
            t->n_tokens = tok0;
            t->bad_lines++;
            fprintf(errs, "%s:%zu: %s; %s\n", path, r.line, r.why,
                    o->strict ? "stopping (--strict)" : "line skipped");
            if (o->strict)
                goto out;
            rc = 0;
        }
    }
    if (ferror(f)) {
        rc = errno ? -errno : -EIO;
        goto out;
    }
    if (t->n_req == 0) {
        fprintf(errs, "%s: no valid request\n", path);
        rc = -EINVAL;
        goto out;
    }
    qsort(t->req, t->n_req, sizeof *t->req, req_cmp);
    if (!t->keyed)
        rc = token_keys(t);
out:
    free(line);
    if (f != stdin)
        fclose(f);
    if (rc)
        an_trace_free(t);
    return rc;
}

void an_trace_free(an_trace *t)
{
    if (!t)
        return;
    free(t->req);
    free(t->keys);
    free(t->tokens);
    for (size_t i = 0; i < t->n_tenants; i++)
        free(t->tenants[i]);
    free(t->tenants);
    for (size_t i = 0; i < t->n_ns; i++)
        free(t->ns_name[i]);
    free(t->ns_name);
    free(t->ns_tenant);
    memset(t, 0, sizeof *t);
}
