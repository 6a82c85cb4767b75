/* Integration tests: the real shoal-peer (and shoal-tracker) on loopback.
 *
 * Each test (tests/lib/fx.h holds the fixture) starts a tracker with a short
 * announce interval, the peers it needs as child processes with --json output
 * captured to files, and, for the hostile cases, a peer-wire client of its own
 * (tests/lib/pclient.c) that breaks one rule at a time. Every wait polls a
 * condition until a deadline; teardown kills every child by PID, stops the
 * tracker and any fake peer thread, prints the children's output when the test
 * failed, and removes the test's folder.
 *
 * Files are generated from fixed seeds and kept to a few MiB; download
 * rate limits give the swarms time to trade.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "peer/rate.h"
#include "peer/manifest_build.h"
#include "tests/lib/mtree.h"
#include "tests/lib/fake.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

static void fake_stop_hook(void *arg) {
  fake_stop(arg);
}

/* A fake peer (tests/lib/fake.h) for the test's content at its tracker,
 * stopped by the teardown. */
static struct fake *fake_start_fx(struct fx *f, const uint8_t content[32],
                                  const uint8_t *manifest, size_t manifest_len,
                                  const uint8_t *data, uint64_t data_len,
                                  unsigned chunk_log2, uint32_t chunks,
                                  int holds_all) {
  struct fake *fk = fake_start(&f->t, content, manifest, manifest_len, data,
                               data_len, chunk_log2, chunks, holds_all);
  assert_non_null(fk);
  fx_on_teardown(f, fake_stop_hook, fk);
  return fk;
}

#define SWARM_MAX 6

/* The file of a swarm test, its seeder and its downloaders. */
struct swarm {
  /* The file is src/<name>, downloader i's copy out<i>/<name>. */
  const char *name;
  size_t size;
  uint8_t *data; /* its bytes, malloc'd */
  struct fx_shared sh;
  struct proc *seed;
  struct proc *dl[SWARM_MAX];
};

/* Starts the tracker and a seeder of src/<name>, size pseudo-random bytes
 * from seed, uploading at upload_rate (NULL: no limit), with the further
 * arguments given (NULL-ended). */
static void swarm_seed(struct fx *f, struct swarm *w, const char *name,
                       size_t size, uint64_t seed, const char *upload_rate,
                       ...) {
  const char *extra[4] = {NULL, NULL, NULL, NULL};
  va_list ap;
  va_start(ap, upload_rate);
  for (int i = 0; i < 3; i++) {
    extra[i] = va_arg(ap, const char *);
    if (extra[i] == NULL) {
      break;
    }
  }
  va_end(ap);
  char rel[64];
  memset(w, 0, sizeof(*w));
  w->name = name;
  w->size = size;
  snprintf(rel, sizeof(rel), "src/%s", name);
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, rel, size, seed, &w->data);
  w->seed = fx_seed(f, rel, &w->sh, "--upload-rate",
                    upload_rate != NULL ? upload_rate : "0", extra[0], extra[1],
                    extra[2], NULL);
}

/* Starts n downloaders w->dl[0..n): peers "dl<i>" (home the same) that
 * get the link into DIR/out<i>, made here, with the further arguments
 * given (NULL-ended). */
static void swarm_get(struct fx *f, struct swarm *w, int n, ...) {
  const char *args[16] = {"get", w->sh.link, "-o", NULL};
  int nargs = 4;
  va_list ap;
  const char *a;
  assert_true(n <= SWARM_MAX);
  va_start(ap, n);
  while ((a = va_arg(ap, const char *)) != NULL) {
    assert_true(nargs < 16);
    args[nargs++] = a;
  }
  va_end(ap);
  for (int i = 0; i < n; i++) {
    char name[16], out[32], opath[PROC_PATH_MAX];
    snprintf(name, sizeof(name), "dl%d", i);
    snprintf(out, sizeof(out), "out%d", i);
    fx_mkdir(f, out);
    fx_path(f, opath, sizeof(opath), out);
    args[3] = opath;
    w->dl[i] = fx_peer_argv(f, name, name, args, nargs);
  }
}

/* Downloader i's copy equals the file. */
static void swarm_assert_copy(const struct fx *f, const struct swarm *w,
                              int i) {
  char out[32];
  snprintf(out, sizeof(out), "out%d", i);
  fx_assert_copy(f, out, w->name, w->data, w->size);
}

/* ------------------------------------------------------------------------ */
/* 1. One seeder, six downloaders. */

/* Six downloaders and a seeder, with --crypto-on set to crypto_on in
 * each (NULL: the default). */
static void six_downloaders(struct fx *f, const char *crypto_on) {
  enum { N = 6 };
  struct swarm w;
  char line[FX_LINE_CAP];

  /* The seeder alone cannot feed everyone at their rate: they must trade. */
  swarm_seed(f, &w, "six.bin", 6 * FX_MiB, 1, "4M",
             crypto_on != NULL ? "--crypto-on" : NULL, crypto_on, NULL);
  assert_int_equal(w.sh.size, w.size);

  swarm_get(f, &w, N, "--seed", "--download-rate", "2M",
            crypto_on != NULL ? "--crypto-on" : NULL, crypto_on, NULL);
  for (int i = 0; i < N; i++) {
    fx_wait_event(w.dl[i], "complete", NULL, NULL, FX_COMPLETE_MS, line);
    char path[PROC_PATH_MAX];
    assert_int_equal(jsonl_str(line, "path", path, sizeof(path)), 0);
    size_t pl = strlen(path);
    assert_true(pl >= 8 && strcmp(path + pl - 8, "/six.bin") == 0);
  }
  for (int i = 0; i < N; i++) {
    swarm_assert_copy(f, &w, i);
  }

  uint64_t up_dl = 0, up_all = 0, down_all = 0;
  for (int i = 0; i < N; i++) {
    fx_stop_peer(w.dl[i], line);
    uint64_t up = fx_u64(line, "uploaded");
    uint64_t down = fx_u64(line, "downloaded");
    /* Every byte of the copy came in a DATA message. */
    assert_true(down >= w.size);
    up_dl += up;
    up_all += up;
    down_all += down;
    fx_assert_json_output(w.dl[i]);
  }
  fx_stop_peer(w.seed, line);
  up_all += fx_u64(line, "uploaded");
  fx_assert_json_output(w.seed);
  print_message("six downloaders uploaded %llu bytes to each other; the "
                "seeder %llu\n",
                (unsigned long long)up_dl,
                (unsigned long long)(up_all - up_dl));
  assert_true(up_dl > 0);
  /* What was received was sent by someone in the swarm. */
  assert_true(up_all >= down_all);
  free(w.data);
  fx_finish(f);
}

static void six_downloaders_trade_and_get_identical_copies(void **state) {
  six_downloaders(*state, NULL);
}

/* The same with every block sealed and opened on the thread pool: sealed
 * in batches whose frames, and those written meanwhile, must reach each
 * peer in counter order through chokes, cancels and the endgame. */
static void six_downloaders_trade_with_crypto_on_the_pool(void **state) {
  six_downloaders(*state, "pool");
}

/* ------------------------------------------------------------------------ */
/* 2. The seeder leaves once the swarm holds every chunk. */

/* ORs each downloader's current have-map (fresh sessions, so only the
 * first message after the hellos is relied on) into uni, and counts the
 * chunks each holds into held. */
static void collect_have_maps(struct fx *f, const int *ports, int n,
                              const uint8_t content[32], uint32_t chunks,
                              uint8_t *uni, unsigned *held) {
  size_t len = (chunks + 7u) / 8u;
  for (int i = 0; i < n; i++) {
    struct pwire_msg m;
    struct pclient *c = fx_pc_session(f, ports[i], content);
    int err = pc_expect(c, PWIRE_HAVE_MAP, &m, FX_MSG_MS);
    if (err != 0) {
      fail_msg("no have-map from port %d: %s", ports[i], shoal_err_name(err));
    }
    assert_int_equal(m.data_len, len);
    assert_int_equal(pwire_check_have_map(m.data, m.data_len, chunks), 0);
    held[i] = 0;
    for (size_t k = 0; k < len; k++) {
      uni[k] |= m.data[k];
      for (unsigned b = 0; b < 8; b++) {
        held[i] += (m.data[k] >> b) & 1u;
      }
    }
    fx_pc_done(f, c);
  }
}

static int all_chunks(const uint8_t *map, uint32_t chunks) {
  for (uint32_t i = 0; i < chunks; i++) {
    if (!(map[i / 8] & (0x80u >> (i % 8)))) {
      return 0;
    }
  }
  return 1;
}

