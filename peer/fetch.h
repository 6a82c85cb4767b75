/* A swarm's manifest (fetch.c): asked of the peers that hold it in parts
 * and put together, answered when a peer asks us, and kept under the
 * home's manifests/ so that a resumed get needs no peer to start.
 *
 * How a manifest is fetched: its first PWIRE_MANIFEST_PART_BYTES from one
 * peer, which tells its total; that is all of a file's manifest (at most
 * 2,048 hashes). The rest of a larger one (a folder's) is split into
 * units of about 1/NODE_MANIFEST_UNITS of it (at least
 * NODE_MANIFEST_UNIT_MIN, at most a part). A free peer that holds the
 * manifest is asked for the lowest unit nobody is asked for, up to
 * NODE_MANIFEST_WAYS peers at once, so a faster peer takes more units;
 * when every unit is asked, a free peer is asked again for the one asked
 * longest ago of one other (at least NODE_MANIFEST_AGAIN_MS ago), and the
 * first answer counts. A unit whose peer leaves or is late is asked of
 * another from its start.
 *
 * Whose bytes they were is known only when one peer sent them all: then
 * a whole that does not hash to the content ID bans it. Bytes of several
 * peers that do not hash blame nobody, and the fetch starts again, all of
 * it from one peer at a time. The ID leaves out the publisher's signature:
 * a bad signature under the right ID is a sender's change, blamed as
 * such, until a second peer alone sends it too, which makes it the
 * publisher's (FETCH_INVALID).
 *
 * Pure bookkeeping: fetch.c decides what to ask of whom and checks what
 * arrives; it sends nothing (but fetch_answer) and only compares session
 * pointers. swarm.c sends the asks (struct fetch_ask), offers the sessions
 * that hold the manifest (fetch_offer), and decides what an outcome means
 * (a manifest to open, a sender to strike, a swarm to fail).
 *
 * Ownership: struct fetch is part of its swarm and owns the bytes fetched
 * so far and the table of units (allocated when the first part tells the
 * total, at most MANIFEST_MAX_BYTES); it borrows the sessions asked, which
 * swarm.c takes back (fetch_left) before each goes.
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

/* One stretch of the manifest, [start, start + len). */
struct fetch_unit {
  uint32_t start, len;
  uint8_t done;      /* its bytes are in */
  uint8_t askers;    /* sessions asked for it and not yet answered */
  uint64_t first_ms; /* when it was first asked */
};

/* A session asked for a unit, and how far it got. */
struct fetch_req {
  struct session *to; /* NULL: a free record */
  uint32_t unit;
  uint32_t got;     /* bytes of the unit it sent */
  uint32_t asked;   /* bytes asked beyond got (the request in flight) */
  uint64_t sent_ms; /* when that request went out */
};

struct fetch {
  uint8_t *bytes; /* total bytes, once the first part is in */
  uint32_t total; /* the manifest's size, from the first part; 0 before */
  struct fetch_unit *units; /* nunits of them, once the total is known */
  uint32_t nunits;
  struct fetch_req req[NODE_MANIFEST_WAYS];
  struct session *first; /* the first part's sender */
  int mixed;        /* bytes of more than one session (or of one that left) */
  int single;       /* one session at a time, after a mixed whole that was not
                       the content's */
  unsigned badsig;  /* lone senders of the right ID with a bad signature */
  unsigned version; /* FETCH_INVALID: the refused bytes' version */
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
  FETCH_RETRY = 4,    /* whole, but not the content's, from several
                         sessions: nobody to blame; the fetch starts again
                         from one session at a time (offer them again) */
};

void fetch_init(struct fetch *f);
void fetch_free(struct fetch *f);

/* s (open, and holding the manifest) may be asked at now: fills *ask and
 * returns 1 when s is not asked already and there is a part for it (the
 * first, a unit nobody is asked for, or one to ask again); else 0. */
int fetch_offer(struct fetch *f, struct session *s, uint64_t now,
                struct fetch_ask *ask);
/* s is going: returns 1 when it was asked for a part (which waits for
 * another session: the caller offers them), else 0. */
int fetch_left(struct fetch *f, const struct session *s);
/* A session whose part is overdue at now (more than timeout_ms since its
 * last request), else NULL. */
struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms);
/* How long a part may take: NODE_REQUEST_TIMEOUT_MS, or twice the time of
 * every byte asked at once at the download limit down (rate.h). */
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
