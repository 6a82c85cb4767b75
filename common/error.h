/* Error codes shared by every shoal module.
 *
 * 0 is success and every error is a negative int. shoal's own codes live in
 * one X-macro table below, from which the enum, the names and the messages
 * are all generated (the pattern of libuv's UV_ERRNO_MAP). They run upward
 * from -29999 (-30000 is a sentinel) so that libuv's codes (negated errno
 * values, and UV_EOF at -4095) pass through any shoal function unchanged and
 * stay distinguishable.
 *
 * common/ does not link libuv, so it does not know libuv's names and
 * messages by itself: a program that wants them hands them over once with
 * error_set_system (the tracker and the peer do so at start-up).
 */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

#include <stddef.h>

#define SHOAL_ERRNO_MAP(XX)                                                    \
  XX(ETRUNC, "input is truncated")                                             \
  XX(ETOOBIG, "value exceeds its named maximum")                               \
  XX(ENOMEM, "out of memory")                                                  \
  XX(EINVAL, "invalid argument")                                               \
  XX(EFORMAT, "malformed encoding")                                            \
  XX(EVERSION, "unsupported protocol version")                                 \
  XX(EDOMAIN, "message of the wrong class for this context")                   \
  XX(EBADSIG, "signature does not verify")                                     \
  XX(EWRONGKEY, "signed by an unexpected key")                                 \
  XX(ESTALE, "timestamp is older than the clock window")                       \
  XX(EFUTURE, "timestamp is ahead of the clock window")                        \
  XX(EREPLAY, "message was already accepted (replay)")                         \
  XX(ESEQ, "sequence number is behind the replay window")                      \
  XX(EGUARDFULL, "replay guard is full; sender not accepted")                  \
  XX(ECHECKSUM, "checksum mismatch (mistyped or wrong kind of ID)")            \
  XX(EPATH, "unsafe or invalid path")                                          \
  XX(EDUPPATH, "duplicate or conflicting path")                                \
  XX(ESIZE, "sizes do not add up")                                             \
  XX(EHASH, "hash does not match")                                             \
  XX(ECHANGED, "file changed while it was being read")                         \
  XX(EKEYPERM, "key file is accessible by other users (needs mode 0600)")      \
  XX(EKEYFILE, "key file is corrupt")                                          \
  XX(EBADLINK, "malformed share link")                                         \
  XX(ECANCELED, "operation canceled")                                          \
  XX(ERATE, "request rate limit exceeded")                                     \
  XX(EBUSY, "server is at a limit; try again later")                           \
  XX(ETIMEDOUT, "peer was too slow or idle")                                   \
  XX(EPROTO, "unexpected message for this protocol state")                     \
  XX(ENOENT, "no such entry")

enum shoal_err {
  SHOAL_ERR_BASE_ = -30000,
#define SHOAL_XX_(name, msg) SHOAL_##name,
  SHOAL_ERRNO_MAP(SHOAL_XX_)
#undef SHOAL_XX_
      SHOAL_ERR_END_
};

/* One code from outside shoal's table, with its static name and message. */
struct error_text {
  int code;
  const char *name;    /* "ECONNREFUSED" */
  const char *message; /* "connection refused" */
};

/* Makes rows[0..count) the whole word on every code outside shoal's own
 * table: shoal_strerror and shoal_err_name give a row's message and name,
 * and "unknown error" and "EUNKNOWN" for a code in no row. The rows are
 * borrowed for the rest of the process (a static table). Until it is
 * called, or after it is called with NULL, a negative errno value gets the
 * C library's message and name. Call it once, before any thread that
 * reports errors starts. */
void error_set_system(const struct error_text *rows, size_t count);

/* Returns a static, human-readable message for any code returned by shoal or
 * by the system (0 gives "success"). Never NULL. */
const char *shoal_strerror(int err);

/* Returns the static symbolic name ("SHOAL_EBADSIG", "ECONNREFUSED", ...). */
const char *shoal_err_name(int err);

#endif
