/* A fake peer for integration tests and benchmarks (fake.h). */
#include "tests/lib/fake.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/pwire.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"

/* How a chunk was announced (have_seen). */
#define FAKE_SEEN_MAP 1u
#define FAKE_SEEN_HAVE 2u

static int fake_announce(struct fake *fk) {
  struct buf msg;
  struct buf reply;
  const uint8_t *p;
  size_t n;
  uint8_t c[1][32];
  uint8_t role = fk->holds_all ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING;
  int rc = -1;
  int fd = tc_connect(fk->tracker->port);
  if (fd < 0) {
    return -1;
  }
  memcpy(c[0], fk->content, 32);
  buf_init(&msg, FRAME_MAX_DEFAULT);
  buf_init(&reply, FRAME_MAX_DEFAULT);
  tc_seal_announce(&msg, &fk->id, clock_wall_ms(), fk->announce_seq++,
                   (uint16_t)fk->port, TMSG_EVENT_STARTED,
                   (const uint8_t(*)[32])c, &role, 1);
  if (tc_send_frame(fd, msg.data, msg.len) == 0 &&
      tc_recv_frame(fd, &reply, 3000) == 0 &&
      tc_open_reply(fk->tracker, &reply, &p, &n) == TMSG_ANNOUNCE_OK) {
    rc = 0;
  }
  close(fd);
  buf_free(&msg);
  buf_free(&reply);
  return rc;
}

