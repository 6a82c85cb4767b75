/* The daemon's library: every content it holds (shared or downloaded), as
 * it must come back after a restart or a kill -9.
 *
 * The library lives in HOME/library.json, written whole and atomically
 * (a temporary file in the same folder, fsync, rename, fsync of the folder)
 * on every change that matters (add, remove, pause, resume, completion, a
 * new fast-resume record) and every LIBRARY_SAVE_MS while byte counts move.
 * A file that cannot be read (truncated, not JSON, a field of the wrong
 * type, a count over its limit, an unknown version) is refused with a
 * message naming the file and what is wrong, and the daemon does not start:
 * nothing is dropped silently. Each content's signed manifest is kept
 * beside it in HOME/manifests/ (fetch.c's folder), so the library holds
 * only what the manifest does not say.
 *
 * The fast-resume record: for each file of a content, its size,
 * modification time and inode when its chunks were last verified. A file
 * whose record still matches is trusted without hashing on a restart; any
 * other is re-hashed (recheck.h).
 *
 * Format (version 1):
 *   {"version": 1,
 *    "contents": [
 *      {"id": TEXTID, "kind": "share"|"download", "name": "...",
 *       "link": "shoal:...", "path": "/abs", "paused": false,
 *       "complete": true, "added": UNIX_S, "uploaded": N, "downloaded": N,
 *       "error": "..." (optional),
 *       "files": [[SIZE, MTIME_S, MTIME_NS, INODE], ...] (optional)}
 *    ]}
 * "path" is, for a share, the folder that holds the shared file or folder
 * (the manifest's local root), and for a download the -o folder.
 *
 * Reading is strict. "version" must be 1; the other fields are those
 * above and no more (an unknown field would be dropped by the next save);
 * "link", "error" and "files" may be absent, the rest may not. "id" is a
 * content ID with its checksum, "name" a safe file name
 * (manifest_check_segment), "path" absolute, "link" a share link
 * (link_parse) of the same content, "added", "uploaded" and "downloaded"
 * non-negative integers, "error" is cut to LIBRARY_ERROR_BYTES - 1 bytes,
 * "files" holds at most MANIFEST_MAX_FILES records, each a non-negative
 * SIZE, any MTIME_S, an MTIME_NS in [0, 10^9) and the INODE's 64 bits read
 * as a signed integer (JSON numbers here are signed 64-bit, and some file
 * systems, overlayfs among them, hand out inodes with the top bit set). No
 * content may be listed twice.
 */
#ifndef SHOAL_PEER_LIBRARY_H
#define SHOAL_PEER_LIBRARY_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"

#define LIBRARY_FILE "library.json"
#define LIBRARY_VERSION 1
#define LIBRARY_MAX_CONTENTS 65536u
#define LIBRARY_MAX_BYTES (256u << 20) /* the file, read whole */
#define LIBRARY_SAVE_MS 10000u
#define LIBRARY_ERROR_BYTES 512

enum library_kind {
  LIBRARY_SHARE = 1,    /* our own files, published by us */
  LIBRARY_DOWNLOAD = 2, /* fetched from a link (then seeded) */
};

/* One file's fast-resume record. */
struct library_file {
  uint64_t size;
  int64_t mtime_sec, mtime_nsec;
  uint64_t ino;
};

struct library_entry {
  uint8_t content[MANIFEST_ID_BYTES];
  enum library_kind kind;
  char name[MANIFEST_MAX_SEGMENT + 1];
  char *link; /* owned; the share link (for a share: once published) */
  char *path; /* owned; see above */
  int paused;
  int complete;  /* every chunk verified once (a share always is) */
  int64_t added; /* unix seconds */
  uint64_t uploaded, downloaded;   /* DATA bytes over the content's life */
  char error[LIBRARY_ERROR_BYTES]; /* "" when none */
  uint32_t nfiles;                 /* 0: no fast-resume record */
  struct library_file *files;      /* owned; nfiles, in manifest order */
};

struct library {
  char *path; /* HOME/library.json */
  struct library_entry *entries;
  uint32_t count, cap;
  int dirty; /* changed since the last save */
  /* library_find's index: open addressing over entries' positions + 1,
   * rebuilt on the first find after an add, a remove or a load. */
  uint32_t *index;
  uint32_t index_cap; /* a power of two, at least twice count */
  int index_ok;
};

