/* Tracker messages: the payloads peers and the tracker exchange.
 *
 * Announce and publish travel in signed envelopes of class
 * ENVELOPE_TRACKER_REQUEST, because they change the tracker's state in the
 * sender's name. Lookup and search only read public state, so they travel as
 * unsigned queries (below): verifying an Ed25519 signature per lookup would
 * cost more than the lookup. Every reply is a signed envelope of class
 * ENVELOPE_TRACKER_REPLY. Replies come in request order on a connection.
 *
 * Query frame (docs/protocol.md, "Tracker query"):
 *   0 u8 version (ENVELOPE_VERSION)   1 u8 class (TMSG_QUERY_CLASS)
 *   2 u8 type                         3 u8 flags (0)
 *   4 u64 query id (chosen by the client; echoed in an error reply when
 *         the query header could be read and the request was not refused
 *         by the rate limit, else 0)
 *   12 u32 payload length n           16 n payload
 *
 * The decoders take a payload (already verified by envelope_open for signed
 * messages) and check every count against the named maximums below.
 */
#ifndef SHOAL_TMSG_H
#define SHOAL_TMSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/identity.h"
#include "common/manifest.h"

#define TMSG_QUERY_CLASS 4
#define TMSG_QUERY_HEADER_BYTES 16
#define TMSG_ID_BYTES 32

/* Named maximums. */
#define TMSG_MAX_ANNOUNCE_ITEMS 64 /* contents in one announce */
#define TMSG_MAX_PEERS 200         /* peers in one lookup reply */
#define TMSG_MAX_QUERY 256         /* bytes of search text */
#define TMSG_MAX_RESULTS 50        /* results in one search page */
#define TMSG_MAX_REASON 200        /* bytes of an error reason */
#define TMSG_MAX_NAME MANIFEST_MAX_SEGMENT

/* Address certificates (docs/protocol.md, "Address certificate"): the
 * tracker's signed statement that it saw a peer's key announce from an
 * address, passed between peers unaltered (peer exchange). */
#define TMSG_CERT_VERSION 1
#define TMSG_CERT_SIGNED_BYTES 96 /* the fields the signature covers */
#define TMSG_CERT_BYTES (TMSG_CERT_SIGNED_BYTES + IDENTITY_SIG_BYTES)
/* A certificate's lifetime: twice the tracker's announce interval, at
 * least ten minutes, so a peer renews it long before it ends; and at most
 * two days, so a record cannot name an address for longer than a peer
 * plausibly keeps it. */
#define TMSG_CERT_LIFETIME_MIN_S 600u
#define TMSG_CERT_LIFETIME_MAX_S 172800u

enum tmsg_type {
  /* Requests (signed). */
  TMSG_ANNOUNCE = 1,
  TMSG_PUBLISH = 3,
  /* Queries (unsigned). */
  TMSG_LOOKUP = 2,
  TMSG_SEARCH = 4,
  /* Replies (signed by the tracker). */
  TMSG_ANNOUNCE_OK = 0x81,
  TMSG_LOOKUP_OK = 0x82,
  TMSG_PUBLISH_OK = 0x83,
  TMSG_SEARCH_OK = 0x84,
  TMSG_ERROR = 0xff,
};

enum tmsg_event {
  TMSG_EVENT_PERIODIC = 0,
  TMSG_EVENT_STARTED = 1,
  TMSG_EVENT_COMPLETED = 2,
  TMSG_EVENT_STOPPED = 3,
};

enum tmsg_role {
  TMSG_ROLE_DOWNLOADING = 0,
  TMSG_ROLE_SEEDING = 1,
};

struct tmsg_query {
  uint8_t type;
  uint64_t id;
  const uint8_t *payload; /* borrowed */
  size_t payload_len;
};

struct tmsg_announce_item {
  uint8_t content[TMSG_ID_BYTES];
  uint8_t role;
  uint64_t left;
};

/* Announce flags: bit 0 asks for an address certificate in the reply. */
#define TMSG_ANNOUNCE_WANT_CERT 1u

