/* Tests for common/log: level names, the level filter, the one-line record
 * format, and moving the output between files and stderr.
 *
 * Log lines often carry text that came from the network (a peer's reason,
 * a file name), so the record must stay one line whatever the message
 * holds. Every test logs into its own temporary folder and ends with
 * log_close(), so no stream is left open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/testutil.h"

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
#define STAMP_CHARS 24
/* The stamp, a space, the level padded to five, a space. */
#define PREFIX_CHARS (STAMP_CHARS + 1 + 5 + 1)

struct fixture {
  char dir[512];
  char path[600];
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    return -1;
  }
  tu_tmpdir(f->dir, sizeof(f->dir));
  tu_path(f->path, sizeof(f->path), f->dir, "shoal.log");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  log_close();
  log_set_level(LOG_INFO);
  log_set_format(LOG_FORMAT_TEXT);
  tu_rmtree(f->dir);
  free(f);
  return 0;
}

/* The whole file as a NUL-terminated string ("" when it does not exist). */
static char *read_log(const char *path) {
  size_t len = 0;
  char *s = tu_read_text(path, &len);
  if (s == NULL) {
    s = strdup("");
    assert_non_null(s);
  }
  /* A NUL inside the file would hide the rest from the string checks. */
  assert_int_equal(strlen(s), len);
  return s;
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s != '\0'; s++) {
    n += *s == '\n';
  }
  return n;
}

/* The n-th line (from 0) without its newline, copied into out. */
static void nth_line(const char *s, size_t n, char *out, size_t cap) {
  for (size_t i = 0; i < n; i++) {
    s = strchr(s, '\n');
    assert_non_null(s);
    s++;
  }
  const char *end = strchr(s, '\n');
  assert_non_null(end);
  size_t len = (size_t)(end - s);
  assert_true(len < cap);
  memcpy(out, s, len);
  out[len] = '\0';
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ" and returns its seconds since the epoch
 * (as UTC). */
static time_t parse_stamp(const char *s) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  for (size_t i = 0; i < STAMP_CHARS; i++) {
    if (shape[i] == 'd') {
      assert_true(is_digit(s[i]));
    } else {
      assert_int_equal(s[i], shape[i]);
    }
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = (int)strtol(s, NULL, 10) - 1900;
  tm.tm_mon = (int)strtol(s + 5, NULL, 10) - 1;
  tm.tm_mday = (int)strtol(s + 8, NULL, 10);
  tm.tm_hour = (int)strtol(s + 11, NULL, 10);
  tm.tm_min = (int)strtol(s + 14, NULL, 10);
  tm.tm_sec = (int)strtol(s + 17, NULL, 10);
  assert_in_range(tm.tm_mon, 0, 11);
  assert_in_range(tm.tm_mday, 1, 31);
  assert_in_range(tm.tm_hour, 0, 23);
  assert_in_range(tm.tm_min, 0, 59);
  assert_in_range(tm.tm_sec, 0, 60);
  return timegm(&tm);
}

/* ------------------------------------------------------------------------ */

static void log_level_parse_knows_the_four_names(void **state) {
  (void)state;
  assert_int_equal(log_level_parse("error"), LOG_ERROR);
  assert_int_equal(log_level_parse("warn"), LOG_WARN);
  assert_int_equal(log_level_parse("info"), LOG_INFO);
  assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
}

static void log_level_parse_refuses_everything_else(void **state) {
  (void)state;
  static const char *const junk[] = {
      "",       "ERROR", "Warn", "warning", "inf", "infos",  "debug ", " info",
      "info\n", "trace", "0",    "3",       "err", "debugg", "fatal",  "-1",
  };
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
    assert_int_equal(log_level_parse(junk[i]), -1);
  }
}

static void log_set_level_is_read_back_by_log_get_level(void **state) {
  (void)state;
  for (int l = LOG_ERROR; l <= LOG_DEBUG; l++) {
    log_set_level((enum log_level)l);
    assert_int_equal(log_get_level(), l);
  }
}

static void log_level_warn_writes_only_error_and_warn(void **state) {
  struct fixture *f = *state;
  char line[256];
  assert_int_equal(log_open(f->path), 0);
  log_set_level(LOG_WARN);
  log_error("t", "one %d", 1);
  log_warn("t", "two %d", 2);
  log_info("t", "three %d", 3);
  log_debug("t", "four %d", 4);

  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 2);
  nth_line(s, 0, line, sizeof(line));
  assert_string_equal(line + STAMP_CHARS, " ERROR t: one 1");
  nth_line(s, 1, line, sizeof(line));
  assert_string_equal(line + STAMP_CHARS, " WARN  t: two 2");
  assert_null(strstr(s, "three"));
  assert_null(strstr(s, "four"));
  free(s);
}

