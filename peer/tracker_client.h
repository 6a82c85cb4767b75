/* The peer's client for the shoal tracker, on a libuv loop.
 *
 * One client talks to one tracker at a time over one TCP connection. The
 * connection is opened when the first request comes (requests made while
 * it is being resolved or connected wait in a queue), carries any number
 * of requests pipelined, and matches replies to requests by their order,
 * as the tracker answers in order (docs/protocol.md, "Transport"). It is
 * closed after TRACKER_CLIENT_IDLE_MS without a pending request, before the
 * tracker's own idle timeout; when the tracker closes it first while nothing is
 * pending, the next request simply opens a new one.
 *
 * Announce and publish are sealed as envelopes of class
 * ENVELOPE_TRACKER_REQUEST with the caller's identity; lookup and search are
 * unsigned queries. Each takes the next number of the shared sequence
 * counter (*seq)++, as envelope sequence number or query id. Every reply is
 * opened with envelope_open for class ENVELOPE_TRACKER_REPLY, the key of the
 * tracker it came from and the default clock window, and without a replay
 * guard (the tracker sends one signed lookup reply to every identical lookup
 * within a second). A tracker's key is its own (struct link_tracker's, from
 * a link), else the configured tracker_key; for trackers with neither, the
 * sender of the first reply that verifies is pinned for the life of the
 * client (trust on first use), for all of them.
 *
 * Pacing. A tracker limits the requests of each source address and closes a
 * connection that goes on sending past a refusal (docs/protocol.md, "Rate
 * limit"), which on a client shared by a node's swarms would fail all of
 * their requests at once. So the client sends at most `rate` requests a
 * second with bursts of `burst` (TRACKER_CLIENT_RATE and _BURST, below the
 * tracker's defaults) and holds the rest in its queue, in order; an error
 * reply with a retry-after holds everything not yet written until then
 * (tracker_pace.h), while the refused request's callback gets the error as
 * usual. A request is sealed when it is written, and its timeout counts
 * from then: one held back by the pace never times out for waiting its
 * turn (while the connection is being made, the first request's timeout
 * counts from when it was made, so an unreachable tracker still fails it).
 *
 * Failure and fail-over. The trackers of a client are one tier of a link:
 * interchangeable, tried in turn. A connection that cannot be made, breaks,
 * ends while requests are pending, sends a reply that does not verify or
 * does not answer its request, or leaves the oldest request unanswered for
 * the timeout, fails every pending request and is closed; so does one whose
 * tracker refuses a request because it cannot serve now
 * (tracker_client_moves_on: its store is down, it is full), after that
 * request's callback, when there is another tracker to go to. The next
 * request goes to the next tracker of the list (round robin) on a fresh
 * connection, and the client stays with a tracker that answers: the one
 * that worked goes first until it fails (tracker_client_worked tells the
 * node which, so that a client made again later starts there: `first`).
 * The client never retries by itself: backing off is the caller's
 * business.
 *
 * Callbacks run on the loop thread, never inside the tracker_client_* call that
 * queued the request; each request's callback comes exactly once.
 */
#ifndef SHOAL_PEER_TRACKER_CLIENT_H
#define SHOAL_PEER_TRACKER_CLIENT_H

#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "common/link.h"
#include "common/tmsg.h"

#define TRACKER_CLIENT_TIMEOUT_MS 10000u /* default wait for one reply */
#define TRACKER_CLIENT_MAX_PENDING                                             \
  64u /* requests queued or in flight per client */
/* Half the tracker's default idle timeout (60 s), so that the client, not
 * the tracker, closes an idle connection and a request never races the
 * tracker's close. */
#define TRACKER_CLIENT_IDLE_MS 30000u
/* Requests a second, and in a burst, that a client sends: four fifths of
 * the tracker's default --rate (50) and half its --burst (200), leaving
 * room for the other clients at the same address (the command line, a
 * second node on the host) and for the loop's lateness. */
#define TRACKER_CLIENT_RATE 40u
#define TRACKER_CLIENT_BURST 100u
#define TRACKER_CLIENT_ADDR_TEXT                                               \
  264 /* "[host]:65535" for the longest host name */

struct tracker_client;

