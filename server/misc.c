/*
 * misc.c — the command table and the connection/server commands: PING, ECHO, AUTH, HELLO,
 * CLIENT, QUIT, SELECT, COMMAND, CONFIG GET, INFO, TIME.
 */
#include <fnmatch.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "srv.h"

#define REDIS_COMPAT_VERSION "7.0.0"

static void cmd_dbsize_wrap(cmdctx *x) { cmd_dbsize(x); }

/* name, fn, arity, flags, histogram class, first key, last key, step, COMMAND flags */
static const srv_cmd cmds[] = {
    {"get", cmd_get, 2, 0, HC_GET, 1, 1, 1, "readonly fast"},
    {"set", cmd_set, -3, CF_OFFLOAD | CF_WRITE, HC_SET, 1, 1, 1, "write denyoom"},
    {"mget", cmd_mget, -2, 0, HC_GET, 1, -1, 1, "readonly fast"},
    {"mset", cmd_mset, -3, CF_OFFLOAD | CF_WRITE, HC_SET, 1, -1, 2, "write denyoom"},
    {"exists", cmd_exists, -2, 0, HC_OTHER, 1, -1, 1, "readonly fast"},
    {"del", cmd_del, -2, CF_WRITE, HC_OTHER, 1, -1, 1, "write"},
    {"unlink", cmd_del, -2, CF_WRITE, HC_OTHER, 1, -1, 1, "write fast"},
    {"expire", cmd_expire, -3, CF_WRITE, HC_OTHER, 1, 1, 1, "write fast"},
    {"pexpire", cmd_pexpire, -3, CF_WRITE, HC_OTHER, 1, 1, 1, "write fast"},
    {"expireat", cmd_expire, -3, CF_WRITE, HC_OTHER, 1, 1, 1, "write fast"},
    {"pexpireat", cmd_pexpire, -3, CF_WRITE, HC_OTHER, 1, 1, 1, "write fast"},
    {"persist", cmd_persist, 2, CF_WRITE, HC_OTHER, 1, 1, 1, "write fast"},
    {"ttl", cmd_ttl, 2, 0, HC_OTHER, 1, 1, 1, "readonly fast"},
    {"pttl", cmd_pttl, 2, 0, HC_OTHER, 1, 1, 1, "readonly fast"},
    {"dbsize", cmd_dbsize_wrap, 1, 0, HC_OTHER, 0, 0, 0, "readonly fast"},
    {"ping", cmd_ping, -1, 0, HC_OTHER, 0, 0, 0, "fast"},
    {"echo", cmd_echo, 2, 0, HC_OTHER, 0, 0, 0, "fast"},
    {"auth", cmd_auth, -2, CF_NOAUTH, HC_OTHER, 0, 0, 0, "noscript loading stale fast no-auth"},
    {"hello", cmd_hello, -1, CF_NOAUTH, HC_OTHER, 0, 0, 0, "noscript loading stale fast no-auth"},
    {"client", cmd_client, -2, 0, HC_OTHER, 0, 0, 0, "admin noscript loading stale"},
    {"quit", cmd_quit, -1, CF_NOAUTH, HC_OTHER, 0, 0, 0, "allow_busy fast no-auth"},
    {"select", cmd_select, 2, 0, HC_OTHER, 0, 0, 0, "loading stale fast"},
    {"command", cmd_command, -1, 0, HC_OTHER, 0, 0, 0, "loading stale"},
    {"config", cmd_config, -2, 0, HC_OTHER, 0, 0, 0, "admin noscript loading stale"},
    {"info", cmd_info, -1, 0, HC_OTHER, 0, 0, 0, "loading stale"},
    {"time", cmd_time, 1, 0, HC_OTHER, 0, 0, 0, "loading stale fast"},
    {"kvt.ns.create", cmd_kvt_ns_create, 7, CF_WRITE, HC_OTHER, 0, 0, 0, "write"},
    {"kvt.ns.info", cmd_kvt_ns_info, 2, 0, HC_OTHER, 0, 0, 0, "readonly fast"},
    {"kvt.ns.list", cmd_kvt_ns_list, 1, 0, HC_OTHER, 0, 0, 0, "readonly fast"},
    {"kvt.match", cmd_kvt_match, 3, 0, HC_KVT_MATCH, 0, 0, 0, "readonly fast"},
    {"kvt.put", cmd_kvt_put, -4, CF_OFFLOAD | CF_WRITE, HC_KVT_PUT, 0, 0, 0, "write denyoom"},
    {"kvt.get", cmd_kvt_get, 3, 0, HC_KVT_GET, 0, 0, 0, "readonly"},
    {"kvt.prefetch", cmd_kvt_prefetch, -3, 0, HC_OTHER, 0, 0, 0, "readonly"},
    {"kvt.stats", cmd_kvt_stats, -1, 0, HC_OTHER, 0, 0, 0, "readonly"},
    {"kvt.flush", cmd_kvt_flush, 1, CF_WRITE, HC_OTHER, 0, 0, 0, "write"},
    {"save", cmd_kvt_flush, 1, CF_WRITE, HC_OTHER, 0, 0, 0, "admin noscript"},
    {"lastsave", cmd_lastsave, 1, 0, HC_OTHER, 0, 0, 0, "loading stale fast"},
};

