/* Unit tests for peer/ctl.c: the client commands against a real HTTP
 * server on HOME/api.sock.
 *
 * The server is libmicrohttpd on its own thread, listening on a Unix
 * socket in a fresh home folder; it answers each request with the next
 * canned reply the test gave it (status and body) and records what it was
 * asked (method, path with the query, body). Each test checks the requests
 * each command makes, what it prints (the table, the lines, --json's
 * objects), how API errors and replies that are not the API's are shown,
 * and the "no daemon" error when the socket is missing or refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <uv.h>

#include "common/error.h"
#include "common/textid.h"
#include "peer/cli.h"
#include "peer/ctl.h"
#include "peer/report.h"
#include "tests/lib/testutil.h"

#define MAX_REQS 16
#define BODY_MAX 8192

struct rec {
  char method[16];
  char path[512]; /* with "?data=..." when the query had it */
  char body[BODY_MAX];
};

struct canned {
  unsigned status;
  const char *body; /* borrowed: a literal or the test's buffer */
};

/* The server and what it saw; the lock guards both lists, which the
 * server's thread and the test share. */
static struct {
  struct MHD_Daemon *d;
  int fd;
  pthread_mutex_t mu;
  struct rec reqs[MAX_REQS];
  int nreqs;
  struct canned replies[MAX_REQS];
  int nreplies, next;
} g_srv;

static char g_home[512];
static char g_sock[600];

/* One request's body as it comes in. */
struct upload {
  char body[BODY_MAX];
  size_t len;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  struct upload *u = *con_cls;
  struct MHD_Response *resp;
  struct canned reply = {500, "{\"error\":\"no canned reply\",\"status\":500}"};
  enum MHD_Result ret;
  (void)cls;
  (void)version;
  if (u == NULL) {
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
      return MHD_NO;
    }
    *con_cls = u;
    return MHD_YES;
  }
  if (*data_size > 0) {
    size_t n = *data_size;
    if (n > sizeof(u->body) - 1 - u->len) {
      n = sizeof(u->body) - 1 - u->len;
    }
    memcpy(u->body + u->len, data, n);
    u->len += n;
    *data_size = 0;
    return MHD_YES;
  }
  pthread_mutex_lock(&g_srv.mu);
  if (g_srv.nreqs < MAX_REQS) {
    struct rec *r = &g_srv.reqs[g_srv.nreqs++];
    const char *q =
        MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "data");
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->path, sizeof(r->path), "%s%s%s", url, q ? "?data=" : "",
             q ? q : "");
    memcpy(r->body, u->body, u->len + 1);
  }
  if (g_srv.next < g_srv.nreplies) {
    reply = g_srv.replies[g_srv.next++];
  }
  pthread_mutex_unlock(&g_srv.mu);
  resp = MHD_create_response_from_buffer(
      strlen(reply.body), (void *)(uintptr_t)reply.body, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL) {
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  ret = MHD_queue_response(conn, reply.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)conn;
  (void)why;
  free(*con_cls);
  *con_cls = NULL;
}

/* A socket file at g_sock, bound; listening when listen_too. */
static int bind_socket(int listen_too) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(g_sock) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, g_sock, strlen(g_sock) + 1);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  if (listen_too) {
    assert_int_equal(listen(fd, 16), 0);
  }
  return fd;
}

static void server_start(void) {
  g_srv.fd = bind_socket(1);
  g_srv.d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request,
      NULL, MHD_OPTION_LISTEN_SOCKET, g_srv.fd, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
      MHD_OPTION_END);
  assert_non_null(g_srv.d);
}

/* The next reply the server gives. */
static void reply_with(unsigned status, const char *body) {
  pthread_mutex_lock(&g_srv.mu);
  assert_true(g_srv.nreplies < MAX_REQS);
  g_srv.replies[g_srv.nreplies].status = status;
  g_srv.replies[g_srv.nreplies].body = body;
  g_srv.nreplies++;
  pthread_mutex_unlock(&g_srv.mu);
}

