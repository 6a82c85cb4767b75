/* A blocking tracker client and process helpers for integration tests.
 *
 * Tests start the real shoal-tracker ($SHOAL_BIN/shoal-tracker) on an
 * ephemeral loopback port, talk to it over plain sockets, and always stop
 * it by PID. Every wait has a deadline.
 */
#ifndef SHOAL_TCLIENT_H
#define SHOAL_TCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/proc.h"

struct tc_tracker {
  pid_t pid;
  int port;
  int metrics_port; /* from "metrics on ADDR:PORT" (--metrics-listen); or 0 */
  uint8_t key[32];
  char dir[4096];
  char key_path[4200];
  char log_path[4200];
};

/* Starts a tracker with its key in a fresh temp folder (or the folder
 * already in t->dir when keep_dir is set) and extra arguments (NULL-ended).
 * Returns 0 once it printed its port and key, or -1 after 10 s. */
int tc_tracker_start(struct tc_tracker *t, int keep_dir, const char **extra);
/* The same, listening on listen ("127.0.0.1:0", "[::1]:0") instead of
 * 127.0.0.1. */
int tc_tracker_start_at(struct tc_tracker *t, int keep_dir, const char *listen,
                        const char **extra);
/* SIGTERM and wait (SIGKILL after 5 s). Returns the exit status or -1. */
int tc_tracker_stop(struct tc_tracker *t);
/* SIGKILL and reap. */
void tc_tracker_kill(struct tc_tracker *t);
/* Removes the temp folder. */
void tc_tracker_cleanup(struct tc_tracker *t);

/* Milliseconds on a monotonic clock. */
uint64_t tc_now_ms(void);

/* A blocking connection to 127.0.0.1:port, or to [::1]:port with
 * family 6. Returns the descriptor or -1. */
int tc_connect(int port);
int tc_connect_family(int port, int family);
/* Writes all bytes. Returns 0 or -1. */
int tc_write(int fd, const void *p, size_t n);
/* Sends one frame with body p. */
int tc_send_frame(int fd, const void *p, size_t n);
/* Receives one frame body into out (reset first). Returns 0, or -1 on
 * timeout, EOF or error. */
int tc_recv_frame(int fd, struct buf *out, int timeout_ms);
/* True when the peer closes the connection within timeout_ms (any data
 * before the close is read and dropped). */
int tc_wait_closed(int fd, int timeout_ms);

/* Builds a sealed announce into out (not framed). */
void tc_seal_announce(struct buf *out, const struct identity *id,
                      uint64_t ts_ms, uint64_t seq, uint16_t port,
                      uint8_t event, const uint8_t (*contents)[32],
                      const uint8_t *roles, unsigned n);
void tc_seal_publish(struct buf *out, const struct identity *id, uint64_t ts_ms,
                     uint64_t seq, const struct tmsg_publish *p);
/* Builds a lookup / search query body into out. */
void tc_query_lookup(struct buf *out, uint64_t qid, const uint8_t content[32],
                     uint16_t want, uint8_t flags, const uint8_t *asker);
void tc_query_search(struct buf *out, uint64_t qid, const char *words,
                     uint32_t offset, uint16_t limit);

/* Opens a reply with the tracker's key. Returns its type (a TMSG_* reply
 * type) and the payload view, or a negative error. */
int tc_open_reply(const struct tc_tracker *t, const struct buf *frame,
                  const uint8_t **payload, size_t *len);

/* What an integration test of the tracker holds: the tracker it started,
 * frame buffers, the client sockets it opened, and a folder for runs that
 * start none (made when first needed). */
#define TC_FIXTURE_FDS 128
struct tc_fixture {
  struct tc_tracker t;
  struct buf frame;
  struct buf msg;
  int fds[TC_FIXTURE_FDS];
  int nfds;
  char dir[PROC_PATH_MAX];
};

/* A new fixture, or NULL when out of memory. */
struct tc_fixture *tc_fixture_new(void);
/* Closes the sockets, stops the tracker, removes the folders, frees f. */
void tc_fixture_free(struct tc_fixture *f);
/* Keeps fd, to be closed by tc_fixture_free. Returns fd, or -1 when fd is
 * -1 or the table is full (fd is then closed). */
int tc_fixture_keep(struct tc_fixture *f, int fd);
/* Runs shoal-tracker ($SHOAL_BIN, else build/bin) with args (NULL-ended,
 * at most 14) in f->dir, with XDG_DATA_HOME there so that a run that
 * wrongly starts makes no key in the real home, until it exits or
 * timeout_ms pass (it is then killed). Returns its exit status, its
 * output in p's files, or -1. */
int tc_fixture_run_tracker(struct tc_fixture *f, const char *const *args,
                           int timeout_ms, struct proc *p);

#endif
