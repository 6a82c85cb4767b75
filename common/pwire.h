/* Peer wire protocol: the session between two peers.
 *
 * A connection starts with one hello frame in each direction: a signed
 * envelope of class ENVELOPE_PEER_HELLO (type PWIRE_HELLO) whose payload
 * binds the sender's identity to an ephemeral X25519 key and to the content
 * it wants to trade:
 *
 *   0  32  content ID
 *   32 32  ephemeral X25519 public key (crypto_kx)
 *   64 u16 the sender's listen port (0: it accepts no connections)
 *   66 u8  flags: bit 0 = PWIRE_HELLO_SEEDER (it holds every chunk),
 *              bit 1 = PWIRE_HELLO_NO_UPLOAD (client-server baseline: it
 *              uploads nothing), bit 2 = PWIRE_HELLO_PEX (it takes PEX
 *              messages); other bits 0
 *
 * Session keys come from crypto_kx with the ephemeral keys: the side that
 * opened the TCP connection is the kx client, the other the kx server. Every
 * later frame body is crypto_aead_chacha20poly1305_ietf ciphertext of one
 * message; the 12-byte nonce is 4 zero bytes and a 64-bit big-endian
 * counter that starts at 0 for each direction and key, so a dropped,
 * repeated, reordered or reflected frame fails to open. The associated data
 * is empty.
 *
 * Message plaintext: u8 type, then the fields below (big-endian):
 *   MANIFEST_REQ   u32 offset, u32 length   (a part of the signed manifest)
 *   MANIFEST_PART  u32 total, u32 offset, bytes
 *   HAVE_MAP       bitmap, ceil(chunks / 8) bytes, chunk 0 in the high bit
 *                  of byte 0, unused low bits of the last byte 0
 *   HAVE           1 to PWIRE_HAVE_MAX chunks in increasing order, each a
 *                  varint: the first chunk, then each chunk's distance
 *                  from the one before less one (pwire_have_put)
 *   INTERESTED, NOT_INTERESTED, CHOKE, UNCHOKE, KEEPALIVE   (no fields)
 *   REQUEST        u32 chunk, u32 offset, u32 length
 *   DATA           u32 chunk, u32 offset, bytes
 *   CANCEL         u32 chunk, u32 offset, u32 length
 *   REJECT         u32 chunk, u32 offset, u32 length
 *   PEX            address certificates (tmsg.h), TMSG_CERT_BYTES each:
 *                  1 to PWIRE_PEX_MAX_RECORDS, passed on unaltered
 *
 * This module only encodes and checks shapes and named maximums; indices
 * and lengths are checked against the manifest by the peer (pwire_check_*
 * helpers below do that given a manifest).
 */
#ifndef SHOAL_PWIRE_H
#define SHOAL_PWIRE_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/envelope.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "common/tmsg.h"

/* The peer protocol's version is the hello envelope's type: version 3
 * (this one) carries manifest version 3 contents, seals frames with
 * libcrypto's ChaCha20-Poly1305 and writes a HAVE's chunks as varints. A
 * hello of an older version (types PWIRE_HELLO_OLDEST to PWIRE_VERSION - 1:
 * 1, shoal with BLAKE2b chunk hashes; 2, HAVEs of u32 chunks) is refused
 * with SHOAL_EVERSION. */
#define PWIRE_VERSION 3
#define PWIRE_HELLO PWIRE_VERSION
#define PWIRE_HELLO_OLDEST 1
#define PWIRE_HELLO_PAYLOAD_BYTES 67
#define PWIRE_HELLO_SEEDER 0x01u
#define PWIRE_HELLO_NO_UPLOAD 0x02u
#define PWIRE_HELLO_PEX 0x04u
#define PWIRE_HELLO_FLAGS                                                      \
  (PWIRE_HELLO_SEEDER | PWIRE_HELLO_NO_UPLOAD | PWIRE_HELLO_PEX)

#define PWIRE_KEY_BYTES crypto_kx_SESSIONKEYBYTES
#define PWIRE_TAG_BYTES crypto_aead_chacha20poly1305_ietf_ABYTES
#define PWIRE_NONCE_BYTES crypto_aead_chacha20poly1305_ietf_NPUBBYTES

/* A block is the unit of request and transfer: at most 64 KiB, never across
 * a chunk boundary. */
