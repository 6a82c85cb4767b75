/* Integration tests: the real shoal-tracker on an ephemeral loopback port,
 * driven by blocking clients in this process. Every test starts its own
 * tracker, stops it by PID and removes its folder, also when it fails
 * (cmocka teardown). Waits poll a condition until a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/tmsg.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define TIMEOUT_MS 5000
/* What a run of the binary may print to each of stdout and stderr. */
#define RUN_OUT_CAP 8192

static int setup(void **state) {
  *state = tc_fixture_new();
  return *state != NULL ? 0 : -1;
}

static int teardown(void **state) {
  tc_fixture_free(*state);
  return 0;
}

static int connect_tracked(struct tc_fixture *f) {
  int fd = tc_fixture_keep(f, tc_connect(f->t.port));
  assert_true(fd >= 0);
  return fd;
}

static void start(struct tc_fixture *f, const char **extra) {
  assert_int_equal(tc_tracker_start(&f->t, 0, extra), 0);
}

static void content_id(uint8_t out[32], unsigned n) {
  memset(out, 0, 32);
  out[0] = 0xc0;
  out[1] = (uint8_t)(n >> 8);
  out[2] = (uint8_t)n;
}

static void key(struct identity *id, unsigned n) {
  uint8_t seed[32] = {0};
  seed[0] = 0x5e;
  seed[1] = (uint8_t)(n >> 8);
  seed[2] = (uint8_t)n;
  identity_from_seed(id, seed);
}

/* Starts the tracker with the extra arguments (NULL-ended, may be NULL),
 * writes the content ID of number n into c, and returns a connection. */
static int start_with_content(struct tc_fixture *f, const char **extra,
                              uint8_t c[32], unsigned n) {
  start(f, extra);
  content_id(c, n);
  return connect_tracked(f);
}

/* Appends msg to all as one frame. */
static void add_frame(struct buf *all, const struct buf *msg) {
  uint8_t hdr[FRAME_HEADER_BYTES];
  frame_header(hdr, msg->len);
  buf_add(all, hdr, sizeof(hdr));
  buf_add(all, msg->data, msg->len);
}

/* Sends one frame and returns the reply type (payload in f->frame). */
static int roundtrip(struct tc_fixture *f, int fd, const struct buf *msg,
                     const uint8_t **payload, size_t *len) {
  assert_int_equal(tc_send_frame(fd, msg->data, msg->len), 0);
  if (tc_recv_frame(fd, &f->frame, TIMEOUT_MS) != 0) {
    return -1;
  }
  return tc_open_reply(&f->t, &f->frame, payload, len);
}

static void announce(struct tc_fixture *f, int fd, const struct identity *id,
                     uint64_t seq, uint16_t port, uint8_t event,
                     const uint8_t content[32], uint8_t role) {
  const uint8_t *p;
  size_t n;
  uint8_t c[1][32];
  memcpy(c[0], content, 32);
  tc_seal_announce(&f->msg, id, clock_wall_ms(), seq, port, event,
                   (const uint8_t(*)[32])c, &role, 1);
  int type = roundtrip(f, fd, &f->msg, &p, &n);
  assert_int_equal(type, TMSG_ANNOUNCE_OK);
  struct tmsg_announce_ok ok;
  assert_int_equal(tmsg_announce_ok_decode(p, n, &ok), 0);
  assert_int_equal(ok.seq, seq);
  assert_int_equal(ok.accepted, 1);
  assert_true(ok.interval_s > 0);
}

static void lookup(struct tc_fixture *f, int fd, const uint8_t content[32],
                   uint16_t want, const uint8_t *asker,
                   struct tmsg_lookup_ok *out) {
  const uint8_t *p;
  size_t n;
  tc_query_lookup(&f->msg, 1, content, want, 0, asker);
  assert_int_equal(roundtrip(f, fd, &f->msg, &p, &n), TMSG_LOOKUP_OK);
  assert_int_equal(tmsg_lookup_ok_decode(p, n, out), 0);
}

/* Announces content c for the keys base .. base + n - 1, each with the
 * same sequence number, port, event and role. */
static void announce_keys(struct tc_fixture *f, int fd, unsigned base,
                          unsigned n, uint64_t seq, uint16_t port,
                          uint8_t event, const uint8_t c[32], uint8_t role) {
  for (unsigned i = 0; i < n; i++) {
    struct identity id;
    key(&id, base + i);
    announce(f, fd, &id, seq, port, event, c, role);
    identity_close(&id);
  }
}