static void seeder_leaves_when_swarm_holds_every_chunk(void **state) {
  struct fx *f = *state;
  enum { N = 3 };
  struct swarm w;
  int ports[N];
  unsigned held[N];
  char line[FX_LINE_CAP];

  /* The seeder sends out new chunks faster than the downloaders can pass
   * them on to each other, so every chunk is in the swarm well before any
   * one downloader holds them all. */
  swarm_seed(f, &w, "leave.bin", 2 * FX_MiB, 2, "1536k", NULL);
  swarm_get(f, &w, N, "--seed", "--download-rate", "2M", "--upload-rate",
            "256k", NULL);
  uint32_t chunks = 0;
  for (int i = 0; i < N; i++) {
    ports[i] = fx_listening_port(w.dl[i]);
    fx_wait_event(w.dl[i], "manifest", NULL, NULL, FX_START_MS, line);
    uint32_t c = (uint32_t)fx_u64(line, "chunks");
    assert_true(c > 0);
    assert_true(chunks == 0 || chunks == c);
    chunks = c;
  }

  uint8_t *uni = calloc((chunks + 7u) / 8u, 1);
  assert_non_null(uni);
  uint64_t deadline = proc_now_ms() + FX_COMPLETE_MS;
  for (;;) {
    memset(uni, 0, (chunks + 7u) / 8u);
    collect_have_maps(f, ports, N, w.sh.content, chunks, uni, held);
    if (all_chunks(uni, chunks)) {
      break;
    }
    if (proc_now_ms() >= deadline) {
      free(uni);
      fail_msg("the downloaders never held every chunk between them");
    }
    proc_pause_ms(250);
  }
  free(uni);
  print_message("the swarm holds all %u chunks; the downloaders hold %u, "
                "%u, %u; stopping the seeder\n",
                chunks, held[0], held[1], held[2]);
  fx_stop_peer(w.seed, NULL);

  for (int i = 0; i < N; i++) {
    fx_wait_event(w.dl[i], "complete", NULL, NULL, FX_COMPLETE_MS, line);
  }
  for (int i = 0; i < N; i++) {
    swarm_assert_copy(f, &w, i);
    fx_stop_peer(w.dl[i], NULL);
    fx_assert_json_output(w.dl[i]);
  }
  free(w.data);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 3. A killed download resumes. */

static void killed_download_resumes(void **state) {
  struct fx *f = *state;
  const size_t size = 8 * FX_MiB;
  uint8_t *data;
  struct fx_shared sh;
  char line[FX_LINE_CAP];
  char opath[PROC_PATH_MAX];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed = fx_share_file(f, "src/resume.bin", size, 3, &data, &sh);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");

  struct proc *dl = fx_peer(f, "dl-first", "dl", "get", sh.link, "-o", opath,
                            "--download-rate", "1M", NULL);
  /* At least 40% verified. The resume record is saved at most once a
   * second (STORAGE_SAVE_MS), so what survives SIGKILL may lag what the
   * progress line shows by a second of download (1 FX_MiB, 12.5%): killing at
   * half leaves the record at 40% or more, well clear of the 70% bound. */
  struct fx_frac half = {50, 100};
  fx_wait_event(dl, "progress", fx_have_at_least, &half, FX_COMPLETE_MS, line);
  proc_kill(dl);
  char part[PROC_PATH_MAX], fin[PROC_PATH_MAX];
  fx_path(f, part, sizeof(part), "out/resume.bin.shoal-part");
  fx_path(f, fin, sizeof(fin), "out/resume.bin");
  assert_true(fx_exists(part));
  assert_false(fx_exists(fin));

  struct proc *again = fx_peer(f, "dl-again", "dl", "get", sh.link, "-o", opath,
                               "--download-rate", "1M", NULL);
  fx_expect_exit(again, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "resume.bin", data, size);
  assert_true(
      proc_find_event(again, "manifest", NULL, NULL, 0, line, sizeof(line)));
  uint64_t resumed = fx_u64(line, "resumed_bytes");
  assert_true(
      proc_find_event(again, "complete", NULL, NULL, 0, line, sizeof(line)));
  uint64_t downloaded = fx_u64(line, "downloaded");
  print_message("resumed %llu bytes; fetched %llu of %zu again\n",
                (unsigned long long)resumed, (unsigned long long)downloaded,
                size);
  assert_true(resumed > 0);
  assert_true(downloaded * 10 <= (uint64_t)size * 7);
  /* It fetched what it lacked, give or take the endgame's duplicates. */
  assert_true(resumed <= size);
  assert_true(downloaded <= size - resumed + size / 10);
  fx_assert_json_output(again);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 4. A peer that serves corrupt blocks is banned. */

/* A share link to m, named name, at the fixture's tracker. */
static void link_to(const struct fx *f, const struct manifest *m,
                    const char *name, uint64_t size,
                    char link[LINK_MAX_CHARS + 1]) {
  struct share_link l;
  memset(&l, 0, sizeof(l));
  memcpy(l.id, m->id, 32);
  snprintf(l.name, sizeof(l.name), "%s", name);
  l.size = size;
  l.tracker_count = 1;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host), "127.0.0.1");
  l.trackers[0].port = (uint16_t)f->t.port;
  link_set_key(&l, f->t.key);
  assert_true(link_format(&l, link, LINK_MAX_CHARS + 1) > 0);
}

/* The test as a publisher: writes src/NAME, size random bytes from seed
 * (kept in *data), builds its manifest under a fresh publisher key, and
 * saves that key as home "s"'s identity, so that a seeder started with
 * that home shares the very content ID of *m. src receives the path. */
static void publish_as_test(struct fx *f, const char *name, size_t size,
                            uint64_t seed, uint8_t **data,
                            struct identity *publisher, struct manifest **m,
                            char src[PROC_PATH_MAX]) {
  char rel[256], keypath[PROC_PATH_MAX];
  snprintf(rel, sizeof(rel), "src/%s", name);
  fx_mkdir(f, "src");
  fx_write_random(f, rel, size, seed, data);
  fx_path(f, src, PROC_PATH_MAX, rel);
  identity_generate(publisher);
  assert_int_equal(manifest_build(src, publisher, NULL, m), 0);
  fx_mkdir(f, "home-s");
  fx_path(f, keypath, sizeof(keypath), "home-s/identity.key");
  assert_int_equal(identity_save(publisher, keypath), 0);
}

/* Gets link into DIR/out and waits for the get's "banned" event, which
 * must name the fake fk; returns the get, still running. */
static struct proc *get_until_banned(struct fx *f, const struct fake *fk,
                                     const char *link, char *line) {
  char bad_id[TEXTID_STRLEN], who[TEXTID_STRLEN + 8], opath[PROC_PATH_MAX];
  textid_encode(TEXTID_KEY, fk->id.pk, bad_id);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", link, "-o", opath, NULL);
  fx_wait_event(dl, "banned", NULL, NULL, FX_COMPLETE_MS, line);
  assert_int_equal(jsonl_str(line, "peer", who, sizeof(who)), 0);
  assert_string_equal(who, bad_id);
  return dl;
}

static void corrupt_peer_is_banned(void **state) {
  struct fx *f = *state;
  const size_t size = 512 * FX_KiB;
  uint8_t *data;
  struct identity publisher;
  struct manifest *m = NULL;
  char line[FX_LINE_CAP];
  char src[PROC_PATH_MAX];

  fx_start_tracker(f);
  /* The test is the publisher: the honest seeder gets the same key, so it
   * shares the very content ID the fake serves. */
  publish_as_test(f, "bait.bin", size, 4, &data, &publisher, &m, src);
  assert_int_equal(m->chunk_count, (uint32_t)(size >> m->chunk_log2));
  struct fake *fk = fake_start_fx(f, m->id, m->encoded, m->encoded_len, data,
                                  size, m->chunk_log2, m->chunk_count, 1);
  char link[LINK_MAX_CHARS + 1];
  link_to(f, m, "bait.bin", size, link);
  struct proc *dl = get_until_banned(f, fk, link, line);
  assert_true(atomic_load(&fk->blocks) > 0);
  assert_int_equal(proc_count_event(dl, "complete", NULL, NULL), 0);

  /* Now the honest seeder, with the publisher's key. */
  struct fx_shared sh;
  struct proc *seed = fx_seed(f, "src/bait.bin", &sh, NULL);
  char want[TEXTID_STRLEN];
  textid_encode(TEXTID_CONTENT, m->id, want);
  assert_string_equal(sh.content_text, want);

  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "bait.bin", data, size);
  fx_assert_json_output(dl);
  /* The corrupt chunks were received and thrown away: the stats say so. */
  uint64_t wasted = 0, downloaded = 0;
  assert_true(proc_find_event(dl, "stats", NULL, NULL, 1, line, FX_LINE_CAP));
  assert_int_equal(jsonl_u64(line, "wasted", &wasted), 0);
  assert_int_equal(jsonl_u64(line, "downloaded", &downloaded), 0);
  assert_true(wasted >= ((uint64_t)1 << m->chunk_log2));
  assert_true(downloaded >= size + wasted);
  fx_stop_peer(seed, NULL);
  manifest_free(m);
  identity_close(&publisher);
  free(data);
  fx_finish(f);
}

/* A DATA frame that does not open (a bit of its block flipped after it
 * was sealed, as a forger on the path would) ends the sender's session,
 * the chunk is asked for again, and the copy that completes is the true
 * one; where (--crypto-on): found by the loop, or copied into its chunk
 * still encrypted and found out when the thread pool opens the chunk
 * (then the log says so, in words of its own: said). */
static void forged_frames_end_the_session(struct fx *f, const char *where,
                                          const char *said) {
  const size_t size = 1024 * FX_KiB;
  uint8_t *data;
  struct identity publisher;
  struct manifest *m = NULL;
  struct manifest_build_opts o;
  char line[FX_LINE_CAP], src[PROC_PATH_MAX], opath[PROC_PATH_MAX];
  char link[LINK_MAX_CHARS + 1];

  fx_start_tracker(f);
  publish_as_test(f, "forged.bin", size, 6, &data, &publisher, &m, src);
  /* Chunks of 256 KiB, four blocks each: the pool opens several blocks
   * of a chunk, and a chunk of the forger's blocks holds four forgeries. */
  manifest_free(m);
  m = NULL;
  memset(&o, 0, sizeof(o));
  o.chunk_log2 = 18;
  assert_int_equal(manifest_build(src, &publisher, &o, &m), 0);
  assert_int_equal(m->chunk_count, 4);
  struct fake *fk = fake_start_fx(f, m->id, m->encoded, m->encoded_len, data,
                                  size, m->chunk_log2, m->chunk_count, 1);
  atomic_store(&fk->honest, 1);
  atomic_store(&fk->forging, 1);
  link_to(f, m, "forged.bin", size, link);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", link, "-o", opath,
                            "--crypto-on", where, NULL);

  /* On the pool, where a forged block costs a whole chunk, a forger that
   * keeps at it is banned: a strike a chunk. */
  if (strcmp(where, "pool") == 0) {
    char bad_id[TEXTID_STRLEN], who[TEXTID_STRLEN + 8];
    textid_encode(TEXTID_KEY, fk->id.pk, bad_id);
    fx_wait_event(dl, "banned", NULL, NULL, FX_COMPLETE_MS, line);
    assert_int_equal(jsonl_str(line, "peer", who, sizeof(who)), 0);
    assert_string_equal(who, bad_id);
  }

  /* The get ends the fake's session once a block (on the loop) or a whole
   * chunk of its blocks (on the pool) fails to open. */
  uint64_t deadline = proc_now_ms() + FX_COMPLETE_MS;
  while (atomic_load(&fk->ended) == 0 && proc_now_ms() < deadline) {
    (void)poll(NULL, 0, 10); /* then look again */
  }
  assert_true(atomic_load(&fk->ended) >= 1);
  assert_true(atomic_load(&fk->blocks) >=
              (strcmp(where, "pool") == 0
                   ? ((uint64_t)1 << m->chunk_log2) / PWIRE_BLOCK_BYTES
                   : 1));
  assert_int_equal(proc_count_event(dl, "complete", NULL, NULL), 0);

  /* Now an honest peer with the same content. */
  struct fake *honest =
      fake_start_fx(f, m->id, m->encoded, m->encoded_len, data, size,
                    m->chunk_log2, m->chunk_count, 1);
  atomic_store(&honest->honest, 1);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "forged.bin", data, size);
  fx_assert_json_output(dl);
  assert_true(proc_output_has(dl, 1, said));
  assert_true(atomic_load(&honest->blocks) > 0);
  uint64_t wasted = 0;
  assert_true(proc_find_event(dl, "stats", NULL, NULL, 1, line, FX_LINE_CAP));
  assert_int_equal(jsonl_u64(line, "wasted", &wasted), 0);
  /* On the pool a whole chunk was taken in before its forged blocks were
   * found: counted as wasted. The loop drops each frame alone. */
  if (strcmp(where, "pool") == 0) {
    assert_true(wasted >= ((uint64_t)1 << m->chunk_log2));
  }
  manifest_free(m);
  identity_close(&publisher);
  free(data);
  fx_finish(f);
}

