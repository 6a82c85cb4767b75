#include "tracker/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tracker/hashtab.h"

#define CATALOG_MIN_SLOTS 64

int catalog_init(struct catalog *c, size_t max, uint32_t ttl_s) {
  memset(c, 0, sizeof(*c));
  c->max = max;
  c->ttl_s = ttl_s;
  c->mask = CATALOG_MIN_SLOTS - 1;
  c->e = calloc(CATALOG_MIN_SLOTS, sizeof(*c->e));
  if (c->e == NULL) {
    return SHOAL_ENOMEM;
  }
  hashtab_keygen(c->key);
  return 0;
}

static void entry_free(struct catalog_entry *e) {
  free(e->name);
  free(e->folded);
  memset(e, 0, sizeof(*e));
}

void catalog_close(struct catalog *c) {
  if (c->e != NULL) {
    for (size_t i = 0; i <= c->mask; i++) {
      entry_free(&c->e[i]);
    }
  }
  free(c->e);
  memset(c, 0, sizeof(*c));
}

/* Never 0, which marks an empty slot. */
static uint64_t content_hash(const struct catalog *c, const uint8_t id[32]) {
  uint64_t v = hashtab_hash(c->key, id, TMSG_ID_BYTES);
  return v ? v : 1;
}

/* The slot holding content, or the empty slot where it would go. */
static size_t slot_for(const struct catalog *c, const uint8_t id[32],
                       uint64_t h) {
  size_t i = h & c->mask;
  while (
      c->e[i].hash != 0 &&
      (c->e[i].hash != h || memcmp(c->e[i].content, id, TMSG_ID_BYTES) != 0)) {
    i = (i + 1) & c->mask;
  }
  return i;
}

static int grow(struct catalog *c) {
  size_t size = (c->mask + 1) * 2;
  struct catalog_entry *t = calloc(size, sizeof(*t));
  if (t == NULL) {
    return SHOAL_ENOMEM;
  }
  for (size_t i = 0; i <= c->mask; i++) {
    if (c->e[i].hash != 0) {
      size_t j = c->e[i].hash & (size - 1);
      while (t[j].hash != 0) {
        j = (j + 1) & (size - 1);
      }
      t[j] = c->e[i];
    }
  }
  free(c->e);
  c->e = t;
  c->mask = size - 1;
  return 0;
}

/* Backward-shift deletion (linear probing without tombstones). */
static void remove_at(struct catalog *c, size_t i) {
  size_t j = i;
  entry_free(&c->e[i]);
  for (;;) {
    j = (j + 1) & c->mask;
    if (c->e[j].hash == 0) {
      break;
    }
    size_t home = c->e[j].hash & c->mask;
    if (hashtab_may_fill(i, j, home)) {
      c->e[i] = c->e[j];
      memset(&c->e[j], 0, sizeof(c->e[j]));
      i = j;
    }
  }
  c->n--;
}

