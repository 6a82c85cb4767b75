/* unshare() and CLONE_NEWNET are Linux interfaces. */
#define _GNU_SOURCE
/* Integration tests of the peer's addresses: dual-stack listening, a
 * tracker on IPv6, and peers that cannot be reached.
 *
 * The tests that need the peer's default listen address ([::]:0, every
 * address) run in a network namespace of this program's own, made with
 * unshare(CLONE_NEWNET) before any test: it holds only a loopback
 * interface, so a peer that listens on every address is still reachable
 * from this program alone, and everything it started dies with it. Without
 * root (or without IPv6 on loopback) those tests are skipped with a
 * message.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"

/* Why the namespace tests cannot run here, or NULL when they can. */
static const char *isolated_why;

/* Brings the namespace's loopback interface up and checks that ::1 can be
 * bound. Returns NULL or the reason it cannot. */
static const char *loopback_up(void) {
  struct ifreq ifr;
  struct sockaddr_in6 a;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return "no socket";
  }
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    close(fd);
    return "no loopback interface in the new namespace";
  }
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
    close(fd);
    return "cannot bring the loopback interface up";
  }
  close(fd);
  fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return "no IPv6 on this host";
  }
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return "::1 cannot be bound (IPv6 disabled?)";
  }
  close(fd);
  return NULL;
}

static void need_isolation(void) {
  if (isolated_why != NULL) {
    fprintf(stderr, "it_net: skipped: %s\n", isolated_why);
    skip();
  }
}

/* Shares size bytes through a tracker on tracker_listen, between peers
 * that listen where they do by default, and checks the copy. */
static void transfer_through(struct fx *f, const char *tracker_listen,
                             size_t size, uint64_t seed) {
  struct fx_shared sh;
  uint8_t *data;
  char out[PROC_PATH_MAX];
  need_isolation();
  f->listen = ""; /* the peers' default */
  fx_start_tracker_at(f, tracker_listen, NULL);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  struct proc *seeder =
      fx_share_file(f, "src/moved.bin", size, seed, &data, &sh);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out, NULL);
  /* Far less than the 60 s a get waits for a peer before it gives up. */
  fx_expect_exit(dl, 30000, 0);
  fx_assert_copy(f, "out", "moved.bin", data, size);
  fx_stop_peer(seeder, NULL);
  free(data);
  fx_finish(f);
}

/* A tracker that listens on [::1] only sees the peers on IPv6 and lists
 * them so: they must be reachable there. */
static void transfer_through_an_ipv6_tracker(void **state) {
  transfer_through(*state, "[::1]:0", 3 * FX_MiB + 123, 61);
}

/* A dual-stack listener takes IPv4 peers too. */
static void transfer_through_an_ipv4_tracker(void **state) {
  transfer_through(*state, "127.0.0.1:0", FX_MiB, 62);
}

static int says_unreachable(const char *line, void *arg) {
  char msg[1024];
  (void)arg;
  return jsonl_str(line, "message", msg, sizeof(msg)) == 0 &&
         strstr(msg, "cannot connect") != NULL;
}

/* A peer listening on IPv4 only cannot be listed by a tracker that sees it
 * on IPv6: it says so at once instead of waiting for peers that can never
 * reach it. */
static void ipv4_listener_refuses_an_ipv6_tracker(void **state) {
  struct fx *f = *state;
  need_isolation();
  fx_start_tracker_at(f, "[::1]:0", NULL);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/v4.bin", 1000, 63, NULL);
  f->listen = "127.0.0.1:0";
  /* It never prints its link: it ends first. */
  struct proc *seed = fx_seed(f, "src/v4.bin", NULL, NULL);
  fx_expect_exit(seed, FX_START_MS, 1);
  assert_true(proc_output_has(seed, 1, "IPv4 only"));
  fx_finish(f);
}

/* Every peer the tracker lists refuses the connection: after a few tries
 * the downloader says so, without --log-level, instead of sitting at 0%
 * in silence. */
static void unreachable_peers_are_reported(void **state) {
  struct fx *f = *state;
  struct identity ghost;
  uint8_t content[32];
  char cid[TEXTID_STRLEN], out[PROC_PATH_MAX], line[FX_LINE_CAP];
  fx_start_tracker(f);
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  /* A content nobody holds, and a "seeder" whose port is closed: a port
   * this program bound and let go, so nothing listens there. */
  randombytes_buf(content, sizeof(content));
  int lfd = -1, port = 0;
  lfd = pc_listen(&port);
  assert_true(lfd >= 0);
  close(lfd);
  identity_generate(&ghost);
  fx_announce(f, &ghost, content, (uint16_t)port, TMSG_ROLE_SEEDING);
  identity_close(&ghost);
  textid_encode(TEXTID_CONTENT, content, cid);
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", cid, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, "-o", out, NULL);
  fx_wait_event(dl, "warning", says_unreachable, NULL, 20000, line);
  assert_true(strstr(line, "127.0.0.1") != NULL);
  /* Stopped before it completed: a resumable download, status 128 + 15. */
  proc_signal(dl, SIGTERM);
  fx_expect_exit(dl, FX_EXIT_MS, 128 + SIGTERM);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_net") != 0) {
    return 1;
  }
  if (geteuid() != 0) {
    isolated_why = "needs root for a network namespace of its own";
  } else if (unshare(CLONE_NEWNET) != 0) {
    isolated_why = "cannot make a network namespace (unshare: no "
                   "permission)";
  } else {
    isolated_why = loopback_up();
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(transfer_through_an_ipv6_tracker,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(transfer_through_an_ipv4_tracker,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(ipv4_listener_refuses_an_ipv6_tracker,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(unreachable_peers_are_reported, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