static void log_each_level_lets_through_itself_and_more_severe(void **state) {
  struct fixture *f = *state;
  static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  char line[256];
  char want[64];

  for (int set = LOG_ERROR; set <= LOG_DEBUG; set++) {
    char path[700];
    snprintf(path, sizeof(path), "%s/level-%d.log", f->dir, set);
    assert_int_equal(log_open(path), 0);
    log_set_level((enum log_level)set);
    for (int l = LOG_ERROR; l <= LOG_DEBUG; l++) {
      log_msg((enum log_level)l, "lv", "at %d", l);
    }
    char *s = read_log(path);
    assert_int_equal(count_lines(s), (size_t)set + 1);
    for (int l = 0; l <= set; l++) {
      nth_line(s, (size_t)l, line, sizeof(line));
      snprintf(want, sizeof(want), " %-5s lv: at %d", names[l], l);
      assert_string_equal(line + STAMP_CHARS, want);
    }
    free(s);
  }
}

static void
log_line_is_utc_stamp_then_level_then_who_and_message(void **state) {
  struct fixture *f = *state;
  char line[256];
  struct timespec before;
  struct timespec after;

  /* A zone seven hours west of UTC: a stamp made with local time would be
   * far outside the interval checked below. */
  char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
  setenv("TZ", "SHL+7", 1);
  tzset();

  assert_int_equal(log_open(f->path), 0);
  log_set_level(LOG_DEBUG);
  clock_gettime(CLOCK_REALTIME, &before);
  log_info("tracker", "listening on %s port %u", "::", 7070u);
  clock_gettime(CLOCK_REALTIME, &after);
  log_debug("peer", "x");

  if (old_tz != NULL) {
    setenv("TZ", old_tz, 1);
    free(old_tz);
  } else {
    unsetenv("TZ");
  }
  tzset();

  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 2);
  nth_line(s, 0, line, sizeof(line));
  /* The logger reads the same wall clock between the two readings here, so
   * its stamp, to the millisecond, lies between them. */
  int64_t ms = (int64_t)parse_stamp(line) * 1000 + strtol(line + 20, NULL, 10);
  int64_t lo = (int64_t)before.tv_sec * 1000 + before.tv_nsec / 1000000;
  int64_t hi = (int64_t)after.tv_sec * 1000 + after.tv_nsec / 1000000;
  assert_in_range(ms, lo, hi);
  assert_string_equal(line + STAMP_CHARS,
                      " INFO  tracker: listening on :: port 7070");
  nth_line(s, 1, line, sizeof(line));
  parse_stamp(line);
  assert_string_equal(line + STAMP_CHARS, " DEBUG peer: x");
  free(s);
}

static void log_control_characters_cannot_start_a_second_line(void **state) {
  struct fixture *f = *state;
  char line[256];
  assert_int_equal(log_open(f->path), 0);
  /* A forged record hidden in a message, as a hostile peer would send. */
  log_warn("peer", "reason: %s",
           "bad\n2026-01-01T00:00:00.000Z ERROR tracker: forged\r\x1b[2Jx");
  log_warn("peer", "tab\there\x01\x1f end\n");

  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 2);
  for (const char *p = s; *p != '\0'; p++) {
    assert_true(*p == '\n' || (unsigned char)*p >= 0x20);
  }
  nth_line(s, 0, line, sizeof(line));
  assert_string_equal(
      line + PREFIX_CHARS,
      "peer: reason: bad 2026-01-01T00:00:00.000Z ERROR tracker: forged  [2Jx");
  nth_line(s, 1, line, sizeof(line));
  assert_string_equal(line + PREFIX_CHARS, "peer: tab here   end ");
  free(s);
}

static void log_very_long_message_is_truncated_to_one_line(void **state) {
  struct fixture *f = *state;
  enum { LONG = 5000 };
  char *msg = malloc(LONG + 1);
  assert_non_null(msg);
  memset(msg, 'x', LONG);
  memcpy(msg + LONG - 3, "END", 3);
  msg[LONG] = '\0';

  assert_int_equal(log_open(f->path), 0);
  log_error("w", "%s", msg);
  log_error("w", "after");
  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 2);
  char *nl = strchr(s, '\n');
  size_t first = (size_t)(nl - s);
  /* Cut, not dropped: a long prefix of the message is there. */
  assert_true(first > PREFIX_CHARS + 900);
  assert_true(first < 2048);
  assert_null(strstr(s, "END"));
  assert_memory_equal(s + PREFIX_CHARS, "w: xxxx", 7);
  assert_non_null(strstr(nl + 1, "ERROR w: after\n"));
  free(s);
  free(msg);
}

