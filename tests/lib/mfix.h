/* cmocka fixtures of the manifest tests (test_manifest,
 * test_manifest_build): the two keys they sign with, and a fresh folder for
 * each test. The folders' contents come from tests/lib/mtree.h. */
#ifndef SHOAL_TESTS_MFIX_H
#define SHOAL_TESTS_MFIX_H

#include "common/identity.h"

extern struct identity mf_pub;   /* seed 0x42 * 32: the vectors' key */
extern struct identity mf_other; /* seed 0x17 * 32 */

/* Group setup and teardown: initialises libsodium and makes both keys;
 * closes them. */
int mf_keys_setup(void **state);
int mf_keys_teardown(void **state);

/* Test setup and teardown: *state is a fresh folder from mt_tmpdir(), a
 * char array of MT_PATH_CAP that the teardown removes with all it holds
 * (also after a failed test) and frees. */
int mf_dir_setup(void **state);
int mf_dir_teardown(void **state);

#endif
