/* Tests of a get joining a busy swarm (issue 18): what a swarm whose
 * session slots are all held by its own dials does with a peer that
 * reaches it, how soon it looks up again, and how long it keeps trying
 * while its tracker lists peers it cannot reach.
 *
 * Everything runs in this process on one loop (tests/lib/innode.h): a real
 * tracker, one real node getting a content nobody can serve, and
 * "silent peers": listening sockets that accept the node's dials and
 * never say a word, so that each dial holds a slot of the swarm until
 * NODE_HELLO_MS. The tracker lists them through tracker clients of their
 * own, signed with their own keys, as a real peer's announces would. A
 * newcomer that dials the node is a blocking peer-wire client
 * (tests/lib/pclient.h) on a thread of its own, while the loop runs here.
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "peer/node.h"
#include "peer/tracker_client.h"
#include "tests/lib/innode.h"
#include "tests/lib/pclient.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tests/lib/uvrun.h"

#define NSILENT 3      /* silent peers a test may list */
#define SILENT_CONNS 8 /* dials one silent peer keeps */
#define NODE_SEED 0x10a0
#define WAIT_MS 20000u
#define HANDSHAKE_MS 5000

/* A listening socket that accepts every connection and never answers: a
 * peer that is slow to say hello. It counts the connections it accepted
 * and those the dialer closed. */
struct silent_conn {
  uv_tcp_t tcp;
  struct silent *sp;
  int open;
};

struct silent {
  uv_tcp_t listener;
  int port;
  struct identity id; /* the key it is listed under */
  unsigned accepted;
  unsigned closed; /* by the dialer */
  struct silent_conn conns[SILENT_CONNS];
  struct tracker_client *tc; /* lists it at the tracker */
  unsigned announced;        /* replies to its announces */
  int announce_status;
};

struct fx {
  struct innode in;
  struct silent sp[NSILENT];
  unsigned nsp;
  uint8_t content[32];
  uint64_t seq;
};

/* ------------------------------------------------------------------------ */
/* Silent peers */

static void on_silent_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
  static char scratch[4096];
  (void)h;
  (void)size;
  *b = uv_buf_init(scratch, sizeof(scratch));
}

static void on_silent_closed(uv_handle_t *h) {
  struct silent_conn *c = h->data;
  c->open = 0;
}

static void on_silent_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct silent_conn *c = s->data;
  (void)b;
  if (nread < 0) {
    /* What the dialer sent (its hello) is read and dropped; its close is
     * what counts. */
    c->sp->closed++;
    uv_close((uv_handle_t *)&c->tcp, on_silent_closed);
  }
}

static void on_silent_connection(uv_stream_t *server, int status) {
  struct silent *sp = server->data;
  struct silent_conn *c = NULL;
  if (status < 0) {
    return;
  }
  for (unsigned i = 0; i < SILENT_CONNS; i++) {
    if (!sp->conns[i].open) {
      c = &sp->conns[i];
      break;
    }
  }
  assert_non_null(c);
  assert_int_equal(uv_tcp_init(server->loop, &c->tcp), 0);
  c->tcp.data = c;
  c->sp = sp;
  c->open = 1;
  assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
  assert_int_equal(
      uv_read_start((uv_stream_t *)&c->tcp, on_silent_alloc, on_silent_read),
      0);
  sp->accepted++;
}

static void on_announced(void *arg, int status,
                         const struct tracker_client_reply *r) {
  struct silent *sp = arg;
  (void)r;
  sp->announced++;
  sp->announce_status = status;
}

/* Starts silent peer i, with the key of tu_identity(seed), and its
 * tracker client. */
static struct silent *silent_start(struct fx *f, uint64_t seed) {
  struct silent *sp = &f->sp[f->nsp++];
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  struct tracker_client_config c;
  int len = (int)sizeof(ss);
  assert_true(f->nsp <= NSILENT);
  memset(sp, 0, sizeof(*sp));
  tu_identity(&sp->id, seed);
  assert_int_equal(uv_tcp_init(&f->in.r.loop, &sp->listener), 0);
  sp->listener.data = sp;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
  assert_int_equal(uv_tcp_bind(&sp->listener, (const struct sockaddr *)&a, 0),
                   0);
  assert_int_equal(
      uv_listen((uv_stream_t *)&sp->listener, 16, on_silent_connection), 0);
  assert_int_equal(
      uv_tcp_getsockname(&sp->listener, (struct sockaddr *)&ss, &len), 0);
  sp->port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
  memset(&c, 0, sizeof(c));
  c.loop = &f->in.r.loop;
  c.id = &sp->id;
  c.trackers = &f->in.t.link;
  c.ntrackers = 1;
  c.tracker_key = f->in.t.key.pk;
  c.seq = &f->seq;
  assert_int_equal(tracker_client_new(&sp->tc, &c), 0);
  return sp;
}