/* Expects an error reply with this code, and returns it. */
static struct tmsg_error expect_error(struct tc_fixture *f, int fd, int code) {
  const uint8_t *p;
  size_t n;
  struct tmsg_error e;
  assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
  assert_int_equal(tc_open_reply(&f->t, &f->frame, &p, &n), TMSG_ERROR);
  assert_int_equal(tmsg_error_decode(p, n, &e), 0);
  if (e.code != code) {
    fail_msg("error %s (%s), expected %s", shoal_err_name(e.code), e.reason,
             shoal_err_name(code));
  }
  assert_true(strlen(e.reason) > 0);
  return e;
}

/* Sends f->msg on fd, expects an error reply with this code, and returns
 * it. */
static struct tmsg_error send_expect_error(struct tc_fixture *f, int fd,
                                           int code) {
  assert_int_equal(tc_send_frame(fd, f->msg.data, f->msg.len), 0);
  return expect_error(f, fd, code);
}

/* ------------------------------------------------------------------------ */

static void lookup_returns_exactly_the_live_set(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  enum { N = 40 };
  int fd = start_with_content(f, NULL, c, 1);
  for (unsigned i = 0; i < N; i++) {
    struct identity id;
    key(&id, i);
    announce(f, fd, &id, 100 + i, (uint16_t)(6000 + i), TMSG_EVENT_STARTED, c,
             i < 10 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING);
    identity_close(&id);
  }
  /* A stopped peer leaves the set. */
  struct identity gone;
  key(&gone, 7);
  announce(f, fd, &gone, 500, 6007, TMSG_EVENT_STOPPED, c, TMSG_ROLE_SEEDING);

  struct identity asker;
  key(&asker, 3);
  lookup(f, fd, c, TMSG_MAX_PEERS, asker.pk, &r);
  assert_int_equal(r.seeders, 9);
  assert_int_equal(r.downloaders, N - 10);
  /* Everyone alive but the asker (3) and the stopped one (7). */
  assert_int_equal(r.count, N - 2);
  for (unsigned i = 0; i < N; i++) {
    struct identity id;
    key(&id, i);
    int found = 0;
    for (unsigned k = 0; k < r.count; k++) {
      if (memcmp(r.peers[k].pk, id.pk, 32) == 0) {
        found++;
        assert_int_equal(r.peers[k].port, 6000 + i);
        assert_int_equal(r.peers[k].family, 4);
        /* The observed address, never a claimed one. */
        assert_memory_equal(r.peers[k].addr, "\x7f\x00\x00\x01", 4);
        assert_int_equal(r.peers[k].seeding, i < 10);
      }
    }
    assert_int_equal(found, (i == 3 || i == 7) ? 0 : 1);
    identity_close(&id);
  }
  identity_close(&asker);
  identity_close(&gone);
}

static void cached_lookup_never_lists_the_asker(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  int fd = start_with_content(f, NULL, c, 2);
  for (unsigned i = 0; i < 5; i++) {
    struct identity id;
    key(&id, 100 + i);
    announce(f, fd, &id, 1 + i, 7000, TMSG_EVENT_STARTED, c, TMSG_ROLE_SEEDING);
    identity_close(&id);
  }
  /* The first lookup fills the cache; each asker then must not see itself
   * even though the cached reply lists everyone. */
  lookup(f, fd, c, 50, NULL, &r);
  assert_int_equal(r.count, 5);
  for (unsigned i = 0; i < 5; i++) {
    struct identity id;
    key(&id, 100 + i);
    lookup(f, fd, c, 50, id.pk, &r);
    assert_int_equal(r.count, 4);
    for (unsigned k = 0; k < r.count; k++) {
      assert_memory_not_equal(r.peers[k].pk, id.pk, 32);
    }
    identity_close(&id);
  }
}

static void registrations_expire_without_renewal(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--interval", "2", NULL};
  uint8_t c[32];
  struct identity a, b;
  struct tmsg_lookup_ok r;
  int fd = start_with_content(f, args, c, 3);
  key(&a, 1);
  key(&b, 2);
  announce(f, fd, &a, 1, 5000, TMSG_EVENT_STARTED, c, TMSG_ROLE_SEEDING);
  announce(f, fd, &b, 1, 5001, TMSG_EVENT_STARTED, c, TMSG_ROLE_DOWNLOADING);
  lookup(f, fd, c, 10, NULL, &r);
  assert_int_equal(r.count, 2);
  /* b keeps announcing, a does not: a goes after interval + grace (3 s). */
  uint64_t deadline = tc_now_ms() + 10000;
  uint64_t seq = 2;
  int a_gone = 0;
  while (tc_now_ms() < deadline && !a_gone) {
    struct timespec ts = {0, 200 * 1000000L};
    announce(f, fd, &b, seq++, 5001, TMSG_EVENT_PERIODIC, c,
             TMSG_ROLE_DOWNLOADING);
    lookup(f, fd, c, 10, b.pk, &r);
    a_gone = r.count == 0;
    if (!a_gone) {
      nanosleep(&ts, NULL); /* pace the renewals; the loop has a deadline */
    }
  }
  assert_true(a_gone);
  lookup(f, fd, c, 10, NULL, &r);
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.peers[0].pk, b.pk, 32);
  identity_close(&a);
  identity_close(&b);
}