/* A have-map of chunks bits, the first held of them set. */
static int fake_send_have_map(struct pclient *c, uint32_t held,
                              uint32_t chunks) {
  size_t len = (chunks + 7u) / 8u;
  struct pwire_msg m;
  uint8_t *map;
  int err;
  if (len == 0 || held > chunks) {
    return SHOAL_EINVAL;
  }
  map = calloc(1, len);
  if (map == NULL) {
    return SHOAL_ENOMEM;
  }
  memset(map, 0xff, held / 8u);
  if (held % 8u != 0) {
    map[held / 8u] = (uint8_t)(0xffu << (8u - held % 8u));
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE_MAP;
  m.data = map;
  m.data_len = len;
  err = pc_send(c, &m);
  free(map);
  return err;
}

static void fake_seen(struct fake *fk, uint32_t chunk, uint8_t how) {
  if (chunk >= fk->chunks ||
      (how == FAKE_SEEN_HAVE && (fk->have_seen[chunk] & FAKE_SEEN_HAVE))) {
    atomic_fetch_add(&fk->have_bad, 1);
    return;
  }
  if (fk->have_seen[chunk] == 0) {
    atomic_fetch_add(&fk->have_chunks, 1);
  }
  fk->have_seen[chunk] |= how;
}

static void fake_note(struct fake *fk, const struct pwire_msg *m) {
  if (m->type == PWIRE_HAVE_MAP) {
    for (uint32_t i = 0; i < fk->chunks && i / 8 < m->data_len; i++) {
      if (m->data[i / 8] & (0x80u >> (i % 8))) {
        fake_seen(fk, i, FAKE_SEEN_MAP);
      }
    }
    return;
  }
  size_t n = m->length; /* the chunks pwire_decode counted */
  struct pwire_have_iter it;
  uint32_t chunk;
  uint64_t now = proc_now_ms();
  unsigned k = atomic_fetch_add(&fk->have_msgs, 1);
  if (k == 0) {
    fk->have_first_ms = now;
  }
  if (k < FAKE_HAVES_KEPT) {
    fk->have_at[k] = now;
    fk->have_size[k] = (uint32_t)n;
  }
  fk->have_last_ms = now;
  fk->have_full += n == NODE_HAVE_BATCH;
  if (n == 0 || n > NODE_HAVE_BATCH) {
    atomic_fetch_add(&fk->have_bad, 1);
  }
  pwire_have_begin(&it, m);
  while (pwire_have_next(&it, &chunk)) {
    fake_seen(fk, chunk, FAKE_SEEN_HAVE);
  }
}

/* Handles one readable event on a session. Returns 0 to keep it. */
static int fake_serve(struct fake *fk, struct pclient *c) {
  struct pwire_msg m;
  struct pwire_msg out;
  int err;

  if (!c->session_ready) {
    err = pc_handshake(c, fk->content, (uint16_t)fk->port,
                       fk->holds_all ? PWIRE_HELLO_SEEDER : 0, 3000);
    if (err != 0) {
      return err;
    }
    return fake_send_have_map(c, fk->holds_all ? fk->chunks : 0, fk->chunks);
  }
  err = pc_recv(c, &m, 3000);
  if (err != 0) {
    return err;
  }
  memset(&out, 0, sizeof(out));
  switch (m.type) {
  case PWIRE_MANIFEST_REQ: {
    if (m.offset >= fk->manifest_len) {
      return SHOAL_EINVAL;
    }
    size_t len = fk->manifest_len - m.offset;
    if (len > m.length) {
      len = m.length;
    }
    out.type = PWIRE_MANIFEST_PART;
    out.total = (uint32_t)fk->manifest_len;
    out.offset = m.offset;
    out.data = fk->manifest + m.offset;
    out.data_len = len;
    atomic_fetch_add(&fk->parts, 1);
    return pc_send(c, &out);
  }
  case PWIRE_INTERESTED:
    if (atomic_load(&fk->choking)) {
      return 0;
    }
    out.type = PWIRE_UNCHOKE;
    return pc_send(c, &out);
  case PWIRE_REQUEST: {
    uint64_t chunk_size = (uint64_t)1 << fk->chunk_log2;
    uint64_t at = (uint64_t)m.chunk * chunk_size + m.offset;
    uint8_t block[PWIRE_BLOCK_BYTES];
    if (m.chunk >= fk->chunks || m.length > sizeof(block) ||
        at + m.length > fk->data_len) {
      return SHOAL_EINVAL;
    }
    /* Every byte changed: the block can never match its chunk's hash
     * (unless the fake is honest). */
    uint8_t flip = atomic_load(&fk->honest) ? 0 : 0xa5u;
    for (uint32_t i = 0; i < m.length; i++) {
      block[i] = (uint8_t)(fk->data[at + i] ^ flip);
    }
    out.type = PWIRE_DATA;
    out.chunk = m.chunk;
    out.offset = m.offset;
    out.data = block;
    out.data_len = m.length;
    atomic_fetch_add(&fk->blocks, 1);
    if (atomic_load(&fk->forging)) {
      /* Inside the block: the head still reads as this block's. */
      return pc_send_forged(c, &out, PWIRE_DATA_HEAD_BYTES + m.length / 2);
    }
    return pc_send(c, &out);
  }
  case PWIRE_HAVE_MAP:
  case PWIRE_HAVE:
    fake_note(fk, &m);
    return 0;
  default:
    return 0; /* keepalive, cancel, not interested: nothing to do */
  }
}

static void *fake_main(void *arg) {
  struct fake *fk = arg;
  struct pclient sess[FAKE_MAX_SESSIONS];
  int used[FAKE_MAX_SESSIONS] = {0};
  uint64_t next_announce = proc_now_ms() + 1000;

  while (!atomic_load(&fk->stop) && proc_now_ms() < fk->deadline_ms) {
    struct pollfd pf[FAKE_MAX_SESSIONS + 1];
    int idx[FAKE_MAX_SESSIONS + 1];
    int n = 0;
    /* Registrations last interval + grace (3 s with --interval 2). */
    if (proc_now_ms() >= next_announce) {
      fake_announce(fk);
      next_announce = proc_now_ms() + 1000;
    }
    pf[n].fd = fk->lfd;
    pf[n].events = POLLIN;
    idx[n++] = -1;
    for (int i = 0; i < FAKE_MAX_SESSIONS; i++) {
      if (used[i]) {
        pf[n].fd = sess[i].fd;
        pf[n].events = POLLIN;
        idx[n++] = i;
      }
    }
    if (poll(pf, (nfds_t)n, 100) <= 0) {
      continue;
    }
    for (int k = 0; k < n; k++) {
      if (pf[k].revents == 0) {
        continue;
      }
      if (idx[k] < 0) {
        int slot = -1;
        for (int i = 0; i < FAKE_MAX_SESSIONS && slot < 0; i++) {
          slot = used[i] ? -1 : i;
        }
        struct pclient tmp;
        if (pc_init(&tmp, &fk->id) != 0) {
          continue;
        }
        if (pc_accept(&tmp, fk->lfd, 0) != 0 || slot < 0) {
          pc_close(&tmp);
          continue;
        }
        /* One hello sequence for every session of this identity: the
         * peer's replay guard refuses a number it saw before. */
        tmp.seq = fk->hello_seq++;
        sess[slot] = tmp;
        used[slot] = 1;
        continue;
      }
      int i = idx[k];
      if (fake_serve(fk, &sess[i]) != 0) {
        if (sess[i].session_ready) {
          atomic_fetch_add(&fk->ended, 1);
        }
        pc_close(&sess[i]);
        used[i] = 0;
      }
    }
  }
  for (int i = 0; i < FAKE_MAX_SESSIONS; i++) {
    if (used[i]) {
      pc_close(&sess[i]);
    }
  }
  return NULL;
}

struct fake *fake_start(const struct tc_tracker *tracker,
                        const uint8_t content[32], const uint8_t *manifest,
                        size_t manifest_len, const uint8_t *data,
                        uint64_t data_len, unsigned chunk_log2, uint32_t chunks,
                        int holds_all) {
  struct fake *fk = calloc(1, sizeof(*fk));
  if (fk == NULL) {
    return NULL;
  }
  fk->lfd = -1;
  identity_generate(&fk->id);
  memcpy(fk->content, content, 32);
  fk->manifest = malloc(manifest_len > 0 ? manifest_len : 1);
  fk->data = malloc(data_len > 0 ? data_len : 1);
  fk->have_seen = calloc(chunks > 0 ? chunks : 1, 1);
  if (fk->manifest == NULL || fk->data == NULL || fk->have_seen == NULL) {
    goto fail;
  }
  memcpy(fk->manifest, manifest, manifest_len);
  memcpy(fk->data, data, data_len);
  fk->manifest_len = manifest_len;
  fk->data_len = data_len;
  fk->chunk_log2 = chunk_log2;
  fk->chunks = chunks;
  fk->holds_all = holds_all;
  fk->tracker = tracker;
  fk->announce_seq = envelope_seq_start(clock_wall_ms());
  fk->hello_seq = fk->announce_seq;
  fk->deadline_ms = proc_now_ms() + FAKE_LIFE_MS;
  fk->lfd = pc_listen(&fk->port);
  if (fk->lfd < 0 || fake_announce(fk) != 0 ||
      pthread_create(&fk->th, NULL, fake_main, fk) != 0) {
    goto fail;
  }
  fk->running = 1;
  return fk;

fail:
  fake_stop(fk);
  return NULL;
}

/* Stops the thread: what it recorded is then the caller's to read. */
void fake_halt(struct fake *fk) {
  if (fk->running) {
    atomic_store(&fk->stop, 1);
    pthread_join(fk->th, NULL);
    fk->running = 0;
  }
}

void fake_stop(struct fake *fk) {
  if (fk == NULL) {
    return;
  }
  fake_halt(fk);
  if (fk->lfd >= 0) {
    close(fk->lfd);
    fk->lfd = -1;
  }
  identity_close(&fk->id);
  free(fk->have_seen);
  free(fk->manifest);
  free(fk->data);
  free(fk);
}
