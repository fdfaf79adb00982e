/*
 * config.c — the service's configuration: defaults, the INI file (libinih), KVTIER_*
 * environment variables and flags all go through cfg_set(); tenants come from
 * [tenant:NAME] sections of the file. docs/service.md lists every key.
 */
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "srv.h"

/* kv_meta is 48 bytes; see kv.c */
#define KV_META_BYTES 48u

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "on"))
        *out = 1;
    else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
             !strcasecmp(s, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

int cfg_defaults(srv_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->bind, sizeof(c->bind), "127.0.0.1");
    c->port = 6379;
    c->unixsocketperm = 0700;
    snprintf(c->metrics_bind, sizeof(c->metrics_bind), "127.0.0.1");
    c->metrics_port = 0;
    c->dram_bytes = 1ull << 30;
    c->kv_block_bytes = 4096;
    c->hugepages = KVT_HUGEPAGES_AUTO;
    c->workers = 2;
    c->maxclients = 10000;
    c->timeout_s = 0;
    c->max_value_bytes = 512ull << 20;
    c->proto_max_bulk_len = 512ull << 20;
    c->query_buffer_limit = 1ull << 30;
    c->output_buffer_limit = 1ull << 30;
    c->offload_bytes = 256u << 10;
    c->ingest_min_bytes = 32u << 10;
    /* persistent by default: `kvtier serve` with no configuration keeps its tiers (the
     * catalog and the disk tier; nvme when nvme_bytes is set) under ./data */
    snprintf(c->data_dir, sizeof(c->data_dir), "./data");
    c->nvme_bytes = 0;          /* the engine's defaults: nvme off, disk 1 GiB */
    c->disk_bytes = 1ull << 30;
    c->io_depth = 32;
    c->backpressure_ms = -1;
    /* a value is written to nvme once it has lived a second (an overwrite sooner costs no
     * I/O); SAVE, KVT.FLUSH and SIGTERM write everything at once */
    c->persist_delay_ms = 1000;
    /* the write-through yields the CPU to the loop and the workers on a busy machine */
    c->background_nice = 10;
    c->access_log_hash_ids = 1;
    c->shutdown_timeout_s = 10;
    c->loglevel = 1;
    return 0;
}