#define PWIRE_BLOCK_BYTES (64u << 10)
/* A manifest part sent in one message. */
#define PWIRE_MANIFEST_PART_BYTES (256u << 10)
/* Chunks one HAVE may announce: a peer gathers the chunks it verified for
 * a moment and announces them together. */
#define PWIRE_HAVE_MAX 1024u
/* Bytes of one varint of a HAVE: 7 bits each, a u32 in at most 5. */
#define PWIRE_HAVE_VARINT_MAX 5u
/* Bytes of the largest HAVE's chunks. */
#define PWIRE_HAVE_MAX_BYTES (PWIRE_HAVE_VARINT_MAX * PWIRE_HAVE_MAX)
/* Address certificates one PEX message may carry: a session's first
 * message holds the sender's own and a batch of others. */
#define PWIRE_PEX_MAX_RECORDS 32u
/* Largest plaintext of one message: a manifest part with its header (a
 * DATA message is smaller: 9 bytes and a block). */
#define PWIRE_MAX_PLAIN (1 + 8 + PWIRE_MANIFEST_PART_BYTES)
/* Largest frame body on a session: ciphertext of the largest message. */
#define PWIRE_MAX_FRAME (PWIRE_MAX_PLAIN + PWIRE_TAG_BYTES)

enum pwire_type {
  PWIRE_MANIFEST_REQ = 1,
  PWIRE_MANIFEST_PART = 2,
  PWIRE_HAVE_MAP = 3,
  PWIRE_HAVE = 4,
  PWIRE_INTERESTED = 5,
  PWIRE_NOT_INTERESTED = 6,
  PWIRE_CHOKE = 7,
  PWIRE_UNCHOKE = 8,
  PWIRE_REQUEST = 9,
  PWIRE_DATA = 10,
  PWIRE_CANCEL = 11,
  PWIRE_REJECT = 12,
  PWIRE_KEEPALIVE = 13,
  PWIRE_PEX = 14,
};

struct pwire_hello {
  uint8_t content[MANIFEST_ID_BYTES];
  uint8_t eph_pk[crypto_kx_PUBLICKEYBYTES];
  uint16_t port;
  uint8_t flags;
};

/* An ephemeral key pair for one connection; wipe with pwire_eph_close. */
struct pwire_eph {
  uint8_t pk[crypto_kx_PUBLICKEYBYTES];
  uint8_t sk[crypto_kx_SECRETKEYBYTES];
};

/* One direction-keyed AEAD session: a key and a counter each way, and
 * libcrypto's cipher context keyed with each (EVP_CIPHER_CTX). */
struct pwire_session {
  uint8_t rx[PWIRE_KEY_BYTES];
  uint8_t tx[PWIRE_KEY_BYTES];
  uint64_t rx_count;
  uint64_t tx_count;
  void *rx_cx;
  void *tx_cx;
};

struct pwire_sealed; /* below */

/* A decoded message; pointers borrow from the plaintext. */
struct pwire_msg {
  uint8_t type;
  uint32_t chunk;      /* REQUEST, DATA, CANCEL, REJECT */
  uint32_t offset;     /* MANIFEST_REQ/PART, REQUEST, DATA, CANCEL, REJECT */
  uint32_t length;     /* MANIFEST_REQ, REQUEST, CANCEL, REJECT; HAVE: the
                          chunks it names (pwire_decode sets it) */
  uint32_t total;      /* MANIFEST_PART */
  const uint8_t *data; /* MANIFEST_PART, HAVE_MAP, DATA; HAVE: its chunks
                          as varints (pwire_have_next); PEX: its records,
                          TMSG_CERT_BYTES each (pwire_pex_record) */
  size_t data_len;
  /* DATA: NULL, or data is still ciphertext, left where it belongs by
   * pwire_open_defer, and this is what pwire_open_sealed needs to open it
   * (borrowed for the call that hands the message over). */
  const struct pwire_sealed *sealed;
};

/* Bytes of a REQUEST, CANCEL or REJECT message: type, chunk, offset,
 * length. */
#define PWIRE_BLOCK_MSG_BYTES (1 + 4 + 4 + 4)
/* Bytes of a DATA message before its block: type, chunk, offset. */
#define PWIRE_DATA_HEAD_BYTES (1 + 4 + 4)

/* A DATA frame's block left encrypted where it belongs (pwire_open_defer),
 * with what opening it needs on any thread: the receive key, the frame's
 * counter, the message head's ciphertext and the tag. It holds a key:
 * its owner wipes it (sodium_memzero) when done. */