static void restarted_tracker_is_whole_after_reannounce(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  uint8_t key_before[32];
  int fd = start_with_content(f, NULL, c, 4);
  memcpy(key_before, f->t.key, 32);
  announce_keys(f, fd, 200, 10, 1, 4000, TMSG_EVENT_STARTED, c,
                TMSG_ROLE_SEEDING);
  tc_tracker_kill(&f->t);
  (void)fd;
  /* Same key file, fresh process: soft state is gone until re-announce. */
  assert_int_equal(tc_tracker_start(&f->t, 1, NULL), 0);
  assert_memory_equal(f->t.key, key_before, 32);
  fd = connect_tracked(f);
  lookup(f, fd, c, 50, NULL, &r);
  assert_int_equal(r.count, 0);
  announce_keys(f, fd, 200, 10, 2, 4000, TMSG_EVENT_PERIODIC, c,
                TMSG_ROLE_SEEDING);
  lookup(f, fd, c, 50, NULL, &r);
  assert_int_equal(r.count, 10);
  assert_int_equal(r.seeders, 10);
}

static void publish_then_search_finds_it(void **state) {
  struct tc_fixture *f = *state;
  struct tmsg_publish pub;
  struct identity pubkey, other;
  const uint8_t *p;
  size_t n;
  start(f, NULL);
  key(&pubkey, 9);
  key(&other, 10);
  int fd = connect_tracked(f);
  memset(&pub, 0, sizeof(pub));
  content_id(pub.content, 5);
  pub.size = 123456;
  snprintf(pub.name, sizeof(pub.name), "Holiday Photos 2026");
  tc_seal_publish(&f->msg, &pubkey, clock_wall_ms(), 1, &pub);
  assert_int_equal(roundtrip(f, fd, &f->msg, &p, &n), TMSG_PUBLISH_OK);
  /* Another key cannot take the entry over. */
  tc_seal_publish(&f->msg, &other, clock_wall_ms(), 1, &pub);
  send_expect_error(f, fd, SHOAL_EWRONGKEY);

  struct tmsg_search_ok r;
  tc_query_search(&f->msg, 7, "photos HOLIDAY", 0, 10);
  assert_int_equal(roundtrip(f, fd, &f->msg, &p, &n), TMSG_SEARCH_OK);
  assert_int_equal(tmsg_search_ok_decode(p, n, &r), 0);
  assert_int_equal(r.total, 1);
  assert_int_equal(r.count, 1);
  assert_string_equal(r.results[0].name, "Holiday Photos 2026");
  assert_int_equal(r.results[0].size, 123456);
  assert_memory_equal(r.results[0].publisher, pubkey.pk, 32);
  tc_query_search(&f->msg, 8, "photos video", 0, 10);
  assert_int_equal(roundtrip(f, fd, &f->msg, &p, &n), TMSG_SEARCH_OK);
  assert_int_equal(tmsg_search_ok_decode(p, n, &r), 0);
  assert_int_equal(r.total, 0);
  identity_close(&pubkey);
  identity_close(&other);
}

static void pipelined_requests_are_answered_in_order(void **state) {
  struct tc_fixture *f = *state;
  struct buf all;
  uint8_t c[32];
  struct identity id;
  int fd = start_with_content(f, NULL, c, 6);
  key(&id, 77);
  buf_init(&all, 1 << 20);
  /* 20 announces with rising sequence numbers in one write. */
  for (unsigned i = 0; i < 20; i++) {
    uint8_t cc[1][32];
    uint8_t role = TMSG_ROLE_SEEDING;
    memcpy(cc[0], c, 32);
    tc_seal_announce(&f->msg, &id, clock_wall_ms(), 1000 + i, 3000,
                     TMSG_EVENT_PERIODIC, (const uint8_t(*)[32])cc, &role, 1);
    add_frame(&all, &f->msg);
  }
  assert_int_equal(tc_write(fd, all.data, all.len), 0);
  for (unsigned i = 0; i < 20; i++) {
    const uint8_t *p;
    size_t n;
    struct tmsg_announce_ok ok;
    assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
    assert_int_equal(tc_open_reply(&f->t, &f->frame, &p, &n), TMSG_ANNOUNCE_OK);
    assert_int_equal(tmsg_announce_ok_decode(p, n, &ok), 0);
    assert_int_equal(ok.seq, 1000 + i);
  }
  buf_free(&all);
  identity_close(&id);
}

/* ------------------------------------------------------------------------ */
/* Hostile clients: each refused with the right error, others still served. */

