/* Tests for the node's run-time controls (peer/node.h, "The daemon's
 * controls, at run time"): node_swarm_info, node_remove, node_set_rates,
 * and what node_share and the tracker schedule do for the daemon (a copy
 * of someone else's content is announced, never published; re-announces
 * are spread over the interval).
 *
 * Everything runs in this process on one libuv loop (tests/lib/uvrun.h):
 * the real tracker on 127.0.0.1 (tests/lib/intracker.h), and two or three
 * real nodes on loopback, each with its own home and identity (home_open),
 * sharing and getting a file written here. The tracker's tables are read
 * directly (registry_lookup, catalog_find) to see what the nodes told it.
 * Every wait runs the loop until a condition holds or a deadline passes;
 * teardown stops every node, runs the loop until it has no more work and
 * closes it.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "peer/announce.h"
#include "peer/home.h"
#include "peer/internal.h"
#include "peer/manifest_build.h"
#include "peer/node.h"
#include "peer/storage.h"
#include "tests/lib/intracker.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tests/lib/uvrun.h"
#include "tracker/tracker.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define FILE_BYTES (2u * MiB)
#define SLOW_RATE (256u * KiB) /* the getter's limit while it is slow */
#define WAIT_MS 20000u         /* one wait's bound: runs take a fraction */
#define NPEERS 3
#define NEVENTS (NODE_EV_FAILED + 1)

struct fx;

/* One node and what it reported. */
struct peer {
  struct fx *f;
  char home_dir[4200];
  struct home home;
  struct identity id;
  int id_open;
  struct node *n;
  unsigned ev[NEVENTS];    /* events seen, by type */
  uint64_t resumed;        /* from the last NODE_EV_MANIFEST */
  int failed_code;         /* from the last NODE_EV_FAILED */
  uint8_t watch[32];       /* events about this content after watching */
  int watching;            /* ... are counted here while set */
  unsigned watched_events; /* that count */
  int stop_done;
  unsigned stop_order;
};

struct fx {
  struct uvrun r;
  char dir[4096];
  struct intracker t;
  struct peer p[NPEERS];
  unsigned order; /* callbacks counted in the order they came */
  int removed;    /* removal callbacks, all told */
  uint8_t *data;  /* the file's bytes */
};

/* ------------------------------------------------------------------------ */
/* Fixture */

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  if (f == NULL || uvrun_init(&f->r) != 0) {
    free(f);
    return -1;
  }
  tu_tmpdir(f->dir, sizeof(f->dir));
  c.max_conns = 64;
  if (intracker_start(&f->t, &f->r.loop, &c, 0x7ac4e7) != 0) {
    return -1;
  }
  *state = f;
  return 0;
}

static void on_stopped(void *arg) {
  struct peer *p = arg;
  p->stop_done = 1;
  p->stop_order = ++p->f->order;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc = 0;
  for (int i = 0; i < NPEERS; i++) {
    struct peer *p = &f->p[i];
    if (p->n != NULL && !p->stop_done) {
      node_stop(p->n, on_stopped, p);
      UVRUN_UNTIL(&f->r, p->stop_done, WAIT_MS);
      if (!p->stop_done) {
        fprintf(stderr, "teardown: node %d did not stop\n", i);
        rc = -1;
      }
    }
  }
  intracker_stop(&f->t);
  if (uvrun_close(&f->r, WAIT_MS) != 0) {
    rc = -1;
  }
  for (int i = 0; i < NPEERS; i++) {
    struct peer *p = &f->p[i];
    node_free(p->n);
    home_close(&p->home);
    if (p->id_open) {
      identity_close(&p->id);
    }
  }
  intracker_close(&f->t);
  tu_rmtree(f->dir);
  free(f->data);
  free(f);
  return rc;
}

static void on_event(void *arg, const struct node_event *ev) {
  struct peer *p = arg;
  if ((unsigned)ev->type < NEVENTS) {
    p->ev[ev->type]++;
  }
  if (ev->type == NODE_EV_MANIFEST) {
    p->resumed = ev->resumed;
  }
  if (ev->type == NODE_EV_FAILED) {
    p->failed_code = ev->code;
  }
  if (p->watching && ev->swarm != NULL &&
      memcmp(ev->swarm->content, p->watch, 32) == 0) {
    p->watched_events++;
  }
}

