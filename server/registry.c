/*
 * registry.c — what the service must remember across restarts besides the engine's data.
 *
 * The engine restores its namespaces by (name, tenant) from its catalog and returns the
 * restored one when kvt_ns_open is called with the same name, tenant, layout and flags, but
 * it has no namespace listing. So the service keeps its own registry of the KVT namespaces
 * (tenant, name, layout) and of each tenant's approximate key count (DBSIZE) in
 * DATA_DIR/serve-registry, a text file replaced atomically (write a temporary file, fsync,
 * rename, fsync the directory) after every KVT.NS.CREATE, every KVT.FLUSH/SAVE and at
 * shutdown:
 *
 *   kvtier-serve-registry 1
 *   ns <tenant> <name> <layers> <kv_heads> <head_dim> <dtype> <block_tokens>
 *   keys <tenant> <count>
 *
 * Lines of tenants that are not in the configuration now are kept verbatim, so removing a
 * tenant from the file for one run does not lose its namespaces. The key counts are as
 * approximate as DBSIZE itself; after a kill -9 they are those of the last flush.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"

#define REG_NAME "serve-registry"
#define REG_MAGIC "kvtier-serve-registry 1"

static void reg_path(const srv *s, char *out, size_t cap, const char *suffix)
{
    snprintf(out, cap, "%s/%s%s", s->cfg.data_dir, REG_NAME, suffix);
}

srv_ns *srv_ns_add(srv *s, srv_tenant *t, const char *name, const kvt_layout *lay, int *rc)
{
    srv_ns *n = calloc(1, sizeof(*n));
    if (!n) {
        *rc = -ENOMEM;
        return NULL;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->layout = *lay;
    n->block_bytes = kvt_layout_block_bytes(lay);
    char ename[KVT_NAME_MAX + 1];
    snprintf(ename, sizeof(ename), "ns/%.200s", n->name); /* names are <= 200 bytes */
    *rc = kvt_ns_open(s->eng, ename, t->name, lay, 0, &n->ns);
    if (*rc) {
        free(n);
        return NULL;
    }
    n->next = t->ns_list; /* caller holds t->ns_mu (or runs before the loop starts) */
    t->ns_list = n;
    t->n_ns++;
    return n;
}

static int dtype_of(const char *s, kvt_dtype *d)
{
    static const char *names[] = {"", "fp16", "bf16", "fp32", "fp8"};
    for (int i = 1; i <= 4; i++)
        if (!strcmp(s, names[i])) {
            *d = (kvt_dtype)i;
            return 0;
        }
    return -1;
}

static const char *dtype_str(kvt_dtype d)
{
    static const char *names[] = {"?", "fp16", "bf16", "fp32", "fp8"};
    return (unsigned)d <= 4 ? names[d] : "?";
}

static void orphan_keep(srv *s, const char *line)
{
    size_t old = s->reg_orphans ? strlen(s->reg_orphans) : 0, n = strlen(line);
    char *p = realloc(s->reg_orphans, old + n + 2);
    if (!p)
        return;
    memcpy(p + old, line, n);
    p[old + n] = '\n';
    p[old + n + 1] = 0;
    s->reg_orphans = p;
}

int registry_load(srv *s)
{
    if (!s->cfg.data_dir[0])
        return 0;
    char path[SRV_PATH_MAX + 64];
    reg_path(s, path, sizeof(path), "");
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        srv_log(s, 0, "registry %s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    unsigned lineno = 0, n_ns = 0, bad = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (lineno == 1) {
            if (strcmp(line, REG_MAGIC)) {
                srv_log(s, 0, "registry %s: not a kvtier serve registry (first line '%.40s')",
                        path, line);
                fclose(f);
                return -1;
            }
            continue;
        }
        char tn[KVT_NAME_MAX + 1], nm[KVT_NAME_MAX + 1], dt[16];
        unsigned layers, heads, hdim, bt;
        long long keys;
        if (sscanf(line, "ns %255s %255s %u %u %u %15s %u", tn, nm, &layers, &heads, &hdim, dt,
                   &bt) == 7) {
            kvt_layout lay = {.layers = layers, .kv_heads = heads, .head_dim = hdim,
                              .block_tokens = bt};
            srv_tenant *t = cfg_tenant(&s->cfg, tn, strlen(tn));
            if (!t) {
                orphan_keep(s, line);
                continue;
            }
            int rc = KVT_EBADLAYOUT;
            if (dtype_of(dt, &lay.dtype) || !kvt_layout_block_bytes(&lay) ||
                !srv_ns_add(s, t, nm, &lay, &rc)) {
                srv_log(s, 0, "registry %s:%u: namespace %s of tenant %s not restored: %s",
                        path, lineno, nm, tn, kvt_strerror(rc));
                bad++;
                continue;
            }
            n_ns++;
        } else if (sscanf(line, "keys %255s %lld", tn, &keys) == 2) {
            srv_tenant *t = cfg_tenant(&s->cfg, tn, strlen(tn));
            if (t)
                atomic_store(&t->keys, keys);
            else
                orphan_keep(s, line);
        } else if (line[0]) {
            srv_log(s, 0, "registry %s:%u: line not understood; ignored", path, lineno);
            bad++;
        }
    }
    fclose(f);
    srv_log(s, 1, "registry: %u KVT namespace(s) reopened%s", n_ns,
            bad ? " (some lines could not be used: see above)" : "");
    return 0;
}

int registry_save(srv *s)
{
    if (!s->cfg.data_dir[0] || !s->eng)
        return 0;
    char path[SRV_PATH_MAX + 64], tmp[SRV_PATH_MAX + 64];
    reg_path(s, path, sizeof(path), "");
    reg_path(s, tmp, sizeof(tmp), ".tmp");
    pthread_mutex_lock(&s->reg_mu);
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = -errno;
        goto out;
    }
    fprintf(f, "%s\n", REG_MAGIC);
    for (int i = 0; i < s->cfg.n_tenants; i++) {
        srv_tenant *t = s->cfg.tenants[i];
        pthread_mutex_lock(&t->ns_mu);
        for (srv_ns *n = t->ns_list; n; n = n->next)
            fprintf(f, "ns %s %s %u %u %u %s %u\n", t->name, n->name, n->layout.layers,
                    n->layout.kv_heads, n->layout.head_dim, dtype_str(n->layout.dtype),
                    n->layout.block_tokens);
        pthread_mutex_unlock(&t->ns_mu);
        long long k = (long long)atomic_load(&t->keys);
        fprintf(f, "keys %s %lld\n", t->name, k < 0 ? 0 : k);
    }
    if (s->reg_orphans)
        fputs(s->reg_orphans, f);
    if (fflush(f) || fsync(fileno(f)))
        rc = -errno;
    if (fclose(f) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (!rc) {
        int dfd = open(s->cfg.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
out:
    pthread_mutex_unlock(&s->reg_mu);
    if (rc)
        srv_log(s, 0, "registry %s: %s", path, strerror(-rc));
    return rc;
}

int srv_flush(srv *s)
{
    int rc = kvt_flush(s->eng);
    int rr = registry_save(s);
    if (!rc && rr)
        rc = rr;
    atomic_fetch_add(&s->flushes, 1);
    atomic_store(&s->last_flush_status, rc);
    if (rc) {
        atomic_fetch_add(&s->flush_errors, 1);
        srv_log(s, 0, "flush: %s", kvt_strerror(rc));
    } else {
        atomic_store(&s->last_flush_ms, now_ms_real());
    }
    return rc;
}