static void still_serves_others(struct tc_fixture *f) {
  struct tmsg_lookup_ok r;
  uint8_t c[32];
  content_id(c, 999);
  int fd = connect_tracked(f);
  lookup(f, fd, c, 5, NULL, &r);
  assert_int_equal(r.count, 0);
}

/* Sends f->msg on fd: it is refused with code, the connection closes, and
 * the tracker still serves others. */
static void expect_refused(struct tc_fixture *f, int fd, int code) {
  send_expect_error(f, fd, code);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  still_serves_others(f);
}

/* Seals into f->msg an announce by id of c as a seeder at port 9000, with
 * the timestamp and sequence number given. */
static void seal_one(struct tc_fixture *f, const struct identity *id,
                     uint64_t timestamp, uint64_t seq, const uint8_t c[32]) {
  uint8_t role = TMSG_ROLE_SEEDING;
  uint8_t cc[1][32];
  memcpy(cc[0], c, 32);
  tc_seal_announce(&f->msg, id, timestamp, seq, 9000, 1,
                   (const uint8_t(*)[32])cc, &role, 1);
}

static void forged_signature_is_refused(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct identity id;
  int fd = start_with_content(f, NULL, c, 7);
  key(&id, 1);
  seal_one(f, &id, clock_wall_ms(), 1, c);
  f->msg.data[f->msg.len - 1] ^= 0x01;
  expect_refused(f, fd, SHOAL_EBADSIG);
  identity_close(&id);
}

static void replayed_message_is_refused(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct identity id;
  const uint8_t *p;
  size_t n;
  int fd = start_with_content(f, NULL, c, 8);
  key(&id, 2);
  seal_one(f, &id, clock_wall_ms(), 42, c);
  assert_int_equal(roundtrip(f, fd, &f->msg, &p, &n), TMSG_ANNOUNCE_OK);
  /* The same bytes again, on a new connection. */
  expect_refused(f, connect_tracked(f), SHOAL_EREPLAY);
  identity_close(&id);
}

static void stale_timestamp_is_refused(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct identity id;
  int fd = start_with_content(f, NULL, c, 9);
  key(&id, 3);
  seal_one(f, &id, clock_wall_ms() - 3600u * 1000u, 1, c);
  expect_refused(f, fd, SHOAL_ESTALE);
  identity_close(&id);
}

static void oversize_frame_is_refused(void **state) {
  struct tc_fixture *f = *state;
  uint8_t hdr[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB, over 64 KiB */
  start(f, NULL);
  int fd = connect_tracked(f);
  assert_int_equal(tc_write(fd, hdr, sizeof(hdr)), 0);
  expect_error(f, fd, SHOAL_ETOOBIG);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  still_serves_others(f);
}

static void garbage_bytes_are_refused(void **state) {
  struct tc_fixture *f = *state;
  static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  uint8_t junk[64];
  start(f, NULL);
  int fd = connect_tracked(f);
  assert_int_equal(tc_write(fd, http, sizeof(http) - 1), 0);
  expect_error(f, fd, SHOAL_ETOOBIG); /* "GET " read as a length */
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  /* A well-sized frame of random bytes is neither query nor envelope. */
  fd = connect_tracked(f);
  randombytes_buf(junk, sizeof(junk));
  junk[0] = 1;
  junk[1] = 1; /* looks like an envelope of the request class */
  assert_int_equal(tc_send_frame(fd, junk, sizeof(junk)), 0);
  assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  still_serves_others(f);
}

static void connection_limit_refuses_extra_clients(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--max-connections", "4", NULL};
  int fds[8];
  start(f, args);
  for (int i = 0; i < 8; i++) {
    fds[i] = connect_tracked(f);
  }
  /* Exactly the ones over the limit are closed by the tracker. */
  int closed = 0;
  for (int i = 4; i < 8; i++) {
    closed += tc_wait_closed(fds[i], TIMEOUT_MS);
  }
  assert_int_equal(closed, 4);
  struct tmsg_lookup_ok r;
  uint8_t c[32];
  content_id(c, 10);
  lookup(f, fds[0], c, 5, NULL, &r);
  lookup(f, fds[3], c, 5, NULL, &r);
}

/* ------------------------------------------------------------------------ */
/* Connections per address. */

/* A client connection from a chosen loopback source address (bind before
 * connect), closed at teardown. */
static int connect_from(struct tc_fixture *f, const char *source) {
  struct sockaddr_in src, dst;
  int fd = tc_fixture_keep(f, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  assert_true(fd >= 0);
  memset(&src, 0, sizeof(src));
  src.sin_family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, source, &src.sin_addr), 1);
  assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
  memset(&dst, 0, sizeof(dst));
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)f->t.port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof(dst)), 0);
  return fd;
}

