/* Who sent the bad block of a chunk that several peers sent (suspect.h):
 * the failed copy's block hashes and senders, held against the copy that
 * verifies. A sender is blamed once per chunk, however many of its blocks
 * were bad. */
#include "peer/suspect.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "peer/internal.h"

int suspect_sole_sender(const uint8_t *owners, uint32_t nblocks) {
  for (uint32_t i = 1; i < nblocks; i++) {
    if (memcmp(owners, owners + (size_t)i * IDENTITY_PK_BYTES,
               IDENTITY_PK_BYTES) != 0) {
      return 0;
    }
  }
  return 1;
}

struct suspect *suspect_find(struct swarm *sw, uint32_t chunk) {
  for (struct suspect *x = sw->suspects; x != NULL; x = x->next) {
    if (x->chunk == chunk) {
      return x;
    }
  }
  return NULL;
}

int suspect_add(struct swarm *sw, uint32_t chunk, uint32_t nblocks,
                uint8_t *owners, uint8_t *hashes) {
  struct suspect *x = calloc(1, sizeof(*x));
  if (x == NULL) {
    return SHOAL_ENOMEM;
  }
  x->chunk = chunk;
  x->nblocks = nblocks;
  x->owners = owners;
  x->hashes = hashes;
  x->next = sw->suspects;
  sw->suspects = x;
  return 0;
}

uint32_t suspect_blame(const struct suspect *x, const uint8_t *data,
                       uint32_t len, const uint8_t **who) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < x->nblocks; i++) {
    uint8_t h[32];
    uint32_t off = i * PWIRE_BLOCK_BYTES;
    uint32_t bytes =
        len - off < PWIRE_BLOCK_BYTES ? len - off : PWIRE_BLOCK_BYTES;
    const uint8_t *sender = x->owners + (size_t)i * IDENTITY_PK_BYTES;
    int seen = 0;
    crypto_generichash(h, sizeof(h), data + off, bytes, NULL, 0);
    if (memcmp(h, x->hashes + (size_t)i * 32, 32) == 0) {
      continue;
    }
    for (uint32_t j = 0; j < n && !seen; j++) {
      seen = memcmp(who[j], sender, IDENTITY_PK_BYTES) == 0;
    }
    if (!seen) {
      who[n++] = sender;
    }
  }
  return n;
}

void suspect_drop(struct swarm *sw, struct suspect *x) {
  struct suspect **pp = &sw->suspects;
  while (*pp != x) {
    pp = &(*pp)->next;
  }
  *pp = x->next;
  free(x->owners);
  free(x->hashes);
  free(x);
}

void suspect_drop_all(struct swarm *sw) {
  while (sw->suspects != NULL) {
    suspect_drop(sw, sw->suspects);
  }
}
