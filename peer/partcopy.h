/* A download's partial copy on disk, DIR/NAME.shoal-part (a file, or a
 * folder holding exactly the manifest's paths): the blocking work on it.
 * When a download opens, the partial copy is made or found, locked, pruned,
 * checked for room and preallocated, and given back if that fails; while it
 * runs, chunks are written into it and read back; when it completes, it is
 * flushed and renamed into place. docs/storage.md tells each step.
 *
 * Every function here but partcopy_init and partcopy_close blocks on the
 * disk: the storage calls them from libuv's thread pool.
 */
#ifndef SHOAL_PEER_PARTCOPY_H
#define SHOAL_PEER_PARTCOPY_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"

/* Room for what a refused open tells the user (storage_open_error): two
 * paths would not fit whole anyway, and a truncated message still names
 * the folder first. */
#define PARTCOPY_WHY_BYTES 1024

/* Where a download's partial copy is. The storage owns it: partcopy_init
 * fills in the names, the loop thread sets the descriptors once an open
 * has succeeded (from struct partcopy_open), and workers only read it. */
struct partcopy {
  const struct manifest *m; /* borrowed */
  size_t name_len;          /* strlen(m->name) */
  char *dir;                /* DIR, as the caller gave it */
  char *final_path;         /* DIR/NAME */
  char *part_name;          /* NAME.shoal-part, relative to dir_fd */
  int dir_fd;               /* DIR, else -1 */
  int root_fd;   /* the partial file or folder, holding the lock, else -1 */
  int direct_fd; /* file content: the partial file with O_DIRECT, else -1 */
};

/* Whether m can be laid out as a partial copy: its name is one valid path
 * segment, a file manifest has exactly one path, the name, and every path
 * of a folder manifest is the name, '/', and a valid rest, so that each
 * joins under DIR as NAME.shoal-part[/rest]. Returns 0, SHOAL_EPATH, or
 * SHOAL_EINVAL for a manifest of neither kind. Touches no disk. */
int partcopy_check_layout(const struct manifest *m);

/* Fills in pc for a download of m (borrowed; its layout checked already)
 * into dir (copied), with no descriptor open. Returns 0 or SHOAL_ENOMEM;
 * either way partcopy_close releases what pc holds. */
int partcopy_init(struct partcopy *pc, const struct manifest *m,
                  const char *dir);
/* Frees pc's names. Its descriptors are closed already (by the storage, on
 * the thread pool); a zeroed partcopy is fine. */
void partcopy_close(struct partcopy *pc);

/* What an open found and holds; written only by the worker that runs
 * partcopy_open. */
struct partcopy_open {
  int record;       /* what resume_read said: an enum resume_state */
  int part_existed; /* a partial copy was there before this open */
  int created;      /* this open made the partial copy it holds */
  int resumed;      /* the partial copy and its record are taken up */
  int dir_fd;       /* on success the descriptors that pc is to keep; */
  int root_fd;      /* -1 otherwise (and the lock is released) */
  int direct_fd;
  char why[PARTCOPY_WHY_BYTES]; /* on failure, what the user is told, or "" */
  /* partcopy_open's own while it runs. */
  int changing;       /* the partial copy is being emptied or reserved */
  uint64_t *old_size; /* resumed: each file's size before, or created */
  uint64_t need;      /* bytes the reservation was to take */
};

/* Opens the partial copy of pc (whose descriptors it does not use), steps
 * 1 to 10 of docs/storage.md: DIR must hold nothing named NAME; the
 * partial copy is locked (UV_EBUSY, why naming the holder, when another
 * download holds it); the resume record at resume_path is read; the copy
 * is resumed or emptied, checked for room (UV_ENOSPC, with why) and every
 * file preallocated. listed (the caller's, ceil(chunk_count / 8) bytes)
 * receives the record's chunks when the download resumes, else zeros. o
 * is filled in. Returns 0 or the error, after giving back what the open
 * took. */
int partcopy_open(const struct partcopy *pc, const char *resume_path,
                  uint8_t *listed, struct partcopy_open *o);

/* The path of file i inside a partial folder: the manifest path without
 * its leading "NAME/". Borrowed from the manifest. */
const char *partcopy_rel(const struct partcopy *pc, uint32_t i);
/* A descriptor for file i of the partial copy, opened with flags: the kept
 * one for a file content, else a fresh one. Release it with
 * partcopy_file_release. */
int partcopy_file_open(const struct partcopy *pc, uint32_t i, int flags);
void partcopy_file_release(const struct partcopy *pc, int fd);
/* Writes the n bytes of p (borrowed) at off of file i. The aligned part
 * goes past the page cache where the file system takes O_DIRECT. Returns
 * 0 or an error. */
int partcopy_write(const struct partcopy *pc, uint32_t i, const uint8_t *p,
                   size_t n, uint64_t off);

/* Every chunk is verified and written: makes the manifest's empty folders,
 * gives each file its mode (0644 or 0755 less the umask) and modification
 * time, flushes everything, renames the partial copy to DIR/NAME without
 * replacing anything (UV_EEXIST) and flushes DIR. Returns 0 or the error;
 * before the rename, the partial copy stays where it was. */
int partcopy_finish(const struct partcopy *pc);

#endif