static void
log_reopen_after_rename_writes_a_new_file_at_the_path(void **state) {
  struct fixture *f = *state;
  char moved[700];
  snprintf(moved, sizeof(moved), "%s.1", f->path);

  assert_int_equal(log_open(f->path), 0);
  log_error("rot", "before");
  assert_int_equal(rename(f->path, moved), 0);
  /* Until the reopen the stream still writes to the renamed file. */
  log_error("rot", "still old");
  assert_int_equal(log_reopen(), 0);
  log_error("rot", "after");

  char *old_s = read_log(moved);
  char *new_s = read_log(f->path);
  assert_int_equal(count_lines(old_s), 2);
  assert_non_null(strstr(old_s, "rot: before\n"));
  assert_non_null(strstr(old_s, "rot: still old\n"));
  assert_int_equal(count_lines(new_s), 1);
  assert_non_null(strstr(new_s, "rot: after\n"));
  free(old_s);
  free(new_s);
}

static void log_open_appends_to_an_existing_file(void **state) {
  struct fixture *f = *state;
  static const char prior[] = "an older line\n";
  tu_write_file(f->dir, "shoal.log", prior, strlen(prior));
  assert_int_equal(log_open(f->path), 0);
  log_error("a", "new");
  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 2);
  assert_memory_equal(s, prior, strlen(prior));
  assert_non_null(strstr(s, "ERROR a: new\n"));
  free(s);
}

static void
log_open_on_unwritable_path_fails_and_keeps_the_old_stream(void **state) {
  struct fixture *f = *state;
  char missing[700];
  snprintf(missing, sizeof(missing), "%s/no/such/folder/x.log", f->dir);

  assert_int_equal(log_open(f->path), 0);
  log_error("keep", "first");
  assert_int_equal(log_open(missing), -ENOENT);
  log_error("keep", "second");
  /* A folder cannot be opened for appending either. */
  int err = log_open(f->dir);
  assert_true(err < 0);
  log_error("keep", "third");
  /* A reopen still goes to the original path. */
  assert_int_equal(log_reopen(), 0);
  log_error("keep", "fourth");

  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 4);
  assert_non_null(strstr(s, "keep: first\n"));
  assert_non_null(strstr(s, "keep: second\n"));
  assert_non_null(strstr(s, "keep: third\n"));
  assert_non_null(strstr(s, "keep: fourth\n"));
  free(s);
  assert_int_equal(access(missing, F_OK), -1);
}

/* Runs fn with stderr sent to a file in dir, and returns what it wrote. */
static char *capture_stderr(const char *dir, void (*fn)(void)) {
  char path[700];
  snprintf(path, sizeof(path), "%s/stderr.txt", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  fn();
  fflush(stderr);
  assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
  close(saved);
  close(fd);
  return read_log(path);
}

static void log_two_lines(void) {
  log_error("err", "to stderr");
  log_warn("err", "again");
}

static void log_after_close_goes_to_stderr(void **state) {
  struct fixture *f = *state;
  assert_int_equal(log_open(f->path), 0);
  log_error("file", "in the file");
  log_close();
  /* Closing twice is harmless. */
  log_close();

  char *err = capture_stderr(f->dir, log_two_lines);
  assert_int_equal(count_lines(err), 2);
  assert_non_null(strstr(err, " ERROR err: to stderr\n"));
  assert_non_null(strstr(err, " WARN  err: again\n"));
  parse_stamp(err);
  free(err);

  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 1);
  assert_null(strstr(s, "to stderr"));
  free(s);
  /* With no file, a reopen has nothing to do. */
  assert_int_equal(log_reopen(), 0);
}

static void log_open_null_switches_back_to_stderr(void **state) {
  struct fixture *f = *state;
  assert_int_equal(log_open(f->path), 0);
  assert_int_equal(log_open(NULL), 0);
  char *err = capture_stderr(f->dir, log_two_lines);
  assert_int_equal(count_lines(err), 2);
  free(err);
  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 0);
  free(s);
}

static void mark_before(void *arg) {
  (*(int *)arg)++;
  fputs("[cleared]", stderr);
}

static int marks;