static void forged_frames_end_the_session_on_the_pool(void **state) {
  forged_frames_end_the_session(*state, "pool",
                                "does not open (forged or damaged");
}

static void forged_frames_end_the_session_on_the_loop(void **state) {
  forged_frames_end_the_session(*state, "loop", "frame does not open");
}

/* The content ID leaves out the publisher's signature. A peer that serves
 * the manifest with its signature changed is a liar, not the publisher's
 * mistake: the get bans it and waits for an honest peer, which completes
 * it (it failed the get, "the content's manifest is invalid", before). */
static void changed_signature_bans_the_sender(void **state) {
  struct fx *f = *state;
  const size_t size = 256 * FX_KiB;
  uint8_t *data, *bad;
  struct identity publisher;
  struct manifest *m = NULL;
  char line[FX_LINE_CAP];
  char src[PROC_PATH_MAX];

  fx_start_tracker(f);
  publish_as_test(f, "signed.bin", size, 5, &data, &publisher, &m, src);
  bad = malloc(m->encoded_len);
  assert_non_null(bad);
  memcpy(bad, m->encoded, m->encoded_len);
  bad[m->encoded_len - 1] ^= 0x40;
  struct fake *fk = fake_start_fx(f, m->id, bad, m->encoded_len, data, size,
                                  m->chunk_log2, m->chunk_count, 1);
  atomic_store(&fk->honest, 1);
  char link[LINK_MAX_CHARS + 1];
  link_to(f, m, "signed.bin", size, link);
  struct proc *dl = get_until_banned(f, fk, link, line);
  assert_true(atomic_load(&fk->parts) >= 1);
  assert_int_equal(proc_count_event(dl, "error", NULL, NULL), 0);

  struct fx_shared sh;
  struct proc *seed = fx_seed(f, "src/signed.bin", &sh, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "signed.bin", data, size);
  fx_assert_json_output(dl);
  fx_stop_peer(seed, NULL);
  manifest_free(m);
  identity_close(&publisher);
  free(bad);
  free(data);
  fx_finish(f);
}

/* A manifest larger than one part (a large folder's) comes from several
 * peers at once: after the first part from one, the units of the rest
 * from the others. Three fakes hold a manifest of 12,000 chunks (384 KiB);
 * each counts the parts it serves. */
static void large_manifest_comes_from_several_peers(void **state) {
  struct fx *f = *state;
  const uint32_t chunks = 12000;
  struct manifest *m = mt_file_manifest("large.bin", chunks, 12);
  struct fake *fk[3];
  uint8_t data[1] = {0};
  char line[FX_LINE_CAP], id_text[TEXTID_STRLEN], opath[PROC_PATH_MAX];
  unsigned serving = 0, parts = 0;

  assert_true(m->encoded_len > PWIRE_MANIFEST_PART_BYTES + 4 * FX_KiB);
  textid_encode(TEXTID_CONTENT, m->id, id_text);

  fx_start_tracker(f);
  for (int i = 0; i < 3; i++) {
    fk[i] = fake_start_fx(f, m->id, m->encoded, m->encoded_len, data, 0,
                          m->chunk_log2, m->chunk_count, 1);
    atomic_store(&fk[i]->choking, 1); /* the manifest only */
  }
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", id_text, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, "-o", opath, NULL);
  fx_wait_event(dl, "manifest", NULL, NULL, FX_COMPLETE_MS, line);
  assert_int_equal(fx_u64(line, "chunks"), chunks);
  for (int i = 0; i < 3; i++) {
    unsigned n = atomic_load(&fk[i]->parts);
    serving += n > 0;
    parts += n;
  }
  /* The first part, then the rest in 16 KiB units (128 KiB: eight). */
  assert_true(serving >= 2);
  assert_true(parts >= 1 + 8);
  assert_int_equal(proc_count_event(dl, "error", NULL, NULL), 0);
  proc_signal(dl, SIGTERM);
  fx_expect_exit(dl, FX_EXIT_MS, 128 + SIGTERM);
  manifest_free(m);
  fx_finish(f);
}

/* --upload-rate counts every byte a seeder serves, a large manifest's
 * too: the part goes at once and the blocks after it wait until the
 * bucket has earned it. A folder of 3,000 empty files with names of 240
 * bytes (a manifest of about 800 KB) and one file of 64 KiB, from a seeder
 * capped at 200 KB/s: the get takes at least (manifest + data - one
 * burst) / rate, about 3 s (about 1 s when the manifest went free). */
static void upload_limit_counts_the_manifest(void **state) {
  struct fx *f = *state;
  const size_t data_bytes = 64 * FX_KiB, rate = 200000;
  const unsigned empties = 3000;
  struct fx_shared sh;
  struct stat st;
  uint8_t *data;
  char dir[PROC_PATH_MAX], opath[PROC_PATH_MAX], mpath[PROC_PATH_MAX + 64];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "src/many");
  fx_path(f, dir, sizeof(dir), "src/many");
  for (unsigned i = 0; i < empties; i++) {
    char rel[256];
    snprintf(rel, sizeof(rel), "%0240u", i);
    tu_write_file(dir, rel, "", 0);
  }
  fx_write_random(f, "src/many/data.bin", data_bytes, 21, &data);
  struct proc *seed =
      fx_seed(f, "src/many", &sh, "--upload-rate", "200k", NULL);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  uint64_t t0 = proc_now_ms();
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", opath, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  uint64_t took = proc_now_ms() - t0;
  fx_assert_copy(f, "out", "many/data.bin", data, data_bytes);
  fx_path(f, mpath, sizeof(mpath), "home-dl/manifests/");
  snprintf(mpath + strlen(mpath), sizeof(mpath) - strlen(mpath), "%s",
           sh.content_text);
  assert_int_equal(stat(mpath, &st), 0);
  assert_true((size_t)st.st_size > 700 * FX_KiB);
  uint64_t floor_ms =
      ((uint64_t)st.st_size + data_bytes - RATE_BURST_MIN) * 1000 / rate;
  print_message("upload_limit_counts_the_manifest: %llu ms, at least %llu\n",
                (unsigned long long)took, (unsigned long long)floor_ms);
  if (took < floor_ms) {
    fail_msg("the get took %llu ms; the limit allows no less than %llu ms for "
             "a manifest of %lld bytes and %zu of data",
             (unsigned long long)took, (unsigned long long)floor_ms,
             (long long)st.st_size, data_bytes);
  }
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

/* A get stopped by a signal while chunks are half assembled frees their
 * buffers as they were allocated (storage_chunk_alloc): under
 * AddressSanitizer a buffer freed with free() fails the exit. The fake
 * serves the true bytes of a manifest with 256 KiB chunks (four blocks
 * each), which shoal-peer share would not make of an 8 MiB file. */
static void get_stopped_mid_chunk_exits_cleanly(void **state) {
  struct fx *f = *state;
  const size_t size = 8 * FX_MiB;
  struct manifest_build_opts o;
  struct identity publisher;
  struct manifest *m = NULL;
  uint8_t *data;
  char line[FX_LINE_CAP];
  char src[PROC_PATH_MAX], opath[PROC_PATH_MAX];
  char link[LINK_MAX_CHARS + 1];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/half.bin", size, 7, &data);
  fx_path(f, src, sizeof(src), "src/half.bin");
  identity_generate(&publisher);
  memset(&o, 0, sizeof(o));
  o.chunk_log2 = 18;
  assert_int_equal(manifest_build(src, &publisher, &o, &m), 0);
  assert_int_equal(m->chunk_count, 32);
  struct fake *fk = fake_start_fx(f, m->id, m->encoded, m->encoded_len, data,
                                  size, m->chunk_log2, m->chunk_count, 1);
  atomic_store(&fk->honest, 1);
  link_to(f, m, "half.bin", size, link);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", link, "-o", opath,
                            "--download-rate", "1M", NULL);
  struct fx_frac some = {10, 100};
  fx_wait_event(dl, "progress", fx_have_at_least, &some, FX_COMPLETE_MS, line);
  proc_signal(dl, SIGINT);
  fx_expect_exit(dl, FX_EXIT_MS, 130);
  manifest_free(m);
  identity_close(&publisher);
  free(data);
  fx_finish(f);
}

/* A downloader fetches an 8 FX_MiB file from a seeder held to 2 FX_MiB/s (a few
 * seconds), with a fake peer beside them that watches what it announces:
 * one that holds nothing, or, when seeding, one that holds everything and
 * keeps everyone choked. Returns the fake, halted, once every chunk was
 * announced to it in 1 to chunk-count HAVE messages. */
static struct fake *watch_haves(struct fx *f, int seeding) {
  const size_t size = 8 * FX_MiB;
  uint8_t *data;
  struct identity publisher;
  struct manifest *m = NULL;
  struct fx_shared sh;
  char src[PROC_PATH_MAX], opath[PROC_PATH_MAX];

  fx_start_tracker(f);
  publish_as_test(f, "batch.bin", size, 5, &data, &publisher, &m, src);
  assert_true(m->chunk_count >= 2 * NODE_HAVE_BATCH);
  struct fake *fk = fake_start_fx(f, m->id, m->encoded, m->encoded_len, data,
                                  size, m->chunk_log2, m->chunk_count, seeding);
  atomic_store(&fk->choking, seeding);
  struct proc *seed =
      fx_seed(f, "src/batch.bin", &sh, "--upload-rate", "2M", NULL);

  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", sh.link, "-o", opath, "--seed", NULL);
  fx_wait_event(dl, "complete", NULL, NULL, FX_COMPLETE_MS, NULL);
  fx_assert_copy(f, "out", "batch.bin", data, size);
  /* The last HAVE follows completion at once; wait for it to arrive. A
   * seeder hears only of chunks it did not see in the have-map. */
  uint64_t deadline = proc_now_ms() + FX_MSG_MS;
  while (atomic_load(&fk->have_chunks) < m->chunk_count &&
         proc_now_ms() < deadline) {
    (void)poll(NULL, 0, 10); /* then look again */
  }
  fake_halt(fk);
  assert_int_equal(atomic_load(&fk->have_bad), 0);
  assert_int_equal(atomic_load(&fk->have_chunks), m->chunk_count);
  unsigned msgs = atomic_load(&fk->have_msgs);
  if (msgs == 0 || msgs > m->chunk_count) {
    fail_msg("%u HAVEs for %u chunks", msgs, m->chunk_count);
  }
  fx_stop_peer(dl, NULL);
  fx_stop_peer(seed, NULL);
  manifest_free(m);
  identity_close(&publisher);
  free(data);
  return fk;
}

/* A peer that may want the new chunks (here one not interested yet) hears
 * of each of them once, in HAVEs of 1 to NODE_HAVE_BATCH chunks, the last
 * ones as soon as the download is complete. How they are spaced is
 * tests/test_haves.c's to check with a clock of its own, and bench/pacing
 * measures it on these binaries. */
