/* The peer core's shared structs: the node, its swarms and their sessions,
 * with the two hook tables by which sessions and swarms call up.
 *
 * Every file of the core includes this (docs/design.md, "Which way calls
 * go"). One loop thread touches all of this; nothing here is locked.
 */
#ifndef SHOAL_PEER_INTERNAL_H
#define SHOAL_PEER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "common/replay.h"
#include "peer/announce.h"
#include "peer/bans.h"
#include "peer/choker.h"
#include "peer/fetch.h"
#include "peer/haves.h"
#include "peer/limits.h"
#include "peer/node.h"
#include "peer/pacing.h"
#include "peer/partial.h"
#include "peer/pex.h"
#include "peer/picker.h"
#include "peer/rate.h"
#include "peer/storage.h"
#include "peer/suspect.h"
#include "peer/tracker_client.h"

#ifndef container_of
#define container_of(ptr, type, member)                                        \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

struct swarm;
struct session;
struct recheck;
struct tracker_share; /* node.c: a tracker client its swarms share */

/* A block a remote peer asked us for. */
struct upreq {
  uint32_t chunk, offset, length;
};

struct readreq;
struct wreq;     /* session.c: a frame to write */
struct seal_job; /* session.c: DATA frames being sealed on the pool */

/* A session's state; session_set_state (session.c) alone changes it, along
 * the table session_state_allowed holds:
 *
 *   CONNECTING -> HELLO_WAIT (TCP up), CLOSING
 *   HELLO_WAIT -> OPEN (hellos done), CLOSING
 *   OPEN       -> CLOSING
 *
 * A dialled session starts CONNECTING, an accepted one HELLO_WAIT. */
enum session_state {
  SESS_CONNECTING, /* we dialled; TCP not up yet */
  SESS_HELLO_WAIT, /* waiting for the other side's hello */
  SESS_OPEN,       /* hellos done; messages flow */
  SESS_CLOSING,    /* uv_close called; detached from its swarm */
};
#define SESS_NSTATES 4

struct session {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  struct node *node;
  struct swarm *sw;     /* NULL until an accepted hello names a swarm */
  struct session *next; /* in the swarm's list, or the node's pending */
  struct session **pprev;
  int slot; /* picker peer id, -1 before the swarm takes it */
  int initiator;
  enum session_state state;
  int have_expect;
  uint8_t expect_pk[IDENTITY_PK_BYTES]; /* what the tracker listed */
  uint8_t remote_pk[IDENTITY_PK_BYTES];
  char remote_short[TEXTID_SHORT_CHARS + 1];
  char addr_text[64];
  struct sockaddr_storage addr;
  struct pwire_eph eph;
  struct pwire_session ps;
  struct frame_decoder dec;
  uint8_t remote_flags;
  uint16_t remote_port;

  /* Peer-wire state. */
  int am_choking, am_interested;
  int peer_choking, peer_interested;
  int sent_have_map;
  unsigned have_at;  /* entries of the swarm's have-log sent to this peer */
  uint8_t *have_map; /* the remote's, raw until the manifest is known */
  size_t have_map_len;
  int have_map_checked; /* checked against the manifest, in the picker */
  uint32_t remote_have; /* chunks the remote has */
  int in_picker;

  /* MANIFEST_REQs sent to this peer and not yet answered: an answer to
   * none is a violation, a late one (the fetch has moved on) is dropped. */
  unsigned manifest_asked;

  /* Uploads: the remote's requests, oldest first. */
  struct upreq upq[NODE_MAX_REMOTE_REQUESTS];
  unsigned upq_head, upq_len;
  unsigned reading; /* storage_reads for this peer in flight */
  struct readreq *reads[NODE_READS_IN_FLIGHT]; /* those reads; NULL: free */
  /* DATA frames sealed on the thread pool (node->crypto_on_pool): the batch
   * being sealed (NULL: none), the blocks read since, waiting for the next
   * batch, and the frames sealed on the loop meanwhile, which go out after
   * the batch: its counters come first. seal_bytes: the blocks' bytes in
   * the batch and waiting. */
  struct seal_job *sealing;
  struct wreq *to_seal, **to_seal_tail;
  struct wreq *held, **held_tail;
  size_t seal_bytes;

