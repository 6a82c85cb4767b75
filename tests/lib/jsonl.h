/* Reading the --json output of shoal's binaries: one JSON object a line.
 *
 * A small strict parser for test code: it accepts exactly one JSON object
 * per line (nested values are parsed and skipped), so a test can both check
 * that a line is well-formed and pull top-level fields out of it. Strings
 * are unescaped, \u escapes included.
 */
#ifndef SHOAL_JSONL_H
#define SHOAL_JSONL_H

#include <stddef.h>
#include <stdint.h>

/* True when line (NUL-terminated, no newline) is one JSON object and
 * nothing else but white space. */
int jsonl_valid(const char *line);
/* Copies the unescaped string value of the top-level key into out (cap
 * bytes, NUL-terminated). Returns 0, or -1 when the line is not valid, the
 * key is missing, its value is not a string, or it does not fit. */
int jsonl_str(const char *line, const char *key, char *out, size_t cap);
/* The value of key as a non-negative integer (digits only). Returns 0 or
 * -1 (missing, not an integer, or above UINT64_MAX). */
int jsonl_u64(const char *line, const char *key, uint64_t *out);
/* The value of key as any JSON number. Returns 0 or -1. */
int jsonl_num(const char *line, const char *key, double *out);
/* True when the line's "event" is ev. */
int jsonl_is_event(const char *line, const char *ev);

#endif
