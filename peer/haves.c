/* When a swarm tells its peers of the chunks it verified: the have-log
 * and the pacing of HAVEs (haves.h has the rules). Pure: a clock passed
 * in, no sockets, no allocation. */
#include "peer/haves.h"

#include <assert.h>
#include <string.h>

void haves_init(struct haves *h) {
  memset(h, 0, sizeof(*h));
}

int haves_full(const struct haves *h) {
  return h->n == NODE_HAVE_BATCH;
}

void haves_add(struct haves *h, uint32_t chunk) {
  assert(h->n < NODE_HAVE_BATCH);
  pwire_have_set_chunk(h->log, h->n++, chunk);
}

const uint8_t *haves_since(const struct haves *h, unsigned cursor,
                           size_t *len) {
  assert(cursor <= h->n);
  *len = PWIRE_HAVE_CHUNK_BYTES * (size_t)(h->n - cursor);
  return h->log + PWIRE_HAVE_CHUNK_BYTES * (size_t)cursor;
}

void haves_restart(struct haves *h, uint64_t now) {
  if (h->n > 0) {
    h->sent_ms = now;
  }
  h->n = 0;
  h->epoch_ms = now;
}

void haves_sent_eager(struct haves *h, uint64_t now) {
  h->sent_ms = now;
}

int haves_eager(int holds_all, int we_choke, int interested) {
  if (holds_all) {
    return 0;
  }
  return !we_choke || !interested;
}

struct haves_due haves_due(const struct haves *h, uint64_t now,
                           int eager_behind) {
  struct haves_due d = {0, 0, 0};
  uint64_t soon = h->sent_ms + NODE_HAVE_MS;
  uint64_t all = h->epoch_ms + NODE_HAVE_SLOW_MS;
  if (h->n == 0) {
    return d;
  }
  if (now >= all && now >= soon) {
    d.all = 1;
    return d;
  }
  /* The slow round never comes before the prompt one would. */
  if (all < soon) {
    all = soon;
  }
  if (now >= soon) {
    d.eager = 1;
    d.wait_ms = all - now;
  } else {
    d.wait_ms = eager_behind && soon - now < all - now ? soon - now : all - now;
  }
  return d;
}
