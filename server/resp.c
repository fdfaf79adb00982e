/*
 * resp.c — the RESP request parser (RESP2 multibulk and inline commands), without sockets:
 * the loop (server.c) runs it over a client's input buffer, server/fuzz_resp.c over
 * arbitrary bytes. Limits: MAX_ARGC arguments, `max_bulk` bytes per bulk string
 * (proto_max_bulk_len), INLINE_MAX bytes per inline line, 32 bytes per length line.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

#define MAX_ARGC (1024 * 1024)


/* Find "\r\n" in p[0..n): index of '\r' or -1. */
static long find_crlf(const char *p, size_t n)
{
    const char *q = memchr(p, '\r', n);
    while (q) {
        size_t i = (size_t)(q - p);
        if (i + 1 >= n)
            return -1;
        if (q[1] == '\n')
            return (long)i;
        q = memchr(q + 1, '\r', n - i - 1);
    }
    return -1;
}

/* Parse a decimal integer p[0..n) (optional '-'); -1 on junk. */
static int parse_ll(const char *p, size_t n, long long *out)
{
    if (n == 0 || n > 20)
        return -1;
    size_t i = 0;
    int neg = 0;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return -1;
    }
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v > (ULLONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > (unsigned long long)LLONG_MAX)
        return -1;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

static int argv_reserve(resp_req *c, int n)
{
    if (n <= c->argv_cap)
        return 0;
    int cap = c->argv_cap ? c->argv_cap : 8;
    while (cap < n)
        cap *= 2;
    srv_arg *a = realloc(c->argv, (size_t)cap * sizeof(*a));
    if (!a)
        return -1;
    c->argv = a;
    c->argv_cap = cap;
    return 0;
}

void resp_req_free(resp_req *c)
{
    free(c->argv);
    c->argv = NULL;
    c->argc = c->argv_cap = 0;
    c->need = 0;
}

int resp_parse(resp_req *c, const char *b, size_t n, uint64_t max_bulk, size_t *consumed,
               const char **err)
{
    c->argc = 0;
    c->need = 0;
    c->part_len = 0;
    if (n == 0)
        return 0;
    if (b[0] != '*') {
        /* inline command: words separated by blanks, ended by \n (or \r\n) */
        const char *nl = memchr(b, '\n', n);
        if (!nl) {
            if (n > INLINE_MAX) {
                *err = "Protocol error: too big inline request";
                return -1;
            }
            return 0;
        }
        size_t line = (size_t)(nl - b);
        size_t end = line;
        if (end && b[end - 1] == '\r')
            end--;
        size_t i = 0;
        while (i < end) {
            while (i < end && (b[i] == ' ' || b[i] == '\t'))
                i++;
            if (i >= end)
                break;
            size_t st = i;
            if (b[i] == '"' || b[i] == '\'') {
                char q = b[i++];
                st = i;
                while (i < end && b[i] != q)
                    i++;
                if (i >= end) {
                    *err = "Protocol error: unbalanced quotes in request";
                    return -1;
                }
            } else {
                while (i < end && b[i] != ' ' && b[i] != '\t')
                    i++;
            }
            if (argv_reserve(c, c->argc + 1)) {
                *err = "out of memory";
                return -1;
            }
            c->argv[c->argc].p = b + st;
            c->argv[c->argc].n = i - st;
            c->argc++;
            if (i < end && (b[i] == '"' || b[i] == '\''))
                i++;
        }
        *consumed = line + 1;
        return 1;
    }
    long e = find_crlf(b, n < 32 ? n : 32);
    if (e < 0) {
        if (n >= 32) {
            *err = "Protocol error: invalid multibulk length";
            return -1;
        }
        return 0;
    }
    long long cnt;
    if (parse_ll(b + 1, (size_t)e - 1, &cnt) || cnt > MAX_ARGC) {
        *err = "Protocol error: invalid multibulk length";
        return -1;
    }
    size_t pos = (size_t)e + 2;
    if (cnt <= 0) { /* "*0\r\n" and "*-1\r\n": empty, ignored like Redis does */
        *consumed = pos;
        return 1;
    }
    if (argv_reserve(c, (int)cnt)) {
        *err = "out of memory";
        return -1;
    }
    for (long long a = 0; a < cnt; a++) {
        if (pos >= n)
            return 0;
        if (b[pos] != '$') {
            static char msg[64];
            snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'",
                     (b[pos] >= 32 && b[pos] < 127) ? b[pos] : '?');
            *err = msg;
            return -1;
        }
        size_t rem = n - pos;
        long e2 = find_crlf(b + pos, rem < 32 ? rem : 32);
        if (e2 < 0) {
            if (rem >= 32) {
                *err = "Protocol error: invalid bulk length";
                return -1;
            }
            return 0;
        }
        long long bl;
        if (parse_ll(b + pos + 1, (size_t)e2 - 1, &bl) || bl < 0 ||
            (uint64_t)bl > max_bulk) {
            *err = "Protocol error: invalid bulk length";
            return -1;
        }
        pos += (size_t)e2 + 2;
        if (c->ext_len && pos == c->ext_at && (uint64_t)bl == c->ext_len) {
            /* its bytes were received elsewhere: only the CRLF after them is here */
            if (n - pos < 2) {
                c->need = pos + 2;
                c->argc = 0;
                return 0;
            }
            if (b[pos] != '\r' || b[pos + 1] != '\n') {
                *err = "Protocol error: bulk string not terminated by CRLF";
                return -1;
            }
            c->argv[c->argc].p = NULL;
            c->argv[c->argc].n = (size_t)bl;
            c->argc++;
            pos += 2;
            continue;
        }
        if (n - pos < (size_t)bl + 2) {
            c->need = pos + (size_t)bl + 2; /* at least this much; more args may follow */
            c->part_idx = c->argc;
            c->part_argc = (int)cnt;
            c->part_at = pos;
            c->part_len = (uint64_t)bl;
            c->argc = 0;
            return 0;
        }
        if (b[pos + (size_t)bl] != '\r' || b[pos + (size_t)bl + 1] != '\n') {
            *err = "Protocol error: bulk string not terminated by CRLF";
            return -1;
        }
        c->argv[c->argc].p = b + pos;
        c->argv[c->argc].n = (size_t)bl;
        c->argc++;
        pos += (size_t)bl + 2;
    }
    *consumed = pos;
    return 1;
}
