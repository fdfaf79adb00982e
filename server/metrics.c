/*
 * metrics.c — Prometheus /metrics over HTTP (libmicrohttpd, its own thread) and the INFO
 * text in Redis's format. Both read relaxed atomic counters and kvt_engine_stats().
 *
 * /metrics is the operator's view (every tenant, engine-wide figures; bind it to a private
 * address). INFO is a tenant's view: its own counters, and engine-wide figures only for
 * tenants with admin = yes, because those reveal other tenants' activity.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "srv.h"

/* seconds; +Inf is implicit */
const double hist_bounds_s[HIST_N] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                      0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                      0.1,     0.25,     0.5,     1.0,    2.5,     5.0,
                                      10.0,    30.0};
static const char *hclass_name[HC_N] = {"get", "set", "kvt_match", "kvt_get", "kvt_put", "other"};

void hist_observe(srv_hist *h, uint64_t ns)
{
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < HIST_N && s > hist_bounds_s[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

#define U(v) ((unsigned long long)atomic_load_explicit(&(v), memory_order_relaxed))

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static char *metrics_text(srv *s, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    kvt_stats st;
    memset(&st, 0, sizeof(st));
    kvt_engine_stats(s->eng, &st, sizeof(st));
    srv_config *c = &s->cfg;

    struct { const char *name, *help; size_t off; const char *extra; } per_tenant[] = {
        {"kvtier_kv_hits_total", "GET/MGET hits on Redis values, by tenant and tier (of the "
         "value's meta block)", offsetof(srv_tenant, kv_hits_tier), "tier"},
        {"kvtier_kv_misses_total", "GET/MGET misses on Redis values, by tenant",
         offsetof(srv_tenant, kv_misses), ""},
        {"kvtier_kv_sets_total", "values stored (SET/MSET), by tenant", offsetof(srv_tenant, kv_sets), ""},
        {"kvtier_kv_set_failures_total", "SET/MSET that failed (quota, space), by tenant",
         offsetof(srv_tenant, kv_set_fail), ""},
        {"kvtier_kv_bytes_written_total", "value bytes stored, by tenant", offsetof(srv_tenant, kv_bytes_in), ""},
        {"kvtier_kv_bytes_read_total", "value bytes returned, by tenant", offsetof(srv_tenant, kv_bytes_out), ""},
        {"kvtier_prefix_lookups_total", "KVT.MATCH and KVT.GET calls, by tenant",
         offsetof(srv_tenant, px_lookups), ""},
        {"kvtier_prefix_tokens_total", "whole-block tokens asked for by KVT.MATCH/KVT.GET, by tenant",
         offsetof(srv_tenant, px_tokens), ""},
        {"kvtier_prefix_hit_tokens_total", "tokens matched by KVT.MATCH/KVT.GET, by tenant and tier",
         offsetof(srv_tenant, px_hit_tier), "tier"},
        {"kvtier_prefix_miss_tokens_total", NULL, 0, NULL},
        {"kvtier_prefix_puts_total", "KVT.PUT calls, by tenant", offsetof(srv_tenant, px_puts), ""},
        {"kvtier_prefix_blocks_stored_total", "KV blocks newly stored by KVT.PUT, by tenant",
         offsetof(srv_tenant, px_blocks_stored), ""},
        {"kvtier_prefix_bytes_written_total", "KV bytes stored by KVT.PUT, by tenant",
         offsetof(srv_tenant, px_bytes_in), ""},
        {"kvtier_prefix_bytes_read_total", "KV bytes returned by KVT.GET, by tenant",
         offsetof(srv_tenant, px_bytes_out), ""},
        {"kvtier_commands_total", "commands run, by tenant", offsetof(srv_tenant, commands), ""},
        {"kvtier_auth_failures_total", "failed AUTH/HELLO AUTH for an existing user, by tenant",
         offsetof(srv_tenant, auth_fail), ""},
        {"kvtier_kv_corrupt_reads_total", "values dropped because a block failed verification",
         offsetof(srv_tenant, kv_corrupt), ""},
        {"kvtier_prefix_corrupt_reads_total",
         "KVT.GET replies cut short by a block that failed verification or to read",
         offsetof(srv_tenant, px_corrupt), ""},
        {"kvtier_prefix_prefetches_total", "KVT.PREFETCH calls, by tenant",
         offsetof(srv_tenant, px_prefetches), ""},
        {"kvtier_tenant_connections_received_total", "connections of the tenant",
         offsetof(srv_tenant, conn_total), ""},
        {"kvtier_tenant_net_input_bytes_total", "bytes read from the tenant's clients",
         offsetof(srv_tenant, net_in), ""},
        {"kvtier_tenant_net_output_bytes_total", "bytes written to the tenant's clients",
         offsetof(srv_tenant, net_out), ""},
    };
    for (size_t m = 0; m < sizeof(per_tenant) / sizeof(per_tenant[0]); m++) {
        if (!per_tenant[m].help) { /* misses = asked - matched */
            metric_head(f, per_tenant[m].name, "counter",
                        "tokens asked for but not matched, by tenant");
            for (int i = 0; i < c->n_tenants; i++) {
                srv_tenant *t = c->tenants[i];
                unsigned long long a = U(t->px_tokens), h = U(t->px_hit_tokens);
                fprintf(f, "%s{tenant=\"%s\"} %llu\n", per_tenant[m].name, t->name, a > h ? a - h : 0);
            }
            continue;
        }
        metric_head(f, per_tenant[m].name, "counter", per_tenant[m].help);
        if (!strcmp(per_tenant[m].extra, "tier")) { /* an array indexed by kvt_tier */
            for (int i = 0; i < c->n_tenants; i++)
                for (int ti = KVT_TIER_DRAM; ti <= KVT_TIER_DISK; ti++) {
                    _Atomic uint64_t *p =
                        (_Atomic uint64_t *)((char *)c->tenants[i] + per_tenant[m].off) + ti;
                    fprintf(f, "%s{tenant=\"%s\",tier=\"%s\"} %llu\n", per_tenant[m].name,
                            c->tenants[i]->name, tier_name(ti),
                            (unsigned long long)atomic_load_explicit(p, memory_order_relaxed));
                }
            continue;
        }
        for (int i = 0; i < c->n_tenants; i++) {
            srv_tenant *t = c->tenants[i];
            _Atomic uint64_t *p = (_Atomic uint64_t *)((char *)t + per_tenant[m].off);
            fprintf(f, "%s{tenant=\"%s\"%s} %llu\n", per_tenant[m].name, t->name,
                    per_tenant[m].extra, (unsigned long long)atomic_load_explicit(p, memory_order_relaxed));
        }
    }
    metric_head(f, "kvtier_kv_keys", "gauge",
                "approximate keys per tenant (written minus deleted; evicted keys count until found)");
    for (int i = 0; i < c->n_tenants; i++) {
        long long k = (long long)atomic_load(&c->tenants[i]->keys);
        fprintf(f, "kvtier_kv_keys{tenant=\"%s\"} %lld\n", c->tenants[i]->name, k < 0 ? 0 : k);
    }
    metric_head(f, "kvtier_tenant_connected_clients", "gauge", "connections open, by tenant");
    for (int i = 0; i < c->n_tenants; i++) {
        long long k = (long long)atomic_load(&c->tenants[i]->conn_open);
        fprintf(f, "kvtier_tenant_connected_clients{tenant=\"%s\"} %lld\n", c->tenants[i]->name,
                k < 0 ? 0 : k);
    }
    metric_head(f, "kvtier_tenant_quota_bytes", "gauge", "per-tenant quota by tier (0 = none)");
    for (int i = 0; i < c->n_tenants; i++) {
        const srv_tenant *t = c->tenants[i];
        fprintf(f, "kvtier_tenant_quota_bytes{tenant=\"%s\",tier=\"dram\"} %llu\n"
                   "kvtier_tenant_quota_bytes{tenant=\"%s\",tier=\"nvme\"} %llu\n"
                   "kvtier_tenant_quota_bytes{tenant=\"%s\",tier=\"disk\"} %llu\n",
                t->name, (unsigned long long)t->quota_dram, t->name,
                (unsigned long long)t->quota_nvme, t->name, (unsigned long long)t->quota_disk);
    }

    /* per-tier engine figures: dram from the arena counters, nvme/disk from the tier arrays */
    struct { const char *name, *type, *help; uint64_t v[4]; } tg[] = {
        {"kvtier_engine_tier_capacity_bytes", "gauge", "tier capacity (nvme: whole slots; disk: "
         "segment budget)", {0, st.dram_capacity, st.tier_capacity[2], st.tier_capacity[3]}},
        {"kvtier_engine_tier_used_bytes", "gauge", "tier bytes in use",
         {0, st.dram_used, st.tier_used[2], st.tier_used[3]}},
        {"kvtier_engine_tier_blocks", "gauge", "blocks with a copy in the tier",
         {0, st.tier_blocks[1], st.tier_blocks[2], st.tier_blocks[3]}},
        {"kvtier_engine_tier_read_bytes_total", "counter",
         "bytes read (dram: copied out to clients; nvme/disk: read from the device)",
         {0, st.bytes_read, st.tier_bytes_read[2], st.tier_bytes_read[3]}},
        {"kvtier_engine_tier_written_bytes_total", "counter",
         "bytes written (dram: copied in by puts; nvme/disk: write-through and demotions)",
         {0, st.bytes_written, st.tier_bytes_written[2], st.tier_bytes_written[3]}},
        {"kvtier_engine_tier_reads_total", "counter", "blocks read from the tier (nvme/disk)",
         {0, 0, st.tier_reads[2], st.tier_reads[3]}},
        {"kvtier_engine_tier_writes_total", "counter", "blocks written to the tier (nvme/disk)",
         {0, 0, st.tier_writes[2], st.tier_writes[3]}},
    };
    for (size_t i = 0; i < sizeof(tg) / sizeof(tg[0]); i++) {
        metric_head(f, tg[i].name, tg[i].type, tg[i].help);
        for (int ti = KVT_TIER_DRAM; ti <= KVT_TIER_DISK; ti++)
            fprintf(f, "%s{tier=\"%s\"} %llu\n", tg[i].name, tier_name(ti),
                    (unsigned long long)tg[i].v[ti]);
    }

    metric_head(f, "kvtier_command_duration_seconds", "histogram",
                "time to run a command, reply queued (network time excluded), by command class");
    for (int h = 0; h < HC_N; h++) {
        srv_hist *hi = &s->hist[h];
        unsigned long long cum = 0;
        for (int b = 0; b < HIST_N; b++) {
            cum += U(hi->bucket[b]);
            fprintf(f, "kvtier_command_duration_seconds_bucket{cmd=\"%s\",le=\"%g\"} %llu\n",
                    hclass_name[h], hist_bounds_s[b], cum);
        }
        cum += U(hi->bucket[HIST_N]);
        fprintf(f, "kvtier_command_duration_seconds_bucket{cmd=\"%s\",le=\"+Inf\"} %llu\n",
                hclass_name[h], cum);
        fprintf(f, "kvtier_command_duration_seconds_sum{cmd=\"%s\"} %.9f\n", hclass_name[h],
                (double)U(hi->sum_ns) / 1e9);
        fprintf(f, "kvtier_command_duration_seconds_count{cmd=\"%s\"} %llu\n", hclass_name[h],
                U(hi->count));
    }

    struct { const char *name, *type, *help; unsigned long long v; } g[] = {
        {"kvtier_engine_blocks_evicted_total", "counter",
         "blocks dropped to make room (engine-wide; the engine has no per-tenant counter yet)",
         (unsigned long long)st.blocks_evicted},
        {"kvtier_engine_blocks_stored_total", "counter", "blocks newly stored (engine-wide)",
         (unsigned long long)st.blocks_stored},
        {"kvtier_engine_demotions_total", "counter", "copies moved down (DRAM copy freed, nvme to disk)",
         (unsigned long long)st.demotions},
        {"kvtier_engine_promotions_total", "counter", "blocks copied up into DRAM by reads and prefetches",
         (unsigned long long)st.promotions},
        {"kvtier_engine_checksum_failures_total", "counter", "blocks that failed verification on read",
         (unsigned long long)st.checksum_failures},
        {"kvtier_engine_io_errors_total", "counter", "failed tier reads and writes",
         (unsigned long long)st.io_errors},
        {"kvtier_engine_blocks_dropped_bad_total", "counter", "blocks dropped after a failed read",
         (unsigned long long)st.blocks_dropped_bad},
        {"kvtier_engine_persisted_blocks_total", "counter", "write-through completions (durable)",
         (unsigned long long)st.persisted_blocks},
        {"kvtier_engine_writethrough_failures_total", "counter", "blocks the write-through gave up on",
         (unsigned long long)st.wt_failures},
        {"kvtier_engine_unpersisted_blocks", "gauge", "blocks queued or in flight for write-through",
         (unsigned long long)st.unpersisted_blocks},
        {"kvtier_engine_restored_blocks", "gauge", "blocks rebuilt from the catalog at start (warm restart)",
         (unsigned long long)st.restored_blocks},
        {"kvtier_engine_persistent", "gauge", "1 with persistent tiers (data_dir)",
         (unsigned long long)st.persistent},
        {"kvtier_flushes_total", "counter", "KVT.FLUSH/SAVE and shutdown flushes", U(s->flushes)},
        {"kvtier_flush_errors_total", "counter", "flushes that failed", U(s->flush_errors)},
        {"kvtier_engine_lookups_total", "counter", "engine lookups with a lease", (unsigned long long)st.lookups},
        {"kvtier_engine_lookup_tokens_total", "counter", "units asked for by engine lookups",
         (unsigned long long)st.lookup_tokens},
        {"kvtier_engine_hit_tokens_total", "counter", "units matched by engine lookups",
         (unsigned long long)st.hit_tokens},
        {"kvtier_engine_blocks_cached", "gauge", "blocks cached now", (unsigned long long)st.blocks_cached},
        {"kvtier_engine_index_bytes", "gauge", "heap bytes of the prefix index", (unsigned long long)st.index_bytes},
        {"kvtier_engine_leases_open", "gauge", "leases (pinned reads) open now", (unsigned long long)st.leases_open},
        {"kvtier_engine_namespaces", "gauge", "engine namespaces open", (unsigned long long)st.namespaces},
        {"kvtier_connected_clients", "gauge", "client connections open", (unsigned long long)atomic_load(&s->n_clients)},
        {"kvtier_connections_received_total", "counter", "connections accepted", U(s->conn_total)},
        {"kvtier_connections_rejected_total", "counter", "connections refused at maxclients", U(s->conn_rejected)},
        {"kvtier_connections_idle_closed_total", "counter", "connections closed by the idle timeout", U(s->idle_closed)},
        {"kvtier_net_input_bytes_total", "counter", "bytes read from clients", U(s->net_in)},
        {"kvtier_net_output_bytes_total", "counter", "bytes written to clients", U(s->net_out)},
        {"kvtier_commands_processed_total", "counter", "commands received (all tenants)", U(s->cmds_total)},
        {"kvtier_command_errors_total", "counter", "unknown commands, arity and auth errors", U(s->cmd_errors)},
        {"kvtier_protocol_errors_total", "counter", "malformed requests (connection closed)", U(s->proto_errors)},
        {"kvtier_commands_offloaded_total", "counter", "large commands run on worker threads", U(s->offloaded)},
        {"kvtier_values_received_in_place_total", "counter",
         "SET values read from the socket straight into their DRAM blocks", U(s->values_in_place)},
        {"kvtier_deferred_removals_total", "counter",
         "replaced values whose blocks were pinned by a reader and removed later", U(s->deferred_removals)},
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        metric_head(f, g[i].name, g[i].type, g[i].help);
        fprintf(f, "%s %llu\n", g[i].name, g[i].v);
    }
    metric_head(f, "kvtier_uptime_seconds", "gauge", "seconds since start");
    fprintf(f, "kvtier_uptime_seconds %.3f\n", (double)(now_ms_real() - s->start_ms) / 1000.0);
    metric_head(f, "kvtier_build_info", "gauge", "the engine version");
    fprintf(f, "kvtier_build_info{version=\"%s\"} 1\n", kvt_version());
    fclose(f);
    return buf;
}

static enum MHD_Result on_http(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    srv *s = cls;
    struct MHD_Response *r;
    unsigned code;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char m[] = "only GET /metrics\n";
        r = MHD_create_response_from_buffer(sizeof(m) - 1, (void *)m, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *txt = metrics_text(s, &len);
        if (!txt)
            return MHD_NO;
        r = MHD_create_response_from_buffer(len, txt, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        code = MHD_HTTP_OK;
    } else {
        static const char m[] = "not found: metrics are at /metrics\n";
        r = MHD_create_response_from_buffer(sizeof(m) - 1, (void *)m, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_NOT_FOUND;
    }
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

int metrics_start(srv *s)
{
    if (s->cfg.metrics_port <= 0)
        return 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.metrics_port);
    int g = getaddrinfo(s->cfg.metrics_bind, port, &hints, &ai);
    if (g) {
        srv_log(s, 0, "metrics_bind '%s': %s", s->cfg.metrics_bind, gai_strerror(g));
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)s->cfg.metrics_port, NULL, NULL,
                                            on_http, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) {
        srv_log(s, 0, "could not serve /metrics on %s:%d", s->cfg.metrics_bind, s->cfg.metrics_port);
        return -1;
    }
    s->metrics_daemon = d;
    srv_log(s, 1, "Prometheus metrics on http://%s:%d/metrics", s->cfg.metrics_bind,
            s->cfg.metrics_port);
    return 0;
}

void metrics_stop(srv *s)
{
    if (s->metrics_daemon)
        MHD_stop_daemon(s->metrics_daemon);
    s->metrics_daemon = NULL;
}

/* ---------------------------------------------------------------- INFO */

static int want(const char *sec, const char *name, int in_default)
{
    if (!strcasecmp(sec, "all") || !strcasecmp(sec, "everything"))
        return 1;
    if (!strcasecmp(sec, "default"))
        return in_default;
    return !strcasecmp(sec, name);
}

char *info_text(srv *s, srv_tenant *t, const char *sec, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    kvt_stats st;
    memset(&st, 0, sizeof(st));
    kvt_engine_stats(s->eng, &st, sizeof(st));
    uint64_t up = (now_ms_real() - s->start_ms) / 1000;
    int first = 1;
#define SECTION(name) fprintf(f, "%s# %s\r\n", first ? "" : "\r\n", name), first = 0
    if (want(sec, "server", 1)) {
        struct utsname un;
        uname(&un);
        SECTION("Server");
        fprintf(f, "redis_version:7.0.0\r\nkvtier_version:%s\r\nredis_mode:standalone\r\n"
                   "os:%s %s %s\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:%d\r\n"
                   "tcp_port:%d\r\nuptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\n"
                   "executable:kvtier\r\nconfig_file:%s\r\nio_threads_active:0\r\n"
                   "kvtier_workers:%d\r\n",
                kvt_version(), un.sysname, un.release, un.machine, (int)getpid(), s->cfg.port,
                (unsigned long long)up, (unsigned long long)(up / 86400), s->cfg.config_file,
                s->cfg.workers);
    }
    if (want(sec, "clients", 1)) {
        SECTION("Clients");
        /* a tenant sees its own connections; the server-wide count only admin tenants */
        long long conns = t && !t->admin ? (long long)atomic_load(&t->conn_open)
                                         : (long long)atomic_load(&s->n_clients);
        fprintf(f, "connected_clients:%lld\r\nmaxclients:%d\r\nblocked_clients:0\r\n",
                conns < 0 ? 0 : conns, s->cfg.maxclients);
    }
    if (want(sec, "memory", 1)) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        SECTION("Memory");
        if (t && t->admin)
            fprintf(f, "used_memory:%llu\r\n", (unsigned long long)st.dram_used);
        fprintf(f, "used_memory_rss:%llu\r\nmaxmemory:%llu\r\nmaxmemory_policy:allkeys-lru\r\n"
                   "tenant_maxmemory:%llu\r\n",
                (unsigned long long)ru.ru_maxrss * 1024ull, (unsigned long long)st.dram_capacity,
                (unsigned long long)(t ? t->quota_dram : 0));
    }
    if (want(sec, "persistence", 1)) {
        SECTION("Persistence");
        uint64_t lf = atomic_load(&s->last_flush_ms);
        int lst = atomic_load(&s->last_flush_status);
        fprintf(f, "loading:0\r\naof_enabled:0\r\nrdb_bgsave_in_progress:0\r\n"
                   "rdb_last_save_time:%llu\r\nrdb_last_bgsave_status:%s\r\n"
                   "kvtier_persistent:%u\r\nkvtier_data_dir:%s\r\n",
                (unsigned long long)((lf ? lf : s->start_ms) / 1000), lst ? "err" : "ok",
                st.persistent, s->cfg.data_dir[0] ? s->cfg.data_dir : "none");
        if (t && t->admin)
            fprintf(f, "kvtier_flushes:%llu\r\nkvtier_restored_blocks:%llu\r\n"
                       "kvtier_persisted_blocks:%llu\r\nkvtier_unpersisted_blocks:%llu\r\n",
                    U(s->flushes), (unsigned long long)st.restored_blocks,
                    (unsigned long long)st.persisted_blocks,
                    (unsigned long long)st.unpersisted_blocks);
    }
    if (want(sec, "stats", 1)) {
        SECTION("Stats");
        unsigned long long hits = t ? U(t->kv_hits) : 0, miss = t ? U(t->kv_misses) : 0;
        /* connections and network bytes: the tenant's own, server-wide only for admins
         * (other tenants' traffic is theirs to see) */
        int all = !t || t->admin;
        fprintf(f, "total_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
                   "rejected_connections:%llu\r\ntotal_net_input_bytes:%llu\r\n"
                   "total_net_output_bytes:%llu\r\nkeyspace_hits:%llu\r\nkeyspace_misses:%llu\r\n"
                   "tenant_prefix_lookups:%llu\r\ntenant_prefix_tokens:%llu\r\n"
                   "tenant_prefix_hit_tokens:%llu\r\ntenant_prefix_hit_tokens_dram:%llu\r\n"
                   "tenant_prefix_hit_tokens_nvme:%llu\r\ntenant_prefix_hit_tokens_disk:%llu\r\n"
                   "tenant_keyspace_hits_dram:%llu\r\ntenant_keyspace_hits_nvme:%llu\r\n"
                   "tenant_keyspace_hits_disk:%llu\r\ntenant_corrupt_reads:%llu\r\n"
                   "values_received_in_place:%llu\r\n",
                all ? U(s->conn_total) : U(t->conn_total), t ? U(t->commands) : 0,
                all ? U(s->conn_rejected) : 0ull, all ? U(s->net_in) : U(t->net_in),
                all ? U(s->net_out) : U(t->net_out), hits, miss, t ? U(t->px_lookups) : 0,
                t ? U(t->px_tokens) : 0, t ? U(t->px_hit_tokens) : 0,
                t ? U(t->px_hit_tier[KVT_TIER_DRAM]) : 0, t ? U(t->px_hit_tier[KVT_TIER_NVME]) : 0,
                t ? U(t->px_hit_tier[KVT_TIER_DISK]) : 0, t ? U(t->kv_hits_tier[KVT_TIER_DRAM]) : 0,
                t ? U(t->kv_hits_tier[KVT_TIER_NVME]) : 0, t ? U(t->kv_hits_tier[KVT_TIER_DISK]) : 0,
                t ? U(t->kv_corrupt) + U(t->px_corrupt) : 0, all ? U(s->values_in_place) : 0ull);
        if (t && t->admin)
            fprintf(f, "evicted_keys:0\r\nevicted_blocks:%llu\r\n",
                    (unsigned long long)st.blocks_evicted);
    }
    if (want(sec, "replication", 1)) {
        SECTION("Replication");
        fprintf(f, "role:master\r\nconnected_slaves:0\r\n");
    }
    if (want(sec, "kvtier", 1)) {
        SECTION("Kvtier");
        uint64_t nv = st.tier_capacity[KVT_TIER_NVME], dk = st.tier_capacity[KVT_TIER_DISK];
        fprintf(f, "tenant:%s\r\ntiers:dram%s%s\r\ndram_capacity:%llu\r\nnvme_capacity:%llu\r\n"
                   "disk_capacity:%llu\r\nio_backend:%s\r\nkv_block_bytes:%llu\r\n"
                   "max_value_bytes:%llu\r\nnamespaces:%u\r\ntenant_quota_dram:%llu\r\n"
                   "tenant_quota_nvme:%llu\r\ntenant_quota_disk:%llu\r\n",
                t ? t->name : "", nv ? ",nvme" : "", dk ? ",disk" : "",
                (unsigned long long)st.dram_capacity, (unsigned long long)nv,
                (unsigned long long)dk, st.io_backend[0] ? st.io_backend : "none",
                (unsigned long long)s->cfg.kv_block_bytes, (unsigned long long)s->cfg.max_value_bytes,
                t ? t->n_ns : 0, (unsigned long long)(t ? t->quota_dram : 0),
                (unsigned long long)(t ? t->quota_nvme : 0), (unsigned long long)(t ? t->quota_disk : 0));
        /* the write-back window in effect (0 without persistent tiers: nothing is written)
         * and the size from which SET values are received in place */
        fprintf(f, "persist_delay_ms:%d\r\ningest_min_bytes:%llu\r\n",
                s->cfg.data_dir[0] ? s->cfg.persist_delay_ms : 0,
                (unsigned long long)s->cfg.ingest_min_bytes);
        /* the bandwidths the cost model plans loads with (configured <tier>_read_bandwidth /
         * <tier>_write_bandwidth, else the defaults), bytes/s */
        kvt_tier_info ti[8];
        size_t nt = 0;
        if (!kvt_engine_tiers(s->eng, ti, 8, &nt))
            for (size_t i = 0; i < nt && i < 8; i++)
                if (ti[i].tier != KVT_TIER_HBM)
                    fprintf(f, "%s_read_bandwidth:%.0f\r\n%s_write_bandwidth:%.0f\r\n", ti[i].name,
                            ti[i].read_bw, ti[i].name, ti[i].write_bw);
        if (t && t->admin)
            fprintf(f, "dram_used:%llu\r\nnvme_used:%llu\r\ndisk_used:%llu\r\n"
                       "dram_blocks:%llu\r\nnvme_blocks:%llu\r\ndisk_blocks:%llu\r\n"
                       "nvme_bytes_read:%llu\r\nnvme_bytes_written:%llu\r\n"
                       "disk_bytes_read:%llu\r\ndisk_bytes_written:%llu\r\n"
                       "demotions:%llu\r\npromotions:%llu\r\nchecksum_failures:%llu\r\n"
                       "io_errors:%llu\r\nblocks_cached:%llu\r\nleases_open:%llu\r\n",
                    (unsigned long long)st.dram_used, (unsigned long long)st.tier_used[2],
                    (unsigned long long)st.tier_used[3], (unsigned long long)st.tier_blocks[1],
                    (unsigned long long)st.tier_blocks[2], (unsigned long long)st.tier_blocks[3],
                    (unsigned long long)st.tier_bytes_read[2], (unsigned long long)st.tier_bytes_written[2],
                    (unsigned long long)st.tier_bytes_read[3], (unsigned long long)st.tier_bytes_written[3],
                    (unsigned long long)st.demotions, (unsigned long long)st.promotions,
                    (unsigned long long)st.checksum_failures, (unsigned long long)st.io_errors,
                    (unsigned long long)st.blocks_cached, (unsigned long long)st.leases_open);
    }
    if (want(sec, "keyspace", 1)) {
        SECTION("Keyspace");
        long long k = t ? (long long)atomic_load(&t->keys) : 0;
        if (k > 0)
            fprintf(f, "db0:keys=%lld,expires=0,avg_ttl=0\r\n", k);
    }
#undef SECTION
    fclose(f);
    return buf;
}
