/* libFuzzer target for common/link: share-link and tracker parsing.
 *
 * The input is parsed as a whole link, as a lone tracker address and as an
 * address with a key (host:port@key). A refusal must be SHOAL_EBADLINK with
 * a reason and a zeroed output. Whatever is accepted must format
 * (link_format never refuses a parsed link), pass link_check_trackers
 * (tiers from 0 without a gap, every tracker with its key, no tracker
 * twice) and parse back to the identical struct: a link that changes
 * meaning when it is shared again would be a bug.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/link.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_link: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  abort();
}

static void check_link(const char *text, size_t size) {
  static struct share_link l;
  static struct share_link back;
  static char out[2 * LINK_MAX_CHARS];
  const char *why = "not cleared";

  memset(&l, 0xa5, sizeof(l));
  int rc = link_parse(text, size, &l, &why);
  if (rc != 0) {
    if (rc != SHOAL_EBADLINK || why == NULL || !bytes_all_zero(&l, sizeof(l))) {
      fail("refusal without SHOAL_EBADLINK, a reason and a zeroed output", why);
    }
    return;
  }
  if (why != NULL || l.tracker_count == 0 ||
      l.tracker_count > LINK_MAX_TRACKERS || l.name[0] == '\0') {
    fail("accepted link is incomplete", why);
  }
  if (link_check_trackers(l.trackers, l.tracker_count, &why) != 0 ||
      link_tier_count(l.trackers, l.tracker_count) > LINK_MAX_TIERS) {
    fail("accepted link has trackers a link cannot hold", why);
  }
  int n = link_format(&l, out, sizeof(out));
  if (n < 0) {
    fail("link_format refused a parsed link", NULL);
  }
  if ((size_t)n != strlen(out) || (size_t)n > LINK_MAX_CHARS) {
    fail("formatted link has the wrong length", out);
  }
  memset(&back, 0xa5, sizeof(back));
  why = NULL;
  if (link_parse(out, (size_t)n, &back, &why) != 0) {
    fprintf(stderr, "formatted: %s\n", out);
    fail("formatted link does not parse back", why);
  }
  if (memcmp(&l, &back, sizeof(l)) != 0) {
    fail("formatted link parses to a different link", out);
  }
}

static void check_tracker(const char *text, size_t size) {
  struct link_tracker t;
  struct link_tracker back;
  char addr[LINK_MAX_HOST + 16];
  const char *why = "not cleared";

  memset(&t, 0xa5, sizeof(t));
  int rc = link_parse_tracker(text, size, &t, &why);
  if (rc != 0) {
    if (rc != SHOAL_EBADLINK || why == NULL || !bytes_all_zero(&t, sizeof(t))) {
      fail("tracker refusal without a reason and a zeroed output", why);
    }
    return;
  }
  size_t hlen = strnlen(t.host, sizeof(t.host));
  if (hlen == 0 || hlen > LINK_MAX_HOST || t.port == 0 ||
      !bytes_all_zero(t.host + hlen, sizeof(t.host) - hlen)) {
    fail("accepted tracker is malformed", t.host);
  }
  /* Written back the way link_format writes it, it must parse the same. */
  int v6 = strchr(t.host, ':') != NULL;
  snprintf(addr, sizeof(addr), v6 ? "[%s]:%u" : "%s:%u", t.host,
           (unsigned)t.port);
  memset(&back, 0xa5, sizeof(back));
  if (link_parse_tracker(addr, strlen(addr), &back, &why) != 0 ||
      memcmp(&t, &back, sizeof(t)) != 0) {
    fail("tracker does not survive being written back", addr);
  }
}

static void check_tracker_key(const char *text, size_t size) {
  struct link_tracker t;
  const char *why = "not cleared";
  memset(&t, 0xa5, sizeof(t));
  int rc = link_parse_tracker_key(text, size, &t, &why);
  if (rc != 0) {
    if (rc != SHOAL_EBADLINK || why == NULL || !bytes_all_zero(&t, sizeof(t))) {
      fail("tracker@key refusal without a reason and a zeroed output", why);
    }
    return;
  }
  if (t.has_key != (memchr(text, '@', size) != NULL) || t.port == 0 ||
      t.tier != 0) {
    fail("accepted tracker@key is malformed", t.host);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_first_call();
  char *text = (char *)fz_copy(data, size);
  if (text == NULL) {
    return 0;
  }
  check_link(text, size);
  check_tracker(text, size);
  check_tracker_key(text, size);
  free(text);
  return 0;
}