/* Starts node i with its own home (and identity) under the test's folder,
 * listening on loopback, with a download limit (0: none). */
static struct peer *peer_start(struct fx *f, int i, uint64_t download_rate) {
  struct peer *p = &f->p[i];
  struct node_config c;
  char msg[HOME_MSG_BYTES];
  p->f = f;
  snprintf(p->home_dir, sizeof(p->home_dir), "%s/home%d", f->dir, i);
  assert_int_equal(
      home_open(&p->home, p->home_dir, 0, &p->id, msg, sizeof(msg)), 0);
  p->id_open = 1;
  memset(&c, 0, sizeof(c));
  c.home = p->home_dir;
  c.listen = "127.0.0.1:0";
  c.download_rate = download_rate;
  assert_int_equal(node_new(&p->n, &f->r.loop, &c, &p->id, on_event, p), 0);
  return p;
}

/* Writes the test's file, FILE_BYTES from a fixed seed, at src/data.bin. */
static void write_file(struct fx *f) {
  char src[4200];
  f->data = malloc(FILE_BYTES);
  assert_non_null(f->data);
  tu_fill(f->data, FILE_BYTES, 0x5eed);
  tu_path(src, sizeof(src), f->dir, "src");
  tu_write_file(src, "data.bin", f->data, FILE_BYTES);
}

/* The signed manifest of src/data.bin, published by id. */
static struct manifest *build(struct fx *f, const struct identity *id) {
  struct manifest_build_opts o;
  struct manifest *m = NULL;
  char path[4200];
  snprintf(path, sizeof(path), "%s/src/data.bin", f->dir);
  memset(&o, 0, sizeof(o));
  assert_int_equal(manifest_build(path, id, &o, &m), 0);
  return m;
}

/* p shares a manifest (taken); returns its content ID in content. */
static void share(struct peer *p, struct manifest *m, uint8_t content[32]) {
  memcpy(content, m->id, 32);
  assert_int_equal(node_share(p->n, m, &p->f->t.link, 1, p->f->t.key.pk), 0);
}

/* p gets content into DIR/out (made here). */
static void get(struct peer *p, const uint8_t content[32]) {
  char out[4200];
  snprintf(out, sizeof(out), "%s/out", p->f->dir);
  mkdir(out, 0755);
  assert_int_equal(node_get(p->n, content, "data.bin", FILE_BYTES,
                            &p->f->t.link, 1, p->f->t.key.pk, out, 0),
                   0);
}

static struct node_swarm_info info(struct peer *p, const uint8_t c[32]) {
  struct node_swarm_info i;
  assert_int_equal(node_swarm_info(p->n, c, &i), 0);
  return i;
}

static uint64_t have(struct peer *p, const uint8_t c[32]) {
  struct node_swarm_info i;
  return node_swarm_info(p->n, c, &i) == 0 ? i.have : 0;
}

/* Whether the tracker lists pk in content's swarm (seeding: as a seeder
 * or not; -1: either). */
static int tracker_lists(struct fx *f, const uint8_t content[32],
                         const uint8_t pk[32], int seeding) {
  return intracker_lists_as(&f->t, content, pk, seeding);
}

/* One node_remove's callback: whether it came, and when. */
struct removal {
  struct fx *f;
  int done;
  unsigned order;
};

static void on_removed(void *arg) {
  struct removal *r = arg;
  r->done++;
  r->order = ++r->f->order;
  r->f->removed++;
}

/* Removes content from p and waits for the callback. */
static void remove_and_wait(struct peer *p, const uint8_t content[32]) {
  struct removal r = {.f = p->f};
  assert_int_equal(node_remove(p->n, content, on_removed, &r), 0);
  assert_int_equal(r.done, 0); /* never inside the call */
  UVRUN_UNTIL(&p->f->r, r.done > 0, WAIT_MS);
  assert_int_equal(r.done, 1);
}

