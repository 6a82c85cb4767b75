#include "tests/lib/jsonl.h"

#include <stdlib.h>
#include <string.h>

/* Nesting a line may use; shoal's events are flat, so this is generous. */
#define JSONL_MAX_DEPTH 16

struct cursor {
  const char *p;
};

/* Where a string value goes while it is unescaped; NULL out skips it. */
struct sink {
  char *out;
  size_t cap;
  size_t len;
  int full;
};

static void skip_ws(struct cursor *c) {
  while (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n') {
    c->p++;
  }
}

static void sink_put(struct sink *s, unsigned char ch) {
  if (s == NULL || s->out == NULL) {
    return;
  }
  if (s->len + 1 >= s->cap) {
    s->full = 1;
    return;
  }
  s->out[s->len++] = (char)ch;
  s->out[s->len] = '\0';
}

static void sink_utf8(struct sink *s, unsigned long cp) {
  if (cp < 0x80) {
    sink_put(s, (unsigned char)cp);
  } else if (cp < 0x800) {
    sink_put(s, (unsigned char)(0xc0 | (cp >> 6)));
    sink_put(s, (unsigned char)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    sink_put(s, (unsigned char)(0xe0 | (cp >> 12)));
    sink_put(s, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
    sink_put(s, (unsigned char)(0x80 | (cp & 0x3f)));
  } else {
    sink_put(s, (unsigned char)(0xf0 | (cp >> 18)));
    sink_put(s, (unsigned char)(0x80 | ((cp >> 12) & 0x3f)));
    sink_put(s, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
    sink_put(s, (unsigned char)(0x80 | (cp & 0x3f)));
  }
}

static int hex4(const char *p, unsigned long *out) {
  unsigned long v = 0;
  for (int i = 0; i < 4; i++) {
    char ch = p[i];
    v <<= 4;
    if (ch >= '0' && ch <= '9') {
      v |= (unsigned long)(ch - '0');
    } else if (ch >= 'a' && ch <= 'f') {
      v |= (unsigned long)(ch - 'a' + 10);
    } else if (ch >= 'A' && ch <= 'F') {
      v |= (unsigned long)(ch - 'A' + 10);
    } else {
      return -1;
    }
  }
  *out = v;
  return 0;
}

/* Parses a string at c (which must be at '"') into s. */
static int parse_string(struct cursor *c, struct sink *s) {
  if (*c->p != '"') {
    return -1;
  }
  c->p++;
  for (;;) {
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '\0' || ch < 0x20) {
      return -1; /* unterminated, or a raw control character */
    }
    c->p++;
    if (ch == '"') {
      return 0;
    }
    if (ch != '\\') {
      sink_put(s, ch);
      continue;
    }
    /* The one-letter escapes and the bytes they stand for. */
    static const char escaped[] = "\"\\/bfnrt";
    static const char meant[] = "\"\\/\b\f\n\r\t";
    char e = *c->p++;
    const char *one = e != '\0' ? strchr(escaped, e) : NULL;
    if (one != NULL) {
      sink_put(s, (unsigned char)meant[one - escaped]);
      continue;
    }
    switch (e) {
    case 'u': {
      unsigned long cp;
      if (hex4(c->p, &cp) != 0) {
        return -1;
      }
      c->p += 4;
      if (cp >= 0xd800 && cp < 0xdc00) {
        unsigned long lo;
        if (c->p[0] != '\\' || c->p[1] != 'u' || hex4(c->p + 2, &lo) != 0 ||
            lo < 0xdc00 || lo > 0xdfff) {
          return -1;
        }
        c->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      } else if (cp >= 0xdc00 && cp < 0xe000) {
        return -1;
      }
      sink_utf8(s, cp);
      break;
    }
    default:
      return -1;
    }
  }
}

/* Past the run of digits at p; NULL when there is none. */
static const char *digits(const char *p) {
  if (!(*p >= '0' && *p <= '9')) {
    return NULL;
  }
  while (*p >= '0' && *p <= '9') {
    p++;
  }
  return p;
}

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(struct cursor *c) {
  const char *p = c->p;
  if (*p == '-') {
    p++;
  }
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    p = digits(p);
  } else {
    return -1;
  }
  if (*p == '.' && (p = digits(p + 1)) == NULL) {
    return -1;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') {
      p++;
    }
    if ((p = digits(p)) == NULL) {
      return -1;
    }
  }
  c->p = p;
  return 0;
}

static int parse_value(struct cursor *c, int depth);

/* Steps over the byte that opens an object or array and any blanks after
 * it; 1 when the container closes (with close) at once, else 0. */
static int opens_empty(struct cursor *c, char close) {
  c->p++;
  skip_ws(c);
  if (*c->p == close) {
    c->p++;
    return 1;
  }
  return 0;
}

/* After a member or an element: 1 at a ',' (another follows), 0 at close
 * (the container ends), -1 at anything else. */
