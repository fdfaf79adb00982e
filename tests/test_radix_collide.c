// ctest: labels=unit;fuzz timeout=300
/*
 * test_radix_collide.c — test_radix_fuzz against a prefix index whose kid hashes keep only
 * 12 bits (RADIX_KID_HASH_BITS), so in a wide node (radix.c: more than 64 kids, found through
 * a hash table) thousands of siblings share a hash with several others. Every answer must
 * still be exact: the hash only locates candidates and the units decide, and insertion,
 * removal (backward-shift deletion) and growth must keep every kid reachable through runs of
 * equal hashes. radix.c is compiled into this test; the library's copy is not linked.
 */
#define RADIX_KID_HASH_BITS 12
#include "radix/radix.c"

#include "test_radix_fuzz.c"