const srv_cmd *cmd_lookup(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strlen(cmds[i].name) == n && strncasecmp(cmds[i].name, name, n) == 0)
            return &cmds[i];
    return NULL;
}

const srv_cmd *cmd_table(size_t *n)
{
    *n = sizeof(cmds) / sizeof(cmds[0]);
    return cmds;
}

void cmd_ping(cmdctx *x)
{
    if (x->argc > 2)
        rp_err(x->out, "wrong number of arguments for 'ping' command");
    else if (x->argc == 2)
        rp_bulk(x->out, x->argv[1].p, x->argv[1].n);
    else
        rp_simple(x->out, "PONG");
}

void cmd_echo(cmdctx *x) { rp_bulk(x->out, x->argv[1].p, x->argv[1].n); }

void cmd_time(cmdctx *x)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char a[32], b[32];
    snprintf(a, sizeof(a), "%lld", (long long)ts.tv_sec);
    snprintf(b, sizeof(b), "%ld", ts.tv_nsec / 1000);
    rp_arr(x->out, 2);
    rp_bulkstr(x->out, a);
    rp_bulkstr(x->out, b);
}

/* Constant-time comparison: the time taken does not depend on where the strings differ. */
static int ct_equal(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char d = an != bn;
    size_t n = an > bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < an ? (unsigned char)a[i] : 0;
        unsigned char cb = i < bn ? (unsigned char)b[i] : 0;
        d |= (unsigned char)(ca ^ cb);
    }
    return d == 0;
}

srv_tenant *auth_check(srv *s, const char *user, size_t ulen, const char *pass, size_t plen)
{
    srv_tenant *t = cfg_tenant(&s->cfg, user, ulen);
    if (!t) {
        /* same work as a real check, so the timing does not reveal which users exist */
        ct_equal(pass, plen, "x-no-such-user-x", 16);
        return NULL;
    }
    if (t->nopass)
        return t; /* Redis: a nopass user accepts any password */
    if (!ct_equal(pass, plen, t->password, strlen(t->password))) {
        atomic_fetch_add_explicit(&t->auth_fail, 1, memory_order_relaxed);
        return NULL;
    }
    return t;
}

static int do_auth(cmdctx *x, const srv_arg *user, const srv_arg *pass)
{
    const char *u = user ? user->p : "default";
    size_t un = user ? user->n : 7;
    if (!user) {
        srv_tenant *d = cfg_tenant(&x->s->cfg, "default", 7);
        if (!d) {
            rp_err(x->out, "AUTH <password> called without any password configured for the "
                   "default user. Are you sure your configuration is correct?");
            return -1;
        }
        if (d->nopass) {
            rp_err(x->out, "AUTH <password> called without any password configured for the "
                   "default user. Are you sure your configuration is correct?");
            return -1;
        }
    }
    srv_tenant *t = auth_check(x->s, u, un, pass->p, pass->n);
    if (!t) {
        rp_err(x->out, "WRONGPASS invalid username-password pair or user is disabled.");
        srv_log(x->s, 1, "failed AUTH for user '%.*s' from %s", (int)(un > 64 ? 64 : un), u,
                client_addr(x->c));
        return -1;
    }
    client_set_auth(x->c, t);
    return 0;
}

void cmd_auth(cmdctx *x)
{
    if (x->argc > 3) {
        rp_err(x->out, "syntax error");
        return;
    }
    int r = x->argc == 2 ? do_auth(x, NULL, &x->argv[1]) : do_auth(x, &x->argv[1], &x->argv[2]);
    if (r == 0)
        rp_ok(x->out);
}