static void haves_tell_a_peer_of_every_chunk_once(void **state) {
  struct fx *f = *state;
  watch_haves(f, 0);
  fx_finish(f);
}

/* A peer that holds everything and chokes everyone hears of every chunk
 * too (its seeding order needs them), and is never asked for a block. */
static void haves_tell_a_seeder_of_every_chunk_once(void **state) {
  struct fx *f = *state;
  struct fake *fk = watch_haves(f, 1);
  assert_int_equal(atomic_load(&fk->blocks), 0);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 5. The tracker goes away after the peers met. */

static void tracker_stop_after_peers_met(void **state) {
  struct fx *f = *state;
  enum { N = 2 };
  struct swarm w;

  swarm_seed(f, &w, "alone.bin", 4 * FX_MiB, 5, NULL, NULL);
  swarm_get(f, &w, N, "--download-rate", "1M", NULL);
  for (int i = 0; i < N; i++) {
    fx_wait_event(w.dl[i], "progress", fx_have_some, NULL, FX_COMPLETE_MS,
                  NULL);
  }
  assert_int_equal(tc_tracker_stop(&f->t), 0);
  for (int i = 0; i < N; i++) {
    fx_expect_exit(w.dl[i], FX_COMPLETE_MS, 0);
    swarm_assert_copy(f, &w, i);
  }
  /* Its "stopped" announce fails, within its bound. */
  fx_stop_peer(w.seed, NULL);
  free(w.data);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 6. A folder tree arrives exactly. */

/* Gets link into DIR/out, made here, with a peer "dl" that must end
 * well. */
static void get_into_out(struct fx *f, const char *link) {
  char opath[PROC_PATH_MAX];
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", link, "-o", opath, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_json_output(dl);
}

struct tree_entry {
  char path[512];
  char type; /* 'd' or 'f' */
  uint64_t size;
};

struct tree {
  struct tree_entry *e;
  size_t n, cap;
};

static void tree_walk(struct tree *t, const char *root, const char *rel) {
  char dirpath[PROC_PATH_MAX];
  snprintf(dirpath, sizeof(dirpath), "%s%s%s", root, rel[0] ? "/" : "", rel);
  DIR *d = opendir(dirpath);
  if (d == NULL) {
    fail_msg("opendir %s: %s", dirpath, strerror(errno));
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
      continue;
    }
    if (t->n == t->cap) {
      t->cap = t->cap ? t->cap * 2 : 32;
      t->e = realloc(t->e, t->cap * sizeof(*t->e));
      assert_non_null(t->e);
    }
    struct tree_entry *e = &t->e[t->n++];
    char full[PROC_PATH_MAX];
    struct stat st;
    snprintf(e->path, sizeof(e->path), "%s%s%s", rel, rel[0] ? "/" : "",
             de->d_name);
    tu_path(full, sizeof(full), root, e->path);
    assert_int_equal(lstat(full, &st), 0);
    if (S_ISDIR(st.st_mode)) {
      e->type = 'd';
      e->size = 0;
      char sub[512];
      snprintf(sub, sizeof(sub), "%s", e->path);
      tree_walk(t, root, sub);
    } else if (S_ISREG(st.st_mode)) {
      e->type = 'f';
      e->size = (uint64_t)st.st_size;
    } else {
      closedir(d);
      fail_msg("%s is neither a file nor a folder", full);
    }
  }
  closedir(d);
}

static int tree_cmp(const void *a, const void *b) {
  return strcmp(((const struct tree_entry *)a)->path,
                ((const struct tree_entry *)b)->path);
}

static void assert_same_tree(const char *want_root, const char *got_root) {
  struct tree a = {0}, b = {0};
  tree_walk(&a, want_root, "");
  tree_walk(&b, got_root, "");
  qsort(a.e, a.n, sizeof(*a.e), tree_cmp);
  qsort(b.e, b.n, sizeof(*b.e), tree_cmp);
  for (size_t i = 0; i < a.n || i < b.n; i++) {
    if (i >= a.n || i >= b.n || strcmp(a.e[i].path, b.e[i].path) != 0) {
      fail_msg("trees differ at entry %zu: %s vs %s", i,
               i < a.n ? a.e[i].path : "(none)",
               i < b.n ? b.e[i].path : "(none)");
    }
    assert_int_equal(a.e[i].type, b.e[i].type);
    assert_int_equal(a.e[i].size, b.e[i].size);
    if (a.e[i].type == 'f') {
      char pa[PROC_PATH_MAX], pb[PROC_PATH_MAX];
      size_t na, nb;
      tu_path(pa, sizeof(pa), want_root, a.e[i].path);
      tu_path(pb, sizeof(pb), got_root, b.e[i].path);
      uint8_t *da = tu_read_file(pa, &na);
      uint8_t *db = tu_read_file(pb, &nb);
      assert_true(da != NULL || na == 0);
      assert_true(db != NULL || nb == 0);
      int same = na == nb && (na == 0 || memcmp(da, db, na) == 0);
      free(da);
      free(db);
      if (!same) {
        fail_msg("%s differs", pb);
      }
    }
  }
  free(a.e);
  free(b.e);
}

static void folder_tree_arrives_exactly(void **state) {
  struct fx *f = *state;
  static const struct {
    const char *path;
    size_t size;
  } files[] = {
      {"src/tree/a.bin", 100 * FX_KiB},
      {"src/tree/empty", 0},
      {"src/tree/z.txt", 1},
      {"src/tree/one/b.bin", 33333},
      {"src/tree/one/two/c.bin", 16 * FX_KiB},
      {"src/tree/one/two/three/d.bin", 300 * FX_KiB + 7},
      {"src/tree/one/two/three/e", 5},
      {"src/tree/one/two/three/empty-too", 0},
      {"src/tree/other/f.bin", 70000},
  };
  struct fx_shared sh;
  char src[PROC_PATH_MAX], got[PROC_PATH_MAX];

  fx_start_tracker(f);
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    fx_write_random(f, files[i].path, files[i].size, 60 + i, NULL);
  }
  fx_path(f, src, sizeof(src), "src/tree");
  struct proc *seed = fx_seed(f, "src/tree", &sh, NULL);
  get_into_out(f, sh.link);

  /* out holds exactly the tree: nothing beside it, no partial left. */
  fx_path(f, got, sizeof(got), "out");
  struct tree top = {0};
  tree_walk(&top, got, "");
  for (size_t i = 0; i < top.n; i++) {
    if (strchr(top.e[i].path, '/') == NULL &&
        strcmp(top.e[i].path, "tree") != 0) {
      char extra[512];
      snprintf(extra, sizeof(extra), "%s", top.e[i].path);
      free(top.e);
      fail_msg("unexpected entry in the download folder: %s", extra);
    }
    if (strstr(top.e[i].path, ".shoal-part") != NULL) {
      free(top.e);
      fail_msg("partial left behind");
    }
  }
  free(top.e);
  fx_path(f, got, sizeof(got), "out/tree");
  assert_same_tree(src, got);
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* What a folder holds besides its files' bytes arrives too: empty folders
 * (one that holds only an empty folder, and one whose only entry, a
 * symbolic link, was left out), the executable bit, and every file's
 * modification time to the nanosecond, as docs/protocol.md ("Modes, times
 * and empty folders") says. The modes come from the manifest's one bit and
 * the downloader's umask only: the source's set-user-ID bit and odd
 * permissions do not travel. */
static void folder_keeps_empty_folders_modes_and_times(void **state) {
  struct fx *f = *state;
  static const struct {
    const char *path;
    size_t size;
    mode_t mode;
    int exec;
    time_t sec;
    long nsec;
  } files[] = {
      {"src/kit/run.sh", 300, 0755, 1, 1000000000, 123456789},
      {"src/kit/data.bin", 70000, 0644, 0, 1234567890, 0},
      {"src/kit/bin/tool", 5000, 04750, 1, 946684800, 999999999},
      {"src/kit/notes.txt", 10, 0600, 0, 1500000000, 500},
      {"src/kit/empty", 0, 0664, 0, 1700000000, 1},
  };
  static const char *const folders[] = {"kit/cache/tmp", "kit/logs",
                                        "kit/lonely"};
  const size_t nfiles = sizeof(files) / sizeof(files[0]);
  struct fx_shared sh;
  char p[PROC_PATH_MAX];
  struct stat st;
  mode_t mask = umask(0);

  umask(mask); /* the downloader inherits this one */
  fx_start_tracker(f);
  for (size_t i = 0; i < nfiles; i++) {
    struct timespec ts[2] = {{files[i].sec, files[i].nsec},
                             {files[i].sec, files[i].nsec}};
    fx_write_random(f, files[i].path, files[i].size, 90 + i, NULL);
    fx_path(f, p, sizeof(p), files[i].path);
    assert_int_equal(chmod(p, files[i].mode), 0);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
  }
  fx_mkdir(f, "src/kit/cache");
  fx_mkdir(f, "src/kit/cache/tmp");
  fx_mkdir(f, "src/kit/logs");
  fx_mkdir(f, "src/kit/lonely");
  fx_path(f, p, sizeof(p), "src/kit/lonely/link");
  assert_int_equal(symlink("../data.bin", p), 0);

  struct proc *seed = fx_seed(f, "src/kit", &sh, NULL);
  get_into_out(f, sh.link);

  for (size_t i = 0; i < nfiles; i++) {
    char rel[PROC_PATH_MAX];
    snprintf(rel, sizeof(rel), "out/%s", files[i].path + strlen("src/"));
    fx_path(f, p, sizeof(p), rel);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal((uint64_t)st.st_size, files[i].size);
    mode_t want = (files[i].exec ? 0755 : 0644) & ~mask;
    if ((st.st_mode & 07777) != want) {
      fail_msg("%s has mode %04o, want %04o (umask %03o)", rel,
               (unsigned)(st.st_mode & 07777), (unsigned)want, (unsigned)mask);
    }
    if (st.st_mtim.tv_sec != files[i].sec ||
        st.st_mtim.tv_nsec != files[i].nsec) {
      fail_msg("%s was modified at %lld.%09ld, want %lld.%09ld", rel,
               (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
               (long long)files[i].sec, files[i].nsec);
    }
  }
  for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
    char rel[PROC_PATH_MAX];
    snprintf(rel, sizeof(rel), "out/%s", folders[i]);
    fx_path(f, p, sizeof(p), rel);
    if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
      fail_msg("the empty folder %s did not arrive", rel);
    }
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
        closedir(d);
        fail_msg("%s should be empty, holds %s", rel, de->d_name);
      }
    }
    closedir(d);
  }
  /* Nothing else arrived, and nothing is left partial. */
  struct tree got = {0};
  fx_path(f, p, sizeof(p), "out");
  tree_walk(&got, p, "");
  assert_int_equal(got.n,
                   nfiles + 2 /* bin, cache */ + 3 /* folders */ + 1 /* kit */);
  free(got.e);
  /* The shared files were only read. */
  for (size_t i = 0; i < nfiles; i++) {
    fx_path(f, p, sizeof(p), files[i].path);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, files[i].mode);
    assert_int_equal(st.st_mtim.tv_sec, files[i].sec);
    assert_int_equal(st.st_mtim.tv_nsec, files[i].nsec);
  }
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 7. Hostile peer-wire input to a seeder. */