static void assert_copy(struct fx *f) {
  char path[4200];
  size_t len = 0;
  uint8_t *got;
  snprintf(path, sizeof(path), "%s/out/data.bin", f->dir);
  got = tu_read_file(path, &len);
  assert_non_null(got);
  assert_int_equal(len, FILE_BYTES);
  assert_memory_equal(got, f->data, FILE_BYTES);
  free(got);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A seeder (node 0) and a getter (node 1, at SLOW_RATE) that has verified
 * some chunks of it but not all. */
static void slow_download(struct fx *f, uint8_t content[32]) {
  struct peer *a, *b;
  write_file(f);
  a = peer_start(f, 0, 0);
  b = peer_start(f, 1, SLOW_RATE);
  share(a, build(f, &a->id), content);
  UVRUN_UNTIL(&f->r, a->ev[NODE_EV_SHARED] > 0, WAIT_MS);
  assert_int_equal(a->ev[NODE_EV_SHARED], 1);
  get(b, content);
  UVRUN_UNTIL(&f->r, have(b, content) > 0, WAIT_MS);
  assert_true(have(b, content) > 0);
  assert_true(have(b, content) < FILE_BYTES);
}

/* ------------------------------------------------------------------------ */
/* node_swarm_info */

static void info_tells_a_share_s_figures_and_unknown_is_enoent(void **state) {
  struct fx *f = *state;
  struct node_swarm_info i;
  uint8_t content[32], other[32];
  struct peer *a;
  write_file(f);
  a = peer_start(f, 0, 0);
  share(a, build(f, &a->id), content);
  UVRUN_UNTIL(&f->r, a->ev[NODE_EV_SHARED] > 0, WAIT_MS);
  i = info(a, content);
  assert_memory_equal(i.content, content, 32);
  assert_string_equal(i.name, "data.bin");
  assert_int_equal(i.total, FILE_BYTES);
  assert_int_equal(i.have, FILE_BYTES);
  assert_true(i.chunks > 0);
  assert_int_equal(i.peers, 0);
  assert_int_equal(i.seeding, 1);

  memcpy(other, content, 32);
  other[0] ^= 1;
  memset(&i, 0xa5, sizeof(i));
  assert_int_equal(node_swarm_info(a->n, other, &i), SHOAL_ENOENT);
  assert_null(i.content); /* zeroed */
  assert_int_equal(node_remove(a->n, other, on_removed, NULL), SHOAL_ENOENT);
  uvrun_for(&f->r, 50);
  assert_int_equal(f->removed, 0); /* no callback for ENOENT */
}

/* ------------------------------------------------------------------------ */
/* node_set_rates */

static void set_rates_lifts_a_download_limit_at_once(void **state) {
  struct fx *f = *state;
  struct node_swarm_info i;
  uint8_t content[32];
  struct peer *b;
  uint64_t t0, t1, before, left;
  unsigned bound_ms;
  slow_download(f, content);
  b = &f->p[1];
  before = node_downloaded(b->n);
  t0 = uv_now(&f->r.loop);
  uvrun_for(&f->r, 1000);
  t1 = uv_now(&f->r.loop);
  i = info(b, content);
  /* At 256 KiB/s no more than the limit allows came in that second (a
   * burst and a read over), and the 2 MiB are not done. */
  assert_int_equal(i.total, FILE_BYTES);
  assert_int_equal(i.peers, 1);
  assert_int_equal(i.seeding, 0);
  assert_true(i.have < FILE_BYTES);
  assert_true(node_downloaded(b->n) - before <=
              (uint64_t)SLOW_RATE * ((t1 - t0) / 1000 + 1) + 512u * KiB);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 0);

  /* Lifted: the rest comes within half the time it would take at the old
   * limit (over 2 s for the 1 MiB or more a normal run has left; loopback
   * takes milliseconds). */
  left = FILE_BYTES - i.have;
  bound_ms = (unsigned)(left * 1000u / SLOW_RATE / 2);
  if (bound_ms < 500) {
    bound_ms = 500;
  }
  node_set_rates(b->n, 0, 0);
  UVRUN_UNTIL(&f->r, b->ev[NODE_EV_COMPLETE] > 0, bound_ms);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 1);
  assert_copy(f);
}

static void set_rates_lowers_a_limit_from_the_next_bytes(void **state) {
  struct fx *f = *state;
  uint8_t content[32];
  struct peer *b;
  uint64_t t0, before;
  slow_download(f, content);
  b = &f->p[1];
  /* Down to 64 KiB/s: over the next second at most that, a burst (256 KiB,
   * the floor) and a read come. */
  node_set_rates(b->n, 0, 64 * KiB);
  before = node_downloaded(b->n);
  t0 = uv_now(&f->r.loop);
  uvrun_for(&f->r, 1000);
  assert_true(node_downloaded(b->n) - before <=
              64u * KiB * ((uv_now(&f->r.loop) - t0) / 1000 + 1) + 512u * KiB);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 0);
  node_set_rates(b->n, 0, 0);
  UVRUN_UNTIL(&f->r, b->ev[NODE_EV_COMPLETE] > 0, WAIT_MS);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 1);
  assert_copy(f);
}

