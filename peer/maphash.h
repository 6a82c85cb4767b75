/* Hashing a run of a file's chunks straight from a read-only mapping of the
 * file, surviving the file's truncation while it is mapped.
 *
 * Reading a file with pread copies each byte out of the page cache before
 * the chunk hash reads it again; hashing from a mapping reads each byte
 * once, which is most of the difference between the manifest builder and
 * the chunk hash's own rate (docs/transfer.md).
 *
 * The price of a mapping is SIGBUS: when the file is truncated while it is
 * mapped, touching a page past its new end raises SIGBUS in the thread that
 * touched it, which by default kills the process. maphash therefore
 * installs one SIGBUS handler for the process (once, on first use) and arms
 * a per-thread guard only while a mapped window is being hashed: a
 * thread-local flag, the address range of the window, and a sigjmp_buf.
 * A SIGBUS at an address inside the armed window of the thread it hit jumps
 * back out of the hash (siglongjmp, which also unblocks SIGBUS again), and
 * the hash fails with SHOAL_ECHANGED; the caller then unmaps the window as
 * on any other path. Any other SIGBUS (no guard armed in that thread, or an
 * address outside the window) goes where it went before maphash: to the
 * handler it replaced (AddressSanitizer installs one), or, when that was
 * the default, to the default action: the handler restores SIG_DFL and
 * raises the signal again. An ignored SIGBUS stays ignored when it was
 * sent (kill, raise) and is fatal when it comes from a fault, as the kernel
 * would make it. The handler reads only thread-local and read-only state
 * and calls only async-signal-safe functions (sigaction, raise).
 *
 * The bytes hashed may stop matching the file's after the fact (a write
 * into a mapped page shows at once), so a caller compares the file's size
 * and times before and after, as it does around reads.
 *
 * A program that installs its own SIGBUS handler after maphash's must chain
 * to the one it replaces, or truncation kills the process again.
 */
#ifndef SHOAL_PEER_MAPHASH_H
#define SHOAL_PEER_MAPHASH_H

#include <stddef.h>
#include <stdint.h>

#include "common/chash.h"

/* The most one window maps: a manifest builder's job (MANIFEST_JOB_BYTES)
 * and the largest chunk (2^MANIFEST_CHUNK_LOG2_MAX) both fit, so that a
 * window always holds whole chunks; and two threads' windows stay small
 * against the address space of a 32-bit process. */
#define MAPHASH_MAX_BYTES ((size_t)16 << 20)
/* Below this a range is read rather than mapped: setting up and tearing
 * down a mapping (two system calls, a fault, a TLB flush) costs about what
 * copying this many bytes does. */
#define MAPHASH_MIN_BYTES ((size_t)64 << 10)

/* A read-only mapping of len bytes of a file from off. */
struct maphash_window {
  void *base;          /* the mapping (page-aligned), NULL when none */
  size_t base_len;     /* its length */
  const uint8_t *data; /* the file's byte at off, inside the mapping */
  size_t len;
};

/* Installs the SIGBUS handler, once per process (maphash_map calls it).
 * Returns 0, or -errno when sigaction failed (every later call returns the
 * same). Any thread may call it. */
int maphash_init(void);

/* Maps len bytes (1 to MAPHASH_MAX_BYTES) of fd from off, read-only, and
 * tells the kernel they are read in order. fd is borrowed and must stay open
 * until maphash_unmap. Returns 0, or -errno (the file cannot be mapped, there
 * is no address space, or the handler could not be installed), and w is then
 * empty: the caller reads the bytes instead. Pages past the file's end are
 * mapped too; hashing them fails with SHOAL_ECHANGED. */
int maphash_map(struct maphash_window *w, int fd, uint64_t off, size_t len);

/* Hashes the window's bytes as consecutive chunks of chunk_bytes (the last
 * may be shorter) into out, CHASH_BYTES a chunk: out must hold
 * ceil(w->len / chunk_bytes) digests. Returns 0; SHOAL_ECHANGED when a page
 * of the window was past the file's end (it was truncated), out then
 * partly written; or SHOAL_ENOMEM. Must not be called from a SIGBUS
 * handler or while the same thread is already inside it. */
int maphash_chunks(const struct maphash_window *w, uint64_t chunk_bytes,
                   uint8_t *out);

/* Unmaps the window (a no-op when it is empty) and empties it. */
void maphash_unmap(struct maphash_window *w);

#endif
