/* What a swarm asks of its peers: interest, the requests in flight, and
 * their timeouts (requests.h).
 *
 * How much is asked of a peer follows what it has been sending lately
 * (pacing_depth): a slow peer is not asked for more than it can deliver
 * before the request timeout, so its blocks are not asked of others again
 * as duplicates, and a fast one fills the pipe. docs/design.md ("Pacing:
 * the measurements behind the numbers") has the measurements behind them.
 */
#include "peer/requests.h"

#include "common/error.h"
#include "peer/internal.h"
#include "peer/pacing.h"

void requests_interest(struct swarm *sw, struct session *s) {
  int want = s->state == SESS_OPEN && sw->pk != NULL && s->in_picker &&
             sw->state == SW_RUNNING &&
             picker_interesting(sw->pk, (unsigned)s->slot);
  if (want == s->am_interested) {
    return;
  }
  s->am_interested = want;
  session_send_simple(s, want ? PWIRE_INTERESTED : PWIRE_NOT_INTERESTED);
}

/* Blocks to keep requested from one peer of sw under the node's download
 * limit (pacing_pipeline_cap). */
static unsigned pipeline_depth(const struct swarm *sw) {
  return pacing_pipeline_cap(sw->node->down_bucket.rate);
}

/* Blocks to keep requested from s: about a second of what it has been
 * sending lately (pacing_depth). */
static unsigned session_depth(const struct swarm *sw, const struct session *s) {
  uint64_t rate = meter_rate(&s->down_meter, node_now(sw->node));
  return pacing_depth(rate, sw->m->chunk_log2, pipeline_depth(sw));
}

/* The request timeout: NODE_REQUEST_TIMEOUT_MS, longer when what is in
 * flight takes longer than that to arrive: at the node's download limit,
 * or from a peer slower than its requests (at most
 * NODE_REQUEST_TIMEOUT_MAX_MS). */
static uint64_t request_timeout(const struct swarm *sw) {
  const struct rate_bucket *b = &sw->node->down_bucket;
  uint64_t now = node_now(sw->node);
  uint64_t bytes = 0, longest = 0;
  for (const struct session *x = sw->sessions; x != NULL; x = x->next) {
    unsigned out;
    uint64_t rate, t;
    if (x->state != SESS_OPEN || !x->in_picker || sw->pk == NULL) {
      continue;
    }
    out = picker_outstanding(sw->pk, (unsigned)x->slot);
    rate = meter_rate(&x->down_meter, now);
    if (out == 0 || rate == 0) {
      continue;
    }
    t = pacing_arrival_ms((uint64_t)out * PWIRE_BLOCK_BYTES, rate);
    longest = t > longest ? t : longest;
  }
  if (!rate_unlimited(b)) {
    /* The limit is the node's: count what every swarm may have in flight
     * from the peers that unchoke it. */
    for (const struct swarm *o = sw->node->swarms; o != NULL; o = o->next) {
      unsigned serving = 0;
      for (const struct session *x = o->sessions; x != NULL; x = x->next) {
        serving += x->state == SESS_OPEN && !x->peer_choking;
      }
      bytes += (uint64_t)pipeline_depth(o) * PWIRE_BLOCK_BYTES * serving;
    }
    uint64_t t = pacing_arrival_ms(bytes, b->rate);
    longest = t > longest ? t : longest;
  }
  return pacing_request_timeout(longest);
}

void requests_fill(struct swarm *sw, struct session *s) {
  struct picker_block blocks[NODE_PIPELINE];
  unsigned have, n, depth;
  if (s->state != SESS_OPEN || sw->pk == NULL || !s->in_picker ||
      s->peer_choking || !s->am_interested || sw->state != SW_RUNNING) {
    return;
  }
  /* Memory stays bounded when the disk is slower than the network: no new
   * requests while too many chunks wait to be hashed and written. */
  if (sw->put_bytes >= NODE_MAX_PUT_BYTES) {
    return;
  }
  have = picker_outstanding(sw->pk, (unsigned)s->slot);
  depth = session_depth(sw, s);
  picker_peer_rate(sw->pk, (unsigned)s->slot,
                   meter_rate(&s->down_meter, node_now(sw->node)));
  /* Top up in batches of a quarter of the pipeline (or whatever fits when
   * it is short), so that requests travel several to a write. */
  if (have >= depth || (have > 0 && depth - have < (depth + 3) / 4)) {
    return;
  }
  n = picker_next(sw->pk, (unsigned)s->slot, node_now(sw->node), blocks,
                  depth - have);
  (void)session_send_requests(s, blocks, n);
}

void requests_fill_all(struct swarm *sw) {
  for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
    s_next = s->next; /* a send may close s */
    requests_fill(sw, s);
  }
}

void requests_expire(struct swarm *sw, uint64_t now) {
  struct picker_block b[64];
  unsigned peers[64];
  unsigned n;
  if (sw->pk == NULL || sw->state != SW_RUNNING) {
    return;
  }
  n = picker_expire(sw->pk, now, request_timeout(sw), b, peers, 64);
  for (unsigned i = 0; i < n; i++) {
    for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
      s_next = s->next; /* a send may close s */
      if (s->slot == (int)peers[i] && s->state == SESS_OPEN) {
        (void)session_send_block(s, PWIRE_CANCEL, b[i].chunk, b[i].offset,
                                 b[i].length);
      }
    }
  }
  requests_fill_all(sw);
}

int requests_choked(struct swarm *sw, struct session *s) {
  int err;
  s->peer_choking = 1;
  s->rejects = 0; /* requests in transit come back rejected */
  if (s->in_picker) {
    /* Whatever was requested is dropped by the remote: give it back. */
    picker_peer_remove(sw->pk, (unsigned)s->slot);
    s->in_picker = 0;
    err = picker_peer_add(sw->pk, (unsigned)s->slot, s->have_map);
    if (err != 0) {
      return err;
    }
    s->in_picker = 1;
  }
  return 0;
}

void requests_unchoked(struct swarm *sw, struct session *s) {
  s->peer_choking = 0;
  s->rejects = 0;
  requests_fill(sw, s);
}

int requests_rejected(struct swarm *sw, struct session *s,
                      const struct pwire_msg *m) {
  if (sw->m == NULL ||
      pwire_check_block(sw->m, m->chunk, m->offset, m->length) != 0) {
    return SHOAL_EINVAL;
  }
  if (sw->pk != NULL && s->in_picker) {
    struct picker_block b = {m->chunk, m->offset, m->length};
    picker_block_rejected(sw->pk, (unsigned)s->slot, &b);
  }
  if (++s->rejects >= NODE_REJECTS_CLOSE) {
    /* Its copy changed or cannot be read: asking again is no use. */
    session_close(s, "it rejects every request");
  }
  return 0;
}
