/* One-line log records: "2026-11-23T19:06:00.123Z INFO  tracker: message",
 * or, in the JSON format, one object a line:
 * {"time":"2026-11-23T19:06:00.123Z","level":"info","module":"tracker",
 *  "message":"..."} with any fields of the record beside them.
 *
 * The level filter and the output stream are process-wide settings made once
 * at start-up (and by log_reopen after SIGHUP); they are the only mutable
 * state outside a daemon's context struct, and only the loop thread writes
 * log lines. Keys and other secrets are never passed to the logger.
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <stddef.h>

enum log_level {
  LOG_ERROR = 0,
  LOG_WARN = 1,
  LOG_INFO = 2,
  LOG_DEBUG = 3,
};

enum log_format {
  LOG_FORMAT_TEXT = 0,
  LOG_FORMAT_JSON = 1,
};

/* A named value that a record carries besides its message: a field of its
 * own in the JSON format, " key=value" after the message in text. Keys
 * are the program's own words (not "time", "level", "module" or
 * "message"); values may come from anywhere and are escaped. */
struct log_field {
  const char *key;
  const char *value;
};

/* Parses "error", "warn", "info" or "debug". Returns the level or -1. */
int log_level_parse(const char *s);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "text" or "json". Returns the format or -1. */
int log_format_parse(const char *s);
void log_set_format(enum log_format format);
/* Sends log lines to path (appending), or to stderr when path is NULL.
 * Returns 0 or a negative errno; on failure the previous stream stays. */
int log_open(const char *path);
/* Opens the same path again (after the file was rotated). */
int log_reopen(void);
void log_close(void);
/* Calls fn(arg) before each record is written to stderr (not to a file):
 * a program that keeps a progress line on the terminal clears it there,
 * so that a record never lands in the middle of it. NULL removes it. */
void log_set_before_stderr(void (*fn)(void *arg), void *arg);

__attribute__((format(printf, 3, 4))) void
log_msg(enum log_level level, const char *who, const char *fmt, ...);

/* A record with n fields (fields may be NULL when n is 0). */
__attribute__((format(printf, 5, 6))) void
log_fields(enum log_level level, const char *who,
           const struct log_field *fields, size_t n, const char *fmt, ...);

#define log_error(who, ...) log_msg(LOG_ERROR, who, __VA_ARGS__)
#define log_warn(who, ...) log_msg(LOG_WARN, who, __VA_ARGS__)
#define log_info(who, ...) log_msg(LOG_INFO, who, __VA_ARGS__)
#define log_debug(who, ...) log_msg(LOG_DEBUG, who, __VA_ARGS__)

#endif