struct pwire_sealed {
  uint8_t key[PWIRE_KEY_BYTES];
  uint64_t count;
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  uint8_t tag[PWIRE_TAG_BYTES];
  uint32_t len; /* of the block; 0: nothing to open */
};

/* A HAVE's chunks. Each varint is unsigned LEB128 (7 bits a byte, the low
 * group first, 0x80 set on every byte but the last), at most
 * PWIRE_HAVE_VARINT_MAX bytes, no longer than its value needs (a last byte
 * of 0 is refused unless it is the only one), and every chunk fits a u32:
 * so one set of chunks has exactly one encoding. Chunks sent every 5 s
 * are some dozens out of hundreds or thousands, so most take one byte
 * instead of four.
 *
 * pwire_have_sort sorts n chunks and drops repeats, returning how many are
 * left. pwire_have_put writes chunks (increasing, 1 to PWIRE_HAVE_MAX of
 * them) into out, which has room for PWIRE_HAVE_VARINT_MAX bytes a chunk,
 * and returns the bytes written; 0 (nothing written) when n is out of
 * range or the chunks do not increase. */
size_t pwire_have_sort(uint32_t *chunks, size_t n);
size_t pwire_have_put(uint8_t *out, const uint32_t *chunks, size_t n);

/* Reads the chunks of a HAVE that pwire_decode accepted, in order. */
struct pwire_have_iter {
  const uint8_t *at;
  const uint8_t *end;
  uint64_t next; /* the least the next chunk can be */
};
void pwire_have_begin(struct pwire_have_iter *it, const struct pwire_msg *m);
/* Sets *chunk to the next chunk and returns 1, or returns 0 at the end. */
int pwire_have_next(struct pwire_have_iter *it, uint32_t *chunk);

/* The records a PEX carries, and the i-th of them (TMSG_CERT_BYTES). */
static inline size_t pwire_pex_count(const struct pwire_msg *m) {
  return m->data_len / TMSG_CERT_BYTES;
}
static inline const uint8_t *pwire_pex_record(const struct pwire_msg *m,
                                              size_t i) {
  return m->data + TMSG_CERT_BYTES * i;
}

/* Whether a have-map (the HAVE_MAP layout: chunk 0 in the high bit of byte
 * 0) holds chunk, and marks it held. The caller checked the map's length
 * (pwire_check_have_map) or otherwise knows chunk / 8 is inside it. */
static inline int pwire_have_map_get(const uint8_t *map, uint32_t chunk) {
  return (map[chunk / 8] & (0x80u >> (chunk % 8))) != 0;
}
static inline void pwire_have_map_set(uint8_t *map, uint32_t chunk) {
  map[chunk / 8] |= (uint8_t)(0x80u >> (chunk % 8));
}

void pwire_eph_generate(struct pwire_eph *e);
void pwire_eph_close(struct pwire_eph *e);

/* Appends a sealed hello envelope (not framed) to out. Returns 0,
 * SHOAL_EINVAL (flag bits other than the two above) or an envelope_seal
 * error; nothing is appended on failure. */
int pwire_hello_seal(struct buf *out, const struct identity *id,
                     uint64_t timestamp_ms, uint64_t seq,
                     const struct pwire_hello *h);
/* Opens a hello under pol (class must be ENVELOPE_PEER_HELLO, else
 * SHOAL_EINVAL): verifies the signature, clock and replay, then decodes.
 * Returns 0, an envelope error, SHOAL_EVERSION (a hello of an older peer
 * protocol version: pwire_hello_version names it), SHOAL_EPROTO (not a
 * hello), or SHOAL_EFORMAT
 * (payload not PWIRE_HELLO_PAYLOAD_BYTES long, or unknown flag bits);
 * sender (may be NULL) receives the signer's key. Both outputs are zeroed
 * on failure. The replay guard records a validly signed envelope even when
 * it then turns out not to be a well-formed hello. */
__attribute__((warn_unused_result)) int
pwire_hello_open(const uint8_t *msg, size_t len,
                 const struct envelope_policy *pol, struct pwire_hello *out,
                 uint8_t sender[IDENTITY_PK_BYTES]);

/* The peer protocol version a sealed hello claims (its envelope's type),
 * 0 when msg is too short to say: for the log, once pwire_hello_open has
 * verified the signature and returned SHOAL_EVERSION. */
