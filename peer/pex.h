/* Peer exchange: peers of a swarm tell each other where the others are,
 * with records that cannot point the swarm anywhere their peers never were.
 *
 * A record is an address certificate (common/tmsg.h): the tracker's own
 * signed statement that a key announced from an address and port. A node
 * asks its tracker for one in an announce when its own is missing or half
 * spent (pex_want_cert), keeps the one the reply brings (pex_take_cert),
 * and sends it, unaltered, as the first PEX message of every session with
 * a peer that takes them (hello flag PWIRE_HELLO_PEX), together with the
 * records of other peers its swarm holds; later messages carry the records
 * the session has not been sent, at most one every PEX_SEND_MS. A receiver
 * checks every record (pex_accept: the signer is the swarm's tracker key,
 * the signature, the fields, the age) before it keeps or dials it, keeps at
 * most PEX_MAX_KEPT per swarm, and closes a session that sends more than
 * its allowance or a record whose signature does not verify under a
 * trusted key (an honest peer passes on only records it checked). A swarm
 * that downloads dials the records' addresses it has not met, expecting
 * the record's key in the hello, so a record cannot make it talk to
 * anyone else. Addresses given on the command line (--peer) are dialled
 * too, with no key expected.
 *
 * The store and the allowance are plain data (pex_store_*, pex_accept,
 * pex_collect), tested alone; the pex_* calls on swarms and sessions are
 * the glue swarm.c and announce.c use. Everything runs on the loop thread.
 */
#ifndef SHOAL_PEER_PEX_H
#define SHOAL_PEER_PEX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/identity.h"
#include "common/pwire.h"
#include "common/tmsg.h"
#include "peer/limits.h"

struct node;
struct swarm;
struct session;

/* One of our own certificates: the last one a tracker key signed for us. */
struct pex_own {
  uint8_t tracker[IDENTITY_PK_BYTES];
  uint8_t cert[TMSG_CERT_BYTES];
  uint64_t issued_ms; /* wall clock; 0: none yet */
  uint32_t lifetime_s;
  uint64_t asked_ms; /* loop clock of the last announce that asked */
  int used;
};

/* A checked record a swarm keeps. */
struct pex_record {
  uint8_t raw[TMSG_CERT_BYTES]; /* as received, passed on unaltered */
  struct tmsg_cert c;
  uint64_t seq;          /* the store's count when it came in */
  uint64_t news_ms;      /* issue time of the record last passed on as news
                            (pex_store_add) */
  uint64_t next_dial_ms; /* loop clock; 0: dial when needed */
  uint32_t backoff_ms;
};

/* A swarm's records: at most PEX_MAX_KEPT, one per peer key. */
struct pex_store {
  struct pex_record *r;
  unsigned n, cap;
  uint64_t seq; /* the last record's seq; 0: none yet */
};

/* A session's exchange state (zeroed with the session). */
struct pex_session {
  uint64_t sent_upto;       /* records of seq <= this were considered */
  uint64_t own_sent_issued; /* our certificate sent, by issue time */
  uint64_t last_sent_ms;    /* loop clock of our last PEX */
  /* Wall clock when the session opened: after its first PEX it is passed
   * on only records that were news later (pex_collect). */
  uint64_t opened_wall_ms;
  int sent_any;
  unsigned credit; /* PEX messages the remote may still send */
  uint64_t credit_ms;
  int credit_init;
};

/* An address given with --peer, dialled while not connected. */
struct pex_given {
  struct sockaddr_storage addr;
  uint64_t next_dial_ms;
  uint32_t backoff_ms;
};

/* What pex_accept made of one message. */
struct pex_result {
  unsigned kept;    /* new, or newer than the one held */
  unsigned old;     /* not newer than the one held, or our own */
  unsigned refused; /* failed tmsg_cert_open (not a violation) */
  int first_error;  /* the first refusal's error */
};

