/* The logger: the level filter, the output stream and the two record
 * formats (text and JSON lines), with everything a record carries made
 * safe for one line. */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

/* The longest message kept, and the longest record line (a message whose
 * every byte needs a six-character JSON escape, its fields and the rest). */
#define LOG_MESSAGE_BYTES 1024
#define LOG_LINE_BYTES 8192

static struct {
  enum log_level level;
  enum log_format format;
  FILE *file; /* NULL: stderr */
  char *path;
  void (*before)(void *arg); /* log_set_before_stderr */
  void *before_arg;
} log_state = {LOG_INFO, LOG_FORMAT_TEXT, NULL, NULL, NULL, NULL};

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_words[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_words[i]) == 0) {
      return i;
    }
  }
  return -1;
}

void log_set_level(enum log_level level) {
  log_state.level = level;
}

enum log_level log_get_level(void) {
  return log_state.level;
}

int log_format_parse(const char *s) {
  if (strcmp(s, "text") == 0) {
    return LOG_FORMAT_TEXT;
  }
  if (strcmp(s, "json") == 0) {
    return LOG_FORMAT_JSON;
  }
  return -1;
}

void log_set_format(enum log_format format) {
  log_state.format = format;
}

int log_open(const char *path) {
  if (path == NULL) {
    log_close();
    return 0;
  }
  FILE *f = fopen(path, "a");
  if (f == NULL) {
    return -errno;
  }
  char *copy = strdup(path);
  if (copy == NULL) {
    fclose(f);
    return -ENOMEM;
  }
  log_close();
  setvbuf(f, NULL, _IOLBF, 0);
  log_state.file = f;
  log_state.path = copy;
  return 0;
}

int log_reopen(void) {
  if (log_state.path == NULL) {
    return 0;
  }
  char *path = strdup(log_state.path);
  if (path == NULL) {
    return -ENOMEM;
  }
  int err = log_open(path);
  free(path);
  return err;
}

void log_close(void) {
  if (log_state.file != NULL) {
    fclose(log_state.file);
  }
  free(log_state.path);
  log_state.file = NULL;
  log_state.path = NULL;
}

void log_set_before_stderr(void (*fn)(void *arg), void *arg) {
  log_state.before = fn;
  log_state.before_arg = arg;
}

/* A line being built in a fixed buffer: appends stop, whole, at the end
 * (the caller keeps room for what must close the line). */
struct line {
  char *p;
  size_t len;
  size_t cap;
  int full; /* an append did not fit */
};

static void put(struct line *l, const char *s, size_t n) {
  if (n <= l->cap - l->len) {
    memcpy(l->p + l->len, s, n);
    l->len += n;
  } else {
    l->full = 1;
  }
}

static void puts_(struct line *l, const char *s) {
  put(l, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4), or 0 when the
 * bytes there are not one (a stray continuation byte, an overlong form, a
 * surrogate, a value past U+10FFFF, or a sequence cut short). */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  size_t n;
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi) {
    return 0;
  }
  for (size_t i = 2; i < n; i++) {
    if (s[i] < 0x80 || s[i] > 0xbf) {
      return 0;
    }
  }
  return n;
}

/* Appends s as the inside of a JSON string: quotes, backslashes and
 * control characters escaped, and each byte that is not part of
 * well-formed UTF-8 replaced by U+FFFD, so that the line always parses. */
static void put_json_text(struct line *l, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p != '\0') {
    char esc[8];
    size_t n = utf8_len(p);
    if (n == 0) {
      puts_(l, "\\ufffd");
      p++;
    } else if (n > 1) {
      put(l, (const char *)p, n);
      p += n;
    } else if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      put(l, esc, 2);
      p++;
    } else if (*p == '\n') {
      puts_(l, "\\n");
      p++;
    } else if (*p == '\t') {
      puts_(l, "\\t");
      p++;
    } else if (*p < 0x20 || *p == 0x7f) {
      snprintf(esc, sizeof(esc), "\\u%04x", *p);
      puts_(l, esc);
      p++;
    } else {
      put(l, (const char *)p, 1);
      p++;
    }
  }
}

/* Appends s with control characters made spaces: a record is one line,
 * so anything that came from outside and slipped into it cannot forge a
 * second record. */
static void put_plain_text(struct line *l, const char *s) {
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    char one = c < 0x20 || c == 0x7f ? ' ' : *s;
    put(l, &one, 1);
  }
}

static void write_record(enum log_level level, const char *who,
                         const struct log_field *fields, size_t n,
                         const char *fmt, va_list ap) {
  char message[LOG_MESSAGE_BYTES];
  char buf[LOG_LINE_BYTES];
  char stamp[40];
  char when[32];
  struct tm tm;
  /* Two bytes stay free for what closes the line ("}\n" or "\n"). The
   * message, escaped, takes at most six times LOG_MESSAGE_BYTES, so only
   * fields can run out of room. */
  struct line l = {buf, 0, sizeof(buf) - 2, 0};

  /* 0 (the epoch) when the clock cannot be read. */
  uint64_t now_ms = clock_wall_ms();
  time_t secs = (time_t)(now_ms / 1000u);
  gmtime_r(&secs, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp, sizeof(stamp), "%s.%03dZ", when, (int)(now_ms % 1000u));
  vsnprintf(message, sizeof(message), fmt, ap);
  if (log_state.format == LOG_FORMAT_JSON) {
    puts_(&l, "{\"time\":\"");
    puts_(&l, stamp);
    puts_(&l, "\",\"level\":\"");
    puts_(&l, level_words[level]);
    puts_(&l, "\",\"module\":\"");
    put_json_text(&l, who);
    puts_(&l, "\",\"message\":\"");
    put_json_text(&l, message);
    put(&l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
      size_t keep = l.len;
      l.full = 0;
      puts_(&l, ",\"");
      put_json_text(&l, fields[i].key);
      puts_(&l, "\":\"");
      put_json_text(&l, fields[i].value ? fields[i].value : "");
      put(&l, "\"", 1);
      if (l.full) {
        l.len = keep; /* a field that does not fit is left out whole */
        break;
      }
    }
    buf[l.len++] = '}';
  } else {
    char lvl[8];
    snprintf(lvl, sizeof(lvl), "%-5s ", level_names[level]);
    puts_(&l, stamp);
    put(&l, " ", 1);
    puts_(&l, lvl);
    put_plain_text(&l, who);
    puts_(&l, ": ");
    put_plain_text(&l, message);
    for (size_t i = 0; i < n; i++) {
      put(&l, " ", 1);
      put_plain_text(&l, fields[i].key);
      put(&l, "=", 1);
      put_plain_text(&l, fields[i].value ? fields[i].value : "");
    }
  }
  buf[l.len++] = '\n';
  FILE *out = log_state.file ? log_state.file : stderr;
  if (out == stderr && log_state.before != NULL) {
    log_state.before(log_state.before_arg);
  }
  fwrite(buf, 1, l.len, out);
}

void log_msg(enum log_level level, const char *who, const char *fmt, ...) {
  va_list ap;
  if (level > log_state.level) {
    return;
  }
  va_start(ap, fmt);
  write_record(level, who, NULL, 0, fmt, ap);
  va_end(ap);
}

void log_fields(enum log_level level, const char *who,
                const struct log_field *fields, size_t n, const char *fmt,
                ...) {
  va_list ap;
  if (level > log_state.level) {
    return;
  }
  va_start(ap, fmt);
  write_record(level, who, fields, n, fmt, ap);
  va_end(ap);
}
