/* A swarm's manifest (fetch.c): asked of one peer in parts and put
 * together, answered when a peer asks us, and kept under the home's
 * manifests/ so that a resumed get needs no peer to start.
 *
 * Who calls what: swarm.c alone, which decides when to fetch and what an
 * outcome means (a manifest to open, a sender to ban, a swarm to fail);
 * fetch.c calls nothing above it, only session_send to ask and to answer.
 *
 * Ownership: struct fetch is part of its swarm and owns the bytes fetched
 * so far (a buffer with the hard maximum MANIFEST_MAX_BYTES); it borrows
 * the session it asked, which swarm.c takes back (fetch_left) before that
 * session goes.
 */
#ifndef SHOAL_PEER_FETCH_H
#define SHOAL_PEER_FETCH_H

#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/rate.h"

struct session;

struct fetch {
  struct session *from; /* the session asked; NULL: no fetch under way */
  struct buf bytes;     /* the parts so far */
  unsigned version;     /* FETCH_INVALID: the refused bytes' version */
  uint32_t total;       /* the manifest's size, from the first part */
  uint64_t sent_ms;     /* when the last MANIFEST_REQ went out */
};

/* What a MANIFEST_PART completed (fetch_on_part). */
enum fetch_outcome {
  FETCH_MORE = 0,     /* the next part is asked for (or the send failed) */
  FETCH_NOT_OURS = 1, /* whole, but not the content's bytes: the sender
                         lied, and the fetch waits for another source */
  FETCH_INVALID = 2,  /* the content's bytes, but no manifest: *err says
                         why (SHOAL_EVERSION: made by an older shoal) */
  FETCH_DONE = 3,     /* *out is the verified manifest, now the caller's */
};

void fetch_init(struct fetch *f);
void fetch_free(struct fetch *f);

/* Asks s (open, and holding the manifest) for it from the start at now,
 * unless a fetch is under way. */
void fetch_start(struct fetch *f, struct session *s, uint64_t now);
/* s is going: returns 1 when it was the one asked (the fetch is dropped,
 * and the caller asks another), else 0. */
int fetch_left(struct fetch *f, const struct session *s);
/* The session asked, when its part is overdue at now (more than
 * timeout_ms since the last request), else NULL. */
struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms);
/* How long a part may take: NODE_REQUEST_TIMEOUT_MS, or twice its time at
 * the download limit down (rate.h). */
uint64_t fetch_timeout_ms(const struct rate_bucket *down);

/* A MANIFEST_PART m from s at now, for the content content. Returns a
 * fetch_outcome, or an error for a part s had no business sending (not
 * the one asked, a part out of order or past its total, an empty part, or
 * more than MANIFEST_MAX_BYTES) or the failed send of the next request.
 * *out and *err are set for FETCH_DONE and FETCH_INVALID only. */
int fetch_on_part(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct session *s, const struct pwire_msg *m, uint64_t now,
                  struct manifest **out, int *err);
/* Answers s's MANIFEST_REQ req with the part of m it asks for. Returns
 * session_send's result, or SHOAL_EINVAL for an offset past the end. */
int fetch_answer(const struct manifest *m, struct session *s,
                 const struct pwire_msg *req);

/* The manifest of content saved under home/manifests, or NULL when there
 * is none, or none that hashes to content and decodes; the caller owns it.
 * old_version (may be NULL) receives 0, or the version of saved bytes that
 * hash to content but were refused as another manifest version (a content
 * of an older shoal). Reads on the loop: it is done once, before any
 * transfer. */
struct manifest *fetch_load(const char *home, const char *content_text,
                            const uint8_t content[MANIFEST_ID_BYTES],
                            unsigned *old_version);
/* Saves a copy of m's bytes (m is borrowed for the call) under
 * home/manifests on loop's thread pool: a temporary file, fsync, rename. A
 * failure is logged, not returned: a get can fetch the manifest again. */
void fetch_save(uv_loop_t *loop, const char *home, const char *content_text,
                const struct manifest *m);

#endif
