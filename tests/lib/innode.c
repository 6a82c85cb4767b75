/* A tracker and a node in the test's process (see innode.h). */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "tests/lib/innode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/manifest.h"
#include "peer/manifest_build.h"
#include "tests/lib/testutil.h"

static void on_check(uv_check_t *h) {
  struct innode *f = h->data;
  unsigned c = intracker_conns_from_loopback(&f->t);
  if (f->watch && f->conns > 0 && c == 0) {
    f->drops++;
  }
  f->conns = c;
  if (c > f->peak_conns) {
    f->peak_conns = c;
  }
}

static void on_event(void *arg, const struct node_event *ev) {
  struct innode *f = arg;
  if ((unsigned)ev->type < INNODE_NEVENTS) {
    f->ev[ev->type]++;
  }
  if (ev->type == NODE_EV_TRACKER &&
      memcmp(ev->key, f->t.key.pk, IDENTITY_PK_BYTES) == 0) {
    f->tracker_events_with_key++;
  }
  if (ev->type == NODE_EV_FAILED) {
    fprintf(stderr, "failed: %s\n", ev->message);
  }
}

static void on_stopped(void *arg) {
  struct innode *f = arg;
  f->stop_done = 1;
}

void innode_init(struct innode *f, const struct tracker_config *c,
                 uint64_t key_seed) {
  memset(f, 0, sizeof(*f));
  assert_int_equal(uvrun_init(&f->r), 0);
  tu_tmpdir(f->dir, sizeof(f->dir));
  assert_int_equal(intracker_start(&f->t, &f->r.loop, c, key_seed), 0);
  uv_check_init(&f->r.loop, &f->check);
  f->check.data = f;
  uv_check_start(&f->check, on_check);
  uv_unref((uv_handle_t *)&f->check);
}

void innode_node_start(struct innode *f, struct node_config *c,
                       uint64_t id_seed) {
  char home[4200];
  snprintf(home, sizeof(home), "%s/home", f->dir);
  assert_int_equal(mkdir(home, 0700), 0);
  tu_identity(&f->id, id_seed);
  c->home = home;
  c->listen = "127.0.0.1:0";
  assert_int_equal(node_new(&f->n, &f->r.loop, c, &f->id, on_event, f), 0);
}

void innode_write_files(struct innode *f, unsigned count, size_t size,
                        uint64_t seed0) {
  uint8_t *data = malloc(size);
  char src[4200];
  assert_non_null(data);
  tu_path(src, sizeof(src), f->dir, "src");
  f->content = calloc(count, sizeof(*f->content));
  assert_non_null(f->content);
  f->ncontent = count;
  for (unsigned i = 0; i < count; i++) {
    char name[32];
    snprintf(name, sizeof(name), "f%04u.bin", i);
    tu_fill(data, size, seed0 + i);
    tu_write_file(src, name, data, size);
  }
  free(data);
}

void innode_share(struct innode *f, unsigned i,
                  const struct identity *publisher, const uint8_t *key) {
  struct manifest_build_opts o;
  struct manifest *m = NULL;
  char path[4200];
  snprintf(path, sizeof(path), "%s/src/f%04u.bin", f->dir, i);
  memset(&o, 0, sizeof(o));
  assert_int_equal(manifest_build(path, publisher, &o, &m), 0);
  memcpy(f->content[i], m->id, 32);
  assert_int_equal(node_share(f->n, m, &f->t.link, 1, key), 0);
}

unsigned innode_listed(struct innode *f, unsigned from, unsigned to) {
  unsigned c = 0;
  for (unsigned i = from; i < to; i++) {
    c += (unsigned)intracker_lists(&f->t, f->content[i], f->id.pk);
  }
  return c;
}

void innode_stop(struct innode *f, unsigned ms) {
  node_stop(f->n, on_stopped, f);
  UVRUN_UNTIL(&f->r, f->stop_done, ms);
}

void innode_client_config(struct innode *f, struct tracker_client_config *c,
                          uint64_t id_seed, uint64_t *seq) {
  tu_identity(&f->id, id_seed);
  memset(c, 0, sizeof(*c));
  c->loop = &f->r.loop;
  c->id = &f->id;
  c->trackers = &f->t.link;
  c->ntrackers = 1;
  c->seq = seq;
}

int innode_close(struct innode *f, unsigned ms) {
  int rc = 0;
  if (f->n != NULL && !f->stop_done) {
    innode_stop(f, ms);
    if (!f->stop_done) {
      fprintf(stderr, "teardown: the node did not stop\n");
      rc = -1;
    }
  }
  intracker_stop(&f->t);
  uv_close((uv_handle_t *)&f->check, NULL);
  if (uvrun_close(&f->r, ms) != 0) {
    rc = -1;
  }
  node_free(f->n);
  if (f->n != NULL) {
    identity_close(&f->id);
  }
  intracker_close(&f->t);
  tu_rmtree(f->dir);
  free(f->content);
  f->n = NULL;
  f->content = NULL;
  return rc;
}
