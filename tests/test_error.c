/* Tests for common/error: the shoal error table, and the names and
 * messages of every other code: libuv's once its table is installed (as the
 * tracker and the peer do at start-up), the C library's before.
 *
 * The tables are walked through the X-macros that define them, so a code
 * added later is covered without touching this file.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const int shoal_codes[] = {
#define XX_(name, msg) SHOAL_##name,
    SHOAL_ERRNO_MAP(XX_)
#undef XX_
};

static const char *const shoal_names[] = {
#define XX_(name, msg) "SHOAL_" #name,
    SHOAL_ERRNO_MAP(XX_)
#undef XX_
};

static const char *const shoal_messages[] = {
#define XX_(name, msg) msg,
    SHOAL_ERRNO_MAP(XX_)
#undef XX_
};

static const int uv_codes[] = {
#define XX_(name, msg) UV_##name,
    UV_ERRNO_MAP(XX_)
#undef XX_
};

static const char *const uv_names[] = {
#define XX_(name, msg) #name,
    UV_ERRNO_MAP(XX_)
#undef XX_
};

/* The table shoal-tracker and shoal-peer install. */
static const struct error_text uv_rows[] = {
#define XX_(name, msg) {UV_##name, #name, msg},
    UV_ERRNO_MAP(XX_)
#undef XX_
};

static void install_uv_rows(void) {
  error_set_system(uv_rows, ARRAY_LEN(uv_rows));
}

static int is_uv_code(int err) {
  for (size_t i = 0; i < ARRAY_LEN(uv_codes); i++) {
    if (uv_codes[i] == err) {
      return 1;
    }
  }
  return 0;
}

static void every_shoal_code_is_negative_and_distinct_from_libuv(void **state) {
  (void)state;
  assert_true(ARRAY_LEN(shoal_codes) > 0);
  for (size_t i = 0; i < ARRAY_LEN(shoal_codes); i++) {
    assert_true(shoal_codes[i] < 0);
    assert_false(is_uv_code(shoal_codes[i]));
    for (size_t j = 0; j < i; j++) {
      assert_int_not_equal(shoal_codes[i], shoal_codes[j]);
    }
  }
}

static void every_shoal_code_has_its_own_message_and_name(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(shoal_codes); i++) {
    int err = shoal_codes[i];
    const char *msg = shoal_strerror(err);
    const char *name = shoal_err_name(err);

    assert_non_null(msg);
    assert_non_null(name);
    assert_true(msg[0] != '\0');
    /* Each code maps to its own row of the table, not a neighbour's. */
    assert_string_equal(msg, shoal_messages[i]);
    assert_string_equal(name, shoal_names[i]);
    assert_int_equal(strncmp(name, "SHOAL_E", 7), 0);
    assert_string_not_equal(msg, "success");
    assert_string_not_equal(msg, shoal_strerror(INT_MIN));

    for (size_t j = 0; j < i; j++) {
      assert_string_not_equal(msg, shoal_strerror(shoal_codes[j]));
      assert_string_not_equal(name, shoal_err_name(shoal_codes[j]));
    }
  }
}

static void every_code_in_the_shoal_range_is_in_the_table(void **state) {
  (void)state;
  /* The enum is dense: walking the numeric range meets exactly the table. */
  size_t seen = 0;
  for (int err = SHOAL_ERR_BASE_ + 1; err < SHOAL_ERR_END_; err++) {
    int found = 0;
    for (size_t i = 0; i < ARRAY_LEN(shoal_codes); i++) {
      found |= shoal_codes[i] == err;
    }
    assert_true(found);
    assert_int_equal(strncmp(shoal_err_name(err), "SHOAL_", 6), 0);
    seen++;
  }
  assert_int_equal(seen, ARRAY_LEN(shoal_codes));
}

static void zero_is_success(void **state) {
  (void)state;
  assert_string_equal(shoal_strerror(0), "success");
  const char *name = shoal_err_name(0);
  assert_non_null(name);
  assert_true(name[0] != '\0');
  assert_int_not_equal(strncmp(name, "SHOAL_", 6), 0);
}

static void libuv_codes_give_libuv_text_once_its_table_is_in(void **state) {
  (void)state;
  install_uv_rows();
  assert_string_equal(shoal_strerror(UV_ECONNREFUSED),
                      uv_strerror(UV_ECONNREFUSED));
  assert_string_equal(shoal_strerror(UV_ECONNREFUSED), "connection refused");
  assert_string_equal(shoal_err_name(UV_ECONNREFUSED), "ECONNREFUSED");
  assert_string_equal(shoal_strerror(UV_EOF), uv_strerror(UV_EOF));
  assert_string_equal(shoal_err_name(UV_EOF), "EOF");

  /* Every code libuv knows gives libuv's own message and name. */
  for (size_t i = 0; i < ARRAY_LEN(uv_codes); i++) {
    assert_string_equal(shoal_strerror(uv_codes[i]), uv_strerror(uv_codes[i]));
    assert_string_equal(shoal_err_name(uv_codes[i]), uv_names[i]);
  }
  error_set_system(NULL, 0);
}