static void norm_key(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = in[i] == '-' ? '_' : (char)((in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32 : in[i]);
    out[i] = 0;
}

srv_tenant *cfg_tenant(srv_config *c, const char *name, size_t len)
{
    for (int i = 0; i < c->n_tenants; i++)
        if (strlen(c->tenants[i]->name) == len && memcmp(c->tenants[i]->name, name, len) == 0)
            return c->tenants[i];
    return NULL;
}

static srv_tenant *tenant_get(srv_config *c, const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    srv_tenant *t = cfg_tenant(c, name, n);
    if (t)
        return t;
    if (n == 0 || n > KVT_NAME_MAX || strpbrk(name, " \t\r\n:")) {
        snprintf(err, errlen, "invalid tenant name '%s'", name);
        return NULL;
    }
    if (c->n_tenants >= SRV_MAX_TENANTS) {
        snprintf(err, errlen, "too many tenants (at most %d)", SRV_MAX_TENANTS);
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(t->name, name, n + 1);
    t->max_ns = SRV_MAX_NS_PER_TENANT_DEFAULT;
    t->ns_any = 1; /* until a namespaces = list restricts the names (they are per tenant) */
    pthread_mutex_init(&t->ns_mu, NULL);
    c->tenants[c->n_tenants++] = t;
    return t;
}

static int tenant_set(srv_tenant *t, const char *key, const char *v, char *err, size_t errlen)
{
    char k[64];
    norm_key(key, k, sizeof(k));
    uint64_t sz;
    int iv;
    if (!strcmp(k, "password")) {
        free(t->password);
        t->password = strdup(v);
        t->nopass = 0;
    } else if (!strcmp(k, "nopass")) {
        if (parse_bool(v, &iv))
            goto bad;
        t->nopass = iv;
    } else if (!strcmp(k, "namespaces")) {
        for (size_t i = 0; i < t->n_ns_allow; i++)
            free(t->ns_allow[i]);
        free(t->ns_allow);
        t->ns_allow = NULL;
        t->n_ns_allow = 0;
        t->ns_any = 0;
        char *dup = strdup(v), *save = NULL;
        for (char *w = strtok_r(dup, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save)) {
            if (!strcmp(w, "*")) {
                t->ns_any = 1;
                continue;
            }
            char **na = realloc(t->ns_allow, (t->n_ns_allow + 1) * sizeof(char *));
            if (!na)
                break;
            t->ns_allow = na;
            t->ns_allow[t->n_ns_allow++] = strdup(w);
        }
        free(dup);
    } else if (!strcmp(k, "quota_dram")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        t->quota_dram = sz;
    } else if (!strcmp(k, "quota_nvme")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        t->quota_nvme = sz;
    } else if (!strcmp(k, "quota_disk")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        t->quota_disk = sz;
    } else if (!strcmp(k, "quota_hbm")) {
        snprintf(err, errlen, "tenant %s: %s: the service does not manage the HBM tier (it "
                 "stores host-side tiers: dram, nvme, disk)", t->name, key);
        return -1;
    } else if (!strcmp(k, "admin")) {
        if (parse_bool(v, &iv))
            goto bad;
        t->admin = iv;
    } else if (!strcmp(k, "max_namespaces")) {
        if (parse_int(v, 1, 100000, &iv))
            goto bad;
        t->max_ns = (unsigned)iv;
    } else {
        snprintf(err, errlen, "tenant %s: unknown key '%s'", t->name, key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "tenant %s: bad value '%s' for %s", t->name, v, key);
    return -1;
}

int cfg_set(srv_config *c, const char *key, const char *v, char *err, size_t errlen)
{
    char k[64];
    norm_key(key, k, sizeof(k));
    uint64_t sz;
    int iv;
    if (!strcmp(k, "bind")) {
        snprintf(c->bind, sizeof(c->bind), "%s", v);
    } else if (!strcmp(k, "port")) {
        if (parse_int(v, 0, 65535, &c->port))
            goto bad;
    } else if (!strcmp(k, "unixsocket")) {
        snprintf(c->unixsocket, sizeof(c->unixsocket), "%s", v);
    } else if (!strcmp(k, "unixsocketperm")) {
        char *end;
        unsigned long m = strtoul(v, &end, 8);
        if (*end || m > 0777)
            goto bad;
        c->unixsocketperm = (unsigned)m;
    } else if (!strcmp(k, "metrics_bind")) {
        snprintf(c->metrics_bind, sizeof(c->metrics_bind), "%s", v);
    } else if (!strcmp(k, "metrics_port")) {
        if (parse_int(v, 0, 65535, &c->metrics_port))
            goto bad;
    } else if (!strcmp(k, "dram_bytes")) {
        if (kvt_parse_size(v, &sz) || sz == 0)
            goto bad;
        c->dram_bytes = sz;
    } else if (!strcmp(k, "kv_block_bytes")) {
        if (kvt_parse_size(v, &sz) || sz % 64 || sz < 512 || sz > (64u << 20))
            goto bad;
        c->kv_block_bytes = sz;
    } else if (!strcmp(k, "hugepages")) {
        if (!strcasecmp(v, "auto"))
            c->hugepages = KVT_HUGEPAGES_AUTO;
        else if (!strcasecmp(v, "on") || !strcasecmp(v, "yes"))
            c->hugepages = KVT_HUGEPAGES_ON;
        else if (!strcasecmp(v, "off") || !strcasecmp(v, "no"))
            c->hugepages = KVT_HUGEPAGES_OFF;
        else
            goto bad;
    } else if (!strcmp(k, "dram_prefault")) {
        if (parse_bool(v, &c->dram_prefault))
            goto bad;
    } else if (!strcmp(k, "workers")) {
        if (parse_int(v, 0, 256, &c->workers))
            goto bad;
    } else if (!strcmp(k, "maxclients")) {
        if (parse_int(v, 1, 1000000, &c->maxclients))
            goto bad;
    } else if (!strcmp(k, "timeout")) {
        if (parse_int(v, 0, 100000000, &c->timeout_s))
            goto bad;
    } else if (!strcmp(k, "max_value_bytes")) {
        if (kvt_parse_size(v, &sz) || sz == 0)
            goto bad;
        c->max_value_bytes = sz;
    } else if (!strcmp(k, "proto_max_bulk_len")) {
        if (kvt_parse_size(v, &sz) || sz < 1024)
            goto bad;
        c->proto_max_bulk_len = sz;
    } else if (!strcmp(k, "query_buffer_limit")) {
        if (kvt_parse_size(v, &sz) || sz < 1024)
            goto bad;
        c->query_buffer_limit = sz;
    } else if (!strcmp(k, "output_buffer_limit")) {
        if (kvt_parse_size(v, &sz) || sz < 1024)
            goto bad;
        c->output_buffer_limit = sz;
    } else if (!strcmp(k, "offload_bytes")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        c->offload_bytes = sz;
    } else if (!strcmp(k, "ingest_min_bytes")) {
        if (kvt_parse_size(v, &sz) || sz == 0)
            goto bad;
        c->ingest_min_bytes = sz;
    } else if (!strcmp(k, "data_dir")) {
        if (!strcasecmp(v, "none") || !strcasecmp(v, "off") || !v[0])
            c->data_dir[0] = 0;
        else if (strlen(v) >= sizeof(c->data_dir) - 32)
            goto bad;
        else
            snprintf(c->data_dir, sizeof(c->data_dir), "%s", v);
    } else if (!strcmp(k, "nvme_path") || !strcmp(k, "disk_path")) {
        char *dst = k[0] == 'n' ? c->nvme_path : c->disk_path;
        if (strlen(v) >= SRV_PATH_MAX)
            goto bad;
        snprintf(dst, SRV_PATH_MAX, "%s", v);
    } else if (!strcmp(k, "nvme_bytes")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        c->nvme_bytes = sz;
    } else if (!strcmp(k, "disk_bytes")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        c->disk_bytes = sz;
    } else if (!strcmp(k, "nvme_bandwidth") || !strcmp(k, "disk_bandwidth")) {
        if (kvt_parse_size(v, &sz))
            goto bad;
        *(k[0] == 'n' ? &c->nvme_bw : &c->disk_bw) = sz;
    } else if (!strcmp(k, "dram_read_bandwidth") || !strcmp(k, "dram_write_bandwidth") ||
               !strcmp(k, "nvme_read_bandwidth") || !strcmp(k, "nvme_write_bandwidth") ||
               !strcmp(k, "disk_read_bandwidth") || !strcmp(k, "disk_write_bandwidth")) {
        /* measured bandwidths for the cost model (`kvtier probe --write-config`), bytes/s,
         * passed to kvt_options_set_tier_perf */
        if (kvt_parse_size(v, &sz) || sz == 0)
            goto bad;
        kvt_tier tier = k[0] == 'd' && k[1] == 'r' ? KVT_TIER_DRAM
                        : k[0] == 'n'              ? KVT_TIER_NVME
                                                   : KVT_TIER_DISK;
        *(strstr(k, "_read_") ? &c->tier_read_bw[tier] : &c->tier_write_bw[tier]) = sz;
    } else if (!strcmp(k, "io_depth")) {
        if (parse_int(v, 1, 4096, &iv))
            goto bad;
        c->io_depth = (unsigned)iv;
    } else if (!strcmp(k, "backpressure_ms")) {
        if (parse_int(v, 0, 3600000, &c->backpressure_ms))
            goto bad;
    } else if (!strcmp(k, "persist_delay_ms")) {
        if (parse_int(v, 0, 3600000, &c->persist_delay_ms))
            goto bad;
    } else if (!strcmp(k, "background_nice")) {
        if (parse_int(v, 0, 19, &c->background_nice))
            goto bad;
    } else if (!strcmp(k, "access_log")) {
        snprintf(c->access_log, sizeof(c->access_log), "%s", v);
    } else if (!strcmp(k, "access_log_hash_ids")) {
        if (parse_bool(v, &c->access_log_hash_ids))
            goto bad;
    } else if (!strcmp(k, "shutdown_timeout")) {
        if (parse_int(v, 0, 3600, &c->shutdown_timeout_s))
            goto bad;
    } else if (!strcmp(k, "loglevel")) {
        if (!strcasecmp(v, "warning"))
            c->loglevel = 0;
        else if (!strcasecmp(v, "notice"))
            c->loglevel = 1;
        else if (!strcasecmp(v, "verbose") || !strcasecmp(v, "debug"))
            c->loglevel = 2;
        else
            goto bad;
    } else if (!strcmp(k, "requirepass")) {
        srv_tenant *t = tenant_get(c, "default", err, errlen);
        if (!t)
            return -1;
        free(t->password);
        t->password = strdup(v);
        t->nopass = 0;
        if (!t->n_ns_allow && !t->ns_any)
            t->ns_any = 1;
        if (c->n_tenants == 1)
            t->admin = 1; /* --requirepass alone: the single-user set-up */
    } else {
        (void)iv;
        snprintf(err, errlen, "unknown configuration key '%s'", key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "bad value '%s' for %s", v, key);
    return -1;
}

typedef struct ini_ctx {
    srv_config *c;
    char *err;
    size_t errlen;
    int failed;
} ini_ctx;

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *x = user;
    if (x->failed)
        return 0;
    int rc;
    if (!section[0] || !strcmp(section, "server")) {
        rc = cfg_set(x->c, name, value, x->err, x->errlen);
    } else if (!strncmp(section, "tenant:", 7)) {
        srv_tenant *t = tenant_get(x->c, section + 7, x->err, x->errlen);
        rc = t ? tenant_set(t, name, value, x->err, x->errlen) : -1;
    } else {
        snprintf(x->err, x->errlen, "unknown section [%s]", section);
        rc = -1;
    }
    if (rc)
        x->failed = 1;
    return rc ? 0 : 1;
}

int cfg_load_file(srv_config *c, const char *path, char *err, size_t errlen)
{
    char inner[400] = "";
    ini_ctx x = {.c = c, .err = inner, .errlen = sizeof(inner)};
    snprintf(c->config_file, sizeof(c->config_file), "%s", path);
    int r = ini_parse(path, ini_cb, &x);
    if (r < 0) {
        snprintf(err, errlen, "cannot read configuration file %s", path);
        return -1;
    }
    if (r > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, r, inner[0] ? inner : "syntax error");
        return -1;
    }
    return 0;
}

int cfg_finish(srv_config *c, char *err, size_t errlen)
{
    if (c->n_tenants == 0) {
        /* No tenants configured: like an out-of-the-box Redis, one "default" user without a
         * password (the default bind address is 127.0.0.1). */
        srv_tenant *t = tenant_get(c, "default", err, errlen);
        if (!t)
            return -1;
        t->nopass = 1;
        t->ns_any = 1;
        t->admin = 1;
    }
    uint64_t qsum = 0, qn = 0, qd = 0;
    for (int i = 0; i < c->n_tenants; i++) {
        srv_tenant *t = c->tenants[i];
        if (!t->nopass && !t->password) {
            snprintf(err, errlen, "tenant %s has neither a password nor nopass = yes", t->name);
            return -1;
        }
        if (t->nopass && strcmp(t->name, "default") != 0) {
            snprintf(err, errlen, "tenant %s: nopass is only allowed for the 'default' tenant "
                     "(unauthenticated clients act as 'default')", t->name);
            return -1;
        }
        qsum += t->quota_dram;
        qn += t->quota_nvme;
        qd += t->quota_disk;
        if (!c->data_dir[0] && (t->quota_nvme || t->quota_disk)) {
            snprintf(err, errlen, "tenant %s: quota_nvme/quota_disk need the persistent tiers "
                     "(data_dir is none)", t->name);
            return -1;
        }
    }
    if (c->data_dir[0] && qn > c->nvme_bytes && c->nvme_bytes)
        fprintf(stderr, "kvtier serve: warning: tenant nvme quotas add up to %" PRIu64
                " bytes, more than the tier's %" PRIu64 "\n", qn, c->nvme_bytes);
    if (c->data_dir[0] && qd > c->disk_bytes && c->disk_bytes)
        fprintf(stderr, "kvtier serve: warning: tenant disk quotas add up to %" PRIu64
                " bytes, more than the tier's %" PRIu64 "\n", qd, c->disk_bytes);
    if (c->data_dir[0] && !c->nvme_bytes && !c->disk_bytes) {
        snprintf(err, errlen, "data_dir is set but nvme_bytes and disk_bytes are both 0 (set "
                 "one, or data_dir = none for a DRAM-only service)");
        return -1;
    }
    if (c->max_value_bytes > c->proto_max_bulk_len)
        c->max_value_bytes = c->proto_max_bulk_len;
    c->max_key_bytes = c->kv_block_bytes - KV_META_BYTES;
    if (qsum > c->dram_bytes)
        fprintf(stderr, "kvtier serve: warning: tenant DRAM quotas add up to %" PRIu64
                " bytes, more than the tier's %" PRIu64 ": a tenant may get -OOM before its "
                "quota is reached (no tenant ever evicts another's data)\n", qsum, c->dram_bytes);
    if (!c->port && !c->unixsocket[0]) {
        snprintf(err, errlen, "nothing to listen on: port is 0 and no unixsocket is set");
        return -1;
    }
    return 0;
}

void cfg_free(srv_config *c)
{
    for (int i = 0; i < c->n_tenants; i++) {
        srv_tenant *t = c->tenants[i];
        free(t->password);
        for (size_t j = 0; j < t->n_ns_allow; j++)
            free(t->ns_allow[j]);
        free(t->ns_allow);
        pthread_mutex_destroy(&t->ns_mu);
        free(t);
        c->tenants[i] = NULL;
    }
    c->n_tenants = 0;
}
