/* The tracker's context: making everything in struct tracker but the
 * network (server.c starts that), and releasing it again. */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/textid.h"
#include "tracker/hashtab.h"
#include "tracker/tracker.h"

int tracker_init(struct tracker *t, uv_loop_t *loop,
                 const struct tracker_config *cfg, const struct identity *id) {
  int err;

  memset(t, 0, sizeof(*t));
  t->loop = loop;
  t->cfg = *cfg;
  t->id = *id;
  textid_encode(TEXTID_KEY, id->pk, t->id_text);
  t->seq = envelope_seq_start(clock_wall_ms());
  metrics_init(&t->metrics, clock_wall_ms());
  buf_init(&t->out, FRAME_MAX_DEFAULT);
  err = replay_guard_init(&t->guard, TRACKER_GUARD_SENDERS,
                          cfg->window_ms ? cfg->window_ms
                                         : ENVELOPE_WINDOW_MS_DEFAULT);
  if (err != 0) {
    goto fail;
  }
  err = catalog_init(&t->cat, cfg->catalog_max, cfg->catalog_ttl_s);
  if (err != 0) {
    goto fail;
  }
  if (cfg->store[0] != '\0') {
    err = store_redis_new(
        loop, cfg->store, cfg->catalog_max, cfg->catalog_ttl_s,
        cfg->window_ms ? cfg->window_ms : ENVELOPE_WINDOW_MS_DEFAULT,
        &t->store);
    if (err != 0) {
      goto fail;
    }
  } else {
    t->store = store_mem_new(&t->cat, &t->guard);
    if (t->store == NULL) {
      err = SHOAL_ENOMEM;
      goto fail;
    }
  }
  t->metrics.store_backend = t->store->backend;
  t->metrics.store_up = t->store->up;
  registry_init(&t->reg, t->store, cfg->interval_s, cfg->max_peers,
                cfg->max_items);
  err = ratelimit_init(&t->rl, cfg->rate, cfg->burst, RATELIMIT_SLOTS_DEFAULT);
  if (err != 0) {
    goto fail;
  }
  err = addrcount_init(&t->per_addr, cfg->max_conns, cfg->max_per_addr);
  if (err != 0) {
    goto fail;
  }
  t->cache = calloc(TRACKER_CACHE_SLOTS, sizeof(*t->cache));
  if (t->cache == NULL) {
    err = SHOAL_ENOMEM;
    goto fail;
  }
  hashtab_keygen(t->cache_key);
  return 0;

fail:
  tracker_close(t);
  return err;
}

void tracker_close(struct tracker *t) {
  /* The store first: freeing it answers every call still waiting, and
   * those answers finish requests with the rest of t. */
  if (t->store != NULL) {
    t->store->ops->free(t->store);
    t->store = NULL;
  }
  if (t->cache != NULL) {
    for (unsigned i = 0; i < TRACKER_CACHE_SLOTS; i++) {
      free(t->cache[i].frame);
      free(t->cache[i].pks);
    }
    free(t->cache);
    t->cache = NULL;
  }
  addrcount_close(&t->per_addr);
  ratelimit_close(&t->rl);
  catalog_close(&t->cat);
  replay_guard_close(&t->guard);
  buf_free(&t->out);
  identity_close(&t->id);
}