static void a_code_outside_the_installed_table_is_unknown(void **state) {
  (void)state;
  /* The C library names EDQUOT; libuv does not, so a program with libuv's
   * table says what libuv's uv_strerror never got to say for it. */
  assert_false(is_uv_code(-EDQUOT));
  install_uv_rows();
  assert_string_equal(shoal_strerror(-EDQUOT), "unknown error");
  assert_string_equal(shoal_err_name(-EDQUOT), "EUNKNOWN");

  /* A table of one row is the whole word too. */
  static const struct error_text one[] = {{-EIO, "EIO", "i/o trouble"}};
  error_set_system(one, ARRAY_LEN(one));
  assert_string_equal(shoal_strerror(-EIO), "i/o trouble");
  assert_string_equal(shoal_err_name(-EIO), "EIO");
  assert_string_equal(shoal_strerror(-ENOENT), "unknown error");
  assert_string_equal(shoal_err_name(-ENOENT), "EUNKNOWN");
  /* shoal's own codes never look at the table. */
  assert_string_equal(shoal_err_name(SHOAL_EBADSIG), "SHOAL_EBADSIG");
  error_set_system(NULL, 0);
}

static void without_a_table_errno_values_get_the_c_library_text(void **state) {
  (void)state;
  error_set_system(NULL, 0);
  assert_string_equal(shoal_strerror(-ENOENT), strerror(ENOENT));
  assert_string_equal(shoal_err_name(-ENOENT), "ENOENT");
  assert_string_equal(shoal_strerror(-EDQUOT), strerror(EDQUOT));
  assert_string_equal(shoal_err_name(-EDQUOT), "EDQUOT");
  /* Codes only libuv defines are unknown to the C library. */
  assert_string_equal(shoal_strerror(UV_EOF), "unknown error");
  assert_string_equal(shoal_err_name(UV_EOF), "EUNKNOWN");
  assert_string_equal(shoal_strerror(UV_EAI_NONAME), "unknown error");
  assert_string_equal(shoal_err_name(SHOAL_EBADSIG), "SHOAL_EBADSIG");
  assert_string_equal(shoal_strerror(0), "success");
}

/* Checks codes that neither shoal nor the installed table (if any) name. */
static void check_unknown_codes(void) {
  /* The boundaries of the shoal range, errno-like values libuv does not
   * name, positive values and the extremes. libuv would malloc (and leak) a
   * string for these; LeakSanitizer fails the ASan run if that happens. */
  const int unknown[] = {SHOAL_ERR_BASE_,
                         SHOAL_ERR_END_,
                         SHOAL_ERR_BASE_ - 1,
                         -4096,
                         -5000,
                         -29000,
                         -1000000,
                         1,
                         42,
                         INT_MIN,
                         INT_MAX,
                         -30001};
  for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
    int err = unknown[i];
    if (is_uv_code(err)) {
      continue; /* only on a platform where the value happens to be known */
    }
    for (int k = 0; k < 100; k++) {
      const char *msg = shoal_strerror(err);
      const char *name = shoal_err_name(err);
      assert_non_null(msg);
      assert_non_null(name);
      assert_true(msg[0] != '\0');
      assert_true(name[0] != '\0');
      assert_string_not_equal(msg, "success");
      /* A static string: the same pointer every time. */
      assert_ptr_equal(msg, shoal_strerror(err));
      assert_ptr_equal(name, shoal_err_name(err));
    }
    for (size_t j = 0; j < ARRAY_LEN(shoal_codes); j++) {
      assert_string_not_equal(shoal_err_name(err), shoal_names[j]);
    }
  }
}

static void unknown_codes_give_a_static_string_without_leaking(void **state) {
  (void)state;
  for (int with_table = 0; with_table <= 1; with_table++) {
    if (with_table) {
      install_uv_rows();
    } else {
      error_set_system(NULL, 0);
    }
    check_unknown_codes();
  }
  error_set_system(NULL, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_shoal_code_is_negative_and_distinct_from_libuv),
      cmocka_unit_test(every_shoal_code_has_its_own_message_and_name),
      cmocka_unit_test(every_code_in_the_shoal_range_is_in_the_table),
      cmocka_unit_test(zero_is_success),
      cmocka_unit_test(libuv_codes_give_libuv_text_once_its_table_is_in),
      cmocka_unit_test(a_code_outside_the_installed_table_is_unknown),
      cmocka_unit_test(without_a_table_errno_values_get_the_c_library_text),
      cmocka_unit_test(unknown_codes_give_a_static_string_without_leaking),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