/* ------------------------------------------------------------------------ */
/* node_remove */

static void
remove_mid_download_keeps_the_partial_copy_and_get_resumes(void **state) {
  struct fx *f = *state;
  uint8_t content[32];
  char text[TEXTID_STRLEN], path[4400];
  struct node_swarm_info i;
  struct peer *a, *b;
  struct removal r = {.f = f};
  slow_download(f, content);
  a = &f->p[0];
  b = &f->p[1];
  UVRUN_UNTIL(&f->r, tracker_lists(f, content, b->id.pk, 0), WAIT_MS);
  assert_true(tracker_lists(f, content, b->id.pk, 0));

  assert_int_equal(node_remove(b->n, content, on_removed, &r), 0);
  /* Gone at once for everyone else: not found, not reported, and a second
   * remove finds nothing. */
  assert_int_equal(node_swarm_info(b->n, content, &i), SHOAL_ENOENT);
  assert_null(swarm_find(b->n, content));
  assert_int_equal(node_remove(b->n, content, on_removed, &r), SHOAL_ENOENT);
  /* Not got again until the removal is done. */
  {
    char out[4200];
    snprintf(out, sizeof(out), "%s/out", f->dir);
    assert_int_equal(node_get(b->n, content, "data.bin", FILE_BYTES, &f->t.link,
                              1, f->t.key.pk, out, 0),
                     UV_EBUSY);
    assert_int_equal(
        node_share(b->n, build(f, &a->id), &f->t.link, 1, f->t.key.pk),
        UV_EBUSY);
  }
  memcpy(b->watch, content, 32);
  b->watching = 1;
  UVRUN_UNTIL(&f->r, r.done > 0, WAIT_MS);
  assert_int_equal(r.done, 1);
  assert_int_equal(b->watched_events, 0);
  b->watching = 0;

  /* "stopped" was answered before the callback: the tracker lists the
   * seeder only. */
  assert_false(tracker_lists(f, content, b->id.pk, -1));
  assert_true(tracker_lists(f, content, a->id.pk, 1));
  /* The partial copy and its resume record stay; the seeder closed the
   * session too. */
  snprintf(path, sizeof(path), "%s/out/data.bin%s", f->dir,
           STORAGE_PART_SUFFIX);
  assert_true(exists(path));
  textid_encode(TEXTID_CONTENT, content, text);
  snprintf(path, sizeof(path), "%s/resume/%s", b->home_dir, text);
  assert_true(exists(path));
  UVRUN_UNTIL(&f->r, info(a, content).peers == 0, WAIT_MS);
  assert_int_equal(info(a, content).peers, 0);

  /* Got again, unlimited: it resumes from what was verified. */
  node_set_rates(b->n, 0, 0);
  get(b, content);
  UVRUN_UNTIL(&f->r, b->ev[NODE_EV_COMPLETE] > 0, WAIT_MS);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 1);
  assert_int_equal(b->ev[NODE_EV_MANIFEST], 2);
  assert_true(b->resumed > 0);
  assert_int_equal(b->ev[NODE_EV_FAILED], 0);
  assert_copy(f);
}