  uint64_t up_bytes, down_bytes;
  struct rate_meter down_meter; /* from this peer, for tit-for-tat */
  struct rate_meter up_meter;   /* DATA to this peer, for pacing_cap */
  uint64_t pacing;              /* SO_MAX_PACING_RATE set; 0: none */
  uint32_t notsent;             /* TCP_NOTSENT_LOWAT set on the socket */
  uint32_t sndbuf;              /* send buffer asked of the kernel (twice
                                   the SO_SNDBUF value passed) */
  uint64_t last_send_ms, last_recv_ms, started_ms;
  uint64_t unchoked_at_ms, choked_at_ms;
  int optimistic;
  unsigned rejects;       /* REJECTs in a row from this peer */
  struct pex_session pex; /* peer exchange with this peer (pex.c) */
  int refs;               /* callbacks in flight that point here */
  int closed;             /* uv_close done */
};

/* A swarm's state; swarm_set_state (swarm.c) alone changes it, along the
 * table swarm_state_allowed holds:
 *
 *   NEW       -> FETCHING (a get), SEEDING (a share)
 *   FETCHING  -> OPENING (the manifest is verified)
 *   OPENING   -> RUNNING (the storage is ready), SEEDING (DIR/NAME was
 *                already there, and a check found it whole: it is seeded
 *                as a source)
 *   RUNNING   -> FINISHING (every chunk verified)
 *   FINISHING -> SEEDING (in place)
 *   any of those -> FAILED (swarm_fail), STOPPING (node_stop)
 *   any of those, and FAILED -> REMOVING (node_remove)
 *
 * STOPPING and REMOVING are the ends. A failed swarm stays on the node's
 * list, failed, until it is removed or the node is freed. A removing swarm
 * is still on the list, but nothing finds it (swarm_find), ticks it or
 * reports on it; node.c unlinks and frees it once nothing points at it. */
enum swarm_state {
  SW_NEW,       /* made; its storage and schedule not started */
  SW_FETCHING,  /* waiting for the manifest */
  SW_OPENING,   /* storage opening / re-checking */
  SW_RUNNING,   /* downloading */
  SW_FINISHING, /* storage_finish running */
  SW_SEEDING,   /* holds everything */
  SW_FAILED,    /* gave up */
  SW_STOPPING,  /* the node is stopping */
  SW_REMOVING,  /* node_remove: being taken out of the node */
};
#define SW_NSTATES 9

struct swarm {
  struct node *node;
  struct swarm *next;
  enum swarm_state state;
  int is_source;  /* shared from our own files */
  int seed_after; /* keep serving after completion */
  uint8_t content[MANIFEST_ID_BYTES];
  char content_text[TEXTID_STRLEN];
  char name[MANIFEST_MAX_SEGMENT + 1];
  uint64_t size_hint;
  char *dir;
  struct manifest *m;
  struct storage *st;
  struct picker *pk;
  struct recheck *rc; /* the check of a copy already in place, while it
                         runs (recheck.h) */

  struct session *sessions;
  unsigned nsessions;
  int name_given; /* name came from a link, so the manifest must match */
  uint8_t slots_used[PICKER_MAX_PEERS];

  struct fetch mf; /* the manifest from a peer (fetch.c) */

  /* Chunks verified since every session was last told, and when HAVEs
   * went out (haves.c); each session's have_at says how many entries of
   * the log it was sent. */
  struct haves haves;

  struct partial *partials; /* chunks being assembled (partial.c) */
  struct suspect *suspects; /* failed chunks' senders (suspect.c) */
  struct ban *bans;         /* strikes and bans (bans.c) */
  unsigned puts_in_flight;
  uint64_t put_bytes; /* bytes of those chunks */

  /* Tracker schedule (announce.c). */
  struct announce an;

  /* Peer exchange (pex.c): the records other peers sent, the addresses
   * given with --peer, and when records were last dialled. */
  struct pex_store pex;
  struct pex_given *given;
  unsigned ngiven;
  uint64_t pex_dial_ms;

  int ever_met_peer; /* a session of this swarm opened, ever */
  uint64_t started_ms;
  uint64_t complete_ms;

  struct choker ch; /* its clock; the decisions are choker.c's */