static void log_with_a_hook(void) {
  log_set_before_stderr(mark_before, &marks);
  log_warn("w", "first");
  log_info("i", "second");
  log_debug("d", "filtered out: no hook either");
  log_set_before_stderr(NULL, NULL);
  log_warn("w", "after the hook is gone");
}

/* A program with a progress line on the terminal clears it before each
 * record, so that a record never starts in the middle of the line; a log
 * file has no such line and gets no call. */
static void hook_runs_before_each_stderr_record_only(void **state) {
  struct fixture *f = *state;
  marks = 0;
  char *err = capture_stderr(f->dir, log_with_a_hook);
  assert_int_equal(marks, 2);
  const char *first = strstr(err, "[cleared]");
  assert_non_null(first);
  assert_non_null(strstr(first + 9, "[cleared]"));
  assert_true(first < strstr(err, " WARN  w: first\n"));
  assert_null(strstr(strstr(err, " INFO  i: second\n"), "[cleared]"));
  free(err);
  marks = 0;
  assert_int_equal(log_open(f->path), 0);
  log_set_before_stderr(mark_before, &marks);
  log_warn("w", "to the file");
  log_set_before_stderr(NULL, NULL);
  assert_int_equal(marks, 0);
}

/* ------------------------------------------------------------------------ */
/* The JSON format and fields */

static void log_format_parse_knows_text_and_json_only(void **state) {
  (void)state;
  assert_int_equal(log_format_parse("text"), LOG_FORMAT_TEXT);
  assert_int_equal(log_format_parse("json"), LOG_FORMAT_JSON);
  static const char *const junk[] = {"",      "JSON",   "Text", "json ",
                                     "jsonl", "logfmt", "0",    "1"};
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
    assert_int_equal(log_format_parse(junk[i]), -1);
  }
}

/* The only line of the log at path, which must be one JSON object. */
static char *only_json_line(const char *path) {
  char *s = read_log(path);
  assert_int_equal(count_lines(s), 1);
  s[strlen(s) - 1] = '\0';
  if (!jsonl_valid(s)) {
    fail_msg("not one JSON object: %s", s);
  }
  return s;
}

static void json_record_has_time_level_module_and_message(void **state) {
  struct fixture *f = *state;
  char v[64];
  assert_int_equal(log_open(f->path), 0);
  log_set_format(LOG_FORMAT_JSON);
  time_t before = time(NULL);
  log_warn("tracker", "refused %d of %s", 3, "them");
  char *s = only_json_line(f->path);
  assert_int_equal(jsonl_str(s, "time", v, sizeof(v)), 0);
  assert_int_equal(strlen(v), STAMP_CHARS);
  time_t at = parse_stamp(v);
  assert_true(at >= before - 1 && at <= time(NULL) + 1);
  assert_int_equal(jsonl_str(s, "level", v, sizeof(v)), 0);
  assert_string_equal(v, "warn");
  assert_int_equal(jsonl_str(s, "module", v, sizeof(v)), 0);
  assert_string_equal(v, "tracker");
  assert_int_equal(jsonl_str(s, "message", v, sizeof(v)), 0);
  assert_string_equal(v, "refused 3 of them");
  free(s);
}

static void json_escapes_whatever_the_message_holds(void **state) {
  struct fixture *f = *state;
  char v[512];
  assert_int_equal(log_open(f->path), 0);
  log_set_format(LOG_FORMAT_JSON);
  /* Quotes, backslashes, control characters, well-formed UTF-8 kept as
   * it is, and bytes that are not UTF-8: a stray continuation, an overlong
   * form, a surrogate, a sequence cut short by the end. */
  log_info("t", "%s",
           "q\" b\\ n\n t\t c\x01 d\x7f "
           "\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 "
           "\xff \xc0\xaf \xed\xa0\x80 \xe2\x9c");
  char *s = only_json_line(f->path);
  assert_int_equal(jsonl_str(s, "message", v, sizeof(v)), 0);
#define FFFD "\xef\xbf\xbd"
  assert_string_equal(v, "q\" b\\ n\n t\t c\x01 d\x7f "
                         "\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 " FFFD
                         " " FFFD FFFD " " FFFD FFFD FFFD " " FFFD FFFD);
#undef FFFD
  /* Nothing raw below 0x20 is left in the line. */
  for (const char *p = s; *p != '\0'; p++) {
    assert_true((unsigned char)*p >= 0x20);
  }
  free(s);
}