struct hostile {
  struct fx *f;
  struct fx_shared sh;
  const uint8_t *data;
  size_t size;
  int port;
  uint32_t chunks;
  unsigned gets;
};

/* A normal download from the seeder still works. */
static void still_serves_a_get(struct hostile *h, const char *after) {
  char name[32], out[32], opath[PROC_PATH_MAX];
  snprintf(name, sizeof(name), "get%u", h->gets);
  snprintf(out, sizeof(out), "out%u", h->gets);
  h->gets++;
  fx_mkdir(h->f, out);
  fx_path(h->f, opath, sizeof(opath), out);
  struct proc *p =
      fx_peer(h->f, name, name, "get", h->sh.link, "-o", opath, NULL);
  int st = fx_wait_exit(p, FX_COMPLETE_MS);
  if (st != 0) {
    fail_msg("after %s the seeder did not serve a get (exit %d)", after, st);
  }
  fx_assert_copy(h->f, out, "target.bin", h->data, h->size);
}

/* A fresh session still gets a hello and a full have-map. */
static void still_answers_hellos(struct hostile *h) {
  struct pwire_msg m;
  struct pclient *c = fx_pc_session(h->f, h->port, h->sh.content);
  assert_int_equal(c->theirs.flags & PWIRE_HELLO_SEEDER, PWIRE_HELLO_SEEDER);
  assert_int_equal(pc_expect(c, PWIRE_HAVE_MAP, &m, FX_MSG_MS), 0);
  assert_int_equal(pwire_check_have_map(m.data, m.data_len, h->chunks), 0);
  assert_int_equal(m.data_len, (h->chunks + 7u) / 8u);
  for (uint32_t i = 0; i < h->chunks; i++) {
    assert_true(m.data[i / 8] & (0x80u >> (i % 8)));
  }
  fx_pc_done(h->f, c);
}

/* The seeder closes the connection without a single frame back. */
static void expect_closed_silently(struct pclient *c, const char *what) {
  int err = pc_recv_frame(c, FRAME_MAX_LIMIT, FX_CLOSE_MS);
  if (err == 0) {
    fail_msg("%s: the seeder answered (%zu-byte frame)", what, c->frame.len);
  }
  if (err != UV_EOF) {
    fail_msg("%s: connection not closed (%s)", what, shoal_err_name(err));
  }
}

static void expect_closed(struct pclient *c, const char *what) {
  if (!pc_wait_closed(c, FX_CLOSE_MS)) {
    fail_msg("%s: the seeder kept the connection open", what);
  }
}

/* Sends a hello whose bytes are changed at offset (from the end when
 * negative) after signing. */
static void forged_hello(struct hostile *h, long at, const char *what) {
  struct buf b;
  struct pclient *c = fx_pc_new(h->f);
  assert_int_equal(pc_connect(c, h->port), 0);
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_int_equal(pc_hello_bytes(c, &b, h->sh.content, 0, 0, 0), 0);
  size_t i = at < 0 ? b.len - (size_t)(-at) : (size_t)at;
  b.data[i] ^= 0x01;
  assert_int_equal(pc_send_frame(c, b.data, b.len), 0);
  buf_free(&b);
  expect_closed_silently(c, what);
  fx_pc_done(h->f, c);
}

/* After INTERESTED and UNCHOKE, sends a request (plain bytes) that breaks
 * the index/offset/length rules: the session closes, or the block is
 * rejected, and no DATA for it ever comes. */
static void bad_request(struct hostile *h, uint32_t chunk, uint32_t offset,
                        uint32_t length, int reject_ok, const char *what) {
  struct pwire_msg m;
  uint8_t plain[13];
  struct pclient *c = fx_pc_session(h->f, h->port, h->sh.content);
  assert_int_equal(pc_expect(c, PWIRE_HAVE_MAP, &m, FX_MSG_MS), 0);
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_INTERESTED;
  assert_int_equal(pc_send(c, &m), 0);
  int err = pc_expect(c, PWIRE_UNCHOKE, &m, FX_UNCHOKE_MS);
  if (err != 0) {
    fail_msg("%s: no unchoke (%s)", what, shoal_err_name(err));
  }
  plain[0] = PWIRE_REQUEST;
  buf_put_be32(plain + 1, chunk);
  buf_put_be32(plain + 5, offset);
  buf_put_be32(plain + 9, length);
  assert_int_equal(pc_send_plain(c, plain, sizeof(plain)), 0);
  int rejected = 0;
  for (;;) {
    err = pc_recv(c, &m, rejected ? 500 : FX_CLOSE_MS);
    if (err == UV_EOF) {
      break; /* closed: the expected outcome */
    }
    if (err == SHOAL_ETIMEDOUT && rejected) {
      break; /* rejected and nothing more came */
    }
    if (err != 0) {
      fail_msg("%s: neither closed nor rejected (%s)", what,
               shoal_err_name(err));
    }
    if (m.type == PWIRE_DATA && m.chunk == chunk && m.offset == offset) {
      fail_msg("%s: the seeder served data for it", what);
    }
    if (m.type == PWIRE_REJECT && m.chunk == chunk && m.offset == offset) {
      if (!reject_ok) {
        fail_msg("%s: rejected, but a malformed message must close", what);
      }
      rejected = 1;
    }
  }
  fx_pc_done(h->f, c);
}