static int setup(void **state) {
  (void)state;
  memset(&g_srv, 0, sizeof(g_srv));
  g_srv.fd = -1;
  pthread_mutex_init(&g_srv.mu, NULL);
  tu_tmpdir(g_home, sizeof(g_home));
  tu_path(g_sock, sizeof(g_sock), g_home, CTL_SOCKET_NAME);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (g_srv.d != NULL) {
    MHD_stop_daemon(g_srv.d);
    g_srv.d = NULL;
  }
  if (g_srv.fd >= 0) {
    close(g_srv.fd);
    g_srv.fd = -1;
  }
  pthread_mutex_destroy(&g_srv.mu);
  tu_rmtree(g_home);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Running a command */

struct run {
  int rc;
  char *out, *err; /* what it wrote (owned) */
};

static char *slurp(FILE *f) {
  long n;
  char *text;
  fflush(f);
  n = ftell(f);
  assert_true(n >= 0);
  text = calloc(1, (size_t)n + 1);
  assert_non_null(text);
  rewind(f);
  assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return text;
}

/* Runs "shoal-peer WORDS... --home HOME --no-config" through cli_parse and
 * ctl_run, with stdout and stderr in files. */
static struct run run_words(const char *const *words) {
  char *argv[32];
  int argc = 0;
  struct cli c;
  struct report r;
  struct run out;
  argv[argc++] = strdup("shoal-peer");
  for (int i = 0; words[i] != NULL; i++) {
    assert_true(argc < 28);
    argv[argc++] = strdup(words[i]);
  }
  argv[argc++] = strdup("--home");
  argv[argc++] = strdup(g_home);
  argv[argc++] = strdup("--no-config");
  argv[argc] = NULL;
  if (cli_parse(&c, argc, argv) != 0) {
    fail_msg("cli_parse refused: %s", c.error);
  }
  assert_true(CLI_IS_CLIENT(c.cmd));
  FILE *fo = tmpfile(), *fe = tmpfile();
  assert_non_null(fo);
  assert_non_null(fe);
  report_init(&r, fo, fe, c.json, c.quiet, 0);
  out.rc = ctl_run(&c, g_home, &r);
  report_close(&r);
  cli_close(&c);
  for (int i = 0; i < argc; i++) {
    free(argv[i]);
  }
  out.out = slurp(fo);
  out.err = slurp(fe);
  return out;
}

static struct run run_list(const char *first, ...) {
  const char *words[28];
  int n = 0;
  va_list ap;
  words[n++] = first;
  va_start(ap, first);
  for (const char *w; (w = va_arg(ap, const char *)) != NULL;) {
    assert_true(n < 27);
    words[n++] = w;
  }
  va_end(ap);
  words[n] = NULL;
  return run_words(words);
}

#define RUN(...) run_list(__VA_ARGS__, (const char *)NULL)

static void run_free(struct run *r) {
  free(r->out);
  free(r->err);
}

static void has(const char *text, const char *needle) {
  if (strstr(text, needle) == NULL) {
    fail_msg("\"%s\" does not hold \"%s\"", text, needle);
  }
}

/* The i-th request was method on path, with this body (NULL: none). */
static void asked(int i, const char *method, const char *path,
                  const char *body) {
  pthread_mutex_lock(&g_srv.mu);
  struct rec r = g_srv.reqs[i];
  int n = g_srv.nreqs;
  pthread_mutex_unlock(&g_srv.mu);
  if (i >= n) {
    fail_msg("request %d was not made (%d were)", i, n);
  }
  assert_string_equal(r.method, method);
  assert_string_equal(r.path, path);
  if (body == NULL) {
    assert_string_equal(r.body, "");
  } else {
    /* Compared as JSON: the order of keys is the writer's. */
    json_t *want = json_loads(body, 0, NULL);
    json_t *got = json_loads(r.body, 0, NULL);
    assert_non_null(want);
    if (got == NULL || !json_equal(want, got)) {
      fail_msg("body %s, expected %s", r.body, body);
    }
    json_decref(want);
    json_decref(got);
  }
}

static int requests_made(void) {
  pthread_mutex_lock(&g_srv.mu);
  int n = g_srv.nreqs;
  pthread_mutex_unlock(&g_srv.mu);
  return n;
}

/* Two content IDs, and objects for them as the API writes them. */
static char g_id1[TEXTID_STRLEN], g_id2[TEXTID_STRLEN];
static char g_c1[2048], g_c2[2048], g_list[8192];

static void make_contents(void) {
  uint8_t b[32];
  tu_fill(b, sizeof(b), 1);
  textid_encode(TEXTID_CONTENT, b, g_id1);
  tu_fill(b, sizeof(b), 2);
  textid_encode(TEXTID_CONTENT, b, g_id2);
  /* The second shares its first 8 characters with nothing but itself;
   * its name would drive a terminal if it were printed as it is. */
  snprintf(g_c1, sizeof(g_c1),
           "{\"id\":\"%s\",\"name\":\"report.pdf\",\"kind\":\"download\","
           "\"state\":\"downloading\",\"size\":10485760,\"have\":4194304,"
           "\"progress\":0.4,\"download_rate\":1048576,\"upload_rate\":0,"
           "\"peers\":3,\"seeders\":1,\"uploaded\":0,\"downloaded\":4194304,"
           "\"ratio\":0.0,\"path\":\"/home/ann/Downloads\",\"link\":"
           "\"shoal:x\",\"added\":1796553600,\"error\":null,\"changed\":null}",
           g_id1);
  snprintf(g_c2, sizeof(g_c2),
           "{\"id\":\"%s\",\"name\":\"\\u001b[31mred\\u0085\\u007f\","
           "\"kind\":\"share\",\"state\":\"seeding\",\"size\":2048,"
           "\"have\":2048,\"progress\":1.0,\"download_rate\":0,"
           "\"upload_rate\":2048,\"peers\":1,\"seeders\":0,\"uploaded\":"
           "4096,\"downloaded\":0,\"ratio\":2.0,\"path\":\"/srv\",\"link\":"
           "\"shoal:y\",\"added\":1,\"error\":null,\"changed\":null}",
           g_id2);
  snprintf(g_list, sizeof(g_list),
           "{\"contents\":[%s,%s,{\"id\":null,\"name\":\"\",\"kind\":"
           "\"share\",\"state\":\"checking\",\"size\":0,\"progress\":0,"
           "\"path\":\"/home/ann/photos\"}]}",
           g_c1, g_c2);
}

/* ------------------------------------------------------------------------ */
/* ls and status */

static void ls_prints_a_table(void **state) {
  (void)state;
  make_contents();
  server_start();
  reply_with(200, g_list);
  struct run r = RUN("ls");
  assert_int_equal(r.rc, 0);
  asked(0, "GET", "/v1/contents", NULL);
  assert_string_equal(r.err, "");
  /* A header, and one row for each content. */
  char *l1 = strchr(r.out, '\n');
  assert_non_null(l1);
  assert_true(strncmp(r.out, "NAME", 4) == 0);
  has(r.out, "SIZE");
  has(r.out, "DONE");
  has(r.out, "RATIO");
  char id12[16];
  snprintf(id12, sizeof(id12), "%.12s", g_id1);
  has(r.out, "report.pdf");
  has(r.out, "10.0 MiB");
  has(r.out, "40.0%");
  has(r.out, "downloading");
  has(r.out, "1.00 MiB/s");
  has(r.out, "0.00");
  has(r.out, id12);
  /* The whole ID is not printed: its first 12 characters are. */
  assert_null(strstr(r.out, g_id1));
  /* A name from elsewhere is escaped: no ESC, C1 or DEL reaches the
   * terminal. */
  has(r.out, "\\x1b[31mred\\u0085\\x7f");
  assert_null(strchr(r.out, 0x1b));
  assert_null(strchr(r.out, 0x7f));
  has(r.out, "100.0%");
  has(r.out, "2.00");
  /* A share being hashed: its path, and no ID yet. */
  has(r.out, "/home/ann/photos");
  has(r.out, "checking");
  int lines = 0;
  for (const char *p = r.out; *p; p++) {
    lines += *p == '\n';
  }
  assert_int_equal(lines, 4);
  run_free(&r);
}

static void ls_json_is_one_content_a_line(void **state) {
  (void)state;
  make_contents();
  server_start();
  reply_with(200, g_list);
  struct run r = RUN("ls", "--json");
  assert_int_equal(r.rc, 0);
  char *line = r.out;
  const char *want[] = {g_id1, g_id2, NULL};
  for (int i = 0; i < 3; i++) {
    char *end = strchr(line, '\n');
    assert_non_null(end);
    *end = '\0';
    /* Plain ASCII: whatever the names hold cannot drive a terminal. */
    for (const char *p = line; *p; p++) {
      assert_true(*p >= 0x20 && *p < 0x7f);
    }
    json_t *o = json_loads(line, 0, NULL);
    assert_non_null(o);
    if (want[i] != NULL) {
      assert_string_equal(json_string_value(json_object_get(o, "id")), want[i]);
    } else {
      assert_true(json_is_null(json_object_get(o, "id")));
    }
    if (i == 1) {
      /* Exact: the name comes back as the daemon sent it. */
      assert_string_equal(json_string_value(json_object_get(o, "name")),
                          "\x1b[31mred\xc2\x85\x7f");
    }
    json_decref(o);
    line = end + 1;
  }
  assert_string_equal(line, "");
  run_free(&r);
}

static void ls_of_nothing_says_so(void **state) {
  (void)state;
  server_start();
  reply_with(200, "{\"contents\":[]}");
  reply_with(200, "{\"contents\":[]}");
  struct run r = RUN("ls");
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.out, "");
  has(r.err, "no contents");
  run_free(&r);
  r = RUN("ls", "--json");
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "");
  run_free(&r);
}