/* The tracker lists sp as a seeder of the test's content (event
 * TMSG_EVENT_STARTED), or lists it no more (TMSG_EVENT_STOPPED). */
static void silent_announce(struct fx *f, struct silent *sp, uint8_t event) {
  struct tmsg_announce a;
  unsigned before = sp->announced;
  memset(&a, 0, sizeof(a));
  a.port = (uint16_t)sp->port;
  a.event = event;
  a.count = 1;
  memcpy(a.items[0].content, f->content, 32);
  a.items[0].role = TMSG_ROLE_SEEDING;
  assert_int_equal(tracker_client_announce(sp->tc, &a, on_announced, sp), 0);
  UVRUN_UNTIL(&f->in.r, sp->announced > before, WAIT_MS);
  assert_true(sp->announced > before);
  assert_int_equal(sp->announce_status, 0);
  assert_int_equal(intracker_lists(&f->in.t, f->content, sp->id.pk),
                   event != TMSG_EVENT_STOPPED);
}

static void silent_close(struct silent *sp) {
  for (unsigned i = 0; i < SILENT_CONNS; i++) {
    if (sp->conns[i].open && !uv_is_closing((uv_handle_t *)&sp->conns[i].tcp)) {
      uv_close((uv_handle_t *)&sp->conns[i].tcp, on_silent_closed);
    }
  }
  uv_close((uv_handle_t *)&sp->listener, NULL);
  tracker_client_close(sp->tc);
  sp->tc = NULL;
}

/* ------------------------------------------------------------------------ */
/* The fixture */

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  assert_non_null(f);
  c.max_conns = 64;
  innode_init(&f->in, &c, 0x701e);
  f->seq = 1;
  tu_fill(f->content, sizeof(f->content), 0xc0de);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc;
  for (unsigned i = 0; i < f->nsp; i++) {
    silent_close(&f->sp[i]);
  }
  rc = innode_close(&f->in, WAIT_MS);
  for (unsigned i = 0; i < f->nsp; i++) {
    identity_close(&f->sp[i].id);
  }
  free(f);
  return rc;
}

/* Starts the node with max_peers slots a swarm and the two waits of its
 * tracker schedule (0: the defaults), and gets the test's content, which
 * nobody holds. */
static void node_get_content(struct fx *f, unsigned max_peers,
                             unsigned no_peers_ms, unsigned lookup_max_ms) {
  struct node_config c;
  char dir[4200];
  memset(&c, 0, sizeof(c));
  c.max_peers = max_peers;
  c.no_peers_ms = no_peers_ms;
  c.lookup_max_ms = lookup_max_ms;
  innode_node_start(&f->in, &c, NODE_SEED);
  tu_path(dir, sizeof(dir), f->in.dir, "out");
  assert_int_equal(node_get(f->in.n, f->content, NULL, 0, &f->in.t.link, 1,
                            f->in.t.key.pk, dir, 0),
                   0);
}

/* Waits until each of the first n silent peers holds a dial of the node:
 * the swarm's slots are then theirs. */
static void wait_dialled(struct fx *f, unsigned n) {
  unsigned have = 0;
  for (unsigned i = 0; i < n; i++) {
    UVRUN_UNTIL(&f->in.r, f->sp[i].accepted > 0, WAIT_MS);
    have += f->sp[i].accepted > 0;
  }
  assert_int_equal(have, n);
}

/* ------------------------------------------------------------------------ */
/* A newcomer on a thread of its own */

struct newcomer {
  const struct identity *id;
  const uint8_t *content;
  int port;
  pthread_t th;
  atomic_int done;
  int result; /* of the handshake: 0 when the node answered our hello */
};

