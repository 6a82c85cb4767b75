/* What the tracker's hash tables share (the catalog, the rate limiter, the
 * connection counts, the memory store and the lookup-reply cache).
 *
 * Every table places a key by SipHash (libsodium's crypto_shorthash) under
 * a random key of its own, so that clients cannot choose contents or
 * addresses that pile up in one slot. The tables probe linearly and delete
 * without tombstones, by shifting the rest of a probe chain back.
 */
#ifndef SHOAL_TRACKER_HASHTAB_H
#define SHOAL_TRACKER_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

#define HASHTAB_KEY_BYTES 16 /* crypto_shorthash_KEYBYTES */

/* Fills key with a fresh random hash key. */
void hashtab_keygen(uint8_t key[HASHTAB_KEY_BYTES]);

/* The SipHash-2-4 of p[0..n) under key, its eight bytes read big-endian. */
uint64_t hashtab_hash(const uint8_t key[HASHTAB_KEY_BYTES], const void *p,
                      size_t n);

/* Backward-shift deletion: slot i has just been emptied, and j is a later
 * slot of the same probe chain, whose entry's home slot is home. True when
 * that entry may move back into i, that is when its home does not lie
 * (cyclically) in (i, j]: then it is still found from its home. */
int hashtab_may_fill(size_t i, size_t j, size_t home);

#endif
