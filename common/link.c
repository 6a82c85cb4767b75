/* Share links: parsing and writing both forms (link.h), and the checks on
 * a list of trackers in tiers that links, command lines and the node share.
 */
#include "common/link.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"

static int is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

/* Decodes %XX escapes of in[0..len) into out (cap bytes, NUL added).
 * Returns the decoded length or a negative error. */
static int pct_decode(const char *in, size_t len, char *out, size_t cap,
                      const char **why) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '%') {
      if (len - i < 3 || hexval(in[i + 1]) < 0 || hexval(in[i + 2]) < 0) {
        *why = "bad percent-encoding (a '%' must be followed by two hex "
               "digits)";
        return SHOAL_EBADLINK;
      }
      c = (char)(hexval(in[i + 1]) << 4 | hexval(in[i + 2]));
      i += 2;
    }
    if (o + 1 >= cap) {
      *why = "a parameter value is too long";
      return SHOAL_EBADLINK;
    }
    out[o++] = c;
  }
  out[o] = '\0';
  return (int)o;
}

static int valid_hostname(const char *h, size_t len) {
  size_t label = 0;
  if (len == 0 || len > LINK_MAX_HOST) {
    return 0;
  }
  for (size_t i = 0; i <= len; i++) {
    if (i == len || h[i] == '.') {
      if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-') {
        return 0;
      }
      label = 0;
      continue;
    }
    unsigned char c = (unsigned char)h[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-')) {
      return 0;
    }
    label++;
  }
  return 1;
}

/* True when every character is a digit or a dot: such a host must be a
 * valid IPv4 address, never a name. */
static int looks_numeric(const char *h, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.')) {
      return 0;
    }
  }
  return 1;
}

int link_parse_tracker(const char *text, size_t len, struct link_tracker *out,
                       const char **why) {
  const char *host;
  size_t host_len;
  const char *port;
  size_t port_len;
  char tmp[LINK_MAX_HOST + 1];
  unsigned char addr[16];

  memset(out, 0, sizeof(*out));
  if (len > 0 && text[0] == '[') {
    const char *close = memchr(text, ']', len);
    if (close == NULL) {
      *why = "tracker address has '[' without ']'";
      return SHOAL_EBADLINK;
    }
    host = text + 1;
    host_len = (size_t)(close - host);
    if ((size_t)(close - text) + 1 >= len || close[1] != ':') {
      *why = "tracker address needs a port: [address]:port";
      return SHOAL_EBADLINK;
    }
    port = close + 2;
    port_len = len - (size_t)(port - text);
    if (host_len == 0 || host_len >= sizeof(tmp)) {
      *why = "tracker IPv6 address is not valid";
      return SHOAL_EBADLINK;
    }
    /* Only hex digits, ':' and '.' (an embedded IPv4 address). The
     * parser stops at a NUL, and some parsers (libuv's among them) skip a
     * '%' and the zone ID after it, so without this "[::1%00&x]" or
     * "[fe80::1%25eth0]" could be accepted with bytes that link_format
     * cannot write back; and a zone names an interface of one machine,
     * meaningless in a link. */
    for (size_t i = 0; i < host_len; i++) {
      if (hexval(host[i]) < 0 && host[i] != ':' && host[i] != '.') {
        *why = "tracker IPv6 address is not valid";
        return SHOAL_EBADLINK;
      }
    }
    memcpy(tmp, host, host_len);
    tmp[host_len] = '\0';
    if (inet_pton(AF_INET6, tmp, addr) != 1) {
      *why = "tracker IPv6 address is not valid";
      return SHOAL_EBADLINK;
    }
  } else {
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++) {
      if (text[i] == ':') {
        if (colon != NULL) {
          *why = "tracker IPv6 address must be in brackets: [address]:port";
          return SHOAL_EBADLINK;
        }
        colon = text + i;
      }
    }
    if (colon == NULL) {
      *why = "tracker address needs a port: host:port";
      return SHOAL_EBADLINK;
    }
    host = text;
    host_len = (size_t)(colon - text);
    port = colon + 1;
    port_len = len - host_len - 1;
    if (host_len == 0 || host_len >= sizeof(tmp)) {
      *why = "tracker host is empty or too long";
      return SHOAL_EBADLINK;
    }
    memcpy(tmp, host, host_len);
    tmp[host_len] = '\0';
    if (looks_numeric(host, host_len)) {
      if (inet_pton(AF_INET, tmp, addr) != 1) {
        *why = "tracker IPv4 address is not valid";
        return SHOAL_EBADLINK;
      }
    } else if (!valid_hostname(host, host_len)) {
      *why = "tracker host is not a valid host name";
      return SHOAL_EBADLINK;
    }
  }
  unsigned long p = 0;
  if (port_len == 0 || port_len > 5) {
    *why = "tracker port must be a number from 1 to 65535";
    return SHOAL_EBADLINK;
  }
  for (size_t i = 0; i < port_len; i++) {
    if (port[i] < '0' || port[i] > '9') {
      *why = "tracker port must be a number from 1 to 65535";
      return SHOAL_EBADLINK;
    }
    p = p * 10 + (unsigned long)(port[i] - '0');
  }
  if (p == 0 || p > 65535) {
    *why = "tracker port must be a number from 1 to 65535";
    return SHOAL_EBADLINK;
  }
  memcpy(out->host, host, host_len);
  out->host[host_len] = '\0';
  out->port = (uint16_t)p;
  return 0;
}