int pwire_hello_version(const uint8_t *msg, size_t len);

/* Derives the session from our ephemeral pair and theirs; initiator is 1
 * for the side that opened the TCP connection. Returns 0, SHOAL_EBADSIG
 * when their key is unacceptable (libsodium refuses it, or it is our own
 * key reflected back), or SHOAL_ENOMEM; s is zeroed on failure, and
 * pwire_session_close frees what a successful init holds. */
__attribute__((warn_unused_result)) int
pwire_session_init(struct pwire_session *s, const struct pwire_eph *ours,
                   const uint8_t theirs[crypto_kx_PUBLICKEYBYTES],
                   int initiator);
void pwire_session_close(struct pwire_session *s);

/* Encrypts plain (len bytes, not inside out's storage) into out as one
 * frame body (appending len + PWIRE_TAG_BYTES bytes). Returns 0, a buf
 * error, SHOAL_ETOOBIG for len over PWIRE_MAX_PLAIN or a spent counter, or
 * SHOAL_ENOMEM; on failure nothing is appended and the counter does not
 * move. */
int pwire_seal(struct pwire_session *s, struct buf *out, const uint8_t *plain,
               size_t len);
/* The same in place: msg holds len bytes of plaintext (one encoded
 * message) and room for PWIRE_TAG_BYTES more; it becomes the frame body
 * (len + PWIRE_TAG_BYTES bytes). Returns 0, SHOAL_ETOOBIG (len over
 * PWIRE_MAX_PLAIN, or a spent counter; msg is untouched then) or
 * SHOAL_ENOMEM (libcrypto failed; msg is no longer the message). Lets a
 * sender read a block straight into its frame and encrypt it there. */
int pwire_seal_inplace(struct pwire_session *s, uint8_t *msg, size_t len);
/* Sealing elsewhere (another thread), in the order of the counters.
 * pwire_seal_reserve takes the next n send counters (n >= 1) and gives the
 * first in *first; SHOAL_ETOOBIG (nothing taken) when fewer are left.
 * pwire_seal_at then seals msg in place as pwire_seal_inplace does, under
 * key (the session's tx, copied) and counter: on any thread, with a
 * cipher context of its own. The frames must go out in counter order,
 * each reserved counter used by exactly one frame. */
int pwire_seal_reserve(struct pwire_session *s, unsigned n, uint64_t *first);
int pwire_seal_at(const uint8_t key[PWIRE_KEY_BYTES], uint64_t counter,
                  uint8_t *msg, size_t len);
/* Decrypts a frame body into plain (cap bytes, at least len - TAG; plain
 * may equal body). Returns the plaintext length, or SHOAL_EBADSIG (forged,
 * reordered, replayed or reflected), SHOAL_ETRUNC (len < PWIRE_TAG_BYTES),
 * SHOAL_ETOOBIG (len > PWIRE_MAX_FRAME, or cap too small). A failed open
 * does not advance the counter, and leaves no plaintext in plain. */
__attribute__((warn_unused_result)) int pwire_open(struct pwire_session *s,
                                                   const uint8_t *body,
                                                   size_t len, uint8_t *plain,
                                                   size_t cap);

/* pwire_open in two steps, for a receiver that learns from a message's
 * first bytes where the rest should go (a DATA block straight into the
 * chunk it belongs to, with no copy). pwire_open_head checks as
 * pwire_open does and decrypts the first head_len bytes of the plaintext
 * into head (len must hold the tag and head_len bytes: else
 * SHOAL_ETRUNC). They are NOT yet authenticated: the caller may only use
 * them to choose rest's place, a buffer that holds nothing it would miss
 * if the frame turned out forged. pwire_open_rest, called next with the
 * same body, decrypts the remaining bytes into rest and checks the tag:
 * it returns the whole plaintext's length (head_len + the rest), or
 * SHOAL_EBADSIG with head and rest zeroed and the counter unmoved, as
 * for pwire_open. */
__attribute__((warn_unused_result)) int
pwire_open_head(struct pwire_session *s, const uint8_t *body, size_t len,
                uint8_t *head, size_t head_len);
__attribute__((warn_unused_result)) int
pwire_open_rest(struct pwire_session *s, const uint8_t *body, size_t len,
                uint8_t *head, size_t head_len, uint8_t *rest);