struct tracker_client_config {
  uv_loop_t *loop;
  const struct identity *id;           /* signs announce/publish; borrowed
                                          for the client's life */
  const struct link_tracker *trackers; /* copied; 1..LINK_MAX_TRACKERS;
                                          a tracker's own key (has_key)
                                          checks its replies */
  unsigned ntrackers;
  const uint8_t *tracker_key; /* 32 bytes (copied): the key of trackers
                                 without one of their own; or NULL: trust
                                 on first use */
  unsigned first;             /* the tracker tried first (an index;
                                 out of range: 0) */
  uint64_t *seq;              /* shared envelope sequence counter;
                                 borrowed for the client's life */
  unsigned timeout_ms;        /* per request; 0 = TRACKER_CLIENT_TIMEOUT_MS */
  unsigned idle_ms;           /* close an idle connection after
                                 this; 0 = TRACKER_CLIENT_IDLE_MS */
  int family;                 /* AF_INET or AF_INET6: reach the
                                 trackers over that family only
                                 (the one the caller listens on);
                                 0: either */
  unsigned max_pending;       /* requests queued or in flight at once;
                                 0 = TRACKER_CLIENT_MAX_PENDING (a client
                                 shared by many callers wants more) */
  unsigned rate;              /* requests a second sent at most;
                                 0 = TRACKER_CLIENT_RATE (a tracker whose
                                 --rate was raised allows more) */
  unsigned burst;             /* ... and in a burst; 0 =
                                 TRACKER_CLIENT_BURST */
};

/* A verified reply; it and everything it points to are valid only during
 * the callback. */
struct tracker_client_reply {
  uint8_t type; /* TMSG_*_OK or TMSG_ERROR */
  union {
    struct tmsg_announce_ok announce;
    struct tmsg_lookup_ok lookup;
    struct tmsg_publish_ok publish;
    struct tmsg_search_ok search;
  } u;
  struct tmsg_error error; /* when type == TMSG_ERROR */
};

/* status 0: r->type is the request's *_OK type and r->u its payload.
 * The tracker refused: status is the error reply's code (negative), with
 * r->type == TMSG_ERROR and r->error filled (reason, retry_after_ms).
 * Otherwise r is NULL and status is one of:
 *   SHOAL_ETIMEDOUT   no reply within the timeout (connecting included);
 *   a libuv code      resolution or connection failed (UV_ECONNREFUSED,
 *                     UV_EAI_NONAME, ...), the connection broke
 *                     (UV_ECONNRESET), or it ended before the reply (UV_EOF);
 *   SHOAL_EPROTO      the first reply of a connection is no shoal frame,
 *                     or no envelope (the frame decoder's error, or
 *                     envelope_open's SHOAL_ETRUNC, SHOAL_ETOOBIG or
 *                     SHOAL_EVERSION): what answered is not a shoal
 *                     tracker (an HTTP or SSH server, say);
 * tracker_client_describe shows what it said; envelope_open's error for a reply
 * that does not verify: SHOAL_EWRONGKEY (signed by another key than the pinned
 * one), SHOAL_EBADSIG, SHOAL_EDOMAIN, SHOAL_ESTALE, SHOAL_EFUTURE,
 * SHOAL_EFORMAT, and after a reply has verified on the connection also
 * SHOAL_EVERSION and SHOAL_ETRUNC; the frame decoder's error, after a reply has
 * verified on the connection: SHOAL_ETOOBIG (frame over FRAME_MAX_DEFAULT),
 * SHOAL_EFORMAT (empty frame); the payload decoder's error (SHOAL_ETRUNC,
 * SHOAL_EFORMAT, SHOAL_ETOOBIG) for a verified reply that does not decode;
 *   SHOAL_EPROTO      a verified reply that does not answer the request: a
 *                     wrong type, an announce_ok or publish_ok whose seq (or
 *                     content) is not the request's, a lookup_ok for another
 *                     content, an error whose request type or id is neither
 *                     the request's nor 0, or a reply with nothing pending;
 *   SHOAL_ECANCELED   tracker_client_close came first;
 *   SHOAL_ENOMEM.
 * The callback may make new requests and may call tracker_client_close. */
typedef void (*tracker_client_cb)(void *arg, int status,
                                  const struct tracker_client_reply *r);

/* Makes a client; nothing is sent until the first request. Returns 0,
 * SHOAL_EINVAL (no loop, identity or counter; 0 or more than
 * LINK_MAX_TRACKERS trackers; an empty host or port 0) or SHOAL_ENOMEM. */
int tracker_client_new(struct tracker_client **out,
                       const struct tracker_client_config *c);

/* Queue a request. The message is encoded at once and not kept. Returns 0
 * (cb will come exactly once, later, from the loop), or without calling cb:
 * SHOAL_EINVAL (a message the encoder refuses: a count, limit or text
 * over its maximum),
 * SHOAL_EBUSY (max_pending requests are already waiting),
 * SHOAL_ECANCELED (the client is closing) or SHOAL_ENOMEM. */
int tracker_client_announce(struct tracker_client *t,
                            const struct tmsg_announce *a, tracker_client_cb cb,
                            void *arg);
int tracker_client_lookup(struct tracker_client *t, const struct tmsg_lookup *l,
                          tracker_client_cb cb, void *arg);
int tracker_client_publish(struct tracker_client *t,
                           const struct tmsg_publish *p, tracker_client_cb cb,
                           void *arg);
