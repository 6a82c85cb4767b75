/* A swarm's chunks being assembled from blocks (partial.h). Their number
 * follows the picker's active chunks, not the content's size. */
#include "peer/partial.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "peer/internal.h"

struct partial *partial_get(struct swarm *sw, uint32_t chunk) {
  struct partial *p;
  for (p = sw->partials; p != NULL; p = p->next) {
    if (p->chunk == chunk) {
      return p;
    }
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->chunk = chunk;
  p->len = manifest_chunk_len(sw->m, chunk);
  p->nblocks = (p->len + PWIRE_BLOCK_BYTES - 1) / PWIRE_BLOCK_BYTES;
  p->data = storage_chunk_alloc(p->len);
  p->owners = calloc(p->nblocks ? p->nblocks : 1, IDENTITY_PK_BYTES);
  p->sealed = calloc(p->nblocks ? p->nblocks : 1, sizeof(*p->sealed));
  if (p->data == NULL || p->owners == NULL || p->sealed == NULL) {
    storage_chunk_free(p->data);
    free(p->owners);
    free(p->sealed);
    free(p);
    return NULL;
  }
  p->next = sw->partials;
  sw->partials = p;
  return p;
}

void partial_add_block(struct partial *p, uint32_t offset, const uint8_t *data,
                       size_t len, const uint8_t *pk,
                       const struct pwire_sealed *sealed) {
  if (p->data + offset != data) { /* else in place already */
    memcpy(p->data + offset, data, len);
  }
  for (uint32_t bi = offset / PWIRE_BLOCK_BYTES;
       bi * PWIRE_BLOCK_BYTES < offset + len && bi < p->nblocks; bi++) {
    memcpy(p->owners + (size_t)bi * IDENTITY_PK_BYTES, pk, IDENTITY_PK_BYTES);
    /* A record only for the one whole block it came with. */
    if (sealed != NULL && bi * PWIRE_BLOCK_BYTES == offset &&
        sealed->len == len) {
      p->sealed[bi] = *sealed;
    } else {
      sodium_memzero(&p->sealed[bi], sizeof(p->sealed[bi]));
    }
  }
}

void partial_sealed_free(struct pwire_sealed *sealed, uint32_t nblocks) {
  if (sealed != NULL) {
    sodium_memzero(sealed, (size_t)(nblocks ? nblocks : 1) * sizeof(*sealed));
    free(sealed);
  }
}

void partial_drop(struct swarm *sw, struct partial *p) {
  struct partial **pp = &sw->partials;
  while (*pp != p) {
    pp = &(*pp)->next;
  }
  *pp = p->next;
  storage_chunk_free(p->data); /* storage_chunk_alloc's, not malloc's */
  free(p->owners);
  partial_sealed_free(p->sealed, p->nblocks);
  free(p);
}

void partial_drop_all(struct swarm *sw) {
  while (sw->partials != NULL) {
    partial_drop(sw, sw->partials);
  }
}
