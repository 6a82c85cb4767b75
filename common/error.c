#include "common/error.h"

#include <uv.h>

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

/* True when libuv has a name for err; libuv allocates (and leaks) a string for
 * codes it does not know, so only known codes are passed to it. */
static int is_uv(int err) {
  switch (err) {
#define SHOAL_UV_(name, msg) case UV_##name:
    UV_ERRNO_MAP(SHOAL_UV_)
#undef SHOAL_UV_
    return 1;
  default:
    return 0;
  }
}

static int is_shoal(int err) {
  return err > SHOAL_ERR_BASE_ && err < SHOAL_ERR_END_;
}

const char *shoal_strerror(int err) {
  if (err == 0) {
    return "success";
  }
  if (is_shoal(err)) {
    return messages[err - SHOAL_ERR_BASE_ - 1];
  }
  if (is_uv(err)) {
    return uv_strerror(err);
  }
  return "unknown error";
}

const char *shoal_err_name(int err) {
  if (err == 0) {
    return "OK";
  }
  if (is_shoal(err)) {
    return names[err - SHOAL_ERR_BASE_ - 1];
  }
  if (is_uv(err)) {
    return uv_err_name(err);
  }
  return "EUNKNOWN";
}