int link_parse_tracker_key(const char *text, size_t len,
                           struct link_tracker *out, const char **why) {
  const char *at = NULL;
  int err;
  /* Neither an address nor a key holds '@', so the first one splits. */
  at = memchr(text, '@', len);
  if (at == NULL) {
    return link_parse_tracker(text, len, out, why);
  }
  err = link_parse_tracker(text, (size_t)(at - text), out, why);
  if (err != 0) {
    return err;
  }
  size_t klen = len - (size_t)(at - text) - 1;
  err = textid_decode(TEXTID_KEY, at + 1, klen, out->key);
  if (err != 0) {
    memset(out, 0, sizeof(*out));
    *why = err == SHOAL_ECHECKSUM
               ? "tracker key checksum does not match (mistyped?)"
               : "tracker key after '@' is not a 56-character key";
    return SHOAL_EBADLINK;
  }
  out->has_key = 1;
  return 0;
}

int link_same_tracker(const struct link_tracker *a,
                      const struct link_tracker *b) {
  unsigned char x[16];
  unsigned char y[16];
  if (a->port != b->port) {
    return 0;
  }
  if (inet_pton(AF_INET6, a->host, x) == 1) {
    return inet_pton(AF_INET6, b->host, y) == 1 && memcmp(x, y, 16) == 0;
  }
  if (inet_pton(AF_INET, a->host, x) == 1) {
    return inet_pton(AF_INET, b->host, y) == 1 && memcmp(x, y, 4) == 0;
  }
  return strcasecmp(a->host, b->host) == 0;
}

int link_check_trackers(const struct link_tracker *t, size_t n,
                        const char **why) {
  if (n == 0) {
    *why = "no tracker address";
    return SHOAL_EBADLINK;
  }
  if (n > LINK_MAX_TRACKERS) {
    *why = "too many trackers (at most 8)";
    return SHOAL_EBADLINK;
  }
  for (size_t i = 0; i < n; i++) {
    if (!t[i].has_key) {
      *why = "a tracker has no key";
      return SHOAL_EBADLINK;
    }
    if (t[i].tier >= LINK_MAX_TIERS) {
      *why = "too many tiers (at most 4)";
      return SHOAL_EBADLINK;
    }
    if (t[i].tier != (i == 0 ? 0 : t[i - 1].tier) &&
        (i == 0 || t[i].tier != t[i - 1].tier + 1)) {
      *why = "tiers must be numbered from 1 without a gap";
      return SHOAL_EBADLINK;
    }
    for (size_t j = 0; j < i; j++) {
      if (link_same_tracker(&t[i], &t[j])) {
        *why = "a tracker is named twice";
        return SHOAL_EBADLINK;
      }
    }
  }
  return 0;
}

void link_set_key(struct share_link *l, const uint8_t key[TEXTID_BYTES]) {
  for (size_t i = 0; i < l->tracker_count && i < LINK_MAX_TRACKERS; i++) {
    memcpy(l->trackers[i].key, key, TEXTID_BYTES);
    l->trackers[i].has_key = 1;
  }
}

