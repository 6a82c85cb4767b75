/* The fixture every integration test program shares: a private folder, a
 * real tracker, the real binaries as child processes, and the checks that
 * every test ends with.
 *
 * A test program registers its tests with fx_setup and fx_teardown, starts
 * what it needs through the fx_* helpers and ends each test body with
 * fx_finish(). Teardown kills every child by PID, stops the tracker, runs
 * the hooks the test registered (fake peers, mounts), prints what the
 * children said when the test failed, and removes the test's folder.
 * Every wait polls a condition until a deadline; a test that hangs past
 * FX_WATCHDOG_S kills the program, and with it (PR_SET_PDEATHSIG) every
 * child.
 */
#ifndef SHOAL_FX_H
#define SHOAL_FX_H

#include <stddef.h>
#include <stdint.h>

#include "common/link.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"

#define FX_MiB (1024u * 1024u)
#define FX_KiB 1024u

/* Upper bounds for one wait. Runs take a fraction of these; they only
 * decide how long a broken build hangs before the test fails. */
#define FX_START_MS 20000    /* a peer prints "listening" / "shared" */
#define FX_COMPLETE_MS 90000 /* a download finishes */
#define FX_EXIT_MS 15000     /* a signalled peer exits (stop is bounded 2 s) */
#define FX_CLOSE_MS 5000     /* a peer closes a session that broke a rule */
#define FX_MSG_MS 5000       /* a peer answers a hello or sends its have-map */
#define FX_UNCHOKE_MS 15000  /* a seeder unchokes an interested peer */
/* Last resort: a test that hangs past this kills the program (and with
 * it, through PR_SET_PDEATHSIG, every child). */
#define FX_WATCHDOG_S 600

#define FX_MAX_PROCS 16
#define FX_MAX_PCS 8
#define FX_MAX_HOOKS 4
#define FX_LINE_CAP PROC_LINE_MAX

struct fx {
  char dir[PROC_PATH_MAX];
  char bin[PROC_PATH_MAX]; /* $SHOAL_BIN/shoal-peer */
  struct tc_tracker t;
  int tracker_up;
  char tracker_addr[64];
  char tracker_key[TEXTID_STRLEN];
  int tracker_family; /* 4 or 6 */
  /* What fx_peer passes as --listen: NULL for 127.0.0.1:0, "" for none
   * (the peer's default). */
  const char *listen;
  struct proc procs[FX_MAX_PROCS];
  int json[FX_MAX_PROCS]; /* the child was started with --json */
  int nprocs;
  struct pclient pcs[FX_MAX_PCS];
  int npcs;
  /* Run first at teardown, last registered first. */
  void (*hooks[FX_MAX_HOOKS])(void *arg);
  void *hook_args[FX_MAX_HOOKS];
  int nhooks;
  int done; /* the test body reached its end */
};

/* What a share printed in its "shared" event. */
struct fx_shared {
  char link[LINK_MAX_CHARS + 1];
  char content_text[TEXTID_STRLEN + 8];
  uint8_t content[MANIFEST_ID_BYTES];
  uint64_t size;
};

/* have * den >= total * num, for fx_have_at_least. */
struct fx_frac {
  uint64_t num, den;
};

/* Once per program, before the tests: libsodium, SIGPIPE ignored, the
 * watchdog (its message names prog), and SHOAL_TEST_FILTER=name (wildcards
 * * and ?) to run only matching tests. Returns 0 or -1. */
int fx_main_init(const char *prog);

/* cmocka group fixtures. */
int fx_setup(void **state);
int fx_teardown(void **state);
/* Runs fn(arg) at teardown, before the children are killed. */
void fx_on_teardown(struct fx *f, void (*fn)(void *arg), void *arg);

/* A tracker on 127.0.0.1 with a 2 s interval and the extra arguments
 * (NULL-ended, may be NULL); fills tracker_addr and tracker_key. */
void fx_start_tracker(struct fx *f);
void fx_start_tracker_with(struct fx *f, const char **extra);
/* The same on listen ("127.0.0.1:0" or "[::1]:0"). */
void fx_start_tracker_at(struct fx *f, const char *listen, const char **extra);
/* Asks the tracker which peers hold content: 1 when pk is among them
 * (*seeding, when not NULL, receives its role), else 0. */
int fx_tracker_lists(struct fx *f, const uint8_t content[32],
                     const uint8_t pk[32], int *seeding);