struct tmsg_announce {
  uint16_t port;
  uint8_t event;
  uint8_t flags; /* TMSG_ANNOUNCE_WANT_CERT or 0 */
  uint16_t count;
  struct tmsg_announce_item items[TMSG_MAX_ANNOUNCE_ITEMS];
};

struct tmsg_announce_ok {
  uint64_t seq; /* the announce's sequence number */
  uint32_t interval_s;
  uint32_t min_interval_s;
  uint16_t accepted; /* items registered (the rest hit a limit); for a
                        stopped event, every item (removal is idempotent) */
  uint8_t has_cert;  /* the reply carries a certificate: */
  uint8_t cert[TMSG_CERT_BYTES]; /* as signed; tmsg_cert_open checks it */
};

/* An address certificate's fields. */
struct tmsg_cert {
  uint8_t family; /* 4 or 6 */
  uint16_t port;  /* the announced port, never 0 */
  uint32_t lifetime_s;
  uint64_t issued_ms;                 /* the tracker's wall clock */
  uint8_t tracker[IDENTITY_PK_BYTES]; /* the signer */
  uint8_t peer[IDENTITY_PK_BYTES];    /* the announcing peer */
  uint8_t addr[16];                   /* IPv4 in the first 4 bytes */
};

/* What a receiver accepts: the tracker keys it trusts (nkeys of them, 32
 * bytes each, borrowed for the call), its wall clock, and how far ahead
 * of it an issue time may be (the clock window). */
struct tmsg_cert_policy {
  const uint8_t *keys;
  unsigned nkeys;
  uint64_t now_ms;
  uint64_t window_ms;
};

#define TMSG_LOOKUP_SEEDERS_FIRST 1u

struct tmsg_lookup {
  uint8_t content[TMSG_ID_BYTES];
  uint16_t want;
  uint8_t flags;
  uint8_t asker[IDENTITY_PK_BYTES]; /* all zero: not given */
};

struct tmsg_peer {
  uint8_t pk[IDENTITY_PK_BYTES];
  uint8_t family;   /* 4 or 6 */
  uint8_t addr[16]; /* IPv4 in the first 4 bytes */
  uint16_t port;
  uint8_t seeding;
};

struct tmsg_lookup_ok {
  uint8_t content[TMSG_ID_BYTES];
  uint32_t seeders;
  uint32_t downloaders;
  uint32_t completed;
  uint16_t count;
  struct tmsg_peer peers[TMSG_MAX_PEERS];
};

struct tmsg_publish {
  uint8_t content[TMSG_ID_BYTES];
  uint64_t size;
  char name[TMSG_MAX_NAME + 1];
  uint8_t manifest_sig[IDENTITY_SIG_BYTES];
};

struct tmsg_publish_ok {
  uint64_t seq;
  uint8_t content[TMSG_ID_BYTES];
};

struct tmsg_search {
  char query[TMSG_MAX_QUERY + 1];
  uint32_t offset;
  uint16_t limit;
};

struct tmsg_result {
  uint8_t content[TMSG_ID_BYTES];
  char name[TMSG_MAX_NAME + 1];
  uint64_t size;
  uint8_t publisher[IDENTITY_PK_BYTES];
  uint32_t seeders;
  uint32_t downloaders;
};

struct tmsg_search_ok {
  uint32_t total; /* matches in all pages */
  uint16_t count;
  struct tmsg_result results[TMSG_MAX_RESULTS];
};

struct tmsg_error {
  uint8_t request_type;
  uint64_t request_id; /* the request's sequence number or query id */
  int32_t code;        /* a shoal error code (negative) */
  uint32_t retry_after_ms;
  char reason[TMSG_MAX_REASON + 1];
};

/* Queries. tmsg_query_encode appends a whole query frame body to out. */
int tmsg_query_encode(struct buf *out, uint8_t type, uint64_t id,
                      const void *payload, size_t len);
