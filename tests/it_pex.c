/* Integration tests of peer exchange: the real shoal-peer and
 * shoal-tracker on loopback (tests/lib/fx.h).
 *
 * A swarm outlives its tracker: peers that met under a tracker pass each
 * other's address certificates on, so a newcomer given one peer's address
 * (--peer) finds the rest with the tracker gone. And a record cannot point
 * a swarm anywhere its peer never was: a forged or altered one closes the
 * session that carried it and no connection goes to its address, while a
 * genuine one (the control) is dialled. Every wait has a deadline; the
 * "no connection" checks watch a listening socket for a bounded window.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/pwire.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define PEX_SIZE (4u * FX_MiB)
/* How long a dial that must not happen is waited for: the receiver dials
 * new records at once, and retries every PEX_DIAL_MS. */
#define NO_DIAL_MS (PEX_DIAL_MS + 1000u)

/* ------------------------------------------------------------------------ */
/* Helpers */

/* The "uploaded" figure of a peer's progress event emitted after the call:
 * waits for two more progress events, so the last one was made after
 * whatever came before the call. */
static uint64_t fresh_uploaded(struct proc *p) {
  char line[FX_LINE_CAP];
  unsigned before = proc_count_event(p, "progress", NULL, NULL);
  uint64_t deadline = proc_now_ms() + 3 * 2000u + FX_MSG_MS;
  while (proc_count_event(p, "progress", NULL, NULL) < before + 2) {
    if (proc_now_ms() > deadline) {
      fail_msg("%s: no progress event", p->name);
    }
    proc_pause_ms(50);
  }
  assert_true(
      proc_find_event(p, "progress", NULL, NULL, 1, line, sizeof(line)));
  return fx_u64(line, "uploaded");
}

/* The largest "peers" figure among a peer's progress events. */
static int max_peers_of(const char *line, void *arg) {
  uint64_t *most = arg;
  uint64_t n;
  if (jsonl_is_event(line, "progress") && jsonl_u64(line, "peers", &n) == 0 &&
      n > *most) {
    *most = n;
  }
  return 0;
}

/* Whether a connection arrives on the listening socket lfd within ms; an
 * arrival is accepted and closed. */
static int connection_within(int lfd, int ms) {
  struct pollfd pfd = {.fd = lfd, .events = POLLIN};
  uint64_t deadline = proc_now_ms() + (uint64_t)ms;
  for (;;) {
    uint64_t now = proc_now_ms();
    if (now >= deadline) {
      return 0;
    }
    int r = poll(&pfd, 1, (int)(deadline - now));
    if (r > 0) {
      int fd = accept(lfd, NULL, NULL);
      if (fd >= 0) {
        close(fd);
      }
      return 1;
    }
  }
}

/* An address certificate for id at 127.0.0.1:port, signed by the test's
 * tracker: id announces some content of its own (not the swarm's, so
 * that no lookup lists it) asking for one. */
static void genuine_cert(struct fx *f, const struct identity *id, uint16_t port,
                         uint8_t out[TMSG_CERT_BYTES]) {
  struct tmsg_announce a;
  struct tmsg_announce_ok ok;
  struct buf payload, env, reply;
  const uint8_t *p;
  size_t len;
  int fd = tc_connect(f->t.port);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.port = port;
  a.event = TMSG_EVENT_STARTED;
  a.flags = TMSG_ANNOUNCE_WANT_CERT;
  a.count = 1;
  tu_fill(a.items[0].content, 32, 0xce47);
  buf_init(&payload, 4096);
  buf_init(&env, 4096);
  buf_init(&reply, FRAME_MAX_DEFAULT);
  assert_int_equal(tmsg_announce_encode(&payload, &a), 0);
  assert_int_equal(envelope_seal(&env, ENVELOPE_TRACKER_REQUEST, TMSG_ANNOUNCE,
                                 id, clock_wall_ms(),
                                 envelope_seq_start(clock_wall_ms()),
                                 payload.data, payload.len),
                   0);
  assert_int_equal(tc_send_frame(fd, env.data, env.len), 0);
  assert_int_equal(tc_recv_frame(fd, &reply, FX_MSG_MS), 0);
  assert_int_equal(tc_open_reply(&f->t, &reply, &p, &len), TMSG_ANNOUNCE_OK);
  assert_int_equal(tmsg_announce_ok_decode(p, len, &ok), 0);
  assert_true(ok.has_cert);
  memcpy(out, ok.cert, TMSG_CERT_BYTES);
  close(fd);
  buf_free(&payload);
  buf_free(&env);
  buf_free(&reply);
}

/* A certificate like the tracker's, but made by signer: with
 * claim_tracker, its signer field names the test's tracker key, which did
 * not sign it. */
