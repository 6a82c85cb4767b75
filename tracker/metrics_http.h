/* The operator's port: GET /metrics (Prometheus text) and GET /stats
 * (JSON) over HTTP, served by libmicrohttpd on the tracker's loop.
 *
 * It has no authentication: the figures say how busy the tracker is and
 * nothing about who uses it, but the port belongs on a private address
 * (loopback, or a network only the monitoring reaches). Other paths get
 * 404, other methods 405; connections are few and short-lived.
 */
#ifndef SHOAL_TRACKER_METRICS_HTTP_H
#define SHOAL_TRACKER_METRICS_HTTP_H

#include "tracker/tracker.h"

/* Connections served at once; a scraper needs one. */
#define METRICS_HTTP_MAX_CONNS 16u
/* Seconds a connection may sit idle before it is closed. */
#define METRICS_HTTP_IDLE_S 10u
/* Memory for one connection's request headers and buffers. */
#define METRICS_HTTP_CONN_MEMORY (16u << 10)
/* The largest /metrics body: about 15 KB today, with room to grow. */
#define METRICS_HTTP_MAX_BODY (1u << 20)

struct metrics_http;

/* Serves t's figures on addr ("ADDR:PORT" or "[V6]:PORT", numeric; port 0
 * picks a free one) from t's loop, reading t on the loop thread at each
 * request; t must outlive the server. *out receives it. Returns 0,
 * SHOAL_EINVAL for an address that is not one, or the error of the
 * listener (a negative errno such as UV_EADDRINUSE). */
int metrics_http_start(struct tracker *t, const char *addr,
                       struct metrics_http **out);
/* The address it listens on, with the real port: "127.0.0.1:9100". */
const char *metrics_http_address(const struct metrics_http *h);
/* Closes the listener and every connection; the memory is released in the
 * handles' close callbacks, so the loop must run once more. NULL is a
 * no-op. */
void metrics_http_stop(struct metrics_http *h);

/* The figures of t at this moment, for a scrape. */
void metrics_http_read(struct tracker *t, struct metrics_now *now);

#endif