static char *fold(const char *s) {
  size_t n = strlen(s);
  char *f = malloc(n + 1);
  if (f == NULL) {
    return NULL;
  }
  for (size_t i = 0; i <= n; i++) {
    char ch = s[i];
    f[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
  }
  return f;
}

const struct catalog_entry *catalog_find(const struct catalog *c,
                                         const uint8_t content[32]) {
  size_t i = slot_for(c, content, content_hash(c, content));
  return c->e[i].hash != 0 ? &c->e[i] : NULL;
}

int catalog_publish(struct catalog *c, const uint8_t publisher[32],
                    const struct tmsg_publish *p, uint32_t now_s) {
  uint64_t h = content_hash(c, p->content);
  size_t i = slot_for(c, p->content, h);
  struct catalog_entry *e = &c->e[i];
  char *name;
  char *folded;

  if (e->hash != 0 && memcmp(e->publisher, publisher, IDENTITY_PK_BYTES) != 0) {
    return SHOAL_EWRONGKEY;
  }
  if (e->hash == 0 && c->n >= c->max) {
    return SHOAL_ETOOBIG;
  }
  name = strdup(p->name);
  folded = fold(p->name);
  if (name == NULL || folded == NULL) {
    free(name);
    free(folded);
    return SHOAL_ENOMEM;
  }
  if (e->hash == 0) {
    if ((c->n + 1) * 4 > (c->mask + 1) * 3) {
      if (grow(c) != 0) {
        free(name);
        free(folded);
        return SHOAL_ENOMEM;
      }
      i = slot_for(c, p->content, h);
    }
    e = &c->e[i];
    e->hash = h;
    memcpy(e->content, p->content, TMSG_ID_BYTES);
    memcpy(e->publisher, publisher, IDENTITY_PK_BYTES);
    c->n++;
  } else {
    free(e->name);
    free(e->folded);
  }
  e->name = name;
  e->folded = folded;
  e->size = p->size;
  memcpy(e->manifest_sig, p->manifest_sig, IDENTITY_SIG_BYTES);
  e->last_seen = now_s;
  return 0;
}

void catalog_touch(struct catalog *c, const uint8_t content[32],
                   uint32_t now_s) {
  size_t i = slot_for(c, content, content_hash(c, content));
  if (c->e[i].hash != 0) {
    c->e[i].last_seen = now_s;
  }
}

/* Splits the folded query into words (at spaces and tabs). Returns the
 * count, or -1 for more than CATALOG_MAX_WORDS. */
static int split_words(char *q, const char **words) {
  int n = 0;
  char *p = q;
  for (;;) {
    while (*p == ' ' || *p == '\t') {
      *p++ = '\0';
    }
    if (*p == '\0') {
      return n;
    }
    if (n == CATALOG_MAX_WORDS) {
      return -1;
    }
    words[n++] = p;
    while (*p != '\0' && *p != ' ' && *p != '\t') {
      p++;
    }
  }
}

int catalog_search(const struct catalog *c, const struct tmsg_search *q,
                   struct tmsg_search_ok *reply) {
  const char *words[CATALOG_MAX_WORDS];
  char *folded = fold(q->query);
  uint32_t limit = q->limit > TMSG_MAX_RESULTS ? TMSG_MAX_RESULTS : q->limit;
  uint32_t total = 0;

  memset(reply, 0, sizeof(*reply));
  if (folded == NULL) {
    return SHOAL_ENOMEM;
  }
  int nw = split_words(folded, words);
  if (nw <= 0) {
    free(folded);
    return SHOAL_EINVAL;
  }
  for (size_t i = 0; i <= c->mask; i++) {
    const struct catalog_entry *e = &c->e[i];
    int all = e->hash != 0;
    for (int w = 0; w < nw && all; w++) {
      all = strstr(e->folded, words[w]) != NULL;
    }
    if (!all) {
      continue;
    }
    if (total >= q->offset && reply->count < limit) {
      struct tmsg_result *r = &reply->results[reply->count++];
      memcpy(r->content, e->content, TMSG_ID_BYTES);
      memcpy(r->publisher, e->publisher, IDENTITY_PK_BYTES);
      snprintf(r->name, sizeof(r->name), "%s", e->name);
      r->size = e->size;
    }
    total++;
  }
  reply->total = total;
  free(folded);
  return 0;
}

unsigned catalog_expire(struct catalog *c, uint32_t now_s, unsigned max_work) {
  unsigned removed = 0;
  for (unsigned w = 0; w < max_work && c->n > 0; w++) {
    size_t i = c->sweep & c->mask;
    struct catalog_entry *e = &c->e[i];
    if (e->hash != 0 && now_s > e->last_seen &&
        now_s - e->last_seen > c->ttl_s) {
      remove_at(c, i); /* another entry may now sit at i: look again */
      removed++;
    } else {
      c->sweep = i + 1;
    }
  }
  return removed;
}
