/*
 * lru.h — the LRU baseline: a recency list of radix nodes.
 *
 * The engine keeps one list per tenant. It touches the nodes of a matched or inserted path
 * deepest first, so among equally recent nodes ancestors sit nearer the fresh end: with the
 * radix history rule (an ancestor is used whenever a descendant is), the least recently used
 * unpinned node is always a leaf, and evicting from the stale end is leaf-first LRU, the
 * order SGLang's radix cache and vLLM's prefix cache evict in.
 *
 * Thread safety: none; the engine lock.
 */
#ifndef KVT_LRU_H
#define KVT_LRU_H

#include <stdint.h>

#include "util/util.h"

typedef struct evict_lru {
    util_list head; /* head.next is the least recently used */
    uint64_t n;
} evict_lru;

void evict_lru_init(evict_lru *l);
/* Move e (linked or not) to the most recently used end. */
void evict_lru_touch(evict_lru *l, util_list *e);
/* Unlink e if linked. */
void evict_lru_remove(evict_lru *l, util_list *e);
/* The least recently used element for which eligible(e, ctx) is true, or NULL. */
util_list *evict_lru_oldest(evict_lru *l, int (*eligible)(util_list *e, void *ctx), void *ctx);

#endif
