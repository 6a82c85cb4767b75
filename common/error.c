/* strerrorname_np, the C library's name of an errno value, is a GNU
 * extension (glibc 2.32). */
#define _GNU_SOURCE
#include "common/error.h"

#include <limits.h>
#include <string.h>

#define SHOAL_COUNT_ (SHOAL_ERR_END_ - SHOAL_ERR_BASE_ - 1)

static const char *const messages[] = {
#define SHOAL_XX_(name, msg) msg,
    SHOAL_ERRNO_MAP(SHOAL_XX_)
#undef SHOAL_XX_
};

static const char *const names[] = {
#define SHOAL_XX_(name, msg) "SHOAL_" #name,
    SHOAL_ERRNO_MAP(SHOAL_XX_)
#undef SHOAL_XX_
};

_Static_assert(sizeof(messages) / sizeof(messages[0]) == SHOAL_COUNT_,
               "error table out of step with enum");

/* The table error_set_system installed; NULL until then. Set once at
 * start-up and only read afterwards. */
static const struct error_text *system_rows;
static size_t system_count;

void error_set_system(const struct error_text *rows, size_t count) {
  system_rows = rows;
  system_count = count;
}

static int is_shoal(int err) {
  return err > SHOAL_ERR_BASE_ && err < SHOAL_ERR_END_;
}

static const struct error_text *system_row(int err) {
  for (size_t i = 0; i < system_count; i++) {
    if (system_rows[i].code == err) {
      return &system_rows[i];
    }
  }
  return NULL;
}

/* The C library's name of a negated errno value, or NULL when it has none.
 * Only a value it names is given to strerror, whose message for any other
 * value is built in a buffer that the next call overwrites. */
static const char *libc_name(int err) {
  if (err >= 0 || err == INT_MIN) {
    return NULL;
  }
  return strerrorname_np(-err);
}

const char *shoal_strerror(int err) {
  if (err == 0) {
    return "success";
  }
  if (is_shoal(err)) {
    return messages[err - SHOAL_ERR_BASE_ - 1];
  }
  if (system_rows != NULL) {
    const struct error_text *row = system_row(err);
    return row != NULL ? row->message : "unknown error";
  }
  return libc_name(err) != NULL ? strerror(-err) : "unknown error";
}

const char *shoal_err_name(int err) {
  if (err == 0) {
    return "OK";
  }
  if (is_shoal(err)) {
    return names[err - SHOAL_ERR_BASE_ - 1];
  }
  if (system_rows != NULL) {
    const struct error_text *row = system_row(err);
    return row != NULL ? row->name : "EUNKNOWN";
  }
  const char *name = libc_name(err);
  return name != NULL ? name : "EUNKNOWN";
}
