/* The in-process tracker of the tests (see intracker.h). */
#include "tests/lib/intracker.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/testutil.h"

int intracker_start(struct intracker *t, uv_loop_t *loop,
                    const struct tracker_config *c, uint64_t key_seed) {
  struct tracker_config cfg = *c;
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss);
  memset(t, 0, sizeof(*t));
  tu_identity(&t->key, key_seed);
  snprintf(cfg.listen[0], sizeof(cfg.listen[0]), "127.0.0.1:0");
  cfg.n_listen = 1;
  t->trk = calloc(1, sizeof(*t->trk));
  if (t->trk == NULL) {
    identity_close(&t->key);
    return -1;
  }
  if (tracker_init(t->trk, loop, &cfg, &t->key) != 0) {
    free(t->trk);
    t->trk = NULL;
    identity_close(&t->key);
    return -1;
  }
  if (server_start(t->trk) != 0 ||
      uv_tcp_getsockname(&t->trk->listeners[0], (struct sockaddr *)&ss, &len) !=
          0) {
    intracker_close(t);
    return -1;
  }
  snprintf(t->link.host, sizeof(t->link.host), "127.0.0.1");
  t->link.port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
  return 0;
}

void intracker_stop(struct intracker *t) {
  server_stop(t->trk);
}

void intracker_close(struct intracker *t) {
  if (t->trk != NULL) {
    tracker_close(t->trk);
    free(t->trk);
    t->trk = NULL;
    identity_close(&t->key);
  }
}

static void on_looked_up(void *arg, int err, int asker_in_swarm) {
  int *done = arg;
  (void)asker_in_swarm;
  *done = err == 0 ? 1 : -1;
}

int intracker_lists_as(struct intracker *t, const uint8_t content[32],
                       const uint8_t pk[32], int seeding) {
  struct tmsg_lookup q;
  struct tmsg_lookup_ok *r = malloc(sizeof(*r));
  struct registry_lookup_op *op = malloc(sizeof(*op));
  int done = 0;
  int found = 0;
  memset(&q, 0, sizeof(q));
  memcpy(q.content, content, 32);
  q.want = TMSG_MAX_PEERS;
  if (r != NULL && op != NULL) {
    /* The in-process tracker's memory store answers at once. */
    registry_lookup(&t->trk->reg, op, &q, r, on_looked_up, &done);
    for (unsigned i = 0; done == 1 && i < r->count; i++) {
      if (memcmp(r->peers[i].pk, pk, 32) == 0 &&
          (seeding < 0 || (r->peers[i].seeding != 0) == seeding)) {
        found = 1;
      }
    }
  }
  free(r);
  free(op);
  return found;
}

int intracker_lists(struct intracker *t, const uint8_t content[32],
                    const uint8_t pk[32]) {
  return intracker_lists_as(t, content, pk, -1);
}

unsigned intracker_conns_from_loopback(const struct intracker *t) {
  uint8_t a[16] = {127, 0, 0, 1};
  return addrcount_get(&t->trk->per_addr, 4, a);
}
