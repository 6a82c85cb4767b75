#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

static struct {
  enum log_level level;
  FILE *file; /* NULL: stderr */
  char *path;
  void (*before)(void *arg); /* log_set_before_stderr */
  void *before_arg;
} log_state = {LOG_INFO, NULL, NULL, NULL, NULL};

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

int log_level_parse(const char *s) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, names[i]) == 0) {
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

void log_msg(enum log_level level, const char *who, const char *fmt, ...) {
  char line[1024];
  char stamp[32];
  struct tm tm;
  va_list ap;

  if (level > log_state.level) {
    return;
  }
  /* 0 (the epoch) when the clock cannot be read. */
  uint64_t now_ms = clock_wall_ms();
  time_t secs = (time_t)(now_ms / 1000u);
  gmtime_r(&secs, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  /* A record is one line: anything that came from outside and slipped
   * into the message cannot forge a second record. */
  for (char *p = line; *p != '\0'; p++) {
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) {
      *p = ' ';
    }
  }
  FILE *out = log_state.file ? log_state.file : stderr;
  if (out == stderr && log_state.before != NULL) {
    log_state.before(log_state.before_arg);
  }
  fprintf(out, "%s.%03dZ %-5s %s: %s\n", stamp, (int)(now_ms % 1000u),
          level_names[level], who, line);
}
