/* A blocking peer-wire client for integration tests.
 *
 * It speaks the peer protocol of common/pwire.h by hand, one call per step,
 * so that a test can follow the rules exactly or break any one of them: a
 * forged hello, an oversize frame, a request for a chunk that does not
 * exist. It connects to a peer (the initiator, which sends its hello first)
 * or accepts a peer's connection on a listening socket (the acceptor, which
 * answers a verified hello with its own). Sockets are blocking and every
 * read waits with poll() until a deadline. Talks to 127.0.0.1 only.
 *
 * Results: 0 on success, SHOAL_ETIMEDOUT at a deadline, UV_EOF when the
 * other side closed (or reset) the connection, another negative code for a
 * frame or message that does not open or decode.
 */
#ifndef SHOAL_PCLIENT_H
#define SHOAL_PCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/identity.h"
#include "common/pwire.h"

struct pclient {
  int fd;
  int initiator;
  struct identity id; /* our identity (a copy, wiped by pc_close) */
  uint64_t seq;       /* next envelope sequence number */
  struct pwire_eph eph;
  struct pwire_session ps;
  int session_ready;
  struct pwire_hello theirs; /* the other side's hello once opened */
  uint8_t their_pk[IDENTITY_PK_BYTES];
  struct buf frame; /* the last frame body received */
  uint8_t *plain;   /* PWIRE_MAX_PLAIN bytes: the last message received */
};

/* Prepares c with a copy of id, a fresh ephemeral key and a sequence
 * number from the wall clock. No socket yet. Returns 0 or SHOAL_ENOMEM. */
int pc_init(struct pclient *c, const struct identity *id);
/* Closes the socket and wipes the keys; safe to call twice. */
void pc_close(struct pclient *c);

/* Connects to 127.0.0.1:port as the initiator. Returns 0 or -errno. */
int pc_connect(struct pclient *c, int port);
/* A listening socket on 127.0.0.1 with an ephemeral port (close-on-exec).
 * Returns the descriptor and stores the port, or -errno. */
int pc_listen(int *port);
/* Accepts one connection on lfd as the acceptor. Returns 0,
 * SHOAL_ETIMEDOUT or -errno. */
int pc_accept(struct pclient *c, int lfd, int timeout_ms);
/* Takes over an accepted descriptor as the acceptor. */
void pc_adopt(struct pclient *c, int fd);

/* Appends our sealed hello (not framed) to out, with the given content,
 * listen port and flags, timestamped ts_ms (0: now); uses the next
 * sequence number. Returns 0 or an error. */
int pc_hello_bytes(struct pclient *c, struct buf *out,
                   const uint8_t content[32], uint16_t port, uint8_t flags,
                   uint64_t ts_ms);
/* Sends our hello as one frame. */
int pc_send_hello(struct pclient *c, const uint8_t content[32], uint16_t port,
                  uint8_t flags);
/* Receives the other side's hello, opens it (clock window, any sender)
 * and derives the session keys. Returns 0 or an error. */
int pc_recv_hello(struct pclient *c, int timeout_ms);
/* Both hellos in the order of our role. For the acceptor content may be
 * NULL: it then answers for the content the initiator named. */
int pc_handshake(struct pclient *c, const uint8_t *content, uint16_t port,
                 uint8_t flags, int timeout_ms);

/* Encodes, seals and sends one message. */
int pc_send(struct pclient *c, const struct pwire_msg *m);
/* Encodes and seals m, then flips one bit of the sealed body at byte at
 * (past its end: in the tag's last byte) and sends it: a frame that
 * cannot open, sent as a forger on the path would. */
int pc_send_forged(struct pclient *c, const struct pwire_msg *m, size_t at);
/* Seals and sends len bytes of plaintext as they are (a message the codec
 * would refuse to encode). */
int pc_send_plain(struct pclient *c, const void *plain, size_t len);
/* Receives, opens and decodes one message; m's pointers borrow from c
 * until the next receive. */
int pc_recv(struct pclient *c, struct pwire_msg *m, int timeout_ms);
/* Receives messages until one of the type arrives (others are dropped). */
int pc_expect(struct pclient *c, uint8_t type, struct pwire_msg *m,
              int timeout_ms);

/* Writes bytes as they are. Returns 0 or -errno. */
int pc_send_raw(struct pclient *c, const void *p, size_t n);
/* Writes one frame: a header for n bytes, then the bytes. */
int pc_send_frame(struct pclient *c, const void *p, size_t n);
/* Receives one frame body of at most max bytes into c->frame. */
int pc_recv_frame(struct pclient *c, size_t max, int timeout_ms);

/* Reads and drops whatever arrives until the other side closes the
 * connection (returns 1) or the deadline passes (returns 0). */
int pc_wait_closed(struct pclient *c, int timeout_ms);

#endif
