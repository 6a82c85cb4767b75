/* Share links: everything a peer needs to fetch a content.
 *
 *   shoal:<content-id>?name=<name>&size=<bytes>
 *        &tier1=<host:port>@<key>[&tier1=...][&tier2=<host:port>@<key>...]
 *
 * The content ID and the tracker keys are 56-character text IDs (textid.h);
 * the name is percent-encoded UTF-8 and must be a safe file name; trackers
 * are "1.2.3.4:7070", "[::1]:7070" or "tracker.example.org:7070", each with
 * the key its replies are signed with. Trackers are grouped in tiers, as in
 * BitTorrent's multi-tracker extension: a tier is a list of trackers tried
 * in turn (a cluster, or a fail-over list), and a peer announces to one
 * tracker of every tier (the tiers are independent trackers).
 *
 * The first form of links is still read and still written when it says the
 * same thing: `&tracker=<host:port>[&tracker=...]&key=<key>` is one tier
 * whose trackers share that key. Parameters may come in any order; names
 * starting with "x-" are ignored for forward compatibility; anything else
 * unknown is an error, so a typo does not silently drop a tracker. Layout
 * in docs/protocol.md, "Share link".
 */
#ifndef SHOAL_LINK_H
#define SHOAL_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"
#include "common/textid.h"

#define LINK_SCHEME "shoal:"
#define LINK_MAX_CHARS 4096 /* a link longer than this is refused */
#define LINK_MAX_TRACKERS 8 /* fail-over lists, not a broadcast list */
/* A peer announces to every tier each interval: four trackers at once is
 * already more redundancy than a swarm needs. */
#define LINK_MAX_TIERS 4
#define LINK_MAX_HOST 253 /* DNS name limit */

/* A tracker: its address, and where a link names it, its tier and key. The
 * command-line and configuration parsers leave tier 0 and has_key 0 unless
 * they were given. */
struct link_tracker {
  char host[LINK_MAX_HOST + 1]; /* name or address, no brackets */
  uint16_t port;
  uint8_t tier;    /* 0 .. LINK_MAX_TIERS - 1; "tier1" in a link is 0 */
  uint8_t has_key; /* key holds the tracker's public key */
  uint8_t key[TEXTID_BYTES];
};

struct share_link {
  uint8_t id[TEXTID_BYTES];
  char name[MANIFEST_MAX_SEGMENT + 1];
  uint64_t size;
  size_t tracker_count;
  /* Sorted by tier (tiers numbered from 0 without a gap), in the link's
   * order within a tier; every one has its key. */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
};

/* Parses len bytes of text. Returns 0, or SHOAL_EBADLINK with *why set to a
 * static sentence that names what is wrong. out is zeroed on failure. */
int link_parse(const char *text, size_t len, struct share_link *out,
               const char **why);

/* Writes the link as a NUL-terminated string: in the first form when it has
 * one tier whose trackers share one key, else with tierN= parameters.
 * Returns its length, or SHOAL_ETOOBIG when cap is too small, or SHOAL_EINVAL
 * for a link that would not parse back (no tracker, a bad name or host, a
 * tracker without a key, tiers out of order or with a gap, a tracker named
 * twice). */
int link_format(const struct share_link *l, char *out, size_t cap);

/* Parses "host:port", "[v6]:port" or "a.b.c.d:port" (len bytes). Returns 0
 * or SHOAL_EBADLINK with *why set. Shared with the command-line parsers. */
int link_parse_tracker(const char *text, size_t len, struct link_tracker *out,
                       const char **why);

/* Parses "ADDRESS" as link_parse_tracker does, or "ADDRESS@KEY" with the
 * tracker's key as a text ID (has_key set). Returns 0 or SHOAL_EBADLINK
 * with *why set. For command lines: `--tracker host:7070@KEY`. */
int link_parse_tracker_key(const char *text, size_t len,
                           struct link_tracker *out, const char **why);

/* Whether two trackers are the same address: host names compared without
 * regard to case, IP addresses as addresses ("::1" is "0::1"), and the
 * port. */
int link_same_tracker(const struct link_tracker *a,
                      const struct link_tracker *b);

/* Checks a list of n trackers as a link holds them: 1..LINK_MAX_TRACKERS,
 * each with a key and a valid address, tiers from 0 without a gap and in
 * order, at most LINK_MAX_TIERS of them, no address twice. Returns 0 or
 * SHOAL_EBADLINK with *why set. */
int link_check_trackers(const struct link_tracker *t, size_t n,
                        const char **why);

/* Gives every tracker of l the key (32 bytes): one tier whose trackers
 * share it, as the first form of links says. */
void link_set_key(struct share_link *l, const uint8_t key[TEXTID_BYTES]);

/* The number of tiers of a checked list of n trackers (0 for none). */
unsigned link_tier_count(const struct link_tracker *t, size_t n);

#endif