/* Closes one of the fixture's sockets before teardown. */
static void close_tracked(struct tc_fixture *f, int fd) {
  for (int i = 0; i < f->nfds; i++) {
    if (f->fds[i] == fd) {
      close(fd);
      f->fds[i] = -1;
      return;
    }
  }
  fail_msg("fd %d is not the fixture's", fd);
}

/* Sends a lookup and reads the reply: 1 when it is a lookup reply signed
 * by the tracker, 0 when the tracker closed the connection instead. */
static int served(struct tc_fixture *f, int fd, unsigned n) {
  const uint8_t *p;
  size_t len;
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  content_id(c, 900 + n);
  tc_query_lookup(&f->msg, n, c, 5, 0, NULL);
  if (tc_send_frame(fd, f->msg.data, f->msg.len) != 0 ||
      tc_recv_frame(fd, &f->frame, TIMEOUT_MS) != 0) {
    return 0;
  }
  /* A reply must be a good one. */
  assert_int_equal(tc_open_reply(&f->t, &f->frame, &p, &len), TMSG_LOOKUP_OK);
  assert_int_equal(tmsg_lookup_ok_decode(p, len, &r), 0);
  assert_int_equal(r.count, 0);
  return 1;
}

/* Waits until the tracker's log holds needle. */
static void wait_log_has(struct tc_fixture *f, const char *needle) {
  uint64_t deadline = tc_now_ms() + TIMEOUT_MS;
  while (!tu_file_has(f->t.log_path, needle)) {
    if (tc_now_ms() >= deadline) {
      fail_msg("the tracker log has no \"%s\"", needle);
    }
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL); /* pace the polling; the loop has a deadline */
  }
}

/* Without --max-per-address, one address may hold 64 connections (the
 * documented default), so that it cannot take every connection of a
 * tracker that allows more. */
static void default_cap_leaves_room_for_other_addresses(void **state) {
  struct tc_fixture *f = *state;
  enum { CAP = 64 };
  const char *args[] = {"--max-connections", "65",      "--rate", "1000000",
                        "--burst",           "1000000", NULL};
  int held[CAP];
  start(f, args);
  for (int i = 0; i < CAP; i++) {
    held[i] = connect_from(f, "127.0.0.1");
    if (!served(f, held[i], (unsigned)i)) {
      fail_msg("connection %d of 127.0.0.1 was refused", i + 1);
    }
  }
  /* One more from the same address; the tracker has made up its mind about
   * it once it answered or closed it. */
  int extra = connect_from(f, "127.0.0.1");
  int extra_served = served(f, extra, CAP);
  /* The last of the 65 connections must still be there for others. A
   * refused connection counts against --max-connections until its close
   * callback has run, a loop turn after the client saw it closed: another
   * address may need a second try, never more than a moment. */
  int other_served = 0;
  uint64_t deadline = tc_now_ms() + TIMEOUT_MS;
  for (int tries = 0; !other_served && tries < 100 && tc_now_ms() < deadline;
       tries++) {
    int other = connect_from(f, "127.0.0.2");
    other_served = served(f, other, CAP + 1);
    if (!other_served) {
      close_tracked(f, other);
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL); /* pace the tries; the loop has a deadline */
    }
  }
  if (!other_served) {
    fail_msg("a client from 127.0.0.2 was refused while 127.0.0.1 held %d "
             "connections",
             CAP + extra_served);
  }
  if (extra_served) {
    fail_msg("connection %d of 127.0.0.1 was served; %d is the default cap",
             CAP + 1, CAP);
  }
  for (int i = 0; i < CAP; i++) {
    assert_true(served(f, held[i], (unsigned)i));
  }
}

static void
address_at_its_cap_is_refused_while_others_are_served(void **state) {
  struct tc_fixture *f = *state;
  enum { K = 2 };
  const char *args[] = {"--max-connections", "4", "--max-per-address", "2",
                        NULL};
  int held[K];
  start(f, args);
  for (int i = 0; i < K; i++) {
    held[i] = connect_from(f, "127.0.0.1");
    assert_true(served(f, held[i], (unsigned)i));
  }
  int extra = connect_from(f, "127.0.0.1");
  if (!tc_wait_closed(extra, TIMEOUT_MS)) {
    fail_msg("connection %d of 127.0.0.1 was not closed", K + 1);
  }
  wait_log_has(f, "refused connection from 127.0.0.1:");
  wait_log_has(f, "127.0.0.1 holds 2 connections, the limit per address");
  /* Another address gets a correct, signed reply. */
  int other = connect_from(f, "127.0.0.2");
  if (!served(f, other, 10)) {
    fail_msg("a client from 127.0.0.2 was refused while 127.0.0.1 held its "
             "%d",
             K);
  }
  /* And the address at its cap keeps what it holds. */
  for (int i = 0; i < K; i++) {
    assert_true(served(f, held[i], 20 + (unsigned)i));
  }
}