void cmd_hello(cmdctx *x)
{
    int proto = x->resp;
    int i = 1;
    if (x->argc >= 2) {
        long long v;
        if (arg_ll(&x->argv[1], &v)) {
            rp_err(x->out, "Protocol version is not an integer or out of range");
            return;
        }
        if (v != 2 && v != 3) {
            rp_err(x->out, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    const srv_arg *user = NULL, *pass = NULL, *name = NULL;
    for (; i < x->argc; i++) {
        if (arg_eq(&x->argv[i], "AUTH") && i + 2 < x->argc) {
            user = &x->argv[i + 1];
            pass = &x->argv[i + 2];
            i += 2;
        } else if (arg_eq(&x->argv[i], "SETNAME") && i + 1 < x->argc) {
            name = &x->argv[i + 1];
            i++;
        } else {
            rp_err(x->out, "Syntax error in HELLO option '%.*s'",
                   (int)(x->argv[i].n > 32 ? 32 : x->argv[i].n), x->argv[i].p);
            return;
        }
    }
    if (user && do_auth(x, user, pass))
        return;
    cmdctx y = *x;
    if (!user && !x->t) {
        rp_err(x->out, "NOAUTH HELLO must be called with the client already authenticated, "
               "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
               "authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if (name)
        client_set_name(x->c, name->p, name->n);
    client_set_resp(x->c, proto);
    y.resp = proto;
    rp_map(y.out, proto, 7);
    rp_bulkstr(y.out, "server");
    rp_bulkstr(y.out, "redis");
    rp_bulkstr(y.out, "version");
    rp_bulkstr(y.out, REDIS_COMPAT_VERSION);
    rp_bulkstr(y.out, "proto");
    rp_int(y.out, proto);
    rp_bulkstr(y.out, "id");
    rp_int(y.out, (long long)client_id(x->c));
    rp_bulkstr(y.out, "mode");
    rp_bulkstr(y.out, "standalone");
    rp_bulkstr(y.out, "role");
    rp_bulkstr(y.out, "master");
    rp_bulkstr(y.out, "modules");
    rp_arr(y.out, 0);
}

void cmd_client(cmdctx *x)
{
    const srv_arg *sub = &x->argv[1];
    if (arg_eq(sub, "SETNAME") && x->argc == 3) {
        for (size_t i = 0; i < x->argv[2].n; i++)
            if (x->argv[2].p[i] <= ' ' || x->argv[2].p[i] > '~') {
                rp_err(x->out, "Client names cannot contain spaces, newlines or special characters.");
                return;
            }
        client_set_name(x->c, x->argv[2].p, x->argv[2].n);
        rp_ok(x->out);
    } else if (arg_eq(sub, "GETNAME") && x->argc == 2) {
        const char *n = client_name(x->c);
        if (n[0])
            rp_bulkstr(x->out, n);
        else
            rp_nil(x->out, x->resp);
    } else if (arg_eq(sub, "ID") && x->argc == 2) {
        rp_int(x->out, (long long)client_id(x->c));
    } else if (arg_eq(sub, "SETINFO") && x->argc == 4) {
        rp_ok(x->out); /* lib-name/lib-ver: accepted, not kept */
    } else if (arg_eq(sub, "INFO") && x->argc == 2) {
        char b[512];
        snprintf(b, sizeof(b), "id=%" PRIu64 " addr=%s name=%s user=%s resp=%d\n", client_id(x->c),
                 client_addr(x->c), client_name(x->c), x->t ? x->t->name : "", x->resp);
        rp_verbatim(x->out, x->resp, b, strlen(b));
    } else {
        rp_err(x->out, "unknown subcommand or wrong number of arguments for '%.*s'. Supported: "
               "SETNAME, GETNAME, ID, INFO, SETINFO", (int)(sub->n > 32 ? 32 : sub->n), sub->p);
    }
}

void cmd_quit(cmdctx *x)
{
    rp_ok(x->out);
    client_close_after_reply(x->c);
}

void cmd_select(cmdctx *x)
{
    long long db;
    if (arg_ll(&x->argv[1], &db)) {
        rp_err(x->out, "value is not an integer or out of range");
        return;
    }
    if (db != 0) {
        rp_err(x->out, "DB index is out of range (kvtier has one database per tenant: 0)");
        return;
    }
    rp_ok(x->out);
}

static void command_entry(cmdctx *x, const srv_cmd *c)
{
    rp_arr(x->out, 6);
    rp_bulkstr(x->out, c->name);
    rp_int(x->out, c->arity);
    char fl[128];
    snprintf(fl, sizeof(fl), "%s", c->sflags);
    int nf = 0;
    for (char *p = fl; *p; p++)
        if (*p != ' ' && (p == fl || p[-1] == ' '))
            nf++;
    rp_arr(x->out, nf);
    char *save = NULL;
    for (char *w = strtok_r(fl, " ", &save); w; w = strtok_r(NULL, " ", &save))
        rp_simple(x->out, w);
    rp_int(x->out, c->first_key);
    rp_int(x->out, c->last_key);
    rp_int(x->out, c->step);
}

void cmd_command(cmdctx *x)
{
    size_t n;
    const srv_cmd *t = cmd_table(&n);
    if (x->argc == 1) {
        rp_arr(x->out, (long long)n);
        for (size_t i = 0; i < n; i++)
            command_entry(x, &t[i]);
    } else if (arg_eq(&x->argv[1], "COUNT")) {
        rp_int(x->out, (long long)n);
    } else if (arg_eq(&x->argv[1], "INFO")) {
        rp_arr(x->out, x->argc - 2);
        for (int i = 2; i < x->argc; i++) {
            const srv_cmd *c = cmd_lookup(x->argv[i].p, x->argv[i].n);
            if (c)
                command_entry(x, c);
            else
                rp_nil(x->out, x->resp);
        }
    } else if (arg_eq(&x->argv[1], "DOCS")) {
        rp_map(x->out, x->resp, 0); /* no documentation entries: clients fall back to none */
    } else {
        rp_err(x->out, "unknown subcommand '%.*s'. Try COMMAND, COMMAND COUNT, COMMAND INFO, "
               "COMMAND DOCS", (int)(x->argv[1].n > 32 ? 32 : x->argv[1].n), x->argv[1].p);
    }
}

void cmd_config(cmdctx *x)
{
    if (!arg_eq(&x->argv[1], "GET") || x->argc < 3) {
        rp_err(x->out, "CONFIG %.*s is not supported by kvtier (configuration is read at start: "
               "file, environment, flags); CONFIG GET works",
               (int)(x->argv[1].n > 16 ? 16 : x->argv[1].n), x->argv[1].p);
        return;
    }
    const srv_config *c = &x->s->cfg;
    char v[16][64];
    const char *names[16] = {"maxclients", "timeout", "proto-max-bulk-len", "port", "bind",
                             "unixsocket", "save", "appendonly", "databases", "maxmemory",
                             "io-threads", NULL};
    snprintf(v[0], 64, "%d", c->maxclients);
    snprintf(v[1], 64, "%d", c->timeout_s);
    snprintf(v[2], 64, "%" PRIu64, c->proto_max_bulk_len);
    snprintf(v[3], 64, "%d", c->port);
    snprintf(v[4], 64, "%.63s", c->bind);
    snprintf(v[5], 64, "%.63s", c->unixsocket);
    snprintf(v[6], 64, "%s", ""); /* nothing is saved to disk */
    snprintf(v[7], 64, "no");
    snprintf(v[8], 64, "1");
    snprintf(v[9], 64, "%" PRIu64, c->dram_bytes);
    snprintf(v[10], 64, "%d", c->workers + 1);
    int hit[16] = {0}, nh = 0;
    for (int a = 2; a < x->argc; a++) {
        char pat[128];
        size_t pn = x->argv[a].n < sizeof(pat) - 1 ? x->argv[a].n : sizeof(pat) - 1;
        memcpy(pat, x->argv[a].p, pn);
        pat[pn] = 0;
        for (int i = 0; names[i]; i++)
            if (!hit[i] && fnmatch(pat, names[i], FNM_CASEFOLD) == 0) {
                hit[i] = 1;
                nh++;
            }
    }
    rp_map(x->out, x->resp, nh);
    for (int i = 0; names[i]; i++)
        if (hit[i]) {
            rp_bulkstr(x->out, names[i]);
            rp_bulkstr(x->out, v[i]);
        }
}

void cmd_info(cmdctx *x)
{
    const char *sec = "default";
    char b[64];
    if (x->argc >= 2) {
        size_t n = x->argv[1].n < sizeof(b) - 1 ? x->argv[1].n : sizeof(b) - 1;
        memcpy(b, x->argv[1].p, n);
        b[n] = 0;
        sec = b;
    }
    size_t len = 0;
    char *txt = info_text(x->s, x->t, sec, &len);
    if (!txt) {
        rp_err(x->out, "OOM building INFO");
        return;
    }
    rp_verbatim(x->out, x->resp, txt, len);
    free(txt);
}