static const char g_status[] =
    "{\"version\":\"0.1.0\",\"peer\":\"PEERKEY\",\"port\":41234,"
    "\"api\":{\"socket\":\"/h/api.sock\",\"tcp\":\"127.0.0.1:7071\"},"
    "\"uptime\":3600,\"contents\":12,\"downloading\":1,\"seeding\":11,"
    "\"uploaded\":1073741824,\"downloaded\":10485760,\"upload_rate\":524288,"
    "\"download_rate\":0,\"limits\":{\"upload\":1048576,\"download\":0}}";

static void status_prints_a_few_lines(void **state) {
  (void)state;
  server_start();
  tu_write_file(g_home, CTL_TOKEN_NAME, "tok-EN_123\n", 11);
  reply_with(200, g_status);
  struct run r = RUN("status");
  assert_int_equal(r.rc, 0);
  asked(0, "GET", "/v1/status", NULL);
  has(r.out, "shoal-peer 0.1.0, up 1h00m, peer port 41234\n");
  has(r.out, "peer      PEERKEY\n");
  has(r.out, "contents  12 (1 downloading, 11 seeding)\n");
  has(r.out, "up 1.00 GiB (512 KiB/s), down 10.0 MiB (0 B/s)");
  has(r.out, "limits    up 1.00 MiB/s, down none\n");
  has(r.out, "api       /h/api.sock, 127.0.0.1:7071\n");
  has(r.out, "page      http://127.0.0.1:7071/#token=tok-EN_123\n");
  run_free(&r);

  /* A token that a URL would not carry as it is is not shown. */
  tu_write_file(g_home, CTL_TOKEN_NAME, "a b&c\n", 6);
  reply_with(200, g_status);
  r = RUN("status");
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "page"));
  run_free(&r);

  reply_with(200, g_status);
  r = RUN("status", "--json");
  assert_int_equal(r.rc, 0);
  json_t *o = json_loads(r.out, 0, NULL);
  json_t *want = json_loads(g_status, 0, NULL);
  assert_true(json_equal(o, want));
  json_decref(o);
  json_decref(want);
  run_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Commands that change the library */

