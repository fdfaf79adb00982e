/*
 * reply.c — a client's output queue and the RESP2/RESP3 reply builders.
 *
 * Queue:  head -> [BUF 16 KiB: "+OK\r\n$5\r\nhello\r\n..."] -> [STREAM lease, window] -> ...
 * Small replies are appended to the tail buffer; a payload larger than a buffer gets its own
 * exactly-sized chunk. A streamed bulk string is three pieces: "$<len>\r\n" in a buffer, the
 * stream chunk (lease + window refilled as the socket drains), "\r\n" in a buffer.
 *
 * Allocation failure while building a reply aborts the process: the reply stream of a
 * connection cannot be left with a hole, and the service cannot do anything sensible
 * without a few KiB of heap (Redis makes the same choice).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

#define OBUF_CAP (16u * 1024)
#define STREAM_WINDOW (1u << 20) /* bytes copied from the engine per refill */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "kvtier serve: out of memory building a reply (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static ochunk *chunk_new(size_t cap)
{
    ochunk *ch = xmalloc(sizeof(*ch));
    memset(ch, 0, sizeof(*ch));
    ch->kind = OC_BUF;
    ch->cap = cap;
    ch->own = ch->data = xmalloc(cap);
    return ch;
}

static void chunk_push(outq *q, ochunk *ch)
{
    if (q->tail)
        q->tail->next = ch;
    else
        q->head = ch;
    q->tail = ch;
}

void ochunk_free(ochunk *ch)
{
    if (ch->kind == OC_STREAM && ch->lease)
        kvt_release(ch->lease);
    free(ch->own);
    free(ch->seg);
    free(ch);
}

int ochunk_iov(const ochunk *ch, struct iovec *iov, int max)
{
    if (ch->off >= ch->len || max <= 0)
        return 0;
    if (!ch->nseg) {
        iov[0] = (struct iovec){ch->data + ch->off, ch->len - ch->off};
        return 1;
    }
    size_t pos = ch->off;
    int s = 0, n = 0;
    while (pos >= ch->seg[s].iov_len) /* the run holding byte off */
        pos -= ch->seg[s++].iov_len;
    for (; s < ch->nseg && n < max; s++, pos = 0)
        iov[n++] = (struct iovec){(char *)ch->seg[s].iov_base + pos, ch->seg[s].iov_len - pos};
    return n;
}