static void forged_cert(const struct fx *f, const struct identity *signer,
                        const uint8_t peer[32], uint16_t port,
                        int claim_tracker, uint8_t out[TMSG_CERT_BYTES]) {
  struct tmsg_cert c;
  memset(&c, 0, sizeof(c));
  c.family = 4;
  c.addr[0] = 127;
  c.addr[3] = 1;
  c.port = port;
  c.lifetime_s = TMSG_CERT_LIFETIME_MIN_S;
  c.issued_ms = clock_wall_ms();
  memcpy(c.peer, peer, 32);
  assert_int_equal(tmsg_cert_seal(signer, &c, out), 0);
  if (claim_tracker) {
    /* The signer field sits at offset 16 (docs/protocol.md). */
    memcpy(out + 16, f->t.key, 32);
  }
}

/* A fake peer's session with port for content, over which it sends n
 * records in one PEX message. */
static struct pclient *send_records(struct fx *f, int port,
                                    const uint8_t content[32],
                                    const uint8_t *records, unsigned n) {
  struct pclient *c = fx_pc_session(f, port, content);
  struct pwire_msg m;
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_PEX;
  m.data = records;
  m.data_len = (size_t)n * TMSG_CERT_BYTES;
  assert_int_equal(pc_send(c, &m), 0);
  return c;
}

/* ------------------------------------------------------------------------ */
/* Tests */

/* A, B, C and D share one content under a tracker; the tracker is killed;
 * E, given only A's address, completes, served by several of them. */
static void newcomer_finds_the_swarm_with_every_tracker_down(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  uint8_t *data = NULL;
  char line[FX_LINE_CAP];
  char path[PROC_PATH_MAX], peer_arg[64];
  static const char *const names[] = {"B", "C", "D"};
  static const char *const homes[] = {"b", "c", "d"};
  struct proc *peers[4];
  uint64_t before[4], after[4];

  fx_start_tracker(f);
  fx_write_random(f, "src/pex.bin", PEX_SIZE, 0x9e7, &data);
  peers[0] = fx_seed(f, "src/pex.bin", &sh, "--upload-rate", "512k", NULL);
  for (int i = 0; i < 3; i++) {
    char rel[32];
    snprintf(rel, sizeof(rel), "out-%s", homes[i]);
    fx_mkdir(f, rel);
    fx_path(f, path, sizeof(path), rel);
    peers[i + 1] = fx_peer(f, names[i], homes[i], "get", sh.link, "-o", path,
                           "--seed", "--upload-rate", "512k", NULL);
  }
  for (int i = 1; i < 4; i++) {
    fx_wait_event(peers[i], "complete", NULL, NULL, FX_COMPLETE_MS, line);
  }

  /* Every tracker is gone. */
  tc_tracker_kill(&f->t);
  for (int i = 0; i < 4; i++) {
    before[i] = fresh_uploaded(peers[i]);
  }

  snprintf(peer_arg, sizeof(peer_arg), "127.0.0.1:%d",
           fx_listening_port(peers[0]));
  fx_mkdir(f, "out-e");
  fx_path(f, path, sizeof(path), "out-e");
  struct proc *e = fx_peer(f, "E", "e", "get", sh.link, "-o", path, "--peer",
                           peer_arg, NULL);
  fx_wait_event(e, "complete", NULL, NULL, FX_COMPLETE_MS, line);
  fx_expect_exit(e, FX_EXIT_MS, 0);
  fx_assert_copy(f, "out-e", "pex.bin", data, PEX_SIZE);

  /* E was told of the others, and took data from more than one. */
  uint64_t most = 0;
  (void)proc_each_line(e, 0, max_peers_of, &most);
  if (most < 2) {
    fail_msg("E never had more than %llu peer", (unsigned long long)most);
  }
  unsigned served = 0;
  uint64_t total = 0;
  for (int i = 0; i < 4; i++) {
    fx_stop_peer(peers[i], line);
    after[i] = fx_u64(line, "uploaded");
    assert_true(after[i] >= before[i]);
    served += after[i] > before[i];
    total += after[i] - before[i];
  }
  if (served < 2) {
    fail_msg("only %u of A, B, C and D served E", served);
  }
  assert_true(total >= PEX_SIZE);
  free(data);
  fx_finish(f);
}

/* A downloader that needs peers is sent records by a fake peer: records
 * signed by another key are dropped; a forged one (naming the tracker's
 * key, signed by another) and an altered one (a genuine record with its
 * port changed) close the session, and nothing ever connects to their
 * address; a genuine record is dialled. */
