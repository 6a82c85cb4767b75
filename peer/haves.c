/* When a swarm tells its peers of the chunks it verified: the have-log
 * and the pacing of HAVEs (haves.h has the rules). Pure: a clock passed
 * in, no sockets, no allocation. */
#include "peer/haves.h"

#include <assert.h>
#include <string.h>

_Static_assert(NODE_HAVE_BATCH <= PWIRE_HAVE_MAX,
               "a full have-log fits one HAVE");

void haves_init(struct haves *h) {
  memset(h, 0, sizeof(*h));
}

int haves_full(const struct haves *h) {
  return h->n == NODE_HAVE_BATCH;
}

void haves_add(struct haves *h, uint32_t chunk) {
  assert(h->n < NODE_HAVE_BATCH);
  h->log[h->n++] = chunk;
}

const uint32_t *haves_since(const struct haves *h, unsigned cursor,
                            unsigned *n) {
  assert(cursor <= h->n);
  *n = h->n - cursor;
  return h->log + cursor;
}

size_t haves_payload(const struct haves *h, unsigned cursor,
                     uint8_t out[HAVES_PAYLOAD_MAX]) {
  uint32_t chunks[NODE_HAVE_BATCH];
  unsigned n;
  const uint32_t *since = haves_since(h, cursor, &n);
  if (n == 0) {
    return 0;
  }
  memcpy(chunks, since, n * sizeof(*chunks));
  return pwire_have_put(out, chunks, pwire_have_sort(chunks, n));
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