unsigned link_tier_count(const struct link_tracker *t, size_t n) {
  return n == 0 ? 0 : (unsigned)t[n - 1].tier + 1;
}

static int parse_size(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0 || len > 20 || (len > 1 && s[0] == '0')) {
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return -1;
    }
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return -1;
    }
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* What link_parse has read so far besides the link itself. */
struct parse_state {
  unsigned seen;             /* 1 name, 2 size, 4 key */
  size_t plain;              /* tracker= parameters (the first form) */
  size_t tiered;             /* tierN= parameters */
  uint8_t key[TEXTID_BYTES]; /* key= of the first form */
};

/* Reads the tier number of a "tierN" parameter (the digits after "tier",
 * n bytes). Returns 0 with *tier 0-based, or SHOAL_EBADLINK. */
static int parse_tier(const char *d, size_t n, uint8_t *tier,
                      const char **why) {
  unsigned long v = 0;
  if (n == 0) {
    *why = "tier parameter without a number (tier1=, tier2=, ...)";
    return SHOAL_EBADLINK;
  }
  for (size_t i = 0; i < n; i++) {
    if (d[i] < '0' || d[i] > '9') {
      *why = "tier number is not a decimal number";
      return SHOAL_EBADLINK;
    }
    if (v <= LINK_MAX_TIERS) {
      v = v * 10 + (unsigned long)(d[i] - '0');
    }
  }
  if (d[0] == '0' && n > 1) {
    *why = "tier number has a leading zero";
    return SHOAL_EBADLINK;
  }
  if (v == 0) {
    *why = "tier numbers start at 1";
    return SHOAL_EBADLINK;
  }
  if (v > LINK_MAX_TIERS) {
    *why = "too many tiers (at most 4)";
    return SHOAL_EBADLINK;
  }
  *tier = (uint8_t)(v - 1);
  return 0;
}

static int parse_param(struct share_link *l, const char *k, size_t klen,
                       const char *v, size_t vlen, struct parse_state *ps,
                       const char **why) {
  char val[LINK_MAX_CHARS + 1];
  int n = pct_decode(v, vlen, val, sizeof(val), why);
  if (n < 0) {
    return n;
  }
  size_t vn = (size_t)n;

#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(k, s, klen) == 0)
  if (KEY_IS("name")) {
    if (ps->seen & 1) {
      *why = "name is given twice";
      return SHOAL_EBADLINK;
    }
    ps->seen |= 1;
    if (vn == 0 || vn > MANIFEST_MAX_SEGMENT || memchr(val, '/', vn) ||
        strlen(val) != vn || manifest_check_path(val, vn) != 0) {
      *why = "name is not a safe file name (empty, '.', '..', '/', "
             "control characters or invalid UTF-8)";
      return SHOAL_EBADLINK;
    }
    memcpy(l->name, val, vn + 1);
  } else if (KEY_IS("size")) {
    if (ps->seen & 2) {
      *why = "size is given twice";
      return SHOAL_EBADLINK;
    }
    ps->seen |= 2;
    if (parse_size(val, vn, &l->size) != 0) {
      *why = "size is not a decimal number of bytes";
      return SHOAL_EBADLINK;
    }
  } else if (KEY_IS("key")) {
    if (ps->seen & 4) {
      *why = "key is given twice";
      return SHOAL_EBADLINK;
    }
    ps->seen |= 4;
    int err = textid_decode(TEXTID_KEY, val, vn, ps->key);
    if (err == SHOAL_ECHECKSUM) {
      *why = "tracker key checksum does not match (mistyped?)";
      return SHOAL_EBADLINK;
    }
    if (err != 0) {
      *why = "tracker key is not a 56-character key";
      return SHOAL_EBADLINK;
    }
  } else if (KEY_IS("tracker") || (klen >= 4 && memcmp(k, "tier", 4) == 0)) {
    struct link_tracker *t = &l->trackers[l->tracker_count];
    int tiered = !KEY_IS("tracker");
    uint8_t tier = 0;
    int err;
    if (tiered && parse_tier(k + 4, klen - 4, &tier, why) != 0) {
      return SHOAL_EBADLINK;
    }
    if (l->tracker_count == LINK_MAX_TRACKERS) {
      *why = "too many trackers (at most 8)";
      return SHOAL_EBADLINK;
    }
    if (tiered) {
      if (memchr(val, '@', vn) == NULL) {
        *why = "a tier's tracker needs its key: tierN=host:port@key";
        return SHOAL_EBADLINK;
      }
      err = link_parse_tracker_key(val, vn, t, why);
    } else {
      err = link_parse_tracker(val, vn, t, why);
    }
    if (err != 0) {
      return err;
    }
    t->tier = tier;
    l->tracker_count++;
    if (tiered) {
      ps->tiered++;
    } else {
      ps->plain++;
    }
  } else if (klen >= 2 && k[0] == 'x' && k[1] == '-') {
    /* Extension parameter: ignored by this version. */
  } else {
    *why = "unknown parameter (expected name, size, tierN, tracker or key)";
    return SHOAL_EBADLINK;
  }
#undef KEY_IS
  return 0;
}