static void hostile_input_leaves_seeder_serving(void **state) {
  struct fx *f = *state;
  struct hostile h;
  uint8_t *data;
  struct pwire_msg m;
  struct buf b;

  memset(&h, 0, sizeof(h));
  h.f = f;
  h.size = 256 * FX_KiB;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/target.bin", h.size, 7, &data);
  h.data = data;
  /* One file: chunks of 2^manifest_choose_chunk_log2(size) bytes. */
  unsigned log2 = manifest_choose_chunk_log2(h.size);
  h.chunks = (uint32_t)((h.size + ((size_t)1 << log2) - 1) >> log2);
  struct proc *seed = fx_seed(f, "src/target.bin", &h.sh, NULL);
  h.port = fx_listening_port(seed);
  still_answers_hellos(&h);

  /* (a) Hellos whose signature does not verify: a bit flipped in the
   * sender's key, the timestamp, the content ID, the signature. */
  forged_hello(&h, 4, "hello with a flipped sender key bit");
  forged_hello(&h, 36, "hello with a flipped timestamp bit");
  forged_hello(&h, ENVELOPE_HEADER_BYTES, "hello with a flipped content bit");
  forged_hello(&h, -1, "hello with a flipped signature bit");
  still_serves_a_get(&h, "forged hellos");

  /* (b) An oversize frame after a proper hello. */
  {
    struct pclient *c = fx_pc_session(f, h.port, h.sh.content);
    uint8_t hdr[FRAME_HEADER_BYTES];
    uint8_t junk[1024];
    frame_header(hdr, PWIRE_MAX_FRAME + 1);
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(pc_send_raw(c, hdr, sizeof(hdr)), 0);
    pc_send_raw(c, junk, sizeof(junk)); /* may already be closed */
    expect_closed(c, "oversize frame");
    fx_pc_done(f, c);
  }
  still_serves_a_get(&h, "an oversize frame");

  /* (c) Requests outside the content. */
  bad_request(&h, h.chunks, 0, 1024, 1, "request for a chunk past the end");
  bad_request(&h, 0xffffffffu, 0, 1024, 1, "request for chunk 2^32-1");
  bad_request(&h, 0, (1u << log2) - 1, 2, 1, "request past the end of a chunk");
  bad_request(&h, 0, 0, PWIRE_BLOCK_BYTES + 1, 0,
              "request longer than a block");
  still_serves_a_get(&h, "requests outside the content");

  /* (d) DATA for a chunk that does not exist, sent to the seeder. */
  {
    struct pclient *c = fx_pc_session(f, h.port, h.sh.content);
    uint8_t junk[256];
    memset(junk, 0x11, sizeof(junk));
    memset(&m, 0, sizeof(m));
    m.type = PWIRE_DATA;
    m.chunk = h.chunks;
    m.offset = 0;
    m.data = junk;
    m.data_len = sizeof(junk);
    assert_int_equal(pc_send(c, &m), 0);
    expect_closed(c, "data for a chunk that does not exist");
    fx_pc_done(f, c);
  }
  still_serves_a_get(&h, "data for a chunk that does not exist");

  /* More hellos that must not open a session. */
  {
    /* A replay of a hello the seeder accepted before. */
    struct pclient *c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    buf_init(&b, FRAME_MAX_DEFAULT);
    assert_int_equal(pc_hello_bytes(c, &b, h.sh.content, 0, 0, 0), 0);
    assert_int_equal(pc_send_frame(c, b.data, b.len), 0);
    assert_int_equal(pc_recv_hello(c, FX_MSG_MS), 0);
    fx_pc_done(f, c);
    c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    assert_int_equal(pc_send_frame(c, b.data, b.len), 0);
    expect_closed_silently(c, "replayed hello");
    fx_pc_done(f, c);

    /* A hello from ten minutes ago. */
    c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    buf_reset(&b);
    assert_int_equal(pc_hello_bytes(c, &b, h.sh.content, 0, 0,
                                    clock_wall_ms() - 10u * 60u * 1000u),
                     0);
    assert_int_equal(pc_send_frame(c, b.data, b.len), 0);
    expect_closed_silently(c, "stale hello");
    fx_pc_done(f, c);

    /* A hello for a content the seeder does not have. */
    uint8_t other[32];
    memcpy(other, h.sh.content, 32);
    other[0] ^= 0xff;
    c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    assert_int_equal(pc_send_hello(c, other, 0, 0), 0);
    expect_closed_silently(c, "hello for an unknown content");
    fx_pc_done(f, c);

    /* Garbage instead of a hello, and an empty frame. */
    uint8_t junk[300];
    tu_fill(junk, sizeof(junk), 77);
    c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    assert_int_equal(pc_send_frame(c, junk, sizeof(junk)), 0);
    expect_closed_silently(c, "garbage hello");
    fx_pc_done(f, c);
    c = fx_pc_new(f);
    assert_int_equal(pc_connect(c, h.port), 0);
    memset(junk, 0, FRAME_HEADER_BYTES);
    assert_int_equal(pc_send_raw(c, junk, FRAME_HEADER_BYTES), 0);
    expect_closed_silently(c, "empty frame");
    fx_pc_done(f, c);

    /* A session frame that does not open (forged ciphertext). */
    c = fx_pc_session(f, h.port, h.sh.content);
    assert_int_equal(pc_send_frame(c, junk, 64), 0);
    expect_closed(c, "forged session frame");
    fx_pc_done(f, c);
    buf_free(&b);
  }
  still_answers_hellos(&h);
  still_serves_a_get(&h, "bad hellos");
  assert_true(proc_alive(seed));
  fx_stop_peer(seed, NULL);
  fx_assert_json_output(seed);
  free(data);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 7e. A signed manifest whose paths climb out of the download folder. */

/* Canonical manifest bytes (docs/protocol.md, "Manifest") for a folder
 * "evil" holding one file at path, signed by pub. */
static void hostile_manifest(struct buf *out, const struct identity *pub,
                             const char *path, const uint8_t *data,
                             size_t len) {
  static const char domain[] = "shoal/1 manifest";
  uint8_t hash[MANIFEST_HASH_BYTES];
  uint8_t sig[IDENTITY_SIG_BYTES];
  buf_reset(out);
  buf_add_u8(out, MANIFEST_VERSION);
  buf_add_u8(out, MANIFEST_KIND_FOLDER);
  buf_add_u8(out, MANIFEST_CHUNK_LOG2_MIN);
  buf_add_u8(out, 0);
  buf_add(out, pub->pk, IDENTITY_PK_BYTES);
  buf_add_u64(out, len);
  buf_add_u16(out, 4);
  buf_add(out, "evil", 4);
  buf_add_u32(out, 1);
  buf_add_u16(out, (uint16_t)strlen(path));
  buf_add(out, path, strlen(path));
  buf_add_u64(out, len);
  buf_add_u64(out, 1767225600); /* modification time, seconds */
  buf_add_u32(out, 0);          /* and nanoseconds */
  buf_add_u8(out, 0);           /* mode: not executable */
  buf_add_u32(out, 0);          /* no empty folders */
  buf_add_u32(out, 1);
  crypto_hash_sha256(hash, data, len); /* the chunk hash */
  buf_add(out, hash, sizeof(hash));
  assert_int_equal(buf_err(out), 0);
  assert_int_equal(
      identity_sign2(pub, domain, sizeof(domain), out->data, out->len, sig), 0);
  buf_add(out, sig, sizeof(sig));
  assert_int_equal(buf_err(out), 0);
}

static int error_line_names(const char *line, void *arg) {
  const char *prefix = "shoal-peer: error:";
  const char *word = arg;
  if (strncmp(line, prefix, strlen(prefix)) != 0) {
    return 0;
  }
  for (const char *p = line; *p != '\0'; p++) {
    if (strncasecmp(p, word, strlen(word)) == 0) {
      return 1;
    }
  }
  return 0;
}

/* The message of the error event dl logged (its --json line), into msg. */
static void error_message(struct proc *dl, char *msg, size_t cap) {
  char line[FX_LINE_CAP];
  assert_true(proc_find_event(dl, "error", NULL, NULL, 1, line, sizeof(line)));
  assert_int_equal(jsonl_str(line, "message", msg, cap), 0);
}

/* A content shared by an older shoal: its version 1 manifest is refused,
 * and the message says why and what to do. */
static void version_1_manifest_is_named(void **state) {
  struct fx *f = *state;
  char vpath[PROC_PATH_MAX], id_text[TEXTID_STRLEN], opath[PROC_PATH_MAX];
  char msg[1024];
  uint8_t id[MANIFEST_ID_BYTES], data[100];
  struct manifest *m = NULL;
  size_t len;
  tu_vector_path(vpath, sizeof(vpath), "manifest-v1-folder.bin");
  uint8_t *v1 = tu_read_file(vpath, &len);
  assert_non_null(v1);
  assert_int_equal(manifest_decode(v1, len, &m), SHOAL_EVERSION);
  assert_int_equal(manifest_id_of(v1, len, id), 0);
  textid_encode(TEXTID_CONTENT, id, id_text);
  tu_fill(data, sizeof(data), 9);
  fx_start_tracker(f);
  struct fake *fk = fake_start_fx(f, id, v1, len, data, sizeof(data),
                                  MANIFEST_CHUNK_LOG2_MIN, 1, 1);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", id_text, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, "-o", opath, NULL);
  fx_expect_exit(dl, 30000, 1);
  assert_true(atomic_load(&fk->parts) > 0);
  error_message(dl, msg, sizeof(msg));
  if (strstr(msg, "older shoal") == NULL || strstr(msg, "again") == NULL ||
      strstr(msg, "manifest version 1") == NULL) {
    fail_msg("the error does not name the old version: %s", msg);
  }
  free(v1);
  fx_finish(f);
}

/* A manifest an earlier shoal stored under HOME/manifests (version 2,
 * BLAKE2b chunk hashes) for a download it had started: a get of that
 * content says which version it was and what to do, at once, without
 * waiting for a peer. */
static void stored_version_2_manifest_is_named(void **state) {
  struct fx *f = *state;
  char vpath[PROC_PATH_MAX], id_text[TEXTID_STRLEN], opath[PROC_PATH_MAX];
  char mdir[PROC_PATH_MAX], msg[1024];
  uint8_t id[MANIFEST_ID_BYTES];
  struct manifest *m = NULL;
  size_t len;
  tu_vector_path(vpath, sizeof(vpath), "manifest-v1-folder.bin");
  uint8_t *old = tu_read_file(vpath, &len);
  assert_non_null(old);
  old[0] = 2; /* what the decoder reads first */
  assert_int_equal(manifest_decode(old, len, &m), SHOAL_EVERSION);
  assert_int_equal(manifest_id_of(old, len, id), 0);
  textid_encode(TEXTID_CONTENT, id, id_text);
  fx_mkdir(f, "home-dl");
  fx_mkdir(f, "home-dl/manifests");
  fx_path(f, mdir, sizeof(mdir), "home-dl/manifests");
  tu_write_file(mdir, id_text, old, len);
  fx_start_tracker(f);
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", id_text, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, "-o", opath, NULL);
  fx_expect_exit(dl, 10000, 1);
  error_message(dl, msg, sizeof(msg));
  if (strstr(msg, "manifest version 2") == NULL ||
      strstr(msg, "version 3") == NULL || strstr(msg, "again") == NULL) {
    fail_msg("the error does not name the stored manifest's version: %s", msg);
  }
  free(old);
  fx_finish(f);
}

static void hostile_manifest_paths_fail_the_get(void **state) {
  struct fx *f = *state;
  uint8_t data[100];
  struct identity pub;
  struct buf good, evil;
  struct manifest *m = NULL;
  uint8_t id[MANIFEST_ID_BYTES];
  char id_text[TEXTID_STRLEN], opath[PROC_PATH_MAX];

  tu_fill(data, sizeof(data), 8);
  identity_generate(&pub);
  buf_init(&good, 4096);
  buf_init(&evil, 4096);
  /* The hand-made encoding is right: the same manifest with a safe path
   * decodes, and the hostile one fails on its path alone. */
  hostile_manifest(&good, &pub, "evil/x", data, sizeof(data));
  assert_int_equal(manifest_decode(good.data, good.len, &m), 0);
  manifest_free(m);
  m = NULL;
  hostile_manifest(&evil, &pub, "evil/../../x", data, sizeof(data));
  assert_int_equal(manifest_decode(evil.data, evil.len, &m), SHOAL_EPATH);
  assert_int_equal(manifest_id_of(evil.data, evil.len, id), 0);
  textid_encode(TEXTID_CONTENT, id, id_text);

  fx_start_tracker(f);
  struct fake *fk = fake_start_fx(f, id, evil.data, evil.len, data,
                                  sizeof(data), MANIFEST_CHUNK_LOG2_MIN, 1, 1);
  fx_mkdir(f, "case");
  fx_mkdir(f, "case/out");
  fx_path(f, opath, sizeof(opath), "case/out");
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", id_text, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, "-o", opath, NULL);
  int st = fx_wait_exit(dl, 30000);
  assert_true(st != 0);
  assert_true(atomic_load(&fk->parts) > 0);
  if (proc_each_line(dl, 1, error_line_names, (void *)"manifest") == 0) {
    fail_msg("no \"shoal-peer: error:\" line naming the manifest");
  }
  char msg[1024];
  error_message(dl, msg, sizeof(msg));
  assert_true(strstr(msg, "manifest") != NULL ||
              strstr(msg, "Manifest") != NULL);
  /* Nothing outside the download folder, and nothing of the content in
   * it. */
  char p[PROC_PATH_MAX];
  fx_path(f, p, sizeof(p), "case/x");
  assert_false(fx_exists(p));
  fx_path(f, p, sizeof(p), "x");
  assert_false(fx_exists(p));
  struct tree t = {0};
  fx_path(f, p, sizeof(p), "case");
  tree_walk(&t, p, "");
  for (size_t i = 0; i < t.n; i++) {
    if (strcmp(t.e[i].path, "out") != 0 &&
        strncmp(t.e[i].path, "out/evil", 8) != 0) {
      char extra[512];
      snprintf(extra, sizeof(extra), "%s", t.e[i].path);
      free(t.e);
      fail_msg("unexpected %s after a hostile manifest", extra);
    }
    if (strncmp(t.e[i].path, "out/evil", 8) == 0 && t.e[i].type == 'f') {
      fail_msg("a file was written for a hostile manifest: %s", t.e[i].path);
    }
  }
  free(t.e);
  fx_assert_json_output(dl);
  buf_free(&good);
  buf_free(&evil);
  identity_close(&pub);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* 8. Client-server mode. */

static void client_server_mode_uploads_only_from_the_publisher(void **state) {
  struct fx *f = *state;
  enum { N = 3 };
  struct swarm w;
  char line[FX_LINE_CAP];

  swarm_seed(f, &w, "cs.bin", 2 * FX_MiB, 9, NULL, NULL);
  swarm_get(f, &w, N, "--mode", "cs", NULL);
  for (int i = 0; i < N; i++) {
    fx_expect_exit(w.dl[i], FX_COMPLETE_MS, 0);
    swarm_assert_copy(f, &w, i);
    assert_true(
        proc_find_event(w.dl[i], "stats", NULL, NULL, 1, line, sizeof(line)));
    assert_int_equal(fx_u64(line, "uploaded"), 0);
    assert_true(fx_u64(line, "downloaded") >= w.size);
    fx_assert_json_output(w.dl[i]);
  }
  fx_stop_peer(w.seed, line);
  assert_true(fx_u64(line, "uploaded") >= (uint64_t)N * w.size);
  free(w.data);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* The command line. */

static void expect_usage_error(struct fx *f, struct proc *p, const char *flag) {
  (void)f;
  fx_expect_exit(p, FX_EXIT_MS, 2);
  char first[FX_LINE_CAP];
  first[0] = '\0';
  FILE *e = fopen(p->err_path, "r");
  assert_non_null(e);
  if (fgets(first, sizeof(first), e) == NULL) {
    first[0] = '\0';
  }
  fclose(e);
  if (strncmp(first, "shoal-peer: ", 12) != 0) {
    fail_msg("%s: stderr does not start with \"shoal-peer: \": %s", p->name,
             first);
  }
  if (flag != NULL && !proc_output_has(p, 1, flag)) {
    fail_msg("%s: the message does not name %s", p->name, flag);
  }
}

static void bad_usage_exits_2(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX];
  const char *link = "shoal:aaaa";
  fx_mkdir(f, "home");
  fx_path(f, home, sizeof(home), "home");
  expect_usage_error(f,
                     fx_run(f, "unknown-flag", "get", link, "--frobnicate",
                            "--home", home, NULL),
                     "--frobnicate");
  expect_usage_error(f,
                     fx_run(f, "bad-mode", "share", home, "--tracker",
                            "127.0.0.1:9", "--mode", "xyz", "--home", home,
                            NULL),
                     "--mode");
  expect_usage_error(f,
                     fx_run(f, "bad-rate", "get", link, "--upload-rate", "10X",
                            "--home", home, NULL),
                     "--upload-rate");
  expect_usage_error(f,
                     fx_run(f, "bad-max-peers", "get", link, "--max-peers", "0",
                            "--home", home, NULL),
                     "--max-peers");
  expect_usage_error(f, fx_run(f, "no-command", "--home", home, NULL), NULL);
  expect_usage_error(
      f, fx_run(f, "unknown-command", "frobnicate", "--home", home, NULL),
      "frobnicate");
  fx_finish(f);
}

/* Writes into link a link to content nobody has: a random content ID and
 * tracker key, the name and size given, and one tracker, 127.0.0.1:port. */
static void made_up_link(const char *name, uint64_t size, uint16_t port,
                         char link[LINK_MAX_CHARS + 1]) {
  struct share_link l;
  memset(&l, 0, sizeof(l));
  randombytes_buf(l.id, sizeof(l.id));
  snprintf(l.name, sizeof(l.name), "%s", name);
  l.size = size;
  l.tracker_count = 1;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host), "127.0.0.1");
  l.trackers[0].port = port;
  randombytes_buf(l.trackers[0].key, sizeof(l.trackers[0].key));
  l.trackers[0].has_key = 1;
  assert_true(link_format(&l, link, LINK_MAX_CHARS + 1) > 0);
}