static void add_posts_each_link_with_an_absolute_dir(void **state) {
  char body[LINK_MAX_CHARS + 64], want[4096];
  (void)state;
  make_contents();
  server_start();
  /* Links that parse: made by the link module's own writer. */
  struct share_link l;
  char l1[LINK_MAX_CHARS + 1], l2[LINK_MAX_CHARS + 1];
  memset(&l, 0, sizeof(l));
  tu_fill(l.id, sizeof(l.id), 1);
  snprintf(l.name, sizeof(l.name), "report.pdf");
  l.size = 10;
  l.tracker_count = 1;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host), "127.0.0.1");
  l.trackers[0].port = 7070;
  {
    uint8_t key[TEXTID_BYTES];
    tu_fill(key, sizeof(key), 3);
    link_set_key(&l, key); /* every tracker of a link names its key */
  }
  assert_true(link_format(&l, l1, sizeof(l1)) > 0);
  tu_fill(l.id, sizeof(l.id), 2);
  assert_true(link_format(&l, l2, sizeof(l2)) > 0);

  reply_with(201, g_c1);
  reply_with(409, "{\"error\":\"already in the library\",\"status\":409}");
  struct run r = RUN("add", l1, l2, "-o", "/dl");
  assert_int_equal(r.rc, 1);
  snprintf(body, sizeof(body), "{\"link\":\"%s\",\"dir\":\"/dl\"}", l1);
  asked(0, "POST", "/v1/contents", body);
  snprintf(body, sizeof(body), "{\"link\":\"%s\",\"dir\":\"/dl\"}", l2);
  asked(1, "POST", "/v1/contents", body);
  /* The first is added; the second's error is the API's message. */
  snprintf(want, sizeof(want), "added report.pdf (%.12s)\n", g_id1);
  assert_string_equal(r.out, want);
  assert_string_equal(r.err, "shoal-peer: error: already in the library\n");
  run_free(&r);

  /* Without -o, no dir: the daemon's --download-dir. */
  reply_with(201, g_c1);
  r = RUN("add", l1, "--json");
  assert_int_equal(r.rc, 0);
  snprintf(body, sizeof(body), "{\"link\":\"%s\"}", l1);
  asked(2, "POST", "/v1/contents", body);
  json_t *o = json_loads(r.out, 0, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "id")), g_id1);
  json_decref(o);
  run_free(&r);
}