static void address_at_its_cap_may_connect_again_after_a_close(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--max-connections", "16", "--max-per-address", "2",
                        NULL};
  start(f, args);
  int a = connect_from(f, "127.0.0.1");
  int b = connect_from(f, "127.0.0.1");
  assert_true(served(f, a, 1));
  assert_true(served(f, b, 2));
  /* Refused connections do not count against the address. */
  for (int i = 0; i < 3; i++) {
    int extra = connect_from(f, "127.0.0.1");
    assert_true(tc_wait_closed(extra, TIMEOUT_MS));
    close_tracked(f, extra);
  }
  close_tracked(f, a);
  /* The tracker drops the count when it has seen the close; until then a
   * new connection may still be refused. */
  uint64_t deadline = tc_now_ms() + TIMEOUT_MS;
  int again = -1;
  while (again < 0) {
    int fd = connect_from(f, "127.0.0.1");
    if (served(f, fd, 3)) {
      again = fd;
    } else if (tc_now_ms() >= deadline) {
      fail_msg("127.0.0.1 could not connect again after closing one of its "
               "2 connections");
    } else {
      close_tracked(f, fd);
    }
  }
  /* Back at the cap: the next one is refused again. */
  int extra = connect_from(f, "127.0.0.1");
  assert_true(tc_wait_closed(extra, TIMEOUT_MS));
  assert_true(served(f, b, 4));
  assert_true(served(f, again, 5));
}

/* An IPv6 client counts by its /64. Loopback has one IPv6 address, ::1 in
 * ::/64, so this pins that IPv6 connections are counted, refused at the cap
 * and logged under their /64; test_addrcount shows that two addresses of
 * one /64 count together. */
static void ipv6_client_at_its_cap_is_refused(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--max-connections", "4", "--max-per-address", "2",
                        NULL};
  int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in6 a6;
  memset(&a6, 0, sizeof(a6));
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  int have_v6 =
      probe >= 0 && bind(probe, (struct sockaddr *)&a6, sizeof(a6)) == 0;
  if (probe >= 0) {
    close(probe);
  }
  if (!have_v6) {
    print_message("skipped: this host has no IPv6 loopback (::1)\n");
    skip();
  }
  assert_int_equal(tc_tracker_start_at(&f->t, 0, "[::1]:0", args), 0);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = tc_fixture_keep(f, tc_connect_family(f->t.port, 6));
    assert_true(fds[i] >= 0);
  }
  assert_true(served(f, fds[0], 1));
  assert_true(served(f, fds[1], 2));
  assert_true(tc_wait_closed(fds[2], TIMEOUT_MS));
  wait_log_has(f, "refused connection from [::1]:");
  wait_log_has(f, "::/64 holds 2 connections, the limit per address");
}

static void trickling_client_is_closed_by_idle_timeout(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--idle-timeout", "1", NULL};
  start(f, args);
  int slow = connect_tracked(f);
  int fast = connect_tracked(f);
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  content_id(c, 11);
  /* One byte of a header every 300 ms never completes a frame. */
  uint64_t deadline = tc_now_ms() + 8000;
  int closed = 0;
  uint8_t byte = 0;
  while (!closed && tc_now_ms() < deadline) {
    if (tc_write(slow, &byte, 1) != 0) {
      closed = 1;
      break;
    }
    lookup(f, fast, c, 5, NULL, &r); /* others keep being served */
    closed = tc_wait_closed(slow, 300);
  }
  assert_true(closed);
}

static void rate_limit_answers_with_retry_after(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--rate", "1", "--burst", "3", NULL};
  uint8_t c[32];
  int fd = start_with_content(f, args, c, 12);
  struct tmsg_lookup_ok r;
  for (int i = 0; i < 3; i++) {
    lookup(f, fd, c, 5, NULL, &r);
  }
  tc_query_lookup(&f->msg, 1, c, 5, 0, NULL);
  struct tmsg_error e = send_expect_error(f, fd, SHOAL_ERATE);
  assert_true(e.retry_after_ms > 0 && e.retry_after_ms <= 1000);
  /* The connection stays open: a limit is not a reason to hang up. */
  assert_int_equal(tc_wait_closed(fd, 100), 0);
  /* But a client that ignores the retry-after is refused once more and
   * closed, so flooding costs the tracker a bounded number of signatures. */
  send_expect_error(f, fd, SHOAL_ERATE);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
}

/* A client that pipelines far more than it reads: the tracker pauses
 * reading it (back-pressure), resumes as replies drain, and answers every
 * request in order without losing any of the bytes it had read. */
/* Starts a tracker with no rate limit to speak of, has 60 seeders (keys
 * from base on) announce content c of number n, and fills all with count
 * lookups of c for 50 peers each. Returns the connection they announced
 * on. */
