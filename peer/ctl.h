/* The client commands of shoal-peer (add, publish, ls, pause, resume, rm,
 * recheck, status, limits): each is one or more requests to the API of
 * the daemon that runs in the same home folder (docs/api.md), over its
 * Unix socket HOME/api.sock, with libcurl; bodies are written and replies
 * read with jansson.
 *
 * What is shown: without --json, lines for people on the report's out (ls
 * a table, status a few lines, the others one line per content), every
 * name that came from the daemon escaped for the terminal; with --json,
 * the daemon's own objects, one per line (ls: one line per content),
 * written with every non-ASCII character escaped so that no line can
 * drive a terminal. Errors go through report_error: "no daemon runs in
 * HOME" when nothing listens on the socket, the API's own message for an
 * API error, and what went wrong for a reply that is not the API's.
 *
 * IDs: a content ID, or a prefix of one (CLI_ID_PREFIX_MIN characters or
 * more, checked by cli.c) that is resolved against GET /v1/contents before
 * anything is asked of the daemon; a prefix that names no content, or
 * several, is an error that names it, and nothing is done.
 */
#ifndef SHOAL_PEER_CTL_H
#define SHOAL_PEER_CTL_H

#include "peer/cli.h"
#include "peer/report.h"

/* The socket's name in the home folder. */
#define CTL_SOCKET_NAME "api.sock"
/* The token's, read by status for the page's URL. */
#define CTL_TOKEN_NAME "api.token"
/* Bounds of one request: the connection, and the whole exchange. */
#define CTL_CONNECT_TIMEOUT_MS 5000L
#define CTL_TIMEOUT_MS 30000L
/* The largest reply read: a library of many thousand contents. */
#define CTL_MAX_REPLY (32u << 20)
/* Widest NAME column of ls; longer names are cut. */
#define CTL_NAME_COLS 40u

/* Runs the client command c->cmd (CLI_IS_CLIENT) against the daemon of
 * the home folder home (a path; the socket is home/api.sock). Each
 * request of a command with several IDs or links is made even when one
 * before it failed, unless no daemon answers. c, home and r are borrowed
 * for the call. Returns the exit status: 0, or 1 after reporting an
 * error. */
int ctl_run(const struct cli *c, const char *home, struct report *r);

#endif