/* Puts the trackers of l in tier order, keeping the link's order within a
 * tier (an insertion sort: there are at most LINK_MAX_TRACKERS). */
static void sort_by_tier(struct share_link *l) {
  for (size_t i = 1; i < l->tracker_count; i++) {
    struct link_tracker t = l->trackers[i];
    size_t j = i;
    while (j > 0 && l->trackers[j - 1].tier > t.tier) {
      l->trackers[j] = l->trackers[j - 1];
      j--;
    }
    l->trackers[j] = t;
  }
}

int link_parse(const char *text, size_t len, struct share_link *out,
               const char **why) {
  static const char scheme[] = LINK_SCHEME;
  const size_t slen = sizeof(scheme) - 1;
  struct parse_state ps;
  const char *why_local = NULL;
  int err;

  if (why == NULL) {
    why = &why_local;
  }
  *why = NULL;
  memset(out, 0, sizeof(*out));
  memset(&ps, 0, sizeof(ps));
  if (len > LINK_MAX_CHARS) {
    *why = "link is longer than 4096 characters";
    return SHOAL_EBADLINK;
  }
  if (len < slen || strncasecmp(text, scheme, slen) != 0) {
    *why = "link does not start with 'shoal:'";
    return SHOAL_EBADLINK;
  }
  const char *p = text + slen;
  const char *end = text + len;
  const char *q = memchr(p, '?', (size_t)(end - p));
  size_t idlen = (size_t)((q ? q : end) - p);
  if (idlen == 0) {
    *why = "content ID is missing after 'shoal:'";
    goto fail;
  }
  err = textid_decode(TEXTID_CONTENT, p, idlen, out->id);
  if (err == SHOAL_ECHECKSUM) {
    *why = "content ID checksum does not match (mistyped, or not a "
           "content ID)";
    goto fail;
  }
  if (err != 0) {
    *why = "content ID is not 56 base32 characters";
    goto fail;
  }
  if (q == NULL) {
    *why = "link has no parameters (name, size, trackers)";
    goto fail;
  }
  p = q + 1;
  while (p <= end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    if (pe == p) {
      *why = "empty parameter (two '&' in a row, or a trailing '&')";
      goto fail;
    }
    if (eq == NULL || eq == p) {
      *why = "parameter is not of the form key=value";
      goto fail;
    }
    if (parse_param(out, p, (size_t)(eq - p), eq + 1, (size_t)(pe - eq - 1),
                    &ps, why) != 0) {
      goto fail;
    }
    if (amp == NULL) {
      break;
    }
    p = amp + 1;
  }
  if (!(ps.seen & 1)) {
    *why = "name is missing";
    goto fail;
  }
  if (!(ps.seen & 2)) {
    *why = "size is missing";
    goto fail;
  }
  if (ps.tiered > 0 && (ps.plain > 0 || (ps.seen & 4))) {
    *why = "link mixes tierN= with tracker= or key= (use one form)";
    goto fail;
  }
  if (out->tracker_count == 0) {
    *why = "no tracker address";
    goto fail;
  }
  if (ps.plain > 0) {
    /* The first form: one tier whose trackers share the key. */
    if (!(ps.seen & 4)) {
      *why = "tracker key is missing";
      goto fail;
    }
    for (size_t i = 0; i < out->tracker_count; i++) {
      memcpy(out->trackers[i].key, ps.key, TEXTID_BYTES);
      out->trackers[i].has_key = 1;
    }
  }
  sort_by_tier(out);
  if (link_check_trackers(out->trackers, out->tracker_count, why) != 0) {
    goto fail;
  }
  return 0;

fail:
  memset(out, 0, sizeof(*out));
  return SHOAL_EBADLINK;
}

