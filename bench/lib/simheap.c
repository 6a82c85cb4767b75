/* The swarm simulator's event queue: a binary min-heap on (time, push
 * order) (simheap.h). */
#include "bench/lib/simheap.h"

#include <stdlib.h>

#include "common/error.h"

void simheap_init(struct simheap *h) {
  h->ev = NULL;
  h->n = 0;
  h->cap = 0;
  h->next_seq = 0;
}

void simheap_close(struct simheap *h) {
  free(h->ev);
  simheap_init(h);
}

static int before(const struct simev *x, const struct simev *y) {
  return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

int simheap_push(struct simheap *h, const struct simev *e) {
  size_t i;
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 1024;
    struct simev *grown;
    if (h->cap >= SIMHEAP_MAX) {
      return SHOAL_ETOOBIG;
    }
    if (cap > SIMHEAP_MAX) {
      cap = SIMHEAP_MAX;
    }
    grown = realloc(h->ev, cap * sizeof(*grown));
    if (grown == NULL) {
      return SHOAL_ENOMEM;
    }
    h->ev = grown;
    h->cap = cap;
  }
  /* Sift up: the new event rises past every later parent. */
  i = h->n++;
  h->ev[i] = *e;
  h->ev[i].seq = h->next_seq++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    struct simev tmp;
    if (!before(&h->ev[i], &h->ev[parent])) {
      break;
    }
    tmp = h->ev[i];
    h->ev[i] = h->ev[parent];
    h->ev[parent] = tmp;
    i = parent;
  }
  return 0;
}

int simheap_pop(struct simheap *h, struct simev *out) {
  size_t i = 0;
  struct simev last;
  if (h->n == 0) {
    return 0;
  }
  *out = h->ev[0];
  last = h->ev[--h->n];
  /* Sift down the last event from the root, moving the earlier child up
   * into the hole until the event fits. */
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = l;
    if (l >= h->n) {
      break;
    }
    if (r < h->n && before(&h->ev[r], &h->ev[l])) {
      m = r;
    }
    if (!before(&h->ev[m], &last)) {
      break;
    }
    h->ev[i] = h->ev[m];
    i = m;
  }
  if (h->n > 0) {
    h->ev[i] = last;
  }
  return 1;
}

const struct simev *simheap_peek(const struct simheap *h) {
  return h->n > 0 ? &h->ev[0] : NULL;
}