  struct rate_meter down_meter;
  uint64_t up_bytes, down_bytes;
  uint64_t resumed_bytes;
  int refs;
  unsigned dial_failures; /* sessions we dialled that never opened */
  int warned_unreachable;
  uint64_t source_checked_ms; /* when a share's files were last checked */
  uint64_t unsourced_ms;      /* since when some missing chunk has no
                                 connected source (0: it has) */
  int warned_unsourced;
  int progress_peers;     /* the last progress event counted sessions */
  uint64_t progress_ms;   /* when a chunk last verified (or start) */
  uint64_t progress_have; /* verified bytes then */

  /* node_remove (node.c): what comes when the swarm is gone, until when
   * "stopped" may keep it, whether its tracker client and timers were let
   * go, and how many of its closes (storage, timers) are still under
   * way. */
  void (*remove_cb)(void *arg);
  void *remove_arg;
  uint64_t remove_deadline;
  int remove_released;
  unsigned remove_closing;
};

/* What a session tells the peer above it, and asks of it: the one way
 * session.c reaches swarm.c and node.c, which are above it (session.c calls
 * no function of theirs). node.c fills one table for the node with their
 * functions (node_new); each entry is named after what it is for. */
struct session_up {
  /* swarm.c: the swarm of the node that shares content and is neither
   * failed, stopping nor being removed, or NULL (an accepted session's
   * hello). */
  struct swarm *(*find)(struct node *n, const uint8_t content[32]);
  /* swarm.c: s joins sw; refused (SHOAL_EBUSY) beyond --max-peers. */
  int (*attach)(struct swarm *sw, struct session *s);
  /* swarm.c: s opened (the hellos are done). */
  void (*opened)(struct swarm *sw, struct session *s);
  /* swarm.c: where the len bytes of a DATA block (chunk, offset) from s
   * go, when it is a block asked of s and not yet had: its place in the
   * chunk being assembled, which the session copies it into still
   * encrypted (pwire_open_defer; the message then carries its
   * pwire_sealed, and the chunk's check opens it); NULL: the session
   * decrypts it into its own buffer (then message() copies it if it is
   * wanted). */
  uint8_t *(*data_dest)(struct swarm *sw, struct session *s, uint32_t chunk,
                        uint32_t offset, size_t len);
  /* swarm.c: a message from s; an error closes s. */
  int (*message)(struct swarm *sw, struct session *s,
                 const struct pwire_msg *m);
  /* swarm.c: s, which we dialled, is closing before its hellos were
   * done, for why. */
  void (*dial_failed)(struct swarm *sw, const struct session *s,
                      const char *why);
  /* swarm.c: s is closing and leaves sw. */
  void (*detach)(struct swarm *sw, struct session *s);
  /* swarm.c: len bytes of DATA went out to s. */
  void (*uploaded)(struct swarm *sw, struct session *s, uint32_t len);
  /* swarm.c: a block read for a share found its file changed. */
  void (*source_changed)(struct swarm *sw);
  /* node.c: bytes read from a peer, charged to the download limit (which
   * may pause every session). */
  void (*charge_download)(struct node *n, size_t bytes);
  /* node.c: the upload limit is short: pump every session once it has
   * refilled. */
  void (*pump_later)(struct node *n);
  /* node.c: pump every session now (a node-wide read slot came free). */
  void (*pump_all)(struct node *n);
};

/* What a swarm tells those above it: the one way swarm.c reaches
 * announce.c and node.c (it calls no function of theirs). node.c fills it
 * (node_new). */
struct swarm_up {
  /* announce.c: the swarm failed: its schedule stops and says "stopped"
   * (announce_stop). */
  void (*failed)(struct swarm *sw);
  /* announce.c: the swarm completed: "completed" (announce_completed). */
  void (*completed)(struct swarm *sw);
  /* announce.c: the swarm made room and wants peers: a lookup soon
   * (announce_lookup_soon). */
  void (*lookup_soon)(struct swarm *sw);
  /* node.c: some HAVEs may go out in ms (the node's HAVE timer). */
  void (*have_later)(struct node *n, uint64_t ms);
};

