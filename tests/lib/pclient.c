#include "tests/lib/pclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int pc_init(struct pclient *c, const struct identity *id) {
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  c->id = *id;
  c->seq = envelope_seq_start(clock_wall_ms());
  pwire_eph_generate(&c->eph);
  buf_init(&c->frame, FRAME_MAX_LIMIT);
  c->plain = malloc(PWIRE_MAX_PLAIN);
  return c->plain != NULL ? 0 : SHOAL_ENOMEM;
}

void pc_close(struct pclient *c) {
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  buf_free(&c->frame);
  free(c->plain);
  c->plain = NULL;
  identity_close(&c->id);
  pwire_eph_close(&c->eph);
  pwire_session_close(&c->ps);
  c->session_ready = 0;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void loopback(struct sockaddr_in *sa, int port) {
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int pc_connect(struct pclient *c, int port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -errno;
  }
  loopback(&sa, port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  nodelay(fd);
  c->fd = fd;
  c->initiator = 1;
  return 0;
}

int pc_listen(int *port) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0) {
    return -errno;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  loopback(&sa, 0);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

void pc_adopt(struct pclient *c, int fd) {
  nodelay(fd);
  c->fd = fd;
  c->initiator = 0;
}

int pc_accept(struct pclient *c, int lfd, int timeout_ms) {
  struct pollfd p = {lfd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0) {
    return -errno;
  }
  if (r == 0) {
    return SHOAL_ETIMEDOUT;
  }
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) {
    return -errno;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  pc_adopt(c, fd);
  return 0;
}

int pc_send_raw(struct pclient *c, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0) {
      return errno == EPIPE || errno == ECONNRESET ? UV_EOF : -errno;
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int pc_send_frame(struct pclient *c, const void *p, size_t n) {
  uint8_t hdr[FRAME_HEADER_BYTES];
  frame_header(hdr, n);
  int err = pc_send_raw(c, hdr, sizeof(hdr));
  return err == 0 ? pc_send_raw(c, p, n) : err;
}

/* Reads exactly n bytes before the deadline. */
static int read_exact(int fd, uint8_t *p, size_t n, uint64_t deadline) {
  while (n > 0) {
    uint64_t now = mono_ms();
    if (now >= deadline) {
      return SHOAL_ETIMEDOUT;
    }
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, (int)(deadline - now));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return -errno;
    }
    if (r == 0) {
      return SHOAL_ETIMEDOUT;
    }
    ssize_t got = recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got == 0 || (got < 0 && errno == ECONNRESET)) {
      return UV_EOF;
    }
    if (got < 0) {
      return -errno;
    }
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

int pc_recv_frame(struct pclient *c, size_t max, int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  uint8_t hdr[FRAME_HEADER_BYTES];
  buf_reset(&c->frame);
  int err = read_exact(c->fd, hdr, sizeof(hdr), deadline);
  if (err != 0) {
    return err;
  }
  uint32_t n = buf_be32(hdr);
  if (n == 0) {
    return SHOAL_EFORMAT;
  }
  if (n > max) {
    return SHOAL_ETOOBIG;
  }
  err = buf_reserve(&c->frame, n);
  if (err != 0) {
    return err;
  }
  err = read_exact(c->fd, c->frame.data, n, deadline);
  if (err != 0) {
    return err;
  }
  c->frame.len = n;
  return 0;
}

int pc_hello_bytes(struct pclient *c, struct buf *out,
                   const uint8_t content[32], uint16_t port, uint8_t flags,
                   uint64_t ts_ms) {
  struct pwire_hello h;
  memset(&h, 0, sizeof(h));
  memcpy(h.content, content, sizeof(h.content));
  memcpy(h.eph_pk, c->eph.pk, sizeof(h.eph_pk));
  h.port = port;
  h.flags = flags;
  return pwire_hello_seal(out, &c->id, ts_ms ? ts_ms : clock_wall_ms(),
                          c->seq++, &h);
}

int pc_send_hello(struct pclient *c, const uint8_t content[32], uint16_t port,
                  uint8_t flags) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  int err = pc_hello_bytes(c, &b, content, port, flags, 0);
  if (err == 0) {
    err = pc_send_frame(c, b.data, b.len);
  }
  buf_free(&b);
  return err;
}

int pc_recv_hello(struct pclient *c, int timeout_ms) {
  struct envelope_policy pol = {.cls = ENVELOPE_PEER_HELLO,
                                .now_ms = clock_wall_ms(),
                                .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
                                .expect_sender = NULL,
                                .guard = NULL};
  int err = pc_recv_frame(c, FRAME_MAX_DEFAULT, timeout_ms);
  if (err != 0) {
    return err;
  }
  err = pwire_hello_open(c->frame.data, c->frame.len, &pol, &c->theirs,
                         c->their_pk);
  if (err != 0) {
    return err;
  }
  err = pwire_session_init(&c->ps, &c->eph, c->theirs.eph_pk, c->initiator);
  if (err != 0) {
    return err;
  }
  c->session_ready = 1;
  return 0;
}

int pc_handshake(struct pclient *c, const uint8_t *content, uint16_t port,
                 uint8_t flags, int timeout_ms) {
  int err;
  if (c->initiator) {
    err = pc_send_hello(c, content, port, flags);
    return err == 0 ? pc_recv_hello(c, timeout_ms) : err;
  }
  err = pc_recv_hello(c, timeout_ms);
  if (err != 0) {
    return err;
  }
  if (content != NULL && memcmp(content, c->theirs.content, 32) != 0) {
    return SHOAL_EPROTO;
  }
  return pc_send_hello(c, c->theirs.content, port, flags);
}

int pc_send_plain(struct pclient *c, const void *plain, size_t len) {
  struct buf b;
  if (!c->session_ready) {
    return SHOAL_EPROTO;
  }
  buf_init(&b, FRAME_MAX_LIMIT);
  int err = pwire_seal(&c->ps, &b, plain, len);
  if (err == 0) {
    err = pc_send_frame(c, b.data, b.len);
  }
  buf_free(&b);
  return err;
}

int pc_send(struct pclient *c, const struct pwire_msg *m) {
  struct buf b;
  buf_init(&b, PWIRE_MAX_PLAIN);
  int err = pwire_encode(&b, m);
  if (err == 0) {
    err = pc_send_plain(c, b.data, b.len);
  }
  buf_free(&b);
  return err;
}

int pc_send_forged(struct pclient *c, const struct pwire_msg *m, size_t at) {
  struct buf plain, sealed;
  int err;
  if (!c->session_ready) {
    return SHOAL_EPROTO;
  }
  buf_init(&plain, PWIRE_MAX_PLAIN);
  buf_init(&sealed, FRAME_MAX_LIMIT);
  err = pwire_encode(&plain, m);
  if (err == 0) {
    err = pwire_seal(&c->ps, &sealed, plain.data, plain.len);
  }
  if (err == 0) {
    sealed.data[at < sealed.len ? at : sealed.len - 1] ^= 0x04;
    err = pc_send_frame(c, sealed.data, sealed.len);
  }
  buf_free(&plain);
  buf_free(&sealed);
  return err;
}

int pc_recv(struct pclient *c, struct pwire_msg *m, int timeout_ms) {
  memset(m, 0, sizeof(*m));
  if (!c->session_ready) {
    return SHOAL_EPROTO;
  }
  int err = pc_recv_frame(c, PWIRE_MAX_FRAME, timeout_ms);
  if (err != 0) {
    return err;
  }
  int n = pwire_open(&c->ps, c->frame.data, c->frame.len, c->plain,
                     PWIRE_MAX_PLAIN);
  if (n < 0) {
    return n;
  }
  return pwire_decode(c->plain, (size_t)n, m);
}

int pc_expect(struct pclient *c, uint8_t type, struct pwire_msg *m,
              int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  for (;;) {
    uint64_t now = mono_ms();
    if (now >= deadline) {
      return SHOAL_ETIMEDOUT;
    }
    int err = pc_recv(c, m, (int)(deadline - now));
    if (err != 0) {
      return err;
    }
    if (m->type == type) {
      return 0;
    }
  }
}

int pc_wait_closed(struct pclient *c, int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  uint8_t junk[4096];
  for (;;) {
    uint64_t now = mono_ms();
    if (now >= deadline) {
      return 0;
    }
    struct pollfd pf = {c->fd, POLLIN, 0};
    int r = poll(&pf, 1, (int)(deadline - now));
    if (r <= 0) {
      continue;
    }
    ssize_t got = recv(c->fd, junk, sizeof(junk), 0);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
      return 1;
    }
  }
}