void outq_free(outq *q)
{
    ochunk *ch = q->head;
    while (ch) {
        ochunk *n = ch->next;
        ochunk_free(ch);
        ch = n;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

void outq_splice(outq *dst, outq *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->bytes += src->bytes;
    src->head = src->tail = NULL;
    src->bytes = 0;
}

void rp_raw(outq *q, const void *p, size_t n)
{
    if (!n)
        return;
    q->bytes += n;
    ochunk *t = q->tail;
    if (t && t->kind == OC_BUF && t->cap - t->len >= n) {
        memcpy(t->data + t->len, p, n);
        t->len += n;
        return;
    }
    ochunk *ch = chunk_new(n > OBUF_CAP ? n : OBUF_CAP);
    memcpy(ch->data, p, n);
    ch->len = n;
    chunk_push(q, ch);
}

void rp_fmt(outq *q, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        rp_raw(q, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rp_raw(q, big, (size_t)n);
    free(big);
}

void rp_ok(outq *q) { rp_raw(q, "+OK\r\n", 5); }

void rp_simple(outq *q, const char *s) { rp_fmt(q, "+%s\r\n", s); }

/* Errors: a message that starts with a known code (ERR, WRONGPASS, NOAUTH, OOM...) keeps
 * it; any other gets "ERR ". CR/LF are replaced by spaces. */
void rp_err(outq *q, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    static const char *codes[] = {"ERR ", "WRONGPASS ", "NOAUTH ", "NOPROTO ", "OOM ",
                                  "TRYAGAIN ", "NOPERM ", "BUSY ", "CORRUPT ", "IOERR ", NULL};
    int has_code = 0;
    for (int i = 0; codes[i] && !has_code; i++)
        has_code = strncmp(msg, codes[i], strlen(codes[i])) == 0;
    rp_fmt(q, "-%s%s\r\n", has_code ? "" : "ERR ", msg);
}

void rp_int(outq *q, long long v) { rp_fmt(q, ":%lld\r\n", v); }

void rp_bulk(outq *q, const void *p, size_t n)
{
    char h[32];
    int hn = snprintf(h, sizeof(h), "$%zu\r\n", n);
    rp_raw(q, h, (size_t)hn);
    rp_raw(q, p, n);
    rp_raw(q, "\r\n", 2);
}

void rp_bulkstr(outq *q, const char *s) { rp_bulk(q, s, strlen(s)); }

void rp_nil(outq *q, int resp)
{
    if (resp == 3)
        rp_raw(q, "_\r\n", 3);
    else
        rp_raw(q, "$-1\r\n", 5);
}

void rp_arr(outq *q, long long n) { rp_fmt(q, "*%lld\r\n", n); }

void rp_map(outq *q, int resp, long long n)
{
    if (resp == 3)
        rp_fmt(q, "%%%lld\r\n", n);
    else
        rp_fmt(q, "*%lld\r\n", 2 * n);
}

void rp_dbl(outq *q, int resp, double v)
{
    char b[64];
    snprintf(b, sizeof(b), "%.17g", v);
    if (resp == 3)
        rp_fmt(q, ",%s\r\n", b);
    else
        rp_bulkstr(q, b);
}

void rp_verbatim(outq *q, int resp, const char *s, size_t n)
{
    if (resp == 3) {
        rp_fmt(q, "=%zu\r\ntxt:", n + 4);
        rp_raw(q, s, n);
        rp_raw(q, "\r\n", 2);
    } else {
        rp_bulk(q, s, n);
    }
}

void rp_bulk_stream(outq *q, kvt_lease *lease, size_t first, size_t nblocks, size_t block_bytes,
                    uint64_t bytes)
{
    rp_fmt(q, "$%llu\r\n", (unsigned long long)bytes);
    if (bytes) {
        ochunk *ch = xmalloc(sizeof(*ch));
        memset(ch, 0, sizeof(*ch));
        ch->kind = OC_STREAM;
        ch->lease = lease;
        ch->next_block = first;
        ch->nblocks = first + nblocks;
        ch->block_bytes = block_bytes;
        ch->left = bytes;
        chunk_push(q, ch);
        q->bytes += bytes;
    } else if (lease) {
        kvt_release(lease);
    }
    rp_raw(q, "\r\n", 2);
}

/*
 * Point the stream at its next window, a whole number of blocks, at least one. Blocks in DRAM
 * go out from the engine's arena itself, nothing copied (kvt_lease_block_ptr; the lease pins
 * them until the chunk is freed): the window is up to ZC_SEGS runs of blocks adjacent in the
 * arena, ZC_WINDOW bytes at most, one writev (an 8 MiB value in a fresh arena is a few runs;
 * a 128 KiB value whose slots churn scattered is 32 runs of 4 KiB, still one writev).
 * Otherwise (the first block not in DRAM, or its copy not contiguous) the window's blocks are
 * copied into the chunk's buffer (kvt_read_contig: a verified read from nvme/disk).
 */
#define ZC_WINDOW (4u << 20)
#define ZC_SEGS 64
int outq_refill(ochunk *ch)
{
    size_t bb = ch->block_bytes, left = ch->nblocks - ch->next_block;
    if (left == 0)
        return -ERANGE;
    const void *p = NULL;
    size_t k = 0;
    ch->nseg = 0;
    if (kvt_lease_block_ptr(ch->lease, ch->next_block, &p) == 0) {
        if (!ch->seg)
            ch->seg = xmalloc(ZC_SEGS * sizeof(*ch->seg));
        size_t max = ZC_WINDOW / bb ? ZC_WINDOW / bb : 1;
        for (; k < left && k < max; k++) {
            if (k && kvt_lease_block_ptr(ch->lease, ch->next_block + k, &p))
                break; /* not in DRAM: the next window copies it */
            struct iovec *last = ch->nseg ? &ch->seg[ch->nseg - 1] : NULL;
            if (last && (const char *)last->iov_base + last->iov_len == (const char *)p) {
                last->iov_len += bb;
            } else {
                if (ch->nseg == ZC_SEGS)
                    break;
                ch->seg[ch->nseg++] = (struct iovec){(void *)p, bb};
            }
        }
        size_t over = k * bb > ch->left ? k * bb - (size_t)ch->left : 0;
        while (over) { /* the last block's padding past the value is not sent */
            struct iovec *last = &ch->seg[ch->nseg - 1];
            size_t cut = over < last->iov_len ? over : last->iov_len;
            last->iov_len -= cut;
            over -= cut;
            if (!last->iov_len)
                ch->nseg--;
        }
        ch->data = NULL;
    } else {
        size_t per = STREAM_WINDOW / bb ? STREAM_WINDOW / bb : 1;
        k = left < per ? left : per;
        if (ch->cap < k * bb) {
            free(ch->own);
            ch->own = xmalloc(k * bb);
            ch->cap = k * bb;
        }
        int rc = kvt_read_contig(ch->lease, ch->next_block, k, ch->own, k * bb);
        if (rc)
            return rc;
        ch->data = ch->own;
    }
    size_t need = k * bb;
    ch->next_block += k;
    ch->off = 0;
    ch->len = need < ch->left ? need : (size_t)ch->left;
    ch->left -= ch->len;
    return 0;
}
