/* Error codes shared by every shoal module.
 *
 * 0 is success and every error is a negative int. shoal's own codes live in
 * one X-macro table below, from which the enum, the names and the messages
 * are all generated (the pattern of libuv's UV_ERRNO_MAP). They run upward
 * from -29999 (-30000 is a sentinel) so that libuv's codes (negated errno
 * values, and UV_EOF at -4095) pass through any shoal function unchanged and
 * stay distinguishable.
 */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

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
  XX(EPROTO, "unexpected message for this protocol state")

enum shoal_err {
  SHOAL_ERR_BASE_ = -30000,
#define SHOAL_XX_(name, msg) SHOAL_##name,
  SHOAL_ERRNO_MAP(SHOAL_XX_)
#undef SHOAL_XX_
      SHOAL_ERR_END_
};

/* Returns a static, human-readable message for any code returned by shoal or
 * libuv (0 gives "success"). Never NULL. */
const char *shoal_strerror(int err);

/* Returns the static symbolic name ("SHOAL_EBADSIG", "ECONNREFUSED", ...). */
const char *shoal_err_name(int err);

#endif