static void publish_posts_each_absolute_path(void **state) {
  char body[2048], cwd[1024];
  (void)state;
  server_start();
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  reply_with(202, "{\"id\":null,\"name\":\"photos\",\"kind\":\"share\","
                  "\"state\":\"checking\",\"path\":\"/home/ann\"}");
  reply_with(202, "{\"id\":null,\"name\":\"x\",\"state\":\"checking\"}");
  struct run r = RUN("publish", "/home/ann/photos", "rel");
  assert_int_equal(r.rc, 0);
  asked(0, "POST", "/v1/shares", "{\"path\":\"/home/ann/photos\"}");
  char *real = realpath(cwd, NULL);
  snprintf(body, sizeof(body), "{\"path\":\"%s/rel\"}", real);
  free(real);
  asked(1, "POST", "/v1/shares", body);
  has(r.out, "sharing /home/ann/photos: hashing");
  run_free(&r);
}

static void pause_resume_recheck_rm_ask_for_each_id(void **state) {
  char path[256], want[512];
  (void)state;
  make_contents();
  server_start();
  static const struct {
    const char *word, *method, *suffix, *verb;
  } cmds[] = {{"pause", "POST", "/pause", "paused"},
              {"resume", "POST", "/resume", "resumed"},
              {"recheck", "POST", "/recheck", "rechecking"}};
  int n = 0;
  for (size_t i = 0; i < 3; i++) {
    reply_with(200, g_c1);
    reply_with(200, g_c2);
    struct run r = RUN(cmds[i].word, g_id1, g_id2);
    assert_int_equal(r.rc, 0);
    snprintf(path, sizeof(path), "/v1/contents/%s%s", g_id1, cmds[i].suffix);
    asked(n++, cmds[i].method, path, NULL);
    snprintf(path, sizeof(path), "/v1/contents/%s%s", g_id2, cmds[i].suffix);
    asked(n++, cmds[i].method, path, NULL);
    snprintf(want, sizeof(want), "%s report.pdf (%.12s)\n", cmds[i].verb,
             g_id1);
    has(r.out, want);
    has(r.out, "\\x1b[31mred");
    run_free(&r);
  }
  snprintf(want, sizeof(want), "{\"removed\":\"%s\",\"data_deleted\":false}",
           g_id1);
  reply_with(200, want);
  struct run r = RUN("rm", g_id1);
  assert_int_equal(r.rc, 0);
  snprintf(path, sizeof(path), "/v1/contents/%s", g_id1);
  asked(n++, "DELETE", path, NULL);
  snprintf(want, sizeof(want), "removed %s\n", g_id1);
  assert_string_equal(r.out, want);
  run_free(&r);

  snprintf(want, sizeof(want), "{\"removed\":\"%s\",\"data_deleted\":true}",
           g_id1);
  reply_with(200, want);
  r = RUN("rm", g_id1, "--delete-data", "--json");
  assert_int_equal(r.rc, 0);
  snprintf(path, sizeof(path), "/v1/contents/%s?data=delete", g_id1);
  asked(n++, "DELETE", path, NULL);
  json_t *o = json_loads(r.out, 0, NULL);
  assert_true(json_is_true(json_object_get(o, "data_deleted")));
  json_decref(o);
  run_free(&r);
}

