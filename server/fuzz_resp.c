/*
 * fuzz_resp.c — libFuzzer target for the service's request path (docs/service.md, "Bad
 * input"). Each input is a byte stream a client sends; it is fed in pseudo-random chunks
 * (1 byte … all of it, derived from a hash of the input, so a run is reproducible from the
 * input alone) through the real input buffering, RESP parser, command dispatcher and
 * commands (kv.c, kvt.c, misc.c) of an in-process server with a DRAM-only engine
 * (srv_embed_*: no sockets, no threads). When the server closes the client (QUIT, a
 * protocol error, a limit), the rest of the input goes to a new client, like a reconnect.
 *
 * Checks, besides ASan/UBSan/LeakSanitizer: every byte the server sends is a sequence of
 * complete, well-formed RESP2/RESP3 replies, and simple strings/errors contain no CR/LF
 * (a reply that echoed request bytes into an error line would desynchronise clients).
 *
 * The engine is opened and closed for every input (small: 8 MiB of DRAM in 512-byte
 * blocks so values chain after a few hundred bytes), so inputs do not influence each other.
 * Limits are small so that the fuzzer reaches them: values 64 KiB, bulk strings 256 KiB,
 * query buffer 512 KiB, output buffer 1 MiB.
 *
 * Build and run: bench/fuzz_resp.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"

static char cfg_path[64];

static void write_config(void)
{
    if (cfg_path[0])
        return;
    snprintf(cfg_path, sizeof(cfg_path), "/tmp/kvt-fuzz-resp-%d.conf", (int)getpid());
    FILE *f = fopen(cfg_path, "w");
    if (!f)
        abort();
    fputs("[server]\n"
          "data_dir = none\n"
          "dram_bytes = 8M\n"
          "kv_block_bytes = 512\n"
          "hugepages = off\n"
          "max_value_bytes = 64K\n"
          "ingest_min_bytes = 600\n" /* values received in place: the ingest path too */
          "proto_max_bulk_len = 256K\n"
          "query_buffer_limit = 512K\n"
          "output_buffer_limit = 1M\n"
          "loglevel = warning\n"
          "[tenant:default]\n"
          "nopass = yes\n"
          "namespaces = *\n"
          "[tenant:alice]\n"
          "password = pw\n"
          "namespaces = m, llama\n"
          "quota_dram = 1M\n"
          "max_namespaces = 4\n"
          "admin = yes\n",
          f);
    fclose(f);
}

/* ---------------------------------------------------------------- reply checker */

typedef struct sinkbuf {
    char *p;
    size_t n, cap;
    int overflow;
} sinkbuf;

#define SINK_MAX (32u << 20)

static void sink(void *ctx, const void *p, size_t n)
{
    sinkbuf *b = ctx;
    if (b->overflow)
        return;
    if (b->n + n > SINK_MAX) {
        b->overflow = 1; /* too much to check: stop recording */
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void bad_reply(const char *why, const char *p, size_t n, size_t at)
{
    fprintf(stderr, "fuzz_resp: malformed reply stream: %s at byte %zu of %zu: \"", why, at, n);
    for (size_t i = at; i < n && i < at + 80; i++)
        fputc(p[i] >= 32 && p[i] < 127 ? p[i] : '.', stderr);
    fputs("\"\n", stderr);
    abort();
}

/* One line ending in CRLF from *pos (no CR or LF inside); returns its length. */
static size_t line(const char *p, size_t n, size_t *pos)
{
    size_t st = *pos;
    for (size_t i = st; i + 1 < n; i++) {
        if (p[i] == '\r') {
            if (p[i + 1] != '\n')
                bad_reply("CR without LF", p, n, i);
            *pos = i + 2;
            return i - st;
        }
        if (p[i] == '\n')
            bad_reply("LF without CR", p, n, i);
    }
    bad_reply("truncated line", p, n, st);
    return 0;
}

static long long num(const char *p, size_t n, size_t *pos)
{
    size_t st = *pos;
    size_t len = line(p, n, pos);
    if (len == 0 || len > 20)
        bad_reply("bad length", p, n, st);
    char tmp[24];
    memcpy(tmp, p + st, len);
    tmp[len] = 0;
    char *e;
    long long v = strtoll(tmp, &e, 10);
    if (*e)
        bad_reply("bad number", p, n, st);
    return v;
}

static void reply(const char *p, size_t n, size_t *pos, int depth)
{
    if (depth > 64)
        bad_reply("nesting too deep", p, n, *pos);
    if (*pos >= n)
        bad_reply("truncated reply", p, n, *pos);
    char t = p[(*pos)++];
    long long k;
    switch (t) {
    case '+': case '-': case ':': case '_': case ',': case '#': case '(':
        line(p, n, pos);
        return;
    case '$': case '!': case '=':
        k = num(p, n, pos);
        if (k == -1 && t == '$')
            return;
        if (k < 0 || (size_t)k > n - *pos || n - *pos - (size_t)k < 2 ||
            p[*pos + (size_t)k] != '\r' || p[*pos + (size_t)k + 1] != '\n')
            bad_reply("bad bulk string", p, n, *pos);
        *pos += (size_t)k + 2;
        return;
    case '*': case '~': case '>': case '%': case '|':
        k = num(p, n, pos);
        if (k == -1 && t == '*')
            return;
        if (k < 0)
            bad_reply("bad aggregate length", p, n, *pos);
        if (t == '%' || t == '|')
            k *= 2;
        for (long long i = 0; i < k; i++)
            reply(p, n, pos, depth + 1);
        if (t == '|') /* an attribute precedes the reply it annotates */
            reply(p, n, pos, depth + 1);
        return;
    default:
        bad_reply("unknown reply type", p, n, *pos - 1);
    }
}

static void check_replies(sinkbuf *b)
{
    if (b->overflow)
        return;
    size_t pos = 0;
    while (pos < b->n)
        reply(b->p, b->n, &pos, 0);
}

/* ---------------------------------------------------------------- the target */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_config();
    char *argv[] = {"fuzz_resp", "--config", cfg_path, NULL};
    if (srv_embed_open(3, argv))
        abort();
    uint64_t seed = 0xcbf29ce484222325ull; /* FNV-1a of the input: the chunking */
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ull;
    sinkbuf out = {0};
    size_t off = 0;
    int clients = 0;
    while (off < size && clients < 16) {
        srv_client *c = srv_embed_client();
        if (!c)
            abort();
        clients++;
        int closed = 0;
        while (off < size && !closed) {
            uint64_t r = splitmix(&seed);
            size_t k;
            switch (r & 3) {
            case 0: k = 1 + (size_t)((r >> 8) % 4); break;     /* a few bytes */
            case 1: k = 1 + (size_t)((r >> 8) % 64); break;    /* a small read */
            case 2: k = 1 + (size_t)((r >> 8) % 4096); break;  /* a packet */
            default: k = size - off; break;                    /* everything left */
            }
            if (k > size - off)
                k = size - off;
            closed = srv_embed_feed(c, data + off, k, sink, &out);
            off += k;
        }
        srv_embed_client_free(c, sink, &out);
        check_replies(&out); /* each client's replies end complete */
        out.n = 0;
        out.overflow = 0;
    }
    free(out.p);
    srv_embed_close();
    return 0;
}
