/* The tracker half of `make demo`, until the peer binary exists.
 *
 * Against a running shoal-tracker (port and key on the command line) it
 * plays five peers: the first builds the signed manifest of a generated
 * file, publishes it to the catalog and announces itself as its seeder;
 * the others announce as downloaders. Then it searches the catalog by
 * name, looks the swarm up as one of the downloaders, checks every reply's
 * signature against the tracker's key, and prints what a user would see:
 * the share link, the search result and the swarm.
 *
 * Usage: demo_tracker PORT TRACKER-KEY FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "tests/lib/tclient.h"

#define PEERS 5

static int die(const char *what, int err) {
  fprintf(stderr, "demo: %s: %s\n", what, shoal_strerror(err));
  return 1;
}

static int ask(struct tc_tracker *t, int fd, const struct buf *msg,
               struct buf *reply, int want_type, const uint8_t **p,
               size_t *n) {
  if (tc_send_frame(fd, msg->data, msg->len) != 0 ||
      tc_recv_frame(fd, reply, 5000) != 0) {
    fprintf(stderr, "demo: the tracker did not answer\n");
    return -1;
  }
  int type = tc_open_reply(t, reply, p, n);
  if (type < 0) {
    return die("reply does not verify against the tracker key", type);
  }
  if (type != want_type) {
    struct tmsg_error e;
    if (type == TMSG_ERROR && tmsg_error_decode(*p, *n, &e) == 0) {
      fprintf(stderr, "demo: tracker refused: %s\n", e.reason);
    }
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct tc_tracker t;
  struct identity peers[PEERS];
  struct manifest *m = NULL;
  struct buf msg, reply;
  const uint8_t *p;
  size_t n;
  int rc = 1;

  if (argc != 4 || sodium_init() < 0) {
    fprintf(stderr, "usage: demo_tracker PORT TRACKER-KEY FILE\n");
    return 2;
  }
  memset(&t, 0, sizeof(t));
  t.port = atoi(argv[1]);
  if (textid_decode(TEXTID_KEY, argv[2], strlen(argv[2]), t.key) != 0) {
    fprintf(stderr, "demo: bad tracker key\n");
    return 2;
  }
  for (int i = 0; i < PEERS; i++) {
    identity_generate(&peers[i]);
  }
  buf_init(&msg, 1 << 20);
  buf_init(&reply, 1 << 20);

  struct manifest_build_opts o = {.threads = 2};
  int err = manifest_build(argv[3], &peers[0], &o, &m);
  if (err != 0) {
    rc = die("manifest", err);
    goto out;
  }
  char cid[TEXTID_STRLEN];
  textid_encode(TEXTID_CONTENT, m->id, cid);
  printf("peer 1 hashed %s: %llu bytes, %u chunks of %u KiB\n", m->name,
         (unsigned long long)m->total_size, m->chunk_count,
         (1u << m->chunk_log2) >> 10);

  struct share_link link;
  char text[LINK_MAX_CHARS + 1];
  memset(&link, 0, sizeof(link));
  memcpy(link.id, m->id, sizeof(link.id));
  snprintf(link.name, sizeof(link.name), "%s", m->name);
  link.size = m->total_size;
  link.tracker_count = 1;
  snprintf(link.trackers[0].host, sizeof(link.trackers[0].host), "127.0.0.1");
  link.trackers[0].port = (uint16_t)t.port;
  memcpy(link.tracker_key, t.key, sizeof(link.tracker_key));
  if (link_format(&link, text, sizeof(text)) < 0) {
    fprintf(stderr, "demo: could not format the share link\n");
    goto out;
  }
  printf("share link: %s\n", text);

  int fd = tc_connect(t.port);
  if (fd < 0) {
    fprintf(stderr, "demo: cannot connect to the tracker\n");
    goto out;
  }
  uint64_t seq = envelope_seq_start(clock_wall_ms());
  struct tmsg_publish pub;
  memset(&pub, 0, sizeof(pub));
  memcpy(pub.content, m->id, sizeof(pub.content));
  pub.size = m->total_size;
  snprintf(pub.name, sizeof(pub.name), "%s", m->name);
  memcpy(pub.manifest_sig, m->signature, sizeof(pub.manifest_sig));
  tc_seal_publish(&msg, &peers[0], clock_wall_ms(), seq++, &pub);
  if (ask(&t, fd, &msg, &reply, TMSG_PUBLISH_OK, &p, &n) != 0) {
    goto out_fd;
  }
  printf("peer 1 published it to the catalog\n");

  for (int i = 0; i < PEERS; i++) {
    uint8_t role = i == 0 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING;
    tc_seal_announce(&msg, &peers[i], clock_wall_ms(), seq++,
                     (uint16_t)(7100 + i), TMSG_EVENT_STARTED,
                     (const uint8_t(*)[32])m->id, &role, 1);
    if (ask(&t, fd, &msg, &reply, TMSG_ANNOUNCE_OK, &p, &n) != 0) {
      goto out_fd;
    }
    struct tmsg_announce_ok ok;
    if (tmsg_announce_ok_decode(p, n, &ok) != 0) {
      goto out_fd;
    }
    char who[TEXTID_SHORT_CHARS + 1];
    textid_short(TEXTID_KEY, peers[i].pk, who);
    printf("peer %d (%s...) announced as %s; next announce in %u s\n", i + 1,
           who, i == 0 ? "seeder" : "downloader", ok.interval_s);
  }

  struct tmsg_search_ok found;
  char word[32];
  snprintf(word, sizeof(word), "%.*s", 8, m->name);
  tc_query_search(&msg, 1, word, 0, 10);
  if (ask(&t, fd, &msg, &reply, TMSG_SEARCH_OK, &p, &n) != 0 ||
      tmsg_search_ok_decode(p, n, &found) != 0 || found.count != 1) {
    fprintf(stderr, "demo: search did not find the file\n");
    goto out_fd;
  }
  printf("search \"%s\": %s, %llu bytes, %u seeder(s), %u downloader(s)\n",
         word, found.results[0].name,
         (unsigned long long)found.results[0].size, found.results[0].seeders,
         found.results[0].downloaders);

  struct tmsg_lookup_ok swarm;
  tc_query_lookup(&msg, 2, m->id, 50, TMSG_LOOKUP_SEEDERS_FIRST, peers[4].pk);
  if (ask(&t, fd, &msg, &reply, TMSG_LOOKUP_OK, &p, &n) != 0 ||
      tmsg_lookup_ok_decode(p, n, &swarm) != 0) {
    goto out_fd;
  }
  printf("peer 5 looked up the swarm: %u seeder(s), %u downloader(s); it "
         "may connect to:\n",
         swarm.seeders, swarm.downloaders);
  for (uint16_t i = 0; i < swarm.count; i++) {
    char who[TEXTID_SHORT_CHARS + 1];
    textid_short(TEXTID_KEY, swarm.peers[i].pk, who);
    printf("  %s...  127.0.0.1:%u  %s\n", who, swarm.peers[i].port,
           swarm.peers[i].seeding ? "seeder" : "downloader");
  }
  if (swarm.count != PEERS - 1 || !swarm.peers[0].seeding) {
    fprintf(stderr, "demo: the swarm is not what was announced\n");
    goto out_fd;
  }
  printf("every reply carried a valid signature of tracker %.12s...\n",
         argv[2]);
  rc = 0;

out_fd:
  close(fd);
out:
  manifest_free(m);
  buf_free(&msg);
  buf_free(&reply);
  for (int i = 0; i < PEERS; i++) {
    identity_close(&peers[i]);
  }
  return rc;
}
