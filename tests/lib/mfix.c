#include "tests/lib/mfix.h"

#include <stdlib.h>

#include <sodium.h>

#include "tests/lib/mtree.h"
#include "tests/lib/testutil.h"

struct identity mf_pub;
struct identity mf_other;

int mf_keys_setup(void **state) {
  (void)state;
  if (sodium_init() < 0) {
    return -1;
  }
  mt_seed_key(&mf_pub, 0x42);
  mt_seed_key(&mf_other, 0x17);
  return 0;
}

int mf_keys_teardown(void **state) {
  (void)state;
  identity_close(&mf_pub);
  identity_close(&mf_other);
  return 0;
}

int mf_dir_setup(void **state) {
  char *dir = malloc(MT_PATH_CAP);
  if (dir == NULL) {
    return -1;
  }
  mt_tmpdir(dir, MT_PATH_CAP);
  *state = dir;
  return 0;
}

int mf_dir_teardown(void **state) {
  char *dir = *state;
  tu_rmtree(dir);
  free(dir);
  return 0;
}