static void forged_and_altered_records_cause_no_connection(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct identity mallory, ghost;
  uint8_t rec[2 * TMSG_CERT_BYTES];
  uint8_t good[TMSG_CERT_BYTES];
  char path[PROC_PATH_MAX];
  int trap_port = 0, real_port = 0;

  fx_start_tracker(f);
  /* A content whose only seeder left: the downloader keeps needing
   * peers. */
  struct proc *seed =
      fx_share_file(f, "src/lone.bin", 256 * FX_KiB, 7, NULL, &sh);
  fx_stop_peer(seed, NULL);
  fx_mkdir(f, "out");
  fx_path(f, path, sizeof(path), "out");
  struct proc *v = fx_peer(f, "V", "v", "get", sh.link, "-o", path, NULL);
  int vport = fx_listening_port(v);

  int trap = pc_listen(&trap_port);
  int real = pc_listen(&real_port);
  assert_true(trap >= 0 && real >= 0);
  tu_identity(&mallory, 0x3a11);
  tu_identity(&ghost, 0x6057);

  /* Another key's records: refused one by one, not a violation. Then a
   * forged one under the tracker's name: the session closes. */
  forged_cert(f, &mallory, ghost.pk, (uint16_t)trap_port, 0, rec);
  forged_cert(f, &mallory, ghost.pk, (uint16_t)trap_port, 1,
              rec + TMSG_CERT_BYTES);
  struct pclient *c1 = send_records(f, vport, sh.content, rec, 2);
  assert_true(pc_wait_closed(c1, FX_CLOSE_MS));

  /* A genuine record of the ghost at the real listener, with its port
   * changed to the trap's: the signature no longer holds. */
  genuine_cert(f, &ghost, (uint16_t)real_port, good);
  memcpy(rec, good, TMSG_CERT_BYTES);
  rec[2] = (uint8_t)(trap_port >> 8);
  rec[3] = (uint8_t)trap_port;
  struct pclient *c2 = send_records(f, vport, sh.content, rec, 1);
  assert_true(pc_wait_closed(c2, FX_CLOSE_MS));
  if (connection_within(trap, NO_DIAL_MS)) {
    fail_msg("V dialled the address of a forged or altered record");
  }
  assert_true(proc_alive(v));
  assert_true(proc_output_has(v, 1, "forged peer exchange record"));

  /* The control: the same record unaltered is dialled, so the silence
   * above was the refusal, not a peer that dials nothing. */
  struct pclient *c3 = send_records(f, vport, sh.content, good, 1);
  if (!connection_within(real, FX_MSG_MS)) {
    fail_msg("V did not dial the address of a genuine record");
  }
  assert_false(pc_wait_closed(c3, 200));
  if (connection_within(trap, 500)) {
    fail_msg("V dialled the address of a forged or altered record");
  }

  close(trap);
  close(real);
  identity_close(&mallory);
  identity_close(&ghost);
  /* An unfinished get stopped by a signal says so in its status. */
  proc_signal(v, SIGTERM);
  fx_expect_exit(v, FX_EXIT_MS, 128 + SIGTERM);
  fx_finish(f);
}

/* A peer that sends PEX messages faster than its allowance is closed. */
static void too_many_pex_messages_close_the_session(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct identity mallory, ghost;
  uint8_t rec[TMSG_CERT_BYTES];
  char path[PROC_PATH_MAX];

  fx_start_tracker(f);
  struct proc *seed =
      fx_share_file(f, "src/busy.bin", 256 * FX_KiB, 9, NULL, &sh);
  fx_stop_peer(seed, NULL);
  fx_mkdir(f, "out");
  fx_path(f, path, sizeof(path), "out");
  struct proc *v = fx_peer(f, "V", "v", "get", sh.link, "-o", path, NULL);
  int vport = fx_listening_port(v);
  tu_identity(&mallory, 0x3a12);
  tu_identity(&ghost, 0x6058);
  /* Records of another key: each message is harmless but for its
   * number. */
  forged_cert(f, &mallory, ghost.pk, 9, 0, rec);
  struct pclient *c = fx_pc_session(f, vport, sh.content);
  struct pwire_msg m;
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_PEX;
  m.data = rec;
  m.data_len = sizeof(rec);
  for (unsigned i = 0; i < PEX_BURST; i++) {
    assert_int_equal(pc_send(c, &m), 0);
  }
  assert_false(pc_wait_closed(c, 300));
  (void)pc_send(c, &m); /* one more than the allowance */
  assert_true(pc_wait_closed(c, FX_CLOSE_MS));
  assert_true(proc_output_has(v, 1, "too often"));
  identity_close(&mallory);
  identity_close(&ghost);
  /* An unfinished get stopped by a signal says so in its status. */
  proc_signal(v, SIGTERM);
  fx_expect_exit(v, FX_EXIT_MS, 128 + SIGTERM);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_pex") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          newcomer_finds_the_swarm_with_every_tracker_down, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          forged_and_altered_records_cause_no_connection, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(too_many_pex_messages_close_the_session,
                                      fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