static void *newcomer_run(void *arg) {
  struct newcomer *nc = arg;
  struct pclient c;
  int err = pc_init(&c, nc->id);
  if (err == 0) {
    err = pc_connect(&c, nc->port);
  }
  if (err == 0) {
    err = pc_handshake(&c, nc->content, 0, 0, HANDSHAKE_MS);
  }
  pc_close(&c);
  nc->result = err;
  atomic_store(&nc->done, 1);
  return NULL;
}

/* A peer with identity id dials the node and says hello while the loop
 * runs. Returns the handshake's result: 0, or UV_EOF when the node closed
 * the connection instead of answering. */
static int newcomer_dials(struct fx *f, const struct identity *id) {
  struct newcomer nc;
  memset(&nc, 0, sizeof(nc));
  nc.id = id;
  nc.content = f->content;
  nc.port = node_port(f->in.n);
  atomic_init(&nc.done, 0);
  assert_int_equal(pthread_create(&nc.th, NULL, newcomer_run, &nc), 0);
  UVRUN_UNTIL(&f->in.r, atomic_load(&nc.done), WAIT_MS);
  assert_int_equal(pthread_join(nc.th, NULL), 0);
  return nc.result;
}

/* Of silent peers a and b, the one whose key sorts below (below set) or
 * above the node's. */
static struct silent *keyed(struct fx *f, struct silent *a, struct silent *b,
                            int below) {
  int a_below = memcmp(a->id.pk, f->in.id.pk, IDENTITY_PK_BYTES) < 0;
  int b_below = memcmp(b->id.pk, f->in.id.pk, IDENTITY_PK_BYTES) < 0;
  assert_true(a_below != b_below); /* the seeds are chosen so */
  return a_below == below ? a : b;
}

/* Starts two silent peers, one keyed below the node and one above. */
static void two_silent_peers(struct fx *f) {
  uint8_t pk[32];
  uint64_t seed = 0x5100;
  tu_pk(pk, NODE_SEED);
  for (int want_below = 1; want_below >= 0; want_below--) {
    for (;; seed++) {
      uint8_t other[32];
      tu_pk(other, seed);
      if ((memcmp(other, pk, 32) < 0) == want_below) {
        break;
      }
    }
    silent_start(f, seed++);
  }
}

/* ------------------------------------------------------------------------ */
/* A peer that reached us beats a dial of ours not yet through */

static void a_hello_takes_the_slot_of_the_oldest_dial(void **state) {
  struct fx *f = *state;
  struct identity newcomer;
  two_silent_peers(f);
  silent_announce(f, &f->sp[0], TMSG_EVENT_STARTED);
  silent_announce(f, &f->sp[1], TMSG_EVENT_STARTED);
  node_get_content(f, 2, 0, 0);
  wait_dialled(f, 2);

  /* Both slots hold dials that will not get through for NODE_HELLO_MS;
   * a newcomer is let in at once, in the place of one of them. */
  tu_identity(&newcomer, 0x7e11);
  assert_int_equal(newcomer_dials(f, &newcomer), 0);
  identity_close(&newcomer);
  UVRUN_UNTIL(&f->in.r, f->sp[0].closed + f->sp[1].closed > 0, WAIT_MS);
  assert_int_equal(f->sp[0].closed + f->sp[1].closed, 1);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
}

static void
a_hello_from_a_peer_we_dial_with_a_lower_key_takes_our_dial(void **state) {
  struct fx *f = *state;
  struct silent *low, *high;
  two_silent_peers(f);
  silent_announce(f, &f->sp[0], TMSG_EVENT_STARTED);
  silent_announce(f, &f->sp[1], TMSG_EVENT_STARTED);
  node_get_content(f, 2, 0, 0);
  wait_dialled(f, 2);
  low = keyed(f, &f->sp[0], &f->sp[1], 1);
  high = keyed(f, &f->sp[0], &f->sp[1], 0);

  /* The lower key's session survives a pair (swarm_session_open): its
   * hello takes the slot of our own dial to it, not of the other dial. */
  assert_int_equal(newcomer_dials(f, &low->id), 0);
  UVRUN_UNTIL(&f->in.r, low->closed > 0, WAIT_MS);
  assert_int_equal(low->closed, 1);
  assert_int_equal(high->closed, 0);
}