static void malformed_link_is_refused(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX], out[PROC_PATH_MAX], link[LINK_MAX_CHARS + 1];
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  fx_path(f, home, sizeof(home), "home");
  /* A malformed argument is a usage error: exit status 2. */
  struct proc *p = fx_run(f, "garbage", "get", "shoal:not-a-link", "-o", out,
                          "--home", home, NULL);
  int st = fx_wait_exit(p, FX_EXIT_MS);
  assert_int_equal(st, 2);
  assert_true(proc_output_has(p, 1, "link"));

  /* A well-formed link with one character of its content ID changed. */
  made_up_link("file.bin", 10, 9, link);
  char *c = link + strlen(LINK_SCHEME) + 3;
  *c = *c == 'a' ? 'b' : 'a';
  p = fx_run(f, "typo", "get", link, "-o", out, "--home", home, NULL);
  st = fx_wait_exit(p, FX_EXIT_MS);
  assert_int_equal(st, 2);
  assert_true(proc_output_has(p, 1, "link"));
  fx_finish(f);
}

static void unreachable_tracker_fails_in_time(void **state) {
  struct fx *f = *state;
  char out[PROC_PATH_MAX], link[LINK_MAX_CHARS + 1];
  /* A port nobody listens on: bound, then closed. */
  int port;
  int fd = pc_listen(&port);
  assert_true(fd >= 0);
  close(fd);
  made_up_link("nowhere.bin", 1000, (uint16_t)port, link);
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  uint64_t t0 = proc_now_ms();
  struct proc *p = fx_peer(f, "dl", "dl", "get", link, "-o", out, NULL);
  int st = fx_wait_exit(p, 30000);
  print_message("gave up after %llu ms\n",
                (unsigned long long)(proc_now_ms() - t0));
  assert_true(st != 0);
  if (proc_each_line(p, 1, error_line_names, (void *)"tracker") == 0) {
    fail_msg("no \"shoal-peer: error:\" line naming the tracker");
  }
  fx_finish(f);
}

static int is_id_line(const char *line, void *arg) {
  char *out = arg;
  uint8_t pk[32];
  if (strlen(line) == TEXTID_CHARS &&
      textid_decode(TEXTID_KEY, line, TEXTID_CHARS, pk) == 0) {
    snprintf(out, TEXTID_STRLEN, "%s", line);
    return 1;
  }
  return 0;
}

static void id_prints_the_peer_id(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX], key[PROC_PATH_MAX], line[FX_LINE_CAP];
  char first[TEXTID_STRLEN] = "", second[TEXTID_STRLEN] = "";
  char json[TEXTID_STRLEN + 8];
  /* A home that does not exist yet: the first run makes it and a key. */
  fx_path(f, home, sizeof(home), "fresh/home");
  fx_mkdir(f, "fresh");
  struct proc *p = fx_run(f, "id1", "id", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_each_line(p, 0, is_id_line, first), 1);
  p = fx_run(f, "id2", "id", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_each_line(p, 0, is_id_line, second), 1);
  assert_string_equal(first, second);
  p = fx_run(f, "id3", "id", "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_true(proc_find_event(p, "id", NULL, NULL, 0, line, sizeof(line)));
  assert_int_equal(jsonl_str(line, "id", json, sizeof(json)), 0);
  assert_string_equal(json, first);
  fx_assert_json_output(p);
  struct stat st;
  tu_path(key, sizeof(key), home, "identity.key");
  assert_int_equal(stat(key, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  fx_finish(f);
}

static void get_refuses_an_existing_name(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], there[PROC_PATH_MAX];
  uint8_t mine[1000];
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/taken.bin", 64 * FX_KiB, 10, NULL, &sh);
  tu_fill(mine, sizeof(mine), 11);
  tu_write_file(f->dir, "out/taken.bin", mine, sizeof(mine));
  fx_path(f, out, sizeof(out), "out");
  fx_path(f, there, sizeof(there), "out/taken.bin");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 1);
  assert_true(proc_output_has(dl, 1, "exist"));
  fx_assert_file_is(there, mine, sizeof(mine));
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Search, links that do not match, keys that do not match */

static int names_report(const char *line, void *arg) {
  char name[300];
  (void)arg;
  return jsonl_str(line, "name", name, sizeof(name)) == 0 &&
         strcmp(name, "report-2024.bin") == 0;
}

static void search_finds_a_shared_file(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], home[PROC_PATH_MAX];
  char line[FX_LINE_CAP], link[LINK_MAX_CHARS + 1], got[PROC_PATH_MAX];
  uint8_t *data = NULL;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_write_random(f, "src/report-2024.bin", 200 * FX_KiB, 21, &data);
  fx_path(f, out, sizeof(out), "out");
  fx_path(f, home, sizeof(home), "home-search");
  struct proc *seed = fx_seed(f, "src/report-2024.bin", &sh, NULL);

  /* Case-insensitive words; the result carries a link that works. */
  struct proc *q = fx_run(f, "search", "search", "REPORT", "2024", "--tracker",
                          f->tracker_addr, "--home", home, "--json", NULL);
  fx_expect_exit(q, FX_EXIT_MS, 0);
  assert_true(
      proc_find_event(q, "search", names_report, NULL, 0, line, FX_LINE_CAP));
  assert_int_equal(fx_u64(line, "size"), 200 * FX_KiB);
  assert_int_equal(fx_u64(line, "seeders"), 1);
  assert_int_equal(jsonl_str(line, "link", link, sizeof(link)), 0);
  assert_string_equal(link, sh.link);

  /* Every word must match: no result, still exit 0. */
  q = fx_run(f, "nomatch", "search", "report", "1999", "--tracker",
             f->tracker_addr, "--home", home, "--json", NULL);
  fx_expect_exit(q, FX_EXIT_MS, 0);
  assert_int_equal(proc_count_event(q, "search", NULL, NULL), 0);

  struct proc *dl = fx_peer(f, "dl", "dl", "get", link, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_path(f, got, sizeof(got), "out/report-2024.bin");
  fx_assert_file_is(got, data, 200 * FX_KiB);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

/* Shares DIR/src/NAME (size pseudo-random bytes) and writes into bad
 * (LINK_MAX_CHARS + 1 bytes) a link to it that lies about one thing: its
 * name (lie_name) or, when lie_name is NULL, its size (0). Returns the
 * seeder; out receives DIR/out. */
static struct proc *share_mislinked(struct fx *f, const char *name, size_t size,
                                    uint64_t seed, const char *lie_name,
                                    struct fx_shared *sh, char *bad,
                                    char *out) {
  char rel[300];
  struct share_link l;
  const char *why = NULL;
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  snprintf(rel, sizeof(rel), "src/%s", name);
  fx_path(f, out, PROC_PATH_MAX, "out");
  struct proc *seeder = fx_share_file(f, rel, size, seed, NULL, sh);
  assert_int_equal(link_parse(sh->link, strlen(sh->link), &l, &why), 0);
  if (lie_name != NULL) {
    snprintf(l.name, sizeof(l.name), "%s", lie_name);
  } else {
    l.size = 0;
  }
  assert_true(link_format(&l, bad, LINK_MAX_CHARS + 1) > 0);
  return seeder;
}

static void link_that_does_not_match_the_manifest_fails(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], bad[LINK_MAX_CHARS + 1];
  char where[PROC_PATH_MAX];
  fx_start_tracker(f);
  /* The right content ID under another name. */
  struct proc *seed = share_mislinked(f, "real-name.bin", 64 * FX_KiB, 22,
                                      "other-name.bin", &sh, bad, out);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", bad, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 1);
  assert_true(proc_output_has(dl, 1, "does not match the link"));
  fx_path(f, where, sizeof(where), "out/other-name.bin");
  assert_false(fx_exists(where));
  fx_path(f, where, sizeof(where), "out/real-name.bin");
  assert_false(fx_exists(where));
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* A get that fails after it announced tells the tracker it stopped, so the
 * tracker does not send others to a peer that is gone. The tracker's
 * interval is long here: only "stopped" can take the peer off the list
 * within the test's wait. */
/* A peer that stopped leaves the tracker's list of content within
 * FX_MSG_MS: with a long tracker interval, only its "stopped" takes it
 * off. what names it in the failure. */
static void assert_not_listed_soon(struct fx *f, const uint8_t content[32],
                                   const uint8_t pk[32], const char *what) {
  uint64_t deadline = proc_now_ms() + FX_MSG_MS;
  int listed = 1;
  while (listed && proc_now_ms() < deadline) {
    listed = fx_tracker_lists(f, content, pk, NULL);
    if (listed) {
      proc_pause_ms(100);
    }
  }
  if (listed) {
    fail_msg("the tracker still lists %s %d ms later", what, FX_MSG_MS);
  }
}

static void failed_get_leaves_the_tracker_at_once(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], bad[LINK_MAX_CHARS + 1];
  uint8_t dl_pk[32];
  const char *extra[] = {"--interval", "60", NULL};
  fx_start_tracker_with(f, extra);
  /* The link names another file: the get announces "started", looks the
   * content up, fetches the manifest and only then fails. */
  struct proc *seed = share_mislinked(f, "ghost.bin", 64 * FX_KiB, 31,
                                      "not-ghost.bin", &sh, bad, out);
  fx_peer_id(f, "dl", dl_pk);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", bad, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 1);
  assert_true(proc_output_has(dl, 1, "does not match the link"));
  assert_not_listed_soon(f, sh.content, dl_pk, "the failed get");
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Shared files that change under the seeder. */

static int says_no_source(const char *line, void *arg) {
  char msg[1024];
  (void)arg;
  return jsonl_str(line, "message", msg, sizeof(msg)) == 0 &&
         strstr(msg, "no complete source") != NULL;
}

static int error_says(const char *line, void *arg) {
  char msg[2048], code[64];
  return jsonl_str(line, "message", msg, sizeof(msg)) == 0 &&
         jsonl_str(line, "code", code, sizeof(code)) == 0 &&
         strcmp(code, "SHOAL_ECHANGED") == 0 &&
         strstr(msg, (const char *)arg) != NULL;
}

/* A shared file grows while a peer downloads it: the seeder says what
 * changed and what to do, stops serving and announcing it, and the
 * downloader, left with no complete source, says so. */
static void changed_shared_file_stops_being_seeded(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char src[PROC_PATH_MAX], out[PROC_PATH_MAX], line[FX_LINE_CAP];
  uint8_t seed_pk[32];
  const char *extra[] = {"--interval", "60", NULL};
  fx_start_tracker_with(f, extra);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_write_random(f, "src/grows.bin", 2 * FX_MiB, 41, NULL);
  fx_path(f, src, sizeof(src), "src/grows.bin");
  fx_path(f, out, sizeof(out), "out");
  fx_peer_id(f, "s", seed_pk);
  struct proc *seed = fx_seed(f, "src/grows.bin", &sh, NULL);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out,
                            "--download-rate", "256k", NULL);
  fx_wait_event(dl, "progress", fx_have_some, NULL, FX_COMPLETE_MS, line);
  FILE *fp = fopen(src, "ab");
  assert_non_null(fp);
  assert_int_equal(fputs("one more line\n", fp) >= 0, 1);
  assert_int_equal(fclose(fp), 0);
  fx_wait_event(seed, "error", error_says, "its size went from 2097152 to",
                FX_START_MS, line);
  assert_non_null(strstr(line, "share it again"));
  /* It served nothing else: the share ends, and says it lost a content. */
  fx_expect_exit(seed, FX_EXIT_MS, 1);
  assert_not_listed_soon(f, sh.content, seed_pk,
                         "the seeder of a changed file");
  fx_wait_event(dl, "warning", says_no_source, NULL, 20000, line);
  proc_signal(dl, SIGTERM);
  fx_expect_exit(dl, FX_EXIT_MS, 128 + SIGTERM);
  fx_finish(f);
}

/* A shared file rewritten in place with its size and modification time
 * kept: the first read of a chunk hashes it, so not one byte of it is
 * served. */
static void file_rewritten_in_place_is_not_served(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char src[PROC_PATH_MAX], out[PROC_PATH_MAX], line[FX_LINE_CAP];
  struct stat st;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_write_random(f, "src/same-time.bin", FX_MiB, 42, NULL);
  fx_path(f, src, sizeof(src), "src/same-time.bin");
  fx_path(f, out, sizeof(out), "out");
  struct proc *seed = fx_seed(f, "src/same-time.bin", &sh, NULL);
  assert_int_equal(stat(src, &st), 0);
  fx_write_random(f, "src/same-time.bin", FX_MiB, 43, NULL);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  assert_int_equal(utimensat(AT_FDCWD, src, times, 0), 0);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out, NULL);
  fx_wait_event(seed, "error", error_says, "no longer matches its hash",
                FX_START_MS, line);
  fx_expect_exit(seed, FX_EXIT_MS, 1);
  fx_wait_event(dl, "warning", says_no_source, NULL, 20000, line);
  /* Nothing the seeder read was sent: the downloader has no bad chunk. */
  assert_false(proc_output_has(dl, 1, "failed its hash"));
  proc_signal(dl, SIGTERM);
  fx_expect_exit(dl, FX_EXIT_MS, 128 + SIGTERM);
  fx_finish(f);
}