int tracker_client_search(struct tracker_client *t, const struct tmsg_search *s,
                          tracker_client_cb cb, void *arg);

/* The key of the tracker the next or current request goes to: its own, the
 * configured one, or the pinned one once a reply has verified; NULL until
 * then. Valid until tracker_client_close. */
const uint8_t *tracker_client_key(const struct tracker_client *t);
/* The index of the tracker whose reply last verified, or -1 (none yet, or
 * it failed since). */
int tracker_client_worked(const struct tracker_client *t);
/* Whether a tracker's refusal with this code (an error reply's) is about
 * the tracker rather than the request, so that another tracker of the same
 * tier may serve it: SHOAL_EBUSY and SHOAL_ENOMEM. */
int tracker_client_moves_on(int status);
/* "host:port" ("[v6]:port" for an IPv6 literal) of the tracker the next or
 * current request goes to, for messages. Valid until tracker_client_close. */
const char *tracker_client_current(const struct tracker_client *t);
/* Room for any tracker_client_describe sentence: two key IDs, a host name and
 * what a server that is not a tracker answered. */
#define TRACKER_CLIENT_DESCRIBE_BYTES 640
/* Writes into out (cap bytes; TRACKER_CLIENT_DESCRIBE_BYTES always suffice) one
 * sentence for people about a failed request, from the status and reply
 * its callback got (r may be NULL), naming the tracker that failed (which
 * tracker_client_current no longer names once the client has moved on):
 *   "ADDR is not a shoal tracker (it answered "...") - check ..."
 *       SHOAL_EPROTO for a connection whose first bytes were no shoal
 *       frame; what it said is cut at its first line, escaped;
 *   "tracker ADDR signs with key K, not with the expected key P - ..."
 *       SHOAL_EWRONGKEY;
 *   "tracker ADDR refused: REASON" for an error reply;
 *   "tracker ADDR took the connection but did not answer within T - ..."
 *       SHOAL_ETIMEDOUT on an open connection;
 *   "tracker unreachable: ADDR (MESSAGE) - check ..." for the rest (a
 *       timeout says which stage ran out of time: "no connection within
 *       T", "its name did not resolve within T").
 * Returns out. */
const char *tracker_client_describe(const struct tracker_client *t, int status,
                                    const struct tracker_client_reply *r,
                                    char *out, size_t cap);
/* Requests accepted and not yet answered or failed, cancelled ones
 * (tracker_client_cancel) included. */
unsigned tracker_client_pending(const struct tracker_client *t);
/* 1 while a connection is being made or is open, else 0. */
int tracker_client_connected(const struct tracker_client *t);

/* Lets a caller of a shared client go: every request made with arg whose
 * callback has not come yet gets it now, with SHOAL_ECANCELED, before
 * tracker_client_cancel returns, and no callback with arg comes after it.
 * The requests themselves stay where they are: one already written keeps
 * its place in the connection's order and its reply is read and dropped,
 * and one still waiting for the connection is written when it opens (a
 * "stopped" announce still reaches the tracker). They count as pending
 * until then. Callbacks made from here may make new requests (with arg too:
 * those are not cancelled) and may close the client. A no-op on NULL or a
 * closing client. */
void tracker_client_cancel(struct tracker_client *t, void *arg);

/* Takes back the requests made with arg that are not written yet (waiting
 * for the connection or for their turn): they leave the queue and never
 * reach the tracker, and their callbacks come now, with SHOAL_ECANCELED,
 * before tracker_client_withdraw returns. Requests of arg already written
 * stay, and their callbacks come as usual. Callbacks may make new requests
 * (with arg too: those are not withdrawn) and may close the client. Returns
 * how many were withdrawn; 0 on NULL or a closing client. */
unsigned tracker_client_withdraw(struct tracker_client *t, void *arg);

/* Closes the client. Every callback still due is called with
 * SHOAL_ECANCELED before tracker_client_close returns, so no callback comes
 * after it; tracker_client_* calls made from those callbacks fail with
 * SHOAL_ECANCELED. The memory is freed from the loop once libuv has closed the
 * client's handles (run the loop until it has no more work).
 * tracker_client_close(NULL), and tracker_client_close from one of those
 * callbacks, are no-ops. */
void tracker_client_close(struct tracker_client *t);

/* The client's timer of deadlines, as a rule over a clock the caller passes
 * (its unit test's): with a request's deadline running (pending set: the
 * oldest request was written, or the connection is being made), it fires
 * at the oldest one's deadline (the uv_now() of its request plus the timeout;
 * at once when that has passed), else after idle_ms when the connection is open
 * and nothing is pending (open set). Returns 1 with *delay_ms, the delay from
 * now, or 0 when the timer should stop. */
int tracker_client_timer(int pending, uint64_t deadline, int open,
                         unsigned idle_ms, uint64_t now, uint64_t *delay_ms);

#endif
