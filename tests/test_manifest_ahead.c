/* Manifest parts go ahead of blocks (peer/pacing.h, pacing_ahead): while a
 * MANIFEST_PART the node wrote waits for the kernel, no session of the node
 * starts a DATA block, for at most NODE_MANIFEST_AHEAD_MS; once every part
 * is taken, the blocks go at once.
 *
 * Everything runs in this process (tests/lib/innode.h): a real tracker and
 * one real node, seeding a file of a few blocks and a folder whose
 * manifest (some 450 KB of long names) is larger than a part. Two blocking
 * peer-wire clients (tests/lib/pclient.h) on a thread of their own, while
 * the loop runs here: B asks for the folder's manifest and reads none of
 * it, with a receive buffer of 64 KiB, so the node's 256 KiB part stays
 * in its write queue; A then asks for blocks of the file. The loop's side
 * looks at the node's count of parts not yet taken (struct node, ahead).
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/internal.h"
#include "peer/manifest_build.h"
#include "peer/node.h"
#include "tests/lib/innode.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tests/lib/uvrun.h"

#define WAIT_MS 20000u
#define MSG_MS 5000
#define FOLDER_FILES 2000u /* names of 200 bytes: a manifest of ~450 KB */
#define NAME_BYTES 200u
#define FILE_BYTES (256u << 10)
#define BLOCKS 4u

/* The client thread's steps, which the loop's side waits for. */
enum stage {
  ST_START = 0,
  ST_ASKED,       /* B asked for the manifest (and reads nothing) */
  ST_HELD,        /* the loop saw the part waiting: A may begin */
  ST_SERVED,      /* A received its first block */
  ST_B_READ,      /* B read its whole part */
  ST_TAKEN,       /* the loop saw no part waiting any more */
  ST_DONE,        /* A received its blocks again at once */
  ST_FAILED = 99, /* a step failed: why says which */
};

struct fx {
  struct innode in;
  struct identity pub;
  uint8_t file_id[32], folder_id[32];
  int port;
  pthread_t th;
  atomic_int stage;
  char why[256];
  atomic_llong held_at;  /* when the loop saw B's part waiting */
  int64_t first_data_ms; /* from then to A's first block */
  int64_t again_ms;      /* from asking again to A's next block */
};

/* Waits on the client thread until the loop's side moved the stage to at
 * least want, or the deadline. */
static int wait_stage(struct fx *f, int want, int ms) {
  uint64_t end = proc_now_ms() + (uint64_t)ms;
  while (atomic_load(&f->stage) < want) {
    if (proc_now_ms() > end) {
      return SHOAL_ETIMEDOUT;
    }
    proc_pause_ms(1);
  }
  return 0;
}

static void *fail_at(struct fx *f, const char *step, int err) {
  snprintf(f->why, sizeof(f->why), "%s: %s", step, shoal_err_name(err));
  atomic_store(&f->stage, ST_FAILED);
  return NULL;
}

/* A session for content with the node, its have-map read. */
static int open_session(struct fx *f, struct pclient *c,
                        const uint8_t content[32], uint64_t id_seed,
                        int small_rcvbuf) {
  struct identity id;
  struct pwire_msg m;
  int err;
  tu_identity(&id, id_seed);
  err = pc_init(c, &id);
  identity_close(&id);
  if (err != 0) {
    return err;
  }
  err = pc_connect(c, f->port);
  if (err == 0 && small_rcvbuf) {
    int v = 32 << 10; /* the kernel doubles it */
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0) {
      err = SHOAL_EINVAL;
    }
  }
  if (err == 0) {
    err = pc_handshake(c, content, 0, 0, MSG_MS);
  }
  if (err == 0) {
    err = pc_expect(c, PWIRE_HAVE_MAP, &m, MSG_MS);
  }
  return err;
}

/* Asks for the first block of each of the file's first BLOCKS chunks and
 * waits for the first DATA. */
static int ask_blocks(struct pclient *c, int timeout_ms) {
  uint32_t chunk = 1u << manifest_choose_chunk_log2(FILE_BYTES);
  struct pwire_msg m;
  int err = 0;
  for (uint32_t i = 0; i < BLOCKS && err == 0; i++) {
    memset(&m, 0, sizeof(m));
    m.type = PWIRE_REQUEST;
    m.chunk = i;
    m.offset = 0;
    m.length = chunk < PWIRE_BLOCK_BYTES ? chunk : PWIRE_BLOCK_BYTES;
    err = pc_send(c, &m);
  }
  if (err == 0) {
    err = pc_expect(c, PWIRE_DATA, &m, timeout_ms);
  }
  return err;
}