static int start_crowd(struct tc_fixture *f, uint8_t c[32], unsigned n,
                       unsigned base, struct buf *all, unsigned count) {
  const char *args[] = {"--rate", "1000000", "--burst", "1000000", NULL};
  int fd = start_with_content(f, args, c, n);
  announce_keys(f, fd, base, 60, 1, 5000, TMSG_EVENT_STARTED, c,
                TMSG_ROLE_SEEDING);
  buf_init(all, 8 << 20);
  for (unsigned i = 0; i < count; i++) {
    tc_query_lookup(&f->msg, i, c, 50, 0, NULL);
    add_frame(all, &f->msg);
  }
  assert_int_equal(buf_err(all), 0);
  return fd;
}

static void slow_reader_gets_every_reply_in_order(void **state) {
  struct tc_fixture *f = *state;
  enum { LOOKUPS = 4000 };
  uint8_t c[32];
  struct buf all;
  int fd = start_crowd(f, c, 13, 300, &all, LOOKUPS);
  /* Each reply is about 2.7 KB: 4000 of them are far more than the
   * tracker keeps pending for one client. */
  assert_int_equal(tc_write(fd, all.data, all.len), 0);
  for (unsigned i = 0; i < LOOKUPS; i++) {
    const uint8_t *p;
    size_t n;
    struct tmsg_lookup_ok r;
    assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
    assert_int_equal(tc_open_reply(&f->t, &f->frame, &p, &n), TMSG_LOOKUP_OK);
    assert_int_equal(tmsg_lookup_ok_decode(p, n, &r), 0);
    assert_int_equal(r.count, 50);
  }
  buf_free(&all);
}

/* A client that sends a pile of requests and closes at once makes the
 * tracker's writes fail (EPIPE); the tracker must live on. */
static void client_closing_with_replies_in_flight_is_harmless(void **state) {
  struct tc_fixture *f = *state;
  uint8_t c[32];
  struct buf all;
  (void)start_crowd(f, c, 14, 400, &all, 3000);
  for (int round = 0; round < 3; round++) {
    int quick = tc_connect(f->t.port);
    assert_true(quick >= 0);
    assert_int_equal(tc_write(quick, all.data, all.len), 0);
    close(quick);
  }
  buf_free(&all);
  still_serves_others(f);
  assert_int_equal(kill(f->t.pid, 0), 0);
}

static void sigterm_stops_cleanly(void **state) {
  struct tc_fixture *f = *state;
  start(f, NULL);
  (void)connect_tracked(f);
  assert_int_equal(tc_tracker_stop(&f->t), 0);
}

/* ------------------------------------------------------------------------ */
/* The command line. */

/* How one run of the binary ended and what it printed. */
struct run {
  int status;
  char out[RUN_OUT_CAP];
  char err[RUN_OUT_CAP];
};

static void read_text(const char *path, char *out, size_t cap) {
  size_t n;
  uint8_t *data = tu_read_file(path, &n);
  out[0] = '\0';
  if (data != NULL) {
    snprintf(out, cap, "%.*s", (int)n, (const char *)data);
    free(data);
  }
}

/* Runs shoal-tracker with args (NULL-ended) and waits for it to exit. */
static void run_tracker(struct tc_fixture *f, const char *const *args,
                        struct run *r) {
  struct proc p;
  r->status = tc_fixture_run_tracker(f, args, TIMEOUT_MS, &p);
  if (r->status < 0) {
    fail_msg("shoal-tracker %s did not run, or still runs after %d ms", args[0],
             TIMEOUT_MS);
  }
  read_text(p.out_path, r->out, sizeof(r->out));
  read_text(p.err_path, r->err, sizeof(r->err));
}