static int next_item(struct cursor *c, char close) {
  skip_ws(c);
  if (*c->p == ',' || *c->p == close) {
    return *c->p++ == ',';
  }
  return -1;
}

static int parse_object(struct cursor *c, int depth) {
  int more = !opens_empty(c, '}');
  while (more == 1) {
    skip_ws(c);
    if (parse_string(c, NULL) != 0) {
      return -1;
    }
    skip_ws(c);
    if (*c->p != ':') {
      return -1;
    }
    c->p++;
    if (parse_value(c, depth + 1) != 0) {
      return -1;
    }
    more = next_item(c, '}');
  }
  return more;
}

static int parse_array(struct cursor *c, int depth) {
  int more = !opens_empty(c, ']');
  while (more == 1) {
    if (parse_value(c, depth + 1) != 0) {
      return -1;
    }
    more = next_item(c, ']');
  }
  return more;
}

static int parse_literal(struct cursor *c, const char *word) {
  size_t n = strlen(word);
  if (strncmp(c->p, word, n) != 0) {
    return -1;
  }
  c->p += n;
  return 0;
}

static int parse_value(struct cursor *c, int depth) {
  if (depth > JSONL_MAX_DEPTH) {
    return -1;
  }
  skip_ws(c);
  switch (*c->p) {
  case '{':
    return parse_object(c, depth);
  case '[':
    return parse_array(c, depth);
  case '"':
    return parse_string(c, NULL);
  case 't':
    return parse_literal(c, "true");
  case 'f':
    return parse_literal(c, "false");
  case 'n':
    return parse_literal(c, "null");
  default:
    return parse_number(c);
  }
}

int jsonl_valid(const char *line) {
  struct cursor c = {line};
  skip_ws(&c);
  if (*c.p != '{' || parse_value(&c, 0) != 0) {
    return 0;
  }
  skip_ws(&c);
  return *c.p == '\0';
}

/* Finds the top-level key in a valid line. On success *start and *end
 * bracket its value's text. */
static int find_value(const char *line, const char *key, const char **start,
                      const char **end) {
  struct cursor c = {line};
  size_t klen = strlen(key);
  char name[256];

  if (!jsonl_valid(line)) {
    return -1;
  }
  skip_ws(&c);
  c.p++; /* '{' */
  for (;;) {
    skip_ws(&c);
    if (*c.p != '"') {
      return -1; /* '}' of an object without the key */
    }
    struct sink s = {name, sizeof(name), 0, 0};
    name[0] = '\0';
    if (parse_string(&c, &s) != 0) {
      return -1;
    }
    skip_ws(&c);
    c.p++; /* ':' (checked by jsonl_valid) */
    skip_ws(&c);
    const char *v = c.p;
    if (parse_value(&c, 1) != 0) {
      return -1;
    }
    if (!s.full && s.len == klen && memcmp(name, key, klen) == 0) {
      *start = v;
      *end = c.p;
      return 0;
    }
    skip_ws(&c);
    if (*c.p != ',') {
      return -1;
    }
    c.p++;
  }
}

int jsonl_str(const char *line, const char *key, char *out, size_t cap) {
  const char *v;
  const char *e;
  if (cap == 0) {
    return -1;
  }
  out[0] = '\0';
  if (find_value(line, key, &v, &e) != 0 || *v != '"') {
    return -1;
  }
  struct cursor c = {v};
  struct sink s = {out, cap, 0, 0};
  if (parse_string(&c, &s) != 0 || s.full) {
    out[0] = '\0';
    return -1;
  }
  return 0;
}

int jsonl_u64(const char *line, const char *key, uint64_t *out) {
  const char *v;
  const char *e;
  uint64_t n = 0;
  *out = 0;
  if (find_value(line, key, &v, &e) != 0 || v == e) {
    return -1;
  }
  for (const char *p = v; p < e; p++) {
    if (*p < '0' || *p > '9') {
      return -1;
    }
    unsigned d = (unsigned)(*p - '0');
    if (n > (UINT64_MAX - d) / 10u) {
      return -1;
    }
    n = n * 10u + d;
  }
  *out = n;
  return 0;
}

int jsonl_num(const char *line, const char *key, double *out) {
  const char *v;
  const char *e;
  char tmp[64];
  *out = 0;
  if (find_value(line, key, &v, &e) != 0) {
    return -1;
  }
  size_t n = (size_t)(e - v);
  if (n == 0 || n >= sizeof(tmp) || !(*v == '-' || (*v >= '0' && *v <= '9'))) {
    return -1;
  }
  memcpy(tmp, v, n);
  tmp[n] = '\0';
  *out = strtod(tmp, NULL);
  return 0;
}

int jsonl_is_event(const char *line, const char *ev) {
  char name[64];
  return jsonl_str(line, "event", name, sizeof(name)) == 0 &&
         strcmp(name, ev) == 0;
}