struct node {
  uv_loop_t *loop;
  const struct session_up *session_up; /* how sessions call up */
  const struct swarm_up *swarm_up;     /* how swarms call up */
  struct node_config cfg;
  char *home;
  const struct identity *id;
  node_event_cb cb;
  void *cb_arg;
  uv_tcp_t listener;
  int listening;
  uint16_t port;
  int accepts_v4, accepts_v6; /* the listener takes IPv4 / IPv6 peers */
  char listen_text[64];       /* where it listens, for messages */
  uint64_t seq;
  struct replay_guard hello_guard;
  struct swarm *swarms;
  /* One tracker client per tracker list and key, shared by every swarm
   * that uses them (node.c). */
  struct tracker_share *tracker_shares;
  /* Trackers of a tier that answered when their client was last closed:
   * a client made again for that tier starts with the one that worked. */
  struct link_tracker tracker_worked[NODE_TRACKER_WORKED];
  unsigned tracker_worked_next;
  struct session *pending;             /* accepted, hello not yet seen */
  struct pex_own pex_own[PEX_OWN_MAX]; /* our certificates (pex.c) */
  uv_timer_t tick;
  unsigned ticks; /* since the node began */
  uv_timer_t pump_timer;
  uv_timer_t throttle_timer;
  uv_timer_t have_timer;   /* sends the HAVEs swarms gathered */
  uv_timer_t remove_timer; /* frees removed swarms once released */
  int remove_hold;         /* node_stop waits for removals under way */
  int throttled;
  struct rate_bucket up_bucket, down_bucket;
  uint64_t up_bytes, down_bytes;
  uint64_t wasted_bytes; /* of down_bytes: discarded, or in failed chunks */
  struct rate_meter up_meter; /* DATA queued to every peer, over 2 s */
  /* The sessions with uploads waiting and their rate of DATA, counted
   * once at the start of each tick (session_count_busy) for the pacing of
   * seeding swarms' sessions (tune_pacing). */
  unsigned up_busy;
  uint64_t up_busy_rate;
  /* Manifest parts written and not yet taken by the kernel, ahead of
   * which no DATA starts (pacing_ahead_wait). */
  struct pacing_ahead ahead;
  unsigned reads; /* block reads in flight, all sessions */
  /* DATA blocks are sealed and opened on the thread pool (pwire_seal_at,
   * pwire_open_defer) rather than on the loop: cfg.crypto, and with auto
   * the loop's own CPU time over each tick (loop_cpu_us and loop_tick_ms,
   * from the last tick). */
  int crypto_on_pool;
  uint64_t loop_cpu_us, loop_tick_ms;
  uint8_t rbuf[1u << 20];
  uint8_t *plain; /* PWIRE_MAX_PLAIN scratch */
  int stopping;
  void (*stop_cb)(void *);
  void *stop_arg;
  unsigned closing_handles;
  uv_timer_t stop_timer;
  uint64_t stop_deadline;
};

/* session.c */
int session_connect(struct node *n, struct swarm *sw, const struct sockaddr *sa,
                    const uint8_t *expect_pk);
void session_accepted(struct node *n, uv_tcp_t *client);
void session_close(struct session *s, const char *why);
int session_send(struct session *s, const struct pwire_msg *m);
void session_send_simple(struct session *s, uint8_t type);
/* REQUESTs of n blocks, in one write. */
int session_send_requests(struct session *s, const struct picker_block *b,
                          unsigned n);
/* REQUEST, CANCEL or REJECT of one block. */
int session_send_block(struct session *s, uint8_t type, uint32_t chunk,
                       uint32_t offset, uint32_t length);
void session_tick(struct session *s, uint64_t now);
/* Counts the node's sessions with uploads waiting (n->up_busy,
 * n->up_busy_rate); on_tick calls it before it ticks the sessions. */
void session_count_busy(struct node *n, uint64_t now);
void session_pump_upload(struct session *s);
void session_resume_reading(struct session *s);
/* Sizes the socket's unsent-bytes limit to the session's send rate. */
void session_tune_socket(struct session *s, uint64_t now);
/* The remote's REQUEST m: queued to be served (and the pump started), or
 * answered with REJECT when we choke it or lack the chunk; an error (a
 * block outside the content, more than NODE_MAX_REMOTE_REQUESTS queued)
 * closes the session. */
