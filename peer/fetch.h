/* A swarm's manifest (fetch.c): asked of the peers that hold it in parts
 * and put together, answered when a peer asks us, and kept under the
 * home's manifests/ so that a resumed get needs no peer to start.
 *
 * How a manifest is fetched: its first NODE_MANIFEST_FIRST_BYTES (all of a
 * small one) from one peer, which tells its total; then the rest in up to
 * NODE_MANIFEST_WAYS stripes of at least NODE_MANIFEST_STRIPE_MIN bytes,
 * each from another peer while there are enough, each asked in parts of
 * at most PWIRE_MANIFEST_PART_BYTES, in order. A stripe whose peer leaves
 * or is late goes on from where it stopped with another. The bytes of
 * several peers cannot be told apart until the whole hashes to the content
 * ID: when it does not, nobody is blamed, and the fetch starts again from
 * one peer alone (as every fetch did before stripes), which is blamed
 * when its bytes do not hash either. The ID leaves out the publisher's
 * signature: a bad signature under the right ID is a sender's change,
 * blamed as such, until a second peer alone sends it too, which makes it
 * the publisher's (FETCH_INVALID).
 *
 * Pure bookkeeping: fetch.c decides what to ask of whom and checks what
 * arrives; it sends nothing (but fetch_answer) and only compares session
 * pointers. swarm.c sends the asks (struct fetch_ask), offers the sessions
 * that hold the manifest (fetch_offer), and decides what an outcome means
 * (a manifest to open, a sender to strike, a swarm to fail).
 *
 * Ownership: struct fetch is part of its swarm and owns the bytes fetched
 * so far (the manifest's total, at most MANIFEST_MAX_BYTES, allocated when
 * the first part tells it); it borrows the sessions asked, which swarm.c
 * takes back (fetch_left) before each goes.
 */
#ifndef SHOAL_PEER_FETCH_H
#define SHOAL_PEER_FETCH_H

#include <stdint.h>
#include <uv.h>

#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/limits.h"
#include "peer/rate.h"

struct session;

/* One stretch of the manifest, [start, end), asked of one session. */
struct fetch_stripe {
  struct session *from; /* asked of; NULL: waiting for a session */
  uint32_t start, end;  /* stripe 0's end is unknown (0) before its part */
  uint32_t got;         /* bytes in hand, from start */
  uint32_t asked;       /* bytes asked beyond got (the request in flight) */
  uint64_t sent_ms;     /* when that request went out */
};

struct fetch {
  uint8_t *bytes;    /* total bytes once the first part is in */
  uint32_t total;    /* the manifest's size, from the first part; 0 before */
  unsigned nstripes; /* 0: nothing asked; 1: the first part; then more */
  int single;        /* one session for the whole (after a mixed whole
                        that was not the content's) */
  unsigned badsig;   /* wholes from one session alone with the content's
                        ID and a bad signature */
  unsigned version;  /* FETCH_INVALID: the refused bytes' version */
  struct fetch_stripe st[1 + NODE_MANIFEST_WAYS];
};

/* A MANIFEST_REQ for swarm.c to send: to == NULL when there is none. */
struct fetch_ask {
  struct session *to;
  uint32_t offset, length;
};

/* What a MANIFEST_PART completed (fetch_on_part). */
enum fetch_outcome {
  FETCH_MORE = 0,     /* more to come; *ask may say what s is asked next */
  FETCH_NOT_OURS = 1, /* whole, but not the content's bytes (or not its
                         publisher's signature), all from s: s lied, and
                         the fetch waits for another source */
  FETCH_INVALID = 2,  /* the content's bytes, but no manifest: *err says
                         why (SHOAL_EVERSION: made by an older shoal) */
  FETCH_DONE = 3,     /* *out is the verified manifest, now the caller's */
  FETCH_RETRY = 4,    /* whole, not the content's bytes, from several
                         sessions: nobody to blame; the fetch starts again
                         from one session alone (offer them again) */
};

void fetch_init(struct fetch *f);
void fetch_free(struct fetch *f);

/* s (open, and holding the manifest) is free to be asked at now: fills
 * *ask and returns 1 when there is a part nobody is asked for (the first
 * part, or a stripe waiting) and s is not asked already; else returns 0. */
int fetch_offer(struct fetch *f, struct session *s, uint64_t now,
                struct fetch_ask *ask);
/* s is going: returns 1 when it was asked for a part (its stripe waits
 * for another session, which the caller offers), else 0. */
int fetch_left(struct fetch *f, const struct session *s);
/* A session whose part is overdue at now (more than timeout_ms since its
 * last request), else NULL. */
struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms);
/* How long a part may take: NODE_REQUEST_TIMEOUT_MS, or twice the time
 * of every byte asked at once at the download limit down (rate.h). */
uint64_t fetch_timeout_ms(const struct fetch *f,
                          const struct rate_bucket *down);

/* A MANIFEST_PART m from s at now, for the content content. Returns a
 * fetch_outcome, or an error for a part s had no business sending (s was
 * not asked, or the part is not the one asked: another offset, empty,
 * longer than asked, a total past MANIFEST_MAX_BYTES or other than the
 * first part's); SHOAL_ENOMEM. With FETCH_MORE, *ask is the next request
 * for s (ask->to NULL: none); after the first part the caller offers the
 * other sessions. *out and *err are set for FETCH_DONE and FETCH_INVALID
 * only. */
int fetch_on_part(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct session *s, const struct pwire_msg *m, uint64_t now,
                  struct fetch_ask *ask, struct manifest **out, int *err);
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