static void remove_a_share_then_share_it_again(void **state) {
  struct fx *f = *state;
  uint8_t content[32], again[32];
  struct node_swarm_info i;
  struct peer *a, *b;
  slow_download(f, content);
  a = &f->p[0];
  b = &f->p[1];
  UVRUN_UNTIL(&f->r, tracker_lists(f, content, a->id.pk, 1), WAIT_MS);
  assert_true(tracker_lists(f, content, a->id.pk, 1));

  remove_and_wait(a, content);
  assert_false(tracker_lists(f, content, a->id.pk, -1));
  assert_int_equal(node_swarm_info(a->n, content, &i), SHOAL_ENOENT);
  /* The getter's progress stops: its only source is gone. */
  UVRUN_UNTIL(&f->r, info(b, content).peers == 0, WAIT_MS);
  assert_int_equal(info(b, content).peers, 0);
  assert_true(have(b, content) < FILE_BYTES);

  /* The same content shared again: the same ID, listed and served. */
  share(a, build(f, &a->id), again);
  assert_memory_equal(again, content, 32);
  UVRUN_UNTIL(&f->r, a->ev[NODE_EV_SHARED] == 2, WAIT_MS);
  assert_int_equal(a->ev[NODE_EV_SHARED], 2);
  assert_int_equal(a->ev[NODE_EV_FAILED], 0);
  UVRUN_UNTIL(&f->r, tracker_lists(f, content, a->id.pk, 1), WAIT_MS);
  assert_true(tracker_lists(f, content, a->id.pk, 1));
  assert_int_equal(info(a, content).seeding, 1);
}

/* What a removal's callback does next: share the content again, as the
 * daemon's pause and resume do. */
struct reshare {
  struct peer *p;
  int done;
  int err;
};

static void on_removed_reshare(void *arg) {
  struct reshare *r = arg;
  uint8_t content[32];
  struct manifest *m = build(r->p->f, &r->p->id);
  memcpy(content, m->id, 32);
  r->err = node_share(r->p->n, m, &r->p->f->t.link, 1, r->p->f->t.key.pk);
  r->done = 1;
}

static void
remove_while_publishing_and_share_again_from_the_callback(void **state) {
  struct fx *f = *state;
  uint8_t content[32];
  struct reshare r;
  struct peer *a;
  write_file(f);
  a = peer_start(f, 0, 0);
  share(a, build(f, &a->id), content);
  /* The publish is under way (callbacks never come inside a call). */
  memset(&r, 0, sizeof(r));
  r.p = a;
  assert_int_equal(node_remove(a->n, content, on_removed_reshare, &r), 0);
  UVRUN_UNTIL(&f->r, r.done, WAIT_MS);
  assert_true(r.done);
  assert_int_equal(r.err, 0);
  UVRUN_UNTIL(&f->r, tracker_lists(f, content, a->id.pk, 1), WAIT_MS);
  assert_true(tracker_lists(f, content, a->id.pk, 1));
  assert_int_equal(info(a, content).seeding, 1);
  assert_int_equal(a->ev[NODE_EV_FAILED], 0);
}

static void remove_a_failed_swarm(void **state) {
  struct fx *f = *state;
  uint8_t content[32];
  char out[4200];
  struct node_swarm_info i;
  struct peer *a, *b;
  write_file(f);
  a = peer_start(f, 0, 0);
  b = peer_start(f, 1, 0);
  share(a, build(f, &a->id), content);
  UVRUN_UNTIL(&f->r, a->ev[NODE_EV_SHARED] > 0, WAIT_MS);
  /* A link whose size is not the manifest's: the get fails once the
   * manifest comes. */
  snprintf(out, sizeof(out), "%s/out", f->dir);
  mkdir(out, 0755);
  assert_int_equal(node_get(b->n, content, "data.bin", FILE_BYTES + 1,
                            &f->t.link, 1, f->t.key.pk, out, 0),
                   0);
  UVRUN_UNTIL(&f->r, b->ev[NODE_EV_FAILED] > 0, WAIT_MS);
  assert_int_equal(b->ev[NODE_EV_FAILED], 1);
  assert_int_equal(b->failed_code, SHOAL_ESIZE);
  /* Listed, failed, until removed. */
  i = info(b, content);
  assert_int_equal(i.seeding, 0);
  assert_int_equal(i.peers, 0);
  assert_string_equal(i.name, "data.bin");
  remove_and_wait(b, content);
  assert_int_equal(node_swarm_info(b->n, content, &i), SHOAL_ENOENT);
  assert_int_equal(node_remove(b->n, content, on_removed, NULL), SHOAL_ENOENT);
  assert_int_equal(f->removed, 1);
  /* Got again with the right size, it completes. */
  get(b, content);
  UVRUN_UNTIL(&f->r, b->ev[NODE_EV_COMPLETE] > 0, WAIT_MS);
  assert_int_equal(b->ev[NODE_EV_COMPLETE], 1);
  assert_copy(f);
}