int session_queue_request(struct session *s, const struct pwire_msg *m);
/* The remote's CANCEL m: the request leaves the queue, and its block is
 * not sent if it is being read. */
void session_cancel_request(struct session *s, const struct pwire_msg *m);
/* We choke the remote: every request it made is dropped, and no block
 * being read for it is sent; it asks again when unchoked. */
void session_drop_requests(struct session *s);
void session_pause_reading(struct session *s);
/* Whether sw has a session with pk, or one dialling it (announce.c and
 * pex.c dial no peer twice). */
int session_connected_to(const struct swarm *sw, const uint8_t pk[32]);

/* swarm.c: called by sessions. */
struct swarm *swarm_find(struct node *n, const uint8_t content[32]);
int swarm_attach(struct swarm *sw, struct session *s);
void swarm_detach(struct swarm *sw, struct session *s);
void swarm_session_open(struct swarm *sw, struct session *s);
uint8_t *swarm_data_dest(struct swarm *sw, struct session *s, uint32_t chunk,
                         uint32_t offset, size_t len);
int swarm_on_message(struct swarm *sw, struct session *s,
                     const struct pwire_msg *m);
void swarm_send_haves(struct swarm *sw);
uint64_t swarm_haves_due(struct swarm *sw, uint64_t now);
void swarm_rechoke(struct swarm *sw, uint64_t now, int full);
void swarm_tick(struct swarm *sw, uint64_t now);
void swarm_upload_sent(struct swarm *sw, struct session *s, uint32_t len);
void swarm_info(const struct swarm *sw, struct node_swarm_info *out);
/* Emits ev about sw, with the swarm's figures filled in. */
void swarm_emit(struct swarm *sw, const struct node_event *ev);
void swarm_storage_ready(struct swarm *sw);
/* A session we dialled closed before its hellos were done. */
void swarm_dial_failed(struct swarm *sw, const struct session *s,
                       const char *why);

/* The state tables: whether a swarm or session may go from one state to
 * another, and the states' names for the log. */
int swarm_state_allowed(enum swarm_state from, enum swarm_state to);
const char *swarm_state_name(enum swarm_state s);
int session_state_allowed(enum session_state from, enum session_state to);
const char *session_state_name(enum session_state s);
/* Moves sw to state to, which its table must allow from where it is (a
 * refused move is a programmer's mistake: it asserts), and logs the move
 * at debug level. */
void swarm_set_state(struct swarm *sw, enum swarm_state to);

/* swarm.c: a swarm's life, called by node.c. */
/* A new swarm of n for content, in n's list; its schedule is not made
 * yet (announce_init). Returns NULL without memory. */
struct swarm *swarm_new(struct node *n, const uint8_t content[32]);
/* Opens a share's storage over its manifest's files and seeds; fails the
 * swarm (and returns the error) when they cannot be opened. */
int swarm_open_source(struct swarm *sw);
/* A get starts from the manifest saved under manifests/ when there is
 * one. */
void swarm_load_manifest(struct swarm *sw);
/* Frees what node_free finds of a swarm once every handle is closed. */
void swarm_free(struct swarm *sw);
/* The manifest is verified (fetched or loaded): open the storage. */
void swarm_manifest_ready(struct swarm *sw);
/* A shared file changed (storage_source_change says how): the content is
 * no longer served. */
void swarm_source_changed(struct swarm *sw);
/* Gives up on the swarm: "stopped" to its trackers, its sessions closed,
 * NODE_EV_FAILED with code and msg (borrowed for the call). */
void swarm_fail(struct swarm *sw, int code, const char *msg);

/* node.c: how often each seeding source's files are checked when the
 * node seeds `sources` of them (NODE_SOURCE_CHECK_MS at least). */
uint64_t node_source_check_ms(unsigned sources);

/* The node's data as everyone below it reads it: its clock, the sequence
 * numbers of hellos and tracker requests, and its one event callback. */
static inline uint64_t node_now(const struct node *n) {
  return uv_now(n->loop);
}
static inline uint64_t node_next_seq(struct node *n) {
  return n->seq++;
}
static inline void node_emit(struct node *n, const struct node_event *ev) {
  if (n->cb != NULL) {
    n->cb(n->cb_arg, ev);
  }
}

#endif
