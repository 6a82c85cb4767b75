/* What a swarm asks of its peers (requests.c): whether it is interested in
 * each, the block requests it keeps in flight to those that unchoke it,
 * and what becomes of them when a peer chokes, rejects or is too slow.
 *
 * Who calls what: swarm.c alone, on the messages and events that change
 * what may be asked (a have-map or HAVE, UNCHOKE, DATA, a verified chunk,
 * a session gone, the tick). requests.c calls down only: the picker, the
 * pacing rules and session.c's senders.
 */
#ifndef SHOAL_PEER_REQUESTS_H
#define SHOAL_PEER_REQUESTS_H

#include <stdint.h>

#include "common/pwire.h"

struct swarm;
struct session;

/* Sends INTERESTED or NOT_INTERESTED when s's interest changed: a session
 * is interested while the swarm runs and the picker says the remote has a
 * chunk we lack. */
void requests_interest(struct swarm *sw, struct session *s);
/* Tops up the requests in flight to s, when s unchokes us and we are
 * interested: about a second of its rate and four blocks more (pacing.h),
 * in batches of a quarter of that, in one write; none while the chunks
 * waiting for the disk hold NODE_MAX_PUT_BYTES. */
void requests_fill(struct swarm *sw, struct session *s);
/* Tops up every session of sw. */
void requests_fill_all(struct swarm *sw);
/* At now, gives back and cancels the requests older than the request
 * timeout, then tops up every session. */
void requests_expire(struct swarm *sw, uint64_t now);
/* s choked us: its requests are dropped by the remote and go back to the
 * picker. Returns 0 or the picker's error. */
int requests_choked(struct swarm *sw, struct session *s);
/* s unchoked us: ask. */
void requests_unchoked(struct swarm *sw, struct session *s);
/* s rejected the block m names (checked here: SHOAL_EINVAL for a block
 * outside the content); after NODE_REJECTS_CLOSE in a row s is closed. */
int requests_rejected(struct swarm *sw, struct session *s,
                      const struct pwire_msg *m);

#endif