static void stop_right_after_remove_calls_both_callbacks(void **state) {
  struct fx *f = *state;
  uint8_t content[32];
  struct removal ra = {.f = f}, rb = {.f = f};
  struct peer *a, *b;
  slow_download(f, content);
  a = &f->p[0];
  b = &f->p[1];
  /* The getter mid-download, and the seeder with a session open. */
  assert_int_equal(node_remove(b->n, content, on_removed, &rb), 0);
  node_stop(b->n, on_stopped, b);
  assert_int_equal(node_remove(b->n, content, on_removed, &rb),
                   SHOAL_ECANCELED);
  assert_int_equal(node_remove(a->n, content, on_removed, &ra), 0);
  node_stop(a->n, on_stopped, a);
  UVRUN_UNTIL(&f->r, ra.done && rb.done && a->stop_done && b->stop_done,
              WAIT_MS);
  assert_int_equal(ra.done, 1);
  assert_int_equal(rb.done, 1);
  assert_true(a->stop_done);
  assert_true(b->stop_done);
  /* Each removal's callback came before its node's. */
  assert_true(rb.order < b->stop_order);
  assert_true(ra.order < a->stop_order);
  assert_int_equal(b->ev[NODE_EV_FAILED], 0);
  assert_int_equal(a->ev[NODE_EV_FAILED], 0);
}

/* ------------------------------------------------------------------------ */
/* Sharing someone else's content */

static void
share_of_someone_else_s_content_is_announced_not_published(void **state) {
  struct fx *f = *state;
  uint8_t content[32], mine[32];
  struct peer *a, *c;
  const struct catalog_entry *e;
  write_file(f);
  a = peer_start(f, 0, 0);
  c = peer_start(f, 2, 0);
  /* c seeds a copy of a's content, under a's manifest. */
  share(c, build(f, &a->id), content);
  UVRUN_UNTIL(&f->r, c->ev[NODE_EV_SHARED] > 0 || c->ev[NODE_EV_FAILED] > 0,
              WAIT_MS);
  assert_int_equal(c->ev[NODE_EV_FAILED], 0);
  assert_int_equal(c->ev[NODE_EV_SHARED], 1); /* once announced */
  assert_true(tracker_lists(f, content, c->id.pk, 1));
  assert_null(catalog_find(&f->t.trk->cat, content));
  assert_int_equal(info(c, content).seeding, 1);

  /* The publisher's own share goes into the catalog, under its key. */
  share(a, build(f, &a->id), mine);
  assert_memory_equal(mine, content, 32);
  UVRUN_UNTIL(&f->r, tracker_lists(f, content, a->id.pk, 1), WAIT_MS);
  e = catalog_find(&f->t.trk->cat, content);
  assert_non_null(e);
  assert_memory_equal(e->publisher, a->id.pk, 32);
  assert_true(tracker_lists(f, content, a->id.pk, 1));
  assert_int_equal(c->ev[NODE_EV_FAILED], 0);
}

/* ------------------------------------------------------------------------ */
/* Re-announces spread over the interval (announce_next_ms) */

static uint32_t g_draw;
static uint32_t fixed_draw(uint32_t upper) {
  assert_int_equal(upper, 101);
  return g_draw;
}

static void next_announce_is_the_interval_less_up_to_a_tenth(void **state) {
  uint32_t lo = UINT32_MAX, hi = 0;
  (void)state;
  g_draw = 0;
  assert_int_equal(announce_next_ms(1800, 0, 450, fixed_draw), 1620000);
  g_draw = 100;
  assert_int_equal(announce_next_ms(1800, 0, 450, fixed_draw), 1800000);
  g_draw = 50;
  assert_int_equal(announce_next_ms(1800, 0, 450, fixed_draw), 1710000);
  /* The cap first, then the factor; never under the tracker's minimum. */
  g_draw = 0;
  assert_int_equal(announce_next_ms(1800, 100, 10, fixed_draw), 90000);
  assert_int_equal(announce_next_ms(1800, 100, 95, fixed_draw), 95000);
  assert_int_equal(announce_next_ms(1800, 10, 450, fixed_draw), 450000);
  /* No interval from the tracker: a minute. */
  g_draw = 100;
  assert_int_equal(announce_next_ms(0, 0, 0, fixed_draw), 60000);
  /* Drawn for real: always within [0.9, 1.0] of the interval, and spread
   * over it (1000 swarms do not all pick one time). */
  for (int k = 0; k < 1000; k++) {
    uint64_t ms = announce_next_ms(1800, 0, 450, randombytes_uniform);
    assert_true(ms >= 1620000 && ms <= 1800000);
    lo = ms < lo ? (uint32_t)ms : lo;
    hi = ms > hi ? (uint32_t)ms : hi;
  }
  assert_true(hi - lo >= 90000); /* at least half the spread was used */
}