/* The store. */
void pex_store_init(struct pex_store *st);
void pex_store_close(struct pex_store *st);
/* Keeps a checked record (raw as received, c its fields): a peer's record
 * replaces the one held for it when it was issued later, else it is
 * ignored (0); a new peer takes a free place, or the oldest record's (by
 * issue time) once PEX_MAX_KEPT are held. Returns 1 when the record is
 * news to pass on (a new peer, a peer at a new place, or a renewal half
 * a lifetime after the record last passed on), 0 when it is not (a
 * renewal at the same place is kept quietly), or SHOAL_ENOMEM. */
int pex_store_add(struct pex_store *st, const uint8_t raw[TMSG_CERT_BYTES],
                  const struct tmsg_cert *c);
/* Drops the records that ended before now_wall_ms. Returns how many. */
unsigned pex_store_expire(struct pex_store *st, uint64_t now_wall_ms);
/* The record held for a peer key, or NULL. */
struct pex_record *pex_store_find(struct pex_store *st,
                                  const uint8_t pk[IDENTITY_PK_BYTES]);

/* Takes one of the remote's PEX messages against its allowance (PEX_BURST,
 * one more every PEX_SEND_MS, at most PEX_BURST). Returns 0, or
 * SHOAL_ERATE when it has none left (a violation). */
int pex_take_credit(struct pex_session *ps, uint64_t now_ms);
/* Checks every record of a PEX message m (pwire_decode checked its shape)
 * under pol and keeps the good ones in st, except records of self. res
 * says what became of them. Returns 0, SHOAL_EBADSIG when a record signed
 * by a trusted key does not verify (a violation: the session closes; the
 * records before it are kept), or SHOAL_ENOMEM. */
int pex_accept(struct pex_store *st, const struct pwire_msg *m,
               const struct tmsg_cert_policy *pol,
               const uint8_t self[IDENTITY_PK_BYTES], struct pex_result *res);
/* Fills out (room for max records, TMSG_CERT_BYTES each) with what a
 * session has not been sent: own (NULL: none) unless own_issued was sent
 * already, then the records of st above ps->sent_upto in the order they
 * came, leaving out those of the receiver's key and, once the session was
 * sent a message (ps->sent_any), those that were news (news_ms) before it
 * opened (ps->opened_wall_ms): a peer in the swarm then was as plain to
 * the other side, from its tracker and its sessions' first messages.
 * Moves ps's marks past what it returns and what it left out. Returns
 * the number of records. */
unsigned pex_collect(const struct pex_store *st, struct pex_session *ps,
                     const uint8_t *own, uint64_t own_issued,
                     const uint8_t receiver[IDENTITY_PK_BYTES], uint8_t *out,
                     unsigned max);

/* Our own certificates (the node's). Whether the next announce to the
 * tracker of key (NULL: not known yet) should ask for a certificate: ours
 * is missing or older than half its life, and none was asked for in the
 * last PEX_ASK_MS; a yes counts as asking. */
int pex_want_cert(struct node *n, const uint8_t *key);
/* A certificate an announce reply brought from the tracker of key: kept
 * when it opens under key and names this node. */
void pex_take_cert(struct node *n, const uint8_t key[IDENTITY_PK_BYTES],
                   const uint8_t cert[TMSG_CERT_BYTES]);

/* The swarm's side. */
/* A session opened: its first PEX goes out (our certificate and the
 * records held) when the remote takes them. */
void pex_session_open(struct swarm *sw, struct session *s);
/* A PEX from s: checked and kept, and the new records dialled when the
 * swarm needs peers. An error closes s. */
int pex_on_message(struct swarm *sw, struct session *s,
                   const struct pwire_msg *m);
/* Once a second: the records each session has not had go out (within its
 * rate), ended records are dropped, and a swarm that needs peers dials. */
void pex_tick(struct swarm *sw, uint64_t now);
/* Keeps sa (a --peer address) for sw and dials it now. Returns 0,
 * SHOAL_ETOOBIG (PEX_GIVEN_MAX held), SHOAL_ENOMEM or session_connect's
 * error. */
int pex_add_peer(struct swarm *sw, const struct sockaddr *sa);
/* Frees what sw's exchange holds. */
void pex_swarm_free(struct swarm *sw);

#endif