/* Appends s to out at *o, percent-encoding what is not unreserved when
 * `encode` is set. Returns -1 when it does not fit. */
static int put(char *out, size_t cap, size_t *o, const char *s, size_t n,
               int encode) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!encode || is_unreserved(c)) {
      if (*o + 1 >= cap) {
        return -1;
      }
      out[(*o)++] = (char)c;
    } else {
      if (*o + 3 >= cap) {
        return -1;
      }
      out[(*o)++] = '%';
      out[(*o)++] = hex[c >> 4];
      out[(*o)++] = hex[c & 15];
    }
  }
  out[*o] = '\0';
  return 0;
}

/* Whether the trackers are one tier sharing one key: the first form says
 * that, and older peers read it. */
static int one_tier_one_key(const struct share_link *l) {
  for (size_t i = 1; i < l->tracker_count; i++) {
    if (l->trackers[i].tier != 0 ||
        memcmp(l->trackers[i].key, l->trackers[0].key, TEXTID_BYTES) != 0) {
      return 0;
    }
  }
  return 1;
}

int link_format(const struct share_link *l, char *out, size_t cap) {
  char id[TEXTID_STRLEN];
  char key[TEXTID_STRLEN];
  char num[32];
  size_t o = 0;
  const char *why;
  int bad = 0;
  int first_form;

  if (cap == 0) {
    return SHOAL_ETOOBIG;
  }
  out[0] = '\0';
  size_t nlen = strnlen(l->name, sizeof(l->name));
  if (l->tracker_count == 0 || l->tracker_count > LINK_MAX_TRACKERS ||
      nlen == 0 || nlen == sizeof(l->name) || memchr(l->name, '/', nlen) ||
      manifest_check_path(l->name, nlen) != 0 ||
      link_check_trackers(l->trackers, l->tracker_count, &why) != 0) {
    return SHOAL_EINVAL;
  }
  first_form = one_tier_one_key(l);
  textid_encode(TEXTID_CONTENT, l->id, id);
  bad |= put(out, cap, &o, LINK_SCHEME, strlen(LINK_SCHEME), 0);
  bad |= put(out, cap, &o, id, strlen(id), 0);
  bad |= put(out, cap, &o, "?name=", 6, 0);
  bad |= put(out, cap, &o, l->name, nlen, 1);
  snprintf(num, sizeof(num), "&size=%llu", (unsigned long long)l->size);
  bad |= put(out, cap, &o, num, strlen(num), 0);
  for (size_t i = 0; i < l->tracker_count; i++) {
    const struct link_tracker *t = &l->trackers[i];
    struct link_tracker check;
    char addr[LINK_MAX_HOST + 16];
    int v6 = strchr(t->host, ':') != NULL;
    snprintf(addr, sizeof(addr), v6 ? "[%s]:%u" : "%s:%u", t->host,
             (unsigned)t->port);
    if (link_parse_tracker(addr, strlen(addr), &check, &why) != 0) {
      out[0] = '\0';
      return SHOAL_EINVAL;
    }
    if (first_form) {
      bad |= put(out, cap, &o, "&tracker=", 9, 0);
      bad |= put(out, cap, &o, addr, strlen(addr), 0);
    } else {
      textid_encode(TEXTID_KEY, t->key, key);
      snprintf(num, sizeof(num), "&tier%u=", (unsigned)t->tier + 1);
      bad |= put(out, cap, &o, num, strlen(num), 0);
      bad |= put(out, cap, &o, addr, strlen(addr), 0);
      bad |= put(out, cap, &o, "@", 1, 0);
      bad |= put(out, cap, &o, key, strlen(key), 0);
    }
  }
  if (first_form) {
    textid_encode(TEXTID_KEY, l->trackers[0].key, key);
    bad |= put(out, cap, &o, "&key=", 5, 0);
    bad |= put(out, cap, &o, key, strlen(key), 0);
  }
  if (bad) {
    out[0] = '\0';
    return SHOAL_ETOOBIG;
  }
  return (int)o;
}