static void prefixes_are_resolved_against_the_list(void **state) {
  char path[256], pfx[16], want[512];
  (void)state;
  make_contents();
  server_start();
  snprintf(pfx, sizeof(pfx), "%.8s", g_id2);
  reply_with(200, g_list);
  reply_with(200, g_c2);
  struct run r = RUN("pause", pfx);
  assert_int_equal(r.rc, 0);
  asked(0, "GET", "/v1/contents", NULL);
  snprintf(path, sizeof(path), "/v1/contents/%s/pause", g_id2);
  asked(1, "POST", path, NULL);
  run_free(&r);

  /* Unknown: named, and nothing is done. */
  reply_with(200, g_list);
  r = RUN("rm", "zzzzzzzz", g_id1);
  assert_int_equal(r.rc, 1);
  assert_int_equal(requests_made(), 3);
  has(r.err, "no content has an ID that starts with 'zzzzzzzz'");
  assert_string_equal(r.out, "");
  run_free(&r);

  /* Ambiguous: two contents whose IDs start alike. */
  char list[8192];
  snprintf(list, sizeof(list),
           "{\"contents\":[{\"id\":\"%s\"},{\"id\":\"%.50saaaaaa\"}]}", g_id1,
           g_id1);
  reply_with(200, list);
  snprintf(pfx, sizeof(pfx), "%.10s", g_id1);
  r = RUN("resume", pfx);
  assert_int_equal(r.rc, 1);
  assert_int_equal(requests_made(), 4);
  snprintf(want, sizeof(want),
           "'%s' starts the IDs of 2 contents — give more of the ID", pfx);
  has(r.err, want);
  run_free(&r);
}

static void limits_shows_or_puts(void **state) {
  (void)state;
  server_start();
  reply_with(200, "{\"upload\":0,\"download\":2097152}");
  struct run r = RUN("limits");
  assert_int_equal(r.rc, 0);
  asked(0, "GET", "/v1/limits", NULL);
  assert_string_equal(r.out,
                      "upload limit    none\ndownload limit  2.00 MiB/s\n");
  run_free(&r);
  reply_with(200, "{\"upload\":1048576,\"download\":2097152}");
  r = RUN("limits", "--upload-rate", "1M");
  assert_int_equal(r.rc, 0);
  asked(1, "PUT", "/v1/limits", "{\"upload\":1048576}");
  has(r.out, "upload limit    1.00 MiB/s\n");
  run_free(&r);
  reply_with(200, "{\"upload\":0,\"download\":0}");
  r = RUN("limits", "--upload-rate=0", "--download-rate=0", "--json");
  assert_int_equal(r.rc, 0);
  asked(2, "PUT", "/v1/limits", "{\"upload\":0,\"download\":0}");
  assert_string_equal(r.out, "{\"upload\":0,\"download\":0}\n");
  run_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Errors */

static void api_errors_are_the_api_s_message(void **state) {
  char cid[TEXTID_STRLEN];
  uint8_t b[32];
  (void)state;
  tu_fill(b, sizeof(b), 9);
  textid_encode(TEXTID_CONTENT, b, cid);
  server_start();
  reply_with(404, "{\"error\":\"no content with ID x; 'shoal-peer ls' lists "
                  "them\",\"status\":404}");
  struct run r = RUN("pause", cid);
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(
      r.err, "shoal-peer: error: no content with ID x; 'shoal-peer ls' lists "
             "them\n");
  run_free(&r);
  /* With --json, an error event too. */
  reply_with(409, "{\"error\":\"already paused\",\"status\":409}");
  r = RUN("pause", cid, "--json");
  assert_int_equal(r.rc, 1);
  json_t *o = json_loads(r.out, 0, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "event")), "error");
  assert_string_equal(json_string_value(json_object_get(o, "code")), "EEXIST");
  assert_string_equal(json_string_value(json_object_get(o, "message")),
                      "already paused");
  json_decref(o);
  run_free(&r);
  /* A message that would drive a terminal is escaped. */
  reply_with(400, "{\"error\":\"bad\\u001b[2J\",\"status\":400}");
  r = RUN("status");
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.err, "shoal-peer: error: bad\\x1b[2J\n");
  run_free(&r);
}