static uint32_t g_upper;
static uint32_t recorded_draw(uint32_t upper) {
  g_upper = upper;
  return g_draw;
}

/* After a swarm's first announce, the next comes anywhere from a tenth of
 * the interval to all of it, so that contents started in a burst (a
 * thousand shares added in a few seconds) spread over the whole interval
 * from their second round on, instead of staying bunched. */
static void first_reannounce_spreads_over_the_whole_interval(void **state) {
  uint64_t lo = UINT64_MAX, hi = 0, buckets[10] = {0};
  (void)state;
  g_draw = 0;
  assert_int_equal(announce_first_next_ms(1800, 0, 0, recorded_draw), 180000);
  assert_int_equal(g_upper, 901);
  g_draw = 900;
  assert_int_equal(announce_first_next_ms(1800, 0, 0, recorded_draw), 1800000);
  /* The cap and the tracker's minimum as for every announce. */
  g_draw = 0;
  assert_int_equal(announce_first_next_ms(1800, 100, 0, recorded_draw), 10000);
  assert_int_equal(announce_first_next_ms(1800, 0, 450, recorded_draw), 450000);
  for (int k = 0; k < 2000; k++) {
    uint64_t ms = announce_first_next_ms(1000, 0, 0, randombytes_uniform);
    assert_true(ms >= 100000 && ms <= 1000000);
    lo = ms < lo ? ms : lo;
    hi = ms > hi ? ms : hi;
    buckets[ms * 10 / 1000001]++;
  }
  /* Every tenth of the interval from the second on gets its share: no
   * tenth holds more than twice its expected count. */
  for (int b = 1; b < 10; b++) {
    assert_true(buckets[b] > 0 && buckets[b] < 2 * 2000 / 9);
  }
  assert_true(hi - lo >= 800000);
}

/* A node seeding many contents checks their files less often, so that it
 * never checks more than NODE_SOURCE_CHECKS_PER_S contents a second. */
static void source_checks_are_bounded_node_wide(void **state) {
  (void)state;
  assert_int_equal(node_source_check_ms(0), NODE_SOURCE_CHECK_MS);
  assert_int_equal(node_source_check_ms(1), NODE_SOURCE_CHECK_MS);
  assert_int_equal(node_source_check_ms(100), NODE_SOURCE_CHECK_MS);
  for (unsigned n = 1; n <= 100000; n *= 3) {
    uint64_t ms = node_source_check_ms(n);
    /* n contents each once per ms: at most the budget a second. */
    assert_true((uint64_t)n * 1000u <= ms * NODE_SOURCE_CHECKS_PER_S);
    assert_true(ms >= NODE_SOURCE_CHECK_MS);
  }
  assert_int_equal(node_source_check_ms(1000),
                   1000u * 1000u / NODE_SOURCE_CHECKS_PER_S);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(source_checks_are_bounded_node_wide),
      cmocka_unit_test(next_announce_is_the_interval_less_up_to_a_tenth),
      cmocka_unit_test(first_reannounce_spreads_over_the_whole_interval),
      cmocka_unit_test_setup_teardown(
          info_tells_a_share_s_figures_and_unknown_is_enoent, setup, teardown),
      cmocka_unit_test_setup_teardown(set_rates_lifts_a_download_limit_at_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          set_rates_lowers_a_limit_from_the_next_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(
          remove_mid_download_keeps_the_partial_copy_and_get_resumes, setup,
          teardown),
      cmocka_unit_test_setup_teardown(remove_a_share_then_share_it_again, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          remove_while_publishing_and_share_again_from_the_callback, setup,
          teardown),
      cmocka_unit_test_setup_teardown(remove_a_failed_swarm, setup, teardown),
      cmocka_unit_test_setup_teardown(
          stop_right_after_remove_calls_both_callbacks, setup, teardown),
      cmocka_unit_test_setup_teardown(
          share_of_someone_else_s_content_is_announced_not_published, setup,
          teardown),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