static void usage_errors_exit_2_with_one_line_naming_the_problem(void **state) {
  struct tc_fixture *f = *state;
  static const char try_help[] = "try 'shoal-tracker --help'\n";
  static const struct {
    const char *args[4];
    const char *says;
  } cases[] = {
      {{"--frobnicate"}, "--frobnicate is not an option"},
      {{"--frobnicate=3"}, "--frobnicate is not an option"},
      {{"-x"}, "-x is not an option"},
      {{"--rate"}, "--rate needs a value"},
      {{"--rate", "0"}, "--rate needs a whole number from 1 to 1000000"},
      {{"--rate=0"}, "--rate needs a whole number from 1 to 1000000"},
      {{"--rate="}, "--rate needs a whole number from 1 to 1000000"},
      {{"--rate=5x"}, "--rate needs a whole number from 1 to 1000000"},
      {{"--rate", "-1"}, "--rate needs a whole number from 1 to 1000000"},
      {{"--interval=1"}, "--interval needs a whole number from 2 to 86400"},
      {{"--max-per-address=0"},
       "--max-per-address needs a whole number from 1 to 1000000"},
      {{"--help=yes"}, "--help takes no value"},
      {{"--listen=nowhere"}, "--listen needs a numeric ADDR:PORT"},
      {{"--key="}, "--key needs a file name"},
      {{"--log-file", ""}, "--log-file needs a file name"},
      {{"--log-level=loud"}, "--log-level must be error, warn, info or debug"},
      {{"stray"}, "unexpected argument 'stray'"},
      {{"--rate=5", "stray"}, "unexpected argument 'stray'"},
      {{"--", "--rate=5"}, "unexpected argument '--rate=5'"},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct run r;
    char want[256];
    run_tracker(f, cases[i].args, &r);
    snprintf(want, sizeof(want), "shoal-tracker: %s", cases[i].says);
    if (r.status != 2 || strncmp(r.err, want, strlen(want)) != 0 ||
        strchr(r.err, '\n') == NULL ||
        strcmp(strchr(r.err, '\n') + 1, try_help) != 0 || r.out[0] != '\0') {
      bad++;
      print_error("shoal-tracker %s %s: status %d, stderr:\n%s\nexpected "
                  "status 2 and stderr:\n%s...\n%s\n",
                  cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "",
                  r.status, r.err, want, try_help);
    }
  }
  if (bad > 0) {
    fail_msg("%d of %zu usage errors were not reported as expected", bad,
             sizeof(cases) / sizeof(cases[0]));
  }
}

static void help_and_version_print_to_stdout_and_exit_0(void **state) {
  struct tc_fixture *f = *state;
  static const char *const helps[][2] = {{"-h"}, {"--help"}};
  static const char *const versions[][2] = {{"-V"}, {"--version"}};
  struct run r;
  for (size_t i = 0; i < 2; i++) {
    run_tracker(f, helps[i], &r);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shoal-tracker", 20) == 0);
    assert_non_null(strstr(r.out, "--rate N"));
    assert_non_null(strstr(r.out, "--max-per-address N"));
    assert_string_equal(r.err, "");
    run_tracker(f, versions[i], &r);
    if (r.status != 0) {
      fail_msg("shoal-tracker %s: status %d, stderr: %s", versions[i][0],
               r.status, r.err);
    }
    assert_true(strncmp(r.out, "shoal-tracker ", 14) == 0);
    assert_non_null(strchr(r.out, '\n'));
    assert_string_equal(r.err, "");
  }
}

/* "--rate=1" means what "--rate 1" does, and "--" may end the options. */
static void options_take_their_value_after_an_equals_sign(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--rate=1", "--burst=2", "--idle-timeout=30", "--",
                        NULL};
  uint8_t c[32];
  struct tmsg_lookup_ok r;
  int fd = start_with_content(f, args, c, 15);
  lookup(f, fd, c, 5, NULL, &r);
  lookup(f, fd, c, 5, NULL, &r);
  /* The bucket of 2 is spent: the third is over the rate of 1 a second. */
  tc_query_lookup(&f->msg, 1, c, 5, 0, NULL);
  send_expect_error(f, fd, SHOAL_ERATE);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  const char *only = getenv("SHOAL_TEST_FILTER");
  if (only != NULL && only[0] != '\0') {
    cmocka_set_test_filter(only);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(lookup_returns_exactly_the_live_set,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(cached_lookup_never_lists_the_asker,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(registrations_expire_without_renewal,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          restarted_tracker_is_whole_after_reannounce, setup, teardown),
      cmocka_unit_test_setup_teardown(publish_then_search_finds_it, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(pipelined_requests_are_answered_in_order,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(forged_signature_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(replayed_message_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(stale_timestamp_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(oversize_frame_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(garbage_bytes_are_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(connection_limit_refuses_extra_clients,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          default_cap_leaves_room_for_other_addresses, setup, teardown),
      cmocka_unit_test_setup_teardown(
          address_at_its_cap_is_refused_while_others_are_served, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          address_at_its_cap_may_connect_again_after_a_close, setup, teardown),
      cmocka_unit_test_setup_teardown(ipv6_client_at_its_cap_is_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          trickling_client_is_closed_by_idle_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(rate_limit_answers_with_retry_after,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(slow_reader_gets_every_reply_in_order,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          client_closing_with_replies_in_flight_is_harmless, setup, teardown),
      cmocka_unit_test_setup_teardown(sigterm_stops_cleanly, setup, teardown),
      cmocka_unit_test_setup_teardown(
          usage_errors_exit_2_with_one_line_naming_the_problem, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          help_and_version_print_to_stdout_and_exit_0, setup, teardown),
      cmocka_unit_test_setup_teardown(
          options_take_their_value_after_an_equals_sign, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
