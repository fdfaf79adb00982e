/* quickstart.c — store a prompt's KV blocks, match a longer prompt, read the hit back.
 * Build: cc quickstart.c $(pkg-config --cflags --libs kvtier) */
#include <kvtier/kvtier.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call) do { int rc_ = (call); if (rc_) { \
    fprintf(stderr, "%s: %s\n", #call, kvt_strerror(rc_)); return 1; } } while (0)

int main(void)
{
    /* Llama-3-8B's shape (8 KV heads, bf16, 16-token blocks), shrunk to 2 layers x 16 dims. */
    kvt_layout layout = {.layers = 2, .kv_heads = 8, .head_dim = 16,
                         .dtype = KVT_DTYPE_BF16, .block_tokens = 16};
    size_t bb = kvt_layout_block_bytes(&layout), stored, matched; /* 16 KiB per block */
    uint32_t prompt[64];
    for (int i = 0; i < 64; i++) prompt[i] = 9000 + i;              /* token ids */
    char *kv = malloc(4 * bb), *out = malloc(4 * bb);               /* [4 blocks][bb bytes] */
    const void *blocks[4] = {kv, kv + bb, kv + 2 * bb, kv + 3 * bb};
    memset(kv, 0x5a, 4 * bb);                                       /* "prefill" output */
    kvt_engine *eng; kvt_ns *ns; kvt_lease *lease;
    CHECK(kvt_engine_open(NULL, &eng));                             /* 1 GiB DRAM tier */
    CHECK(kvt_ns_open(eng, "llama-3-8b-tiny", "tenant-a", &layout, 0, &ns));
    CHECK(kvt_put(ns, prompt, 32, blocks, &stored));                /* cache 2 blocks */
    CHECK(kvt_match(ns, prompt, 64, &matched, &lease));             /* longer prompt */
    if (lease) CHECK(kvt_read_contig(lease, 0, kvt_lease_blocks(lease), out, matched / 16 * bb));
    printf("stored %zu blocks, matched %zu of 64 tokens, bytes %s\n", stored, matched,
           memcmp(out, kv, matched / 16 * bb) ? "DIFFER" : "identical");
    kvt_release(lease);
    CHECK(kvt_engine_close(eng));
    free(kv); free(out);
    return 0;
}