/* Reads HOME/library.json into l (an empty library when there is none).
 * Returns 0, or an error (SHOAL_EFORMAT, SHOAL_ETOOBIG, SHOAL_EVERSION,
 * SHOAL_ENOMEM, or a file-system error) with one line in msg naming the
 * file, the entry and the field and what is wrong, e.g.
 * "HOME/library.json: contents[3].kind: must be "share" or "download"";
 * then l holds no entry (a library is loaded whole or not at all). A file
 * over LIBRARY_MAX_BYTES is refused before it is read. Nothing on disk is
 * changed. l holds memory on every return: call library_close. */
int library_load(struct library *l, const char *home, char *msg, size_t cap);

/* Writes the library atomically: HOME/library.json.tmp-PID (mode 0600),
 * fsync, rename over HOME/library.json, fsync of HOME. Clears dirty on
 * success. Returns 0, SHOAL_ENOMEM, SHOAL_ETOOBIG (the text would be over
 * LIBRARY_MAX_BYTES, which the next load would refuse) or a negative errno;
 * on failure the old file is intact and the temporary file gone (except
 * when only the fsync of HOME failed: the new file is then in place, and
 * dirty stays set). Counts above INT64_MAX, which JSON here cannot hold,
 * are written as INT64_MAX. It blocks on the disk. */
int library_save(struct library *l);

/* The two halves of library_save, so that the write can run on the thread
 * pool: the file's text (malloc'd; *len its size), or NULL without memory
 * or when it would exceed LIBRARY_MAX_BYTES (the next load would refuse
 * it); then the atomic write of text to path (a temporary file, fsync,
 * rename, fsync of the folder), which touches no library and may run on
 * any thread. Returns 0 or an error. */
char *library_encode(const struct library *l, size_t *len);
int library_write(const char *path, const char *text, size_t len);

/* The entry for content, or NULL. */
struct library_entry *library_find(struct library *l,
                                   const uint8_t content[MANIFEST_ID_BYTES]);

/* Adds a zeroed entry for content with kind, name and path (copied), at
 * the end, and marks the library dirty. Returns it, or NULL with *err set:
 * SHOAL_ENOMEM, SHOAL_ETOOBIG (LIBRARY_MAX_CONTENTS reached), UV_EEXIST
 * (content is already there) or SHOAL_EPATH (name is not a safe file name
 * or path is not absolute UTF-8 of at most 4095 bytes: what a load would
 * refuse is never taken). Pointers into the library stay valid only until
 * the next add or remove. */
struct library_entry *library_add(struct library *l,
                                  const uint8_t content[MANIFEST_ID_BYTES],
                                  enum library_kind kind, const char *name,
                                  const char *path, int *err);

/* Removes content's entry (and marks dirty); the others keep their order.
 * Returns 0 or SHOAL_ENOENT. */
int library_remove(struct library *l, const uint8_t content[MANIFEST_ID_BYTES]);

/* Sets e's link (copied; NULL clears) and marks the library dirty when it
 * changed. Returns 0, SHOAL_ENOMEM, or SHOAL_EBADLINK for a link that does
 * not parse or names another content. */
int library_set_link(struct library *l, struct library_entry *e,
                     const char *link);

/* Replaces e's fast-resume record with n records (copied; n 0 clears it)
 * and marks the library dirty. The records are stat()'s: a size above
 * INT64_MAX or nanoseconds outside [0, 10^9) is a caller's mistake
 * (asserted). Returns 0, SHOAL_ENOMEM, or SHOAL_ETOOBIG for more than
 * MANIFEST_MAX_FILES records. */
int library_set_files(struct library *l, struct library_entry *e,
                      const struct library_file *files, uint32_t n);

/* Sets e's error text (printf-style; fmt NULL clears it), or clears it,
 * and marks dirty when it changed. The text is cut to LIBRARY_ERROR_BYTES
 * - 1 bytes on a character boundary, and each byte of invalid UTF-8 in it
 * becomes '?'. */
void library_set_error(struct library *l, struct library_entry *e,
                       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void library_clear_error(struct library *l, struct library_entry *e);

/* Frees everything l holds and zeroes it. A zeroed struct library, or one
 * closed before, may be closed. */
void library_close(struct library *l);

#endif