/* Shares DIR/rel (a file or a folder) from a peer "seeder" with home "s"
 * through the test's tracker, with the further arguments given
 * (NULL-ended), and, when sh is not NULL, waits for its link. Returns the
 * seeder. */
struct proc *fx_seed(struct fx *f, const char *rel, struct fx_shared *sh, ...);
/* Writes DIR/rel (size pseudo-random bytes from seed; *data, when not
 * NULL, receives a malloc'd copy), shares it from a peer "seeder" with
 * home "s" through the test's tracker, and waits for its link. Returns the
 * seeder. */
struct proc *fx_share_file(struct fx *f, const char *rel, size_t size,
                           uint64_t seed, uint8_t **data, struct fx_shared *sh);
/* Announces content to the tracker as id, listening at port in role (a
 * TMSG_ROLE_*): a listing of the test's own, true or forged. */
void fx_announce(struct fx *f, const struct identity *id,
                 const uint8_t content[32], uint16_t port, uint8_t role);
/* The peer ID of home (created by `shoal-peer id` when new). */
void fx_peer_id(struct fx *f, const char *home, uint8_t pk[32]);

/* DIR/rel. */
void fx_path(const struct fx *f, char *out, size_t cap, const char *rel);
void fx_mkdir(const struct fx *f, const char *rel);

/* Starts the peer binary with the arguments given (NULL-ended) and nothing
 * else. */
struct proc *fx_run(struct fx *f, const char *name, ...);
/* Starts a peer: the command arguments given (NULL-ended), then
 * --listen 127.0.0.1:0 (see struct fx's listen) --home DIR/home-HOME --json
 * --log-level info. */
struct proc *fx_peer(struct fx *f, const char *name, const char *home, ...);
/* The same, with the arguments in an array of n. */
struct proc *fx_peer_argv(struct fx *f, const char *name, const char *home,
                          const char *const *args, int n);

/* Waits for an event for which pred holds; fails the test at the deadline
 * or when the child ends first. line receives it (FX_LINE_CAP bytes). */
void fx_wait_event(struct proc *p, const char *ev, proc_pred pred, void *arg,
                   int timeout_ms, char *line);
/* An integer field of a JSON line; fails the test when missing. */
uint64_t fx_u64(const char *line, const char *key);
/* The port of the peer's "listening" event. */
int fx_listening_port(struct proc *p);
/* Waits for a "shared" event and checks its link against its content. */
void fx_wait_shared(struct proc *p, struct fx_shared *out);

/* Waits for the child to exit; fails the test at the deadline. */
int fx_wait_exit(struct proc *p, int timeout_ms);
/* The same, and the status must be want. */
void fx_expect_exit(struct proc *p, int timeout_ms, int want);
/* SIGTERM, then the exit status must be 0; stats_line (may be NULL)
 * receives the "stats" line. */
void fx_stop_peer(struct proc *p, char *stats_line);
/* A proc_each_line callback that keeps the line in arg (FX_LINE_CAP). */
int fx_keep_line(const char *line, void *arg);

/* --json output is one object a line; fails the test otherwise. */
void fx_assert_json_output(const struct proc *p);
/* The sanitizer report (AddressSanitizer, LeakSanitizer or UBSan) in the
 * child's stderr, or NULL when there is none. */
const char *fx_sanitizer_report(const struct proc *p);

/* The last step of every test body: what every child printed is checked
 * once more (--json output is one object a line ending with "stats"; no
 * sanitizer report), then teardown may stay quiet. */
void fx_finish(struct fx *f);

/* Writes len pseudo-random bytes from seed to DIR/rel; *out (may be NULL)
 * receives a malloc'd copy. */
void fx_write_random(const struct fx *f, const char *rel, size_t len,
                     uint64_t seed, uint8_t **out);
void fx_assert_file_is(const char *path, const uint8_t *data, size_t len);
int fx_exists(const char *path);
/* The downloaded copy DIR/outdir/name equals data, and no partial is
 * left. */
void fx_assert_copy(const struct fx *f, const char *outdir, const char *name,
                    const uint8_t *data, size_t len);

/* Peer-wire clients the fixture closes at teardown. */
struct pclient *fx_pc_new(struct fx *f);
void fx_pc_done(struct fx *f, struct pclient *c);
/* A session to port as a downloader of content, hellos done. */
struct pclient *fx_pc_session(struct fx *f, int port,
                              const uint8_t content[32]);

/* proc_pred tests on "progress" lines. */
int fx_have_at_least(const char *line, void *arg); /* arg: struct fx_frac */
int fx_have_some(const char *line, void *arg);

#endif