static void
a_hello_from_a_peer_we_dial_with_a_higher_key_is_refused(void **state) {
  struct fx *f = *state;
  struct silent *high;
  two_silent_peers(f);
  silent_announce(f, &f->sp[0], TMSG_EVENT_STARTED);
  silent_announce(f, &f->sp[1], TMSG_EVENT_STARTED);
  node_get_content(f, 2, 0, 0);
  wait_dialled(f, 2);
  high = keyed(f, &f->sp[0], &f->sp[1], 0);

  /* Our dial to it wins the pair at its end: its inbound session would be
   * the one dropped, so it takes no slot, and no dial gives way. */
  assert_int_equal(newcomer_dials(f, &high->id), UV_EOF);
  assert_int_equal(f->sp[0].closed + f->sp[1].closed, 0);
}

/* ------------------------------------------------------------------------ */
/* A get full of its own dials looks up again soon */

static void a_get_full_of_dials_looks_up_again_once_a_dial_ends(void **state) {
  struct fx *f = *state;
  struct silent *third;
  uint64_t full_at;
  two_silent_peers(f);
  third = silent_start(f, 0x5900);
  silent_announce(f, &f->sp[0], TMSG_EVENT_STARTED);
  silent_announce(f, &f->sp[1], TMSG_EVENT_STARTED);
  node_get_content(f, 2, 0, 0);
  wait_dialled(f, 2);
  uv_update_time(&f->in.r.loop);
  full_at = uv_now(&f->in.r.loop);

  /* The tracker now lists only the third. The two dials hold the slots
   * until NODE_HELLO_MS; the next lookup, LOOKUP_MIN_MS after a slot
   * frees, finds the third (a swarm that waited LOOKUP_MAX_MS, 30 s,
   * would dial it 20 s later). */
  silent_announce(f, &f->sp[0], TMSG_EVENT_STOPPED);
  silent_announce(f, &f->sp[1], TMSG_EVENT_STOPPED);
  silent_announce(f, third, TMSG_EVENT_STARTED);
  UVRUN_UNTIL(&f->in.r, third->accepted > 0, NODE_HELLO_MS + 6000);
  assert_int_equal(third->accepted, 1);
  uv_update_time(&f->in.r.loop);
  printf("# the third was dialled %llu ms after the slots filled\n",
         (unsigned long long)(uv_now(&f->in.r.loop) - full_at));
  /* It had to wait for a slot: the dials ran out their time. */
  assert_int_equal(f->sp[0].closed + f->sp[1].closed, 2);
}

/* ------------------------------------------------------------------------ */
/* A get gives up only once its tracker lists nobody */

#define NO_PEERS_MS 2500u
#define LOOKUP_EVERY_MS 1000u

static void
a_get_does_not_give_up_while_its_tracker_lists_a_peer(void **state) {
  struct fx *f = *state;
  struct silent *sp = silent_start(f, 0x5a00);
  uint64_t unlisted_at, failed_at;
  silent_announce(f, sp, TMSG_EVENT_STARTED);
  node_get_content(f, 0, NO_PEERS_MS, LOOKUP_EVERY_MS);
  wait_dialled(f, 1);

  /* The only peer listed never answers: for three times the give-up
   * wait, the get keeps trying. */
  UVRUN_UNTIL(&f->in.r, f->in.ev[NODE_EV_FAILED] > 0, 3 * NO_PEERS_MS);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);

  /* Once the tracker lists nobody, it gives up after the wait. */
  silent_announce(f, sp, TMSG_EVENT_STOPPED);
  uv_update_time(&f->in.r.loop);
  unlisted_at = uv_now(&f->in.r.loop);
  UVRUN_UNTIL(&f->in.r, f->in.ev[NODE_EV_FAILED] > 0, NO_PEERS_MS + 5000);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 1);
  uv_update_time(&f->in.r.loop);
  failed_at = uv_now(&f->in.r.loop);
  /* A lookup answered just before the listing went counts from then. */
  assert_true(failed_at - unlisted_at >= NO_PEERS_MS - LOOKUP_EVERY_MS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_hello_takes_the_slot_of_the_oldest_dial,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_hello_from_a_peer_we_dial_with_a_lower_key_takes_our_dial, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          a_hello_from_a_peer_we_dial_with_a_higher_key_is_refused, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          a_get_full_of_dials_looks_up_again_once_a_dial_ends, setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_get_does_not_give_up_while_its_tracker_lists_a_peer, setup,
          teardown),
  };
  log_set_level(LOG_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
