/*
 * compact.h — disk-tier compaction driven by the engine (engine/compact.c).
 * Not public API: the flusher calls compact_maybe(); tests call kvt__engine_compact().
 */
#ifndef KVT_ENGINE_COMPACT_H
#define KVT_ENGINE_COMPACT_H

#include "engine/internal.h"

/* Garbage ratio (1 - live / file bytes) of the whole disk tier above which the flusher
 * compacts when idle, and the per-segment threshold it then passes to disk_compact. */
#define COMPACT_TRIGGER 0.5
#define COMPACT_SEG_MIN_GARBAGE 0.5

/* Compact the disk tier: segments with garbage >= min_garbage have their live records copied
 * forward; every move is catalogued (synced) and the index repointed before the old segment
 * goes. The caller holds no engine lock and keeps the flusher out of a batch (or is it).
 * Returns 0 or the error that stopped it (-EBUSY: a block was in use: retried later). */
int engine_compact(kvt_engine *e, double min_garbage, disk_compact_stats *st);

/* Flusher, idle, e->lock held: compact when the tier's garbage ratio passed COMPACT_TRIGGER
 * and the tier changed since the last attempt. Returns 0 without ever dropping the lock, or
 * 1 after a compaction (the lock was dropped: the caller must look for work again). */
int compact_maybe(kvt_engine *e);

/* tiering.c: quarantine_drain for compact.c (lock held; dropped inside). */
void tiers_quarantine_drain(kvt_engine *e);

#endif