/* Returns 0, SHOAL_ETRUNC, SHOAL_EVERSION, SHOAL_EDOMAIN or SHOAL_EFORMAT. */
int tmsg_query_decode(const uint8_t *msg, size_t len, struct tmsg_query *out);
/* True when a frame body is a query rather than an envelope. */
int tmsg_is_query(const uint8_t *msg, size_t len);
/* The message type of a frame body, a query or an envelope alike, read
 * without checking anything else; 0 when the body is too short to hold
 * one. Only for echoing the type in the error reply to a request that
 * could not be decoded or opened. */
uint8_t tmsg_peek_type(const uint8_t *msg, size_t len);

/* Payload codecs. Encoders append to out and return buf_err(out) or
 * SHOAL_EINVAL for a struct over a limit; decoders return 0, SHOAL_ETRUNC,
 * SHOAL_ETOOBIG or SHOAL_EFORMAT, and zero out on failure. */
int tmsg_announce_encode(struct buf *out, const struct tmsg_announce *m);
int tmsg_announce_decode(const uint8_t *p, size_t len,
                         struct tmsg_announce *out);
int tmsg_announce_ok_encode(struct buf *out, const struct tmsg_announce_ok *m);
int tmsg_announce_ok_decode(const uint8_t *p, size_t len,
                            struct tmsg_announce_ok *out);
int tmsg_lookup_encode(struct buf *out, const struct tmsg_lookup *m);
int tmsg_lookup_decode(const uint8_t *p, size_t len, struct tmsg_lookup *out);
int tmsg_lookup_ok_encode(struct buf *out, const struct tmsg_lookup_ok *m);
int tmsg_lookup_ok_decode(const uint8_t *p, size_t len,
                          struct tmsg_lookup_ok *out);
int tmsg_publish_encode(struct buf *out, const struct tmsg_publish *m);
int tmsg_publish_decode(const uint8_t *p, size_t len, struct tmsg_publish *out);
int tmsg_publish_ok_encode(struct buf *out, const struct tmsg_publish_ok *m);
int tmsg_publish_ok_decode(const uint8_t *p, size_t len,
                           struct tmsg_publish_ok *out);
int tmsg_search_encode(struct buf *out, const struct tmsg_search *m);
int tmsg_search_decode(const uint8_t *p, size_t len, struct tmsg_search *out);
int tmsg_search_ok_encode(struct buf *out, const struct tmsg_search_ok *m);
int tmsg_search_ok_decode(const uint8_t *p, size_t len,
                          struct tmsg_search_ok *out);
int tmsg_error_encode(struct buf *out, const struct tmsg_error *m);
int tmsg_error_decode(const uint8_t *p, size_t len, struct tmsg_error *out);

/* Signs c (its tracker field is ignored: the signer's key goes there) into
 * out with the tracker's key, under the domain "shoal/1 address
 * certificate". Returns 0, SHOAL_EINVAL for a certificate tmsg_cert_open
 * would refuse whatever the clock (family, address, port, lifetime), or a
 * signing error; out is zeroed on failure. */
int tmsg_cert_seal(const struct identity *tracker, const struct tmsg_cert *c,
                   uint8_t out[TMSG_CERT_BYTES]);
/* Checks a certificate, in this order: the length (SHOAL_ETRUNC shorter,
 * SHOAL_EFORMAT longer), the version (SHOAL_EVERSION), the signer among
 * pol's keys (SHOAL_EWRONGKEY), the signature over the exact bytes
 * (SHOAL_EBADSIG, or SHOAL_ENOMEM), the fields (SHOAL_EFORMAT: family,
 * an address no peer can hold, port 0, lifetime outside its bounds), then
 * the age: ended (issued + lifetime before now: SHOAL_ESTALE) or issued
 * more than the window ahead of now (SHOAL_EFUTURE). out is zeroed on
 * failure. */
__attribute__((warn_unused_result)) int
tmsg_cert_open(const uint8_t *p, size_t len, const struct tmsg_cert_policy *pol,
               struct tmsg_cert *out);

#endif
