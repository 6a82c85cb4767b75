/* Share links: everything a peer needs to fetch a content.
 *
 *   shoal:<content-id>?name=<name>&size=<bytes>&tracker=<host:port>
 *        [&tracker=<host:port>...]&key=<tracker-key>
 *
 * The content ID and the tracker key are 56-character text IDs (textid.h);
 * the name is percent-encoded UTF-8 and must be a safe file name; trackers
 * are "1.2.3.4:7070", "[::1]:7070" or "tracker.example.org:7070". All
 * trackers of a link share one key (a tracker cluster has one identity).
 * Parameters may come in any order; names starting with "x-" are ignored
 * for forward compatibility; anything else unknown is an error, so a typo
 * does not silently drop a tracker. Layout in docs/protocol.md, "Share link".
 */
#ifndef SHOAL_LINK_H
#define SHOAL_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"
#include "common/textid.h"

#define LINK_SCHEME "shoal:"
#define LINK_MAX_CHARS 4096 /* a link longer than this is refused */
#define LINK_MAX_TRACKERS 8 /* fail-over list, not a broadcast list */
#define LINK_MAX_HOST 253   /* DNS name limit */

struct link_tracker {
  char host[LINK_MAX_HOST + 1]; /* name or address, no brackets */
  uint16_t port;
};

struct share_link {
  uint8_t id[TEXTID_BYTES];
  char name[MANIFEST_MAX_SEGMENT + 1];
  uint64_t size;
  uint8_t tracker_key[TEXTID_BYTES];
  size_t tracker_count;
  struct link_tracker trackers[LINK_MAX_TRACKERS];
};

/* Parses len bytes of text. Returns 0, or SHOAL_EBADLINK with *why set to a
 * static sentence that names what is wrong. out is zeroed on failure. */
int link_parse(const char *text, size_t len, struct share_link *out,
               const char **why);

/* Writes the link as a NUL-terminated string. Returns its length, or
 * SHOAL_ETOOBIG when cap is too small, or SHOAL_EINVAL for a link that would
 * not parse back (no tracker, bad name or host). */
int link_format(const struct share_link *l, char *out, size_t cap);

/* Parses "host:port", "[v6]:port" or "a.b.c.d:port" (len bytes). Returns 0
 * or SHOAL_EBADLINK with *why set. Shared with the command-line parsers. */
int link_parse_tracker(const char *text, size_t len, struct link_tracker *out,
                       const char **why);

#endif