/* In place of pwire_open_rest, after pwire_open_head with head_len
 * PWIRE_DATA_HEAD_BYTES (which checked len): leaves the opening for
 * later, on another thread, so that the receiving thread only copies.
 * Copies the frame's remaining ciphertext (len - PWIRE_TAG_BYTES -
 * PWIRE_DATA_HEAD_BYTES bytes, 1 to PWIRE_BLOCK_BYTES) into rest, fills
 * out, and moves the receive counter on, as the sender's moved whether or
 * not this frame turns out genuine. Returns the plaintext's length, or
 * SHOAL_ETRUNC / SHOAL_ETOOBIG for a block of another size (nothing done).
 * Nothing of the frame is authenticated until pwire_open_sealed succeeds:
 * its head may choose only where rest goes, as for pwire_open_head. */
__attribute__((warn_unused_result)) int
pwire_open_defer(struct pwire_session *s, const uint8_t *body, size_t len,
                 uint8_t *rest, struct pwire_sealed *out);
/* Opens a block left by pwire_open_defer, in place, on any thread: rest
 * (b->len bytes) becomes the plaintext when the tag checks and the head
 * is a DATA message of chunk at offset. Returns 0; SHOAL_EBADSIG (forged
 * or damaged on its way) or SHOAL_EPROTO (genuine, but filed under another
 * block than its own), with rest zeroed; SHOAL_EINVAL for a record with
 * nothing to open; SHOAL_ENOMEM when libcrypto fails. */
__attribute__((warn_unused_result)) int
pwire_open_sealed(const struct pwire_sealed *b, uint32_t chunk, uint32_t offset,
                  uint8_t *rest);

/* Message codecs (plaintext). Encoders append to out. Returns 0,
 * SHOAL_EINVAL for a message pwire_decode would refuse, or a buf error;
 * nothing is appended on failure. */
int pwire_encode(struct buf *out, const struct pwire_msg *m);
/* Writes a REQUEST, CANCEL or REJECT (type) of one block into out, the
 * caller's PWIRE_BLOCK_MSG_BYTES, for a sender that seals messages where
 * they lie (pwire_seal_inplace), several to a buffer. Returns 0, or
 * SHOAL_EINVAL for another type or a length pwire_decode would refuse (0,
 * or over PWIRE_BLOCK_BYTES); out is untouched then. */
int pwire_block_encode(uint8_t out[PWIRE_BLOCK_MSG_BYTES], uint8_t type,
                       uint32_t chunk, uint32_t offset, uint32_t length);
/* Writes the head of a DATA message of a block of len bytes (type, chunk,
 * offset) into out, the caller's PWIRE_DATA_HEAD_BYTES right before the
 * block's bytes: a sender reads the block straight into its frame, and the
 * head and block are then one message, PWIRE_DATA_HEAD_BYTES + len bytes,
 * with no copy. Returns 0, or SHOAL_EINVAL for a len pwire_decode would
 * refuse (0, or over PWIRE_BLOCK_BYTES); out is untouched then. */
int pwire_data_head_encode(uint8_t out[PWIRE_DATA_HEAD_BYTES], uint32_t chunk,
                           uint32_t offset, size_t len);
/* Decodes the shape of one message; out's pointers borrow from p. Returns
 * 0, SHOAL_ETRUNC (missing fields, or no bytes where 1.. are needed),
 * SHOAL_EFORMAT (unknown type, trailing bytes, a zero length field, a
 * manifest part past its total) or SHOAL_ETOOBIG (a length or DATA block
 * over PWIRE_BLOCK_BYTES, a MANIFEST_REQ length or part over
 * PWIRE_MANIFEST_PART_BYTES, a total over MANIFEST_MAX_BYTES, a have-map
 * over ceil(MANIFEST_MAX_CHUNKS / 8) bytes). out is zeroed on failure. */
int pwire_decode(const uint8_t *p, size_t len, struct pwire_msg *out);

/* Checks a block (chunk, offset, length) against a manifest: the chunk
 * exists, offset and length are inside it, length is 1..PWIRE_BLOCK_BYTES.
 * Returns 0 or SHOAL_EINVAL. */
int pwire_check_block(const struct manifest *m, uint32_t chunk, uint32_t offset,
                      uint32_t length);
/* Checks a have-map's length (ceil(chunks / 8)) and unused bits (0)
 * against a chunk count. Returns 0 or SHOAL_EFORMAT. */
int pwire_check_have_map(const uint8_t *map, size_t len, uint32_t chunks);

#endif