static void *clients_run(void *arg) {
  struct fx *f = arg;
  struct pclient a, b;
  struct pwire_msg m;
  uint64_t t;
  int err;

  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  err = open_session(f, &b, f->folder_id, 0xb0b, 1);
  if (err != 0) {
    return fail_at(f, "B's session", err);
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_MANIFEST_REQ;
  m.offset = 0;
  m.length = PWIRE_MANIFEST_PART_BYTES;
  if ((err = pc_send(&b, &m)) != 0) {
    return fail_at(f, "B's MANIFEST_REQ", err);
  }
  atomic_store(&f->stage, ST_ASKED);
  if ((err = wait_stage(f, ST_HELD, WAIT_MS)) != 0) {
    return fail_at(f, "the node holding B's part", err);
  }

  /* A: interested, unchoked, asks for blocks while B's part waits. */
  err = open_session(f, &a, f->file_id, 0xa0a, 0);
  if (err != 0) {
    return fail_at(f, "A's session", err);
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_INTERESTED;
  if ((err = pc_send(&a, &m)) != 0 ||
      (err = pc_expect(&a, PWIRE_UNCHOKE, &m, MSG_MS)) != 0) {
    return fail_at(f, "A's unchoke", err);
  }
  err = ask_blocks(&a, (int)NODE_MANIFEST_AHEAD_MS + MSG_MS);
  if (err != 0) {
    return fail_at(f, "A's first block", err);
  }
  f->first_data_ms =
      (int64_t)(proc_now_ms() - (uint64_t)atomic_load(&f->held_at));
  atomic_store(&f->stage, ST_SERVED);

  /* B reads its part: nothing waits any more. */
  if ((err = pc_expect(&b, PWIRE_MANIFEST_PART, &m, MSG_MS)) != 0) {
    return fail_at(f, "B's part", err);
  }
  if (m.offset != 0 || m.data_len != PWIRE_MANIFEST_PART_BYTES) {
    return fail_at(f, "B's part is not the one asked", SHOAL_EPROTO);
  }
  atomic_store(&f->stage, ST_B_READ);
  if ((err = wait_stage(f, ST_TAKEN, WAIT_MS)) != 0) {
    return fail_at(f, "the node seeing the part taken", err);
  }

  /* Blocks go at once again: the hold ended with the part. */
  while (pc_recv(&a, &m, 200) == 0) {
    /* the rest of the first blocks */
  }
  t = proc_now_ms();
  err = ask_blocks(&a, MSG_MS);
  if (err != 0) {
    return fail_at(f, "A's blocks after the part", err);
  }
  f->again_ms = (int64_t)(proc_now_ms() - t);
  pc_close(&a);
  pc_close(&b);
  atomic_store(&f->stage, ST_DONE);
  return NULL;
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  assert_non_null(f);
  innode_init(&f->in, &c, 0xa4ead);
  tu_identity(&f->pub, 0x9b1);
  atomic_init(&f->stage, ST_START);
  atomic_init(&f->held_at, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc = innode_close(&f->in, WAIT_MS);
  identity_close(&f->pub);
  free(f);
  return rc;
}

/* Shares a folder of FOLDER_FILES empty files with long names. */
static void share_folder(struct fx *f) {
  struct manifest_build_opts o;
  struct manifest *m = NULL;
  char dir[4200], name[NAME_BYTES + 1];
  tu_path(dir, sizeof(dir), f->in.dir, "names");
  for (unsigned i = 0; i < FOLDER_FILES; i++) {
    memset(name, 'n', NAME_BYTES);
    snprintf(name, 8, "%06u", i);
    name[6] = '-';
    name[NAME_BYTES] = '\0';
    tu_write_file(dir, name, "", 0);
  }
  memset(&o, 0, sizeof(o));
  assert_int_equal(manifest_build(dir, &f->pub, &o, &m), 0);
  assert_true(m->encoded_len > PWIRE_MANIFEST_PART_BYTES);
  memcpy(f->folder_id, m->id, 32);
  assert_int_equal(node_share(f->in.n, m, &f->in.t.link, 1, NULL), 0);
}

static void blocks_wait_behind_a_manifest_part(void **state) {
  struct fx *f = *state;
  struct node_config c;
  memset(&c, 0, sizeof(c));
  innode_node_start(&f->in, &c, 0x5eed);
  innode_write_files(&f->in, 1, FILE_BYTES, 0xf11e);
  innode_share(&f->in, 0, &f->pub, NULL);
  memcpy(f->file_id, f->in.content[0], 32);
  share_folder(f);
  f->port = node_port(f->in.n);

  assert_int_equal(pthread_create(&f->th, NULL, clients_run, f), 0);
  UVRUN_UNTIL(&f->in.r, atomic_load(&f->stage) >= ST_ASKED, WAIT_MS);
  /* The node writes B's part and counts it. */
  UVRUN_UNTIL(&f->in.r,
              f->in.n->ahead.parts > 0 || atomic_load(&f->stage) == ST_FAILED,
              WAIT_MS);
  if (atomic_load(&f->stage) != ST_FAILED) {
    atomic_store(&f->held_at, (long long)proc_now_ms());
    atomic_store(&f->stage, ST_HELD);
  }
  UVRUN_UNTIL(&f->in.r, atomic_load(&f->stage) >= ST_B_READ, WAIT_MS);
  UVRUN_UNTIL(&f->in.r,
              f->in.n->ahead.parts == 0 || atomic_load(&f->stage) == ST_FAILED,
              WAIT_MS);
  if (atomic_load(&f->stage) != ST_FAILED) {
    atomic_store(&f->stage, ST_TAKEN);
  }
  UVRUN_UNTIL(&f->in.r, atomic_load(&f->stage) >= ST_DONE, WAIT_MS);
  assert_int_equal(pthread_join(f->th, NULL), 0);
  if (atomic_load(&f->stage) == ST_FAILED) {
    fail_msg("%s", f->why);
  }
  print_message("A's first block %lld ms after B's part was seen waiting (hold "
                "%u ms); again %lld ms after it was taken\n",
                (long long)f->first_data_ms, NODE_MANIFEST_AHEAD_MS,
                (long long)f->again_ms);
  /* Held while the part waited, but not past the bound ... */
  assert_true(f->first_data_ms >= (int64_t)NODE_MANIFEST_AHEAD_MS - 500);
  assert_true(f->first_data_ms <= (int64_t)NODE_MANIFEST_AHEAD_MS + 5000);
  /* ... and not at all once it was taken. */
  assert_true(f->again_ms < 1000);
}

int main(void) {
  /* The node writes to the clients' sockets after they close, as the peer
   * binary does, which ignores SIGPIPE (peer/main.c). */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(blocks_wait_behind_a_manifest_part, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