/* Nobody downloads, the file is touched: the seeder notices by itself. */
static void touched_shared_file_is_noticed_while_idle(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char src[PROC_PATH_MAX], line[FX_LINE_CAP];
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/touched.bin", 100 * FX_KiB, 44, NULL, &sh);
  fx_path(f, src, sizeof(src), "src/touched.bin");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  assert_int_equal(utimensat(AT_FDCWD, src, times, 0), 0);
  fx_wait_event(seed, "error", error_says, "same size, new time", 20000, line);
  fx_expect_exit(seed, FX_EXIT_MS, 1);
  fx_finish(f);
}

/* A link says size=0 for a content that is not empty: the size is part of
 * what the link promises, 0 included. */
static void link_of_size_zero_for_a_full_content_fails(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], bad[LINK_MAX_CHARS + 1];
  char where[PROC_PATH_MAX];
  fx_start_tracker(f);
  struct proc *seed =
      share_mislinked(f, "not-empty.bin", 10 * FX_KiB, 32, NULL, &sh, bad, out);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", bad, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 1);
  assert_true(proc_output_has(dl, 1, "does not match the link"));
  fx_path(f, where, sizeof(where), "out/not-empty.bin");
  assert_false(fx_exists(where));
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

static void peer_with_another_key_than_listed_is_dropped(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], got[PROC_PATH_MAX];
  uint8_t *data = NULL;
  struct identity liar;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_write_random(f, "src/keyed.bin", 256 * FX_KiB, 23, &data);
  fx_path(f, out, sizeof(out), "out");
  struct proc *seed = fx_seed(f, "src/keyed.bin", NULL, NULL);
  int port = fx_listening_port(seed);
  fx_wait_shared(seed, &sh);

  /* The tracker also lists the seeder's address under a key that is not
   * the seeder's: a session dialled for that key must be dropped. */
  identity_generate(&liar);
  fx_announce(f, &liar, sh.content, (uint16_t)port, TMSG_ROLE_SEEDING);
  identity_close(&liar);

  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_path(f, got, sizeof(got), "out/keyed.bin");
  fx_assert_file_is(got, data, 256 * FX_KiB);
  /* The download dialled both listings; the false one was refused. */
  assert_true(proc_output_has(dl, 1, shoal_strerror(SHOAL_EWRONGKEY)));
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

static int names_second(const char *line, void *arg) {
  char name[300];
  (void)arg;
  return jsonl_str(line, "name", name, sizeof(name)) == 0 &&
         strcmp(name, "second.bin") == 0;
}

static void one_get_fetches_two_contents(void **state) {
  struct fx *f = *state;
  struct fx_shared first;
  char a[PROC_PATH_MAX], b[PROC_PATH_MAX], out[PROC_PATH_MAX];
  char got[PROC_PATH_MAX], line[FX_LINE_CAP], second[LINK_MAX_CHARS + 1];
  uint8_t *da = NULL, *db = NULL;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_write_random(f, "src/first.bin", 300 * FX_KiB, 24, &da);
  fx_write_random(f, "src/second.bin", 500 * FX_KiB, 25, &db);
  fx_path(f, a, sizeof(a), "src/first.bin");
  fx_path(f, b, sizeof(b), "src/second.bin");
  fx_path(f, out, sizeof(out), "out");
  /* One share process, two paths: two links. */
  struct proc *seed =
      fx_peer(f, "seeder", "s", "share", a, b, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, NULL);
  fx_wait_shared(seed, &first);
  fx_wait_event(seed, "shared", names_second, NULL, FX_START_MS, line);
  assert_int_equal(jsonl_str(line, "link", second, sizeof(second)), 0);
  /* One get process, both links: both arrive, then it exits 0. */
  struct proc *dl =
      fx_peer(f, "dl", "dl", "get", first.link, second, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  assert_int_equal(proc_count_event(dl, "complete", NULL, NULL), 2);
  fx_path(f, got, sizeof(got), "out/first.bin");
  fx_assert_file_is(got, da, 300 * FX_KiB);
  fx_path(f, got, sizeof(got), "out/second.bin");
  fx_assert_file_is(got, db, 500 * FX_KiB);
  fx_stop_peer(seed, NULL);
  free(da);
  free(db);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_peer") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(bad_usage_exits_2, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(search_finds_a_shared_file, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(one_get_fetches_two_contents, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(
          link_that_does_not_match_the_manifest_fails, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(
          peer_with_another_key_than_listed_is_dropped, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(malformed_link_is_refused, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(id_prints_the_peer_id, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(
          six_downloaders_trade_and_get_identical_copies, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          six_downloaders_trade_with_crypto_on_the_pool, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(
          seeder_leaves_when_swarm_holds_every_chunk, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(killed_download_resumes, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(corrupt_peer_is_banned, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(forged_frames_end_the_session_on_the_pool,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(forged_frames_end_the_session_on_the_loop,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(changed_signature_bans_the_sender,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(large_manifest_comes_from_several_peers,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(upload_limit_counts_the_manifest,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(get_stopped_mid_chunk_exits_cleanly,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(haves_tell_a_peer_of_every_chunk_once,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(haves_tell_a_seeder_of_every_chunk_once,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(tracker_stop_after_peers_met, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(folder_tree_arrives_exactly, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(
          folder_keeps_empty_folders_modes_and_times, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(hostile_input_leaves_seeder_serving,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(version_1_manifest_is_named, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(hostile_manifest_paths_fail_the_get,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(
          client_server_mode_uploads_only_from_the_publisher, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          link_of_size_zero_for_a_full_content_fails, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(failed_get_leaves_the_tracker_at_once,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(changed_shared_file_stops_being_seeded,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(file_rewritten_in_place_is_not_served,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(stored_version_2_manifest_is_named,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(touched_shared_file_is_noticed_while_idle,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(get_refuses_an_existing_name, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(unreachable_tracker_fails_in_time,
                                      fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