static void json_fields_sit_beside_the_message(void **state) {
  struct fixture *f = *state;
  char v[64];
  const struct log_field fields[] = {
      {"reason", "bad_signature"},
      {"addr", "127.0.0.1:5\"\n"},
  };
  assert_int_equal(log_open(f->path), 0);
  log_set_format(LOG_FORMAT_JSON);
  log_fields(LOG_INFO, "tracker", fields, 2, "refused %s", "announce");
  char *s = only_json_line(f->path);
  assert_int_equal(jsonl_str(s, "reason", v, sizeof(v)), 0);
  assert_string_equal(v, "bad_signature");
  assert_int_equal(jsonl_str(s, "addr", v, sizeof(v)), 0);
  assert_string_equal(v, "127.0.0.1:5\"\n");
  assert_int_equal(jsonl_str(s, "message", v, sizeof(v)), 0);
  assert_string_equal(v, "refused announce");
  free(s);
}

static void text_fields_follow_the_message_on_its_line(void **state) {
  struct fixture *f = *state;
  char line[256];
  const struct log_field fields[] = {
      {"reason", "rate_limited"},
      {"addr", "10.0.0.1:7\nforged"},
  };
  assert_int_equal(log_open(f->path), 0);
  log_fields(LOG_WARN, "tracker", fields, 2, "refused %s", "lookup");
  log_fields(LOG_DEBUG, "tracker", fields, 2, "below the level");
  char *s = read_log(f->path);
  assert_int_equal(count_lines(s), 1);
  nth_line(s, 0, line, sizeof(line));
  assert_string_equal(line + STAMP_CHARS, " WARN  tracker: refused lookup "
                                          "reason=rate_limited "
                                          "addr=10.0.0.1:7 forged");
  free(s);
}

static void json_line_stays_whole_at_any_length(void **state) {
  struct fixture *f = *state;
  char *msg = malloc(4000);
  char *big = malloc(3000);
  assert_non_null(msg);
  assert_non_null(big);
  /* Each byte of the message takes six in the line (\u0001), and the
   * field cannot fit beside it: the line drops the field and stays one
   * object. */
  memset(msg, 0x01, 3999);
  msg[3999] = '\0';
  memset(big, 'x', 2999);
  big[2999] = '\0';
  const struct log_field fields[] = {{"small", "kept"}, {"big", big}};
  assert_int_equal(log_open(f->path), 0);
  log_set_format(LOG_FORMAT_JSON);
  log_fields(LOG_INFO, "t", fields, 2, "%s", msg);
  char *s = only_json_line(f->path);
  char v[16];
  assert_int_equal(jsonl_str(s, "small", v, sizeof(v)), 0);
  assert_string_equal(v, "kept");
  assert_int_equal(jsonl_str(s, "big", v, sizeof(v)), -1);
  free(s);
  free(msg);
  free(big);
}

int main(void) {
  if (sodium_init() < 0) {
    fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(log_level_parse_knows_the_four_names),
      cmocka_unit_test(log_level_parse_refuses_everything_else),
      cmocka_unit_test_setup_teardown(
          log_set_level_is_read_back_by_log_get_level, setup, teardown),
      cmocka_unit_test_setup_teardown(log_level_warn_writes_only_error_and_warn,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          log_each_level_lets_through_itself_and_more_severe, setup, teardown),
      cmocka_unit_test_setup_teardown(
          log_line_is_utc_stamp_then_level_then_who_and_message, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          log_control_characters_cannot_start_a_second_line, setup, teardown),
      cmocka_unit_test_setup_teardown(
          log_very_long_message_is_truncated_to_one_line, setup, teardown),
      cmocka_unit_test_setup_teardown(
          log_reopen_after_rename_writes_a_new_file_at_the_path, setup,
          teardown),
      cmocka_unit_test_setup_teardown(log_open_appends_to_an_existing_file,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          log_open_on_unwritable_path_fails_and_keeps_the_old_stream, setup,
          teardown),
      cmocka_unit_test_setup_teardown(log_after_close_goes_to_stderr, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(hook_runs_before_each_stderr_record_only,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(log_open_null_switches_back_to_stderr,
                                      setup, teardown),
      cmocka_unit_test(log_format_parse_knows_text_and_json_only),
      cmocka_unit_test_setup_teardown(
          json_record_has_time_level_module_and_message, setup, teardown),
      cmocka_unit_test_setup_teardown(json_escapes_whatever_the_message_holds,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(json_fields_sit_beside_the_message, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          text_fields_follow_the_message_on_its_line, setup, teardown),
      cmocka_unit_test_setup_teardown(json_line_stays_whole_at_any_length,
                                      setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return failed;
}
