/* The catalog: published contents, searchable by name.
 *
 * A publisher (a signed publish request) adds an entry: content ID, name,
 * size, publisher key and the publisher's manifest signature. Announces of
 * the content keep it alive; an entry nobody announced for `ttl_s` seconds
 * is removed by a bounded sweep. Search matches every word of the query,
 * case-insensitively (ASCII), as a substring of the name, by scanning;
 * results come in table order, which is stable while the catalog does not
 * change, and are paged. Entries sit in an open-addressing table keyed by a
 * SipHash of the content ID, so an announce touches its entries in O(1).
 */
#ifndef SHOAL_TRACKER_CATALOG_H
#define SHOAL_TRACKER_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/tmsg.h"
#include "tracker/hashtab.h"

#define CATALOG_MAX_DEFAULT 100000u /* entries */
#define CATALOG_TTL_DEFAULT 86400u  /* seconds without an announce */
#define CATALOG_MAX_WORDS 8         /* words in one search query */

struct catalog_entry {
  uint64_t hash; /* 0: empty slot */
  uint8_t content[TMSG_ID_BYTES];
  uint8_t publisher[IDENTITY_PK_BYTES];
  uint8_t manifest_sig[IDENTITY_SIG_BYTES];
  uint64_t size;
  uint32_t last_seen;
  char *name;   /* owned */
  char *folded; /* owned: the name in lower case, for matching */
};

struct catalog {
  struct catalog_entry *e; /* the table */
  size_t mask;
  size_t n;
  size_t max;
  uint32_t ttl_s;
  size_t sweep; /* expiry cursor */
  uint8_t key[HASHTAB_KEY_BYTES];
};

/* Returns 0 or SHOAL_ENOMEM. */
int catalog_init(struct catalog *c, size_t max, uint32_t ttl_s);
void catalog_close(struct catalog *c);

/* Adds or refreshes an entry. A content already published by another key
 * is refused (SHOAL_EWRONGKEY); a full catalog refuses new entries
 * (SHOAL_ETOOBIG). */
int catalog_publish(struct catalog *c, const uint8_t publisher[32],
                    const struct tmsg_publish *p, uint32_t now_s);
/* Marks a content as announced now (no-op when it is not in the catalog). */
void catalog_touch(struct catalog *c, const uint8_t content[32],
                   uint32_t now_s);
/* Finds the entry of a content, or NULL. */
const struct catalog_entry *catalog_find(const struct catalog *c,
                                         const uint8_t content[32]);
/* Fills reply with the page [offset, offset + limit) of the matches (limit
 * clamped to TMSG_MAX_RESULTS) and their total. Seeder and downloader
 * counts are left for the caller. Returns SHOAL_EINVAL for an empty query
 * or one with more than CATALOG_MAX_WORDS words, or SHOAL_ENOMEM. */
int catalog_search(const struct catalog *c, const struct tmsg_search *q,
                   struct tmsg_search_ok *reply);
/* Removes up to max_work entries not announced within ttl_s. */
unsigned catalog_expire(struct catalog *c, uint32_t now_s, unsigned max_work);

#endif