static void replies_that_are_not_the_api_s_are_errors(void **state) {
  (void)state;
  server_start();
  reply_with(500, "Internal Server Error");
  struct run r = RUN("ls");
  assert_int_equal(r.rc, 1);
  has(r.err, "the daemon answered GET /v1/contents with HTTP 500 and no "
             "message");
  run_free(&r);
  static const char *const bad[] = {"", "{\"contents\":", "[1,2]", "\"x\"",
                                    "{\"contents\":\"no\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    reply_with(200, bad[i]);
    r = RUN("ls");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    has(r.err, "shoal-peer: error: the daemon's");
    run_free(&r);
  }
  /* Fields of the wrong type show as empty, and do not stop the table. */
  reply_with(200, "{\"contents\":[{\"id\":5,\"name\":[],\"size\":-1,"
                  "\"progress\":\"x\",\"peers\":1.5,\"ratio\":1e300}]}");
  r = RUN("ls");
  assert_int_equal(r.rc, 0);
  has(r.out, "0.0%");
  run_free(&r);
}

static void no_daemon_when_the_socket_is_missing_or_refuses(void **state) {
  char want[2048];
  (void)state;
  snprintf(want, sizeof(want),
           "shoal-peer: error: no daemon runs in %s (start one with "
           "'shoal-peer daemon --home %s')\n",
           g_home, g_home);
  struct run r = RUN("ls");
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, want);
  run_free(&r);
  /* A socket left behind, that nothing listens on. */
  g_srv.fd = bind_socket(0);
  r = RUN("status");
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.err, want);
  run_free(&r);
  /* A command of several requests stops at the first. */
  char cid[TEXTID_STRLEN];
  uint8_t b[32];
  tu_fill(b, sizeof(b), 3);
  textid_encode(TEXTID_CONTENT, b, cid);
  r = RUN("pause", cid, cid, "--json");
  assert_int_equal(r.rc, 1);
  json_t *o = json_loads(r.out, 0, NULL); /* one line, one error */
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "code")),
                      "ECONNREFUSED");
  json_decref(o);
  assert_string_equal(r.err, want);
  run_free(&r);
}

/* shoal_strerror's names for libuv's codes, as the program hands them
 * over (main.c). */
static const struct error_text uv_errors[] = {
#define UV_ERROR_ROW_(name, msg) {UV_##name, #name, msg},
    UV_ERRNO_MAP(UV_ERROR_ROW_)
#undef UV_ERROR_ROW_
};

int main(void) {
  error_set_system(uv_errors, sizeof(uv_errors) / sizeof(uv_errors[0]));
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(ls_prints_a_table),
      T(ls_json_is_one_content_a_line),
      T(ls_of_nothing_says_so),
      T(status_prints_a_few_lines),
      T(add_posts_each_link_with_an_absolute_dir),
      T(publish_posts_each_absolute_path),
      T(pause_resume_recheck_rm_ask_for_each_id),
      T(prefixes_are_resolved_against_the_list),
      T(limits_shows_or_puts),
      T(api_errors_are_the_api_s_message),
      T(replies_that_are_not_the_api_s_are_errors),
      T(no_daemon_when_the_socket_is_missing_or_refuses),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
