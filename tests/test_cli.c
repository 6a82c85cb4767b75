/* Unit tests for peer/cli.c: shoal-peer's command line, read into a struct
 * cli without running anything.
 *
 * cli_parse's SHOAL_EINVAL is the program's exit status 2 (main.c prints
 * cli.error and exits 2; tests/it_cli.c checks that end to end), so every
 * refusal here is an exit-2 case: unknown options and commands, missing
 * and unwanted values, every option given to a command it does not apply
 * to, each value just outside its range, malformed links and content IDs,
 * and a bad SHOAL_TRACKER. What is accepted is pinned too: "--opt=value"
 * and "--opt value", "-oDIR", options after the arguments, "--", prefixes
 * of long options, the last of a repeated option, the default tracker
 * port, and where a get takes its trackers and key from.
 *
 * The option-to-command table is read from docs/shoal-peer.1 (found as
 * test_spec finds protocol.md: beside $SHOAL_TEST_VECTORS, else under the
 * current folder) and checked against what cli_parse accepts, so the page
 * and the code cannot drift apart; -h's text must name every option.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/link.h"
#include "common/textid.h"
#include "peer/cli.h"
#include "peer/fmt.h"
#include "tests/lib/testutil.h"

#define MAX_WORDS 64
#define HINT " — see 'shoal-peer --help'"
#define COMMANDS                                                               \
  "share, get, search, id, daemon, add, publish, ls, pause, resume, rm, "      \
  "recheck, status or limits"

/* The argv of the last parse: cli_parse borrows it, so it lives until the
 * next parse or the end of the test. */
static char *g_argv[MAX_WORDS + 1];
static int g_argc;

static void free_argv(void) {
  for (int i = 0; i < g_argc; i++) {
    free(g_argv[i]);
  }
  g_argc = 0;
}

/* Each test's own folder; XDG_CONFIG_HOME points into it, so that no
 * config file of the machine's is read, and the default one is
 * g_dir/xdg/shoal/peer.conf (missing until a test writes it). */
static char g_dir[512];
static char g_conf[600];

static int teardown(void **state) {
  (void)state;
  free_argv();
  unsetenv(CLI_TRACKER_ENV);
  unsetenv("XDG_CONFIG_HOME");
  tu_rmtree(g_dir);
  return 0;
}

static int setup(void **state) {
  char xdg[600];
  (void)state;
  unsetenv(CLI_TRACKER_ENV);
  tu_tmpdir(g_dir, sizeof(g_dir));
  tu_path(xdg, sizeof(xdg), g_dir, "xdg");
  setenv("XDG_CONFIG_HOME", xdg, 1);
  tu_path(g_conf, sizeof(g_conf), g_dir, "xdg/" CLI_CONFIG_NAME);
  return 0;
}

/* Writes the default config file. */
static void write_conf(const char *text) {
  tu_write_file(g_dir, "xdg/" CLI_CONFIG_NAME, text, strlen(text));
}

/* Parses "shoal-peer" and the words of the NULL-ended array into c. */
static int parse_array(struct cli *c, const char *const *words) {
  free_argv();
  g_argv[g_argc++] = strdup("shoal-peer");
  for (int i = 0; words[i] != NULL; i++) {
    assert_true(g_argc < MAX_WORDS);
    g_argv[g_argc++] = strdup(words[i]);
  }
  g_argv[g_argc] = NULL;
  return cli_parse(c, g_argc, g_argv);
}

static int parse_list(struct cli *c, ...) {
  const char *words[MAX_WORDS + 1];
  int n = 0;
  va_list ap;
  va_start(ap, c);
  for (const char *w; (w = va_arg(ap, const char *)) != NULL;) {
    assert_true(n < MAX_WORDS);
    words[n++] = w;
  }
  va_end(ap);
  words[n] = NULL;
  return parse_array(c, words);
}

#define PARSE(c, ...) parse_list((c), __VA_ARGS__, (const char *)NULL)

/* The command line is refused with exactly this message. */
static void refused_with(struct cli *c, int rc, const char *msg) {
  assert_int_equal(rc, SHOAL_EINVAL);
  assert_string_equal(c->error, msg);
  cli_close(c);
}

/* The command line is refused with a message that holds each NULL-ended
 * needle. */
static void refused_saying(struct cli *c, int rc, ...) {
  va_list ap;
  if (rc != SHOAL_EINVAL) {
    fail_msg("accepted (%d), expected a usage error", rc);
  }
  va_start(ap, rc);
  for (const char *n; (n = va_arg(ap, const char *)) != NULL;) {
    if (strstr(c->error, n) == NULL) {
      va_end(ap);
      fail_msg("\"%s\" does not say \"%s\"", c->error, n);
    }
  }
  va_end(ap);
  cli_close(c);
}

#define REFUSED(c, rc, ...) refused_saying((c), (rc), __VA_ARGS__, NULL)

static void accepted(struct cli *c, int rc) {
  if (rc != 0) {
    fail_msg("refused (%d): %s", rc, c->error);
  }
}

static void key_text(char out[TEXTID_STRLEN], uint64_t seed) {
  uint8_t pk[32];
  tu_fill(pk, sizeof(pk), seed);
  textid_encode(TEXTID_KEY, pk, out);
}

static void content_text(char out[TEXTID_STRLEN], uint64_t seed) {
  uint8_t id[32];
  tu_fill(id, sizeof(id), seed);
  textid_encode(TEXTID_CONTENT, id, out);
}

/* A link to content seed, with ntrackers trackers 10.0.0.N:7000+N and
 * tracker key seed + 1. */
static void make_link(char *out, size_t cap, uint64_t seed,
                      unsigned ntrackers) {
  struct share_link l;
  uint8_t key[32];
  memset(&l, 0, sizeof(l));
  tu_fill(l.id, sizeof(l.id), seed);
  tu_fill(key, sizeof(key), seed + 1);
  snprintf(l.name, sizeof(l.name), "file-%u.bin", (unsigned)seed);
  l.size = 1000 + seed;
  l.tracker_count = ntrackers;
  for (unsigned i = 0; i < ntrackers; i++) {
    snprintf(l.trackers[i].host, sizeof(l.trackers[i].host), "10.0.0.%u",
             i + 1);
    l.trackers[i].port = (uint16_t)(7000 + i + 1);
  }
  link_set_key(&l, key);
  assert_true(link_format(&l, out, cap) > 0);
}

/* ------------------------------------------------------------------------ */
/* Commands */

static void each_command_takes_its_arguments(void **state) {
  struct cli c;
  char link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 1, 1);

  accepted(&c, PARSE(&c, "share", "a", "b", "--tracker", "t.example"));
  assert_int_equal(c.cmd, CLI_SHARE);
  assert_int_equal(c.nargs, 2);
  assert_string_equal(c.args[0], "a");
  assert_string_equal(c.args[1], "b");
  cli_close(&c);

  accepted(&c, PARSE(&c, "get", link));
  assert_int_equal(c.cmd, CLI_GET);
  assert_int_equal(c.nargs, 1);
  assert_int_equal(c.ngets, 1);
  cli_close(&c);

  accepted(&c, PARSE(&c, "search", "cat", "videos", "--tracker", "t"));
  assert_int_equal(c.cmd, CLI_SEARCH);
  assert_string_equal(c.query.query, "cat videos");
  cli_close(&c);

  accepted(&c, PARSE(&c, "id"));
  assert_int_equal(c.cmd, CLI_ID);
  assert_int_equal(c.nargs, 0);
  cli_close(&c);
}

static void defaults_when_nothing_is_given(void **state) {
  struct cli c;
  (void)state;
  accepted(&c, PARSE(&c, "id"));
  assert_string_equal(c.out_dir, ".");
  assert_null(c.home);
  assert_int_equal(c.limit, CLI_LIMIT_DEFAULT);
  assert_int_equal(c.log_level, LOG_WARN);
  assert_int_equal(c.node.max_peers, NODE_DEFAULT_MAX_PEERS);
  assert_null(c.node.listen);
  assert_null(c.node.home);
  assert_int_equal(c.node.mode, NODE_MODE_P2P);
  assert_int_equal(c.node.upload_rate, 0);
  assert_int_equal(c.node.download_rate, 0);
  assert_int_equal(c.node.interval_cap_s, 0);
  assert_false(c.json || c.quiet || c.seed || c.have_key);
  assert_int_equal(c.ntrackers, 0);
  cli_close(&c);
}

static void a_command_is_needed_and_must_be_known(void **state) {
  struct cli c;
  (void)state;
  refused_with(&c, PARSE(&c, "--json"), "a command is needed: " COMMANDS HINT);
  refused_with(&c, parse_array(&c, (const char *[]){NULL}),
               "a command is needed: " COMMANDS HINT);
  refused_with(&c, PARSE(&c, "frobnicate"),
               "unknown command 'frobnicate' (" COMMANDS ")" HINT);
  /* Commands are not abbreviated. */
  REFUSED(&c, PARSE(&c, "sh", "x"), "unknown command 'sh'");
  REFUSED(&c, PARSE(&c, "Share", "x"), "unknown command 'Share'");
}

static void help_and_version_stop_the_parse(void **state) {
  struct cli c;
  (void)state;
  static const char *const help[][4] = {
      {"-h"},
      {"--help"},
      {"help"},
      {"help", "--seed", "extra"}, /* "help" takes what follows as is */
      {"get", "-h"},
      {"-h", "--frobnicate"}, /* nothing after -h is read */
      {"frobnicate", "-h"},
      {"--he"},
  };
  for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++) {
    accepted(&c, parse_array(&c, help[i]));
    assert_int_equal(c.cmd, CLI_HELP);
    cli_close(&c);
  }
  accepted(&c, PARSE(&c, "-V"));
  assert_int_equal(c.cmd, CLI_VERSION);
  cli_close(&c);
  accepted(&c, PARSE(&c, "id", "--version", "--frobnicate"));
  assert_int_equal(c.cmd, CLI_VERSION);
  cli_close(&c);
  /* What comes before -h is read first. */
  refused_with(&c, PARSE(&c, "--frobnicate", "-h"),
               "unknown option --frobnicate" HINT);
}

/* ------------------------------------------------------------------------ */
/* How options are written */

static void unknown_options_and_values_are_named(void **state) {
  struct cli c;
  (void)state;
  refused_with(&c, PARSE(&c, "id", "--frob"), "unknown option --frob" HINT);
  refused_with(&c, PARSE(&c, "id", "--frob=1"), "unknown option --frob" HINT);
  refused_with(&c, PARSE(&c, "id", "-x"), "unknown option -x" HINT);
  refused_with(&c, PARSE(&c, "id", "-qx"), "unknown option -x" HINT);
  refused_with(&c, PARSE(&c, "share", "--seed=1"),
               "--seed takes no value" HINT);
  refused_with(&c, PARSE(&c, "id", "--json=yes"), "--json takes no value" HINT);
  refused_with(&c, PARSE(&c, "id", "--quiet=1"),
               "-q/--quiet takes no value" HINT);
  refused_with(&c, PARSE(&c, "search", "x", "--tracker"),
               "--tracker needs a value" HINT);
  refused_with(&c, PARSE(&c, "get", "x", "-o"),
               "-o/--output needs a value" HINT);
  refused_with(&c, PARSE(&c, "id", "--home"), "--home needs a value" HINT);
}

static void values_come_after_equals_or_as_the_next_word(void **state) {
  struct cli c;
  char link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 2, 1);
  accepted(&c, PARSE(&c, "get", link, "--output=dir1", "--home=h1"));
  assert_string_equal(c.out_dir, "dir1");
  assert_string_equal(c.home, "h1");
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", link, "--output", "dir2", "--home", "h2"));
  assert_string_equal(c.out_dir, "dir2");
  assert_string_equal(c.home, "h2");
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", link, "-odir3"));
  assert_string_equal(c.out_dir, "dir3");
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", link, "-o", "dir4", "-q"));
  assert_string_equal(c.out_dir, "dir4");
  assert_true(c.quiet);
  cli_close(&c);
  /* A value may start with '-'; "--opt=" gives the empty value. */
  accepted(&c, PARSE(&c, "get", link, "-o", "-dash"));
  assert_string_equal(c.out_dir, "-dash");
  cli_close(&c);
  refused_with(&c, PARSE(&c, "get", link, "--output="),
               "-o/--output needs a folder, not ''" HINT);
  /* The last of a repeated option counts (but every --tracker). */
  accepted(&c, PARSE(&c, "search", "x", "--limit", "3", "--limit=7",
                     "--tracker", "a", "--tracker", "b"));
  assert_int_equal(c.limit, 7);
  assert_int_equal(c.query.limit, 7);
  assert_int_equal(c.ntrackers, 2);
  cli_close(&c);
}

static void options_come_anywhere_and_double_dash_ends_them(void **state) {
  struct cli c;
  (void)state;
  accepted(&c, PARSE(&c, "--json", "search", "-q", "a", "--tracker", "t", "b",
                     "--limit=2"));
  assert_int_equal(c.cmd, CLI_SEARCH);
  assert_true(c.json && c.quiet);
  assert_string_equal(c.query.query, "a b");
  cli_close(&c);
  /* After --, words that look like options are words. */
  accepted(&c, PARSE(&c, "search", "--tracker", "t", "--", "-report", "--json",
                     "-h"));
  assert_false(c.json);
  assert_int_equal(c.nargs, 3);
  assert_string_equal(c.query.query, "-report --json -h");
  cli_close(&c);
  /* The command itself may follow --. */
  accepted(&c, PARSE(&c, "--home", "h", "--", "id"));
  assert_int_equal(c.cmd, CLI_ID);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "id", "--", "--home", "h"),
               "id takes no arguments, not '--home'" HINT);
  /* A lone "-" is a word. */
  accepted(&c, PARSE(&c, "share", "-", "--tracker", "t"));
  assert_string_equal(c.args[0], "-");
  cli_close(&c);
}

static void POSIXLY_CORRECT_does_not_stop_at_the_first_word(void **state) {
  struct cli c;
  (void)state;
  setenv("POSIXLY_CORRECT", "1", 1);
  int rc = PARSE(&c, "search", "a", "--tracker", "t", "--json");
  unsetenv("POSIXLY_CORRECT");
  accepted(&c, rc);
  assert_true(c.json);
  assert_int_equal(c.nargs, 1);
  cli_close(&c);
}

static void long_options_may_be_shortened_to_one_prefix(void **state) {
  struct cli c;
  char key[TEXTID_STRLEN], opt[TEXTID_STRLEN + 16];
  char link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 3, 1);
  key_text(key, 4);
  snprintf(opt, sizeof(opt), "--tracker-k=%s", key);
  accepted(&c,
           PARSE(&c, "get", link, "--out=o", "--se", "--ho", "h", "--js",
                 "--qu", "--log=debug", "--max=9", "--up=1k", "--download-r=2k",
                 "--mo=cs", "--int=5", "--lis=127.0.0.1:0", opt));
  assert_string_equal(c.out_dir, "o");
  assert_true(c.seed && c.json && c.quiet && c.have_key);
  assert_string_equal(c.home, "h");
  assert_int_equal(c.log_level, LOG_DEBUG);
  assert_int_equal(c.node.max_peers, 9);
  assert_int_equal(c.node.upload_rate, 1024);
  assert_int_equal(c.node.download_rate, 2048);
  assert_int_equal(c.node.mode, NODE_MODE_CS);
  assert_int_equal(c.node.interval_cap_s, 5);
  assert_string_equal(c.node.listen, "127.0.0.1:0");
  cli_close(&c);
  /* "--tracker" is whole, so it is not a prefix of --tracker-key. */
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "t"));
  assert_false(c.have_key);
  cli_close(&c);
  /* A prefix of two options names neither. */
  refused_with(&c, PARSE(&c, "search", "x", "--tra", "t"),
               "unknown option --tra" HINT);
  refused_with(&c, PARSE(&c, "get", link, "--down", "1"),
               "unknown option --down" HINT);
  /* A whole name is never a prefix: --watch is not --watch-share. */
  accepted(&c, PARSE(&c, "daemon", "--watch", "w"));
  assert_false(c.watch_share);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "get", link, "--m", "1"),
               "unknown option --m" HINT);
  /* Long options are not given with one dash. */
  refused_with(&c, PARSE(&c, "id", "-json"), "unknown option -j" HINT);
}

/* ------------------------------------------------------------------------ */
/* The option-to-command table */

/* The commands, by enum cli_cmd, as the man page's tables name them. */
static const char *const g_cmds[] = {
    "",   "share", "get",    "search", "id",      "daemon", "add",   "publish",
    "ls", "pause", "resume", "rm",     "recheck", "status", "limits"};
#define NCMDS (sizeof(g_cmds) / sizeof(g_cmds[0]))

/* An option, a value it accepts, and its rows of docs/shoal-peer.1. */
struct opt_case {
  const char *name; /* without the dashes */
  const char *value;
  int doc[NCMDS]; /* by enum cli_cmd: marked in the page's tables */
  int in_doc;     /* the first table has a row for it */
};

static struct opt_case g_opts[] = {
    {"output", "dir", {0}, 0},
    {"seed", NULL, {0}, 0},
    {"tracker", "t", {0}, 0},
    {"tracker-key", "", {0}, 0},
    {"peer", "127.0.0.1:7072", {0}, 0},
    {"listen", "127.0.0.1:0", {0}, 0},
    {"max-peers", "3", {0}, 0},
    {"upload-rate", "1M", {0}, 0},
    {"download-rate", "1M", {0}, 0},
    {"mode", "cs", {0}, 0},
    {"crypto-on", "pool", {0}, 0},
    {"interval-cap", "5", {0}, 0},
    {"limit", "3", {0}, 0},
    {"api-listen", "127.0.0.1:7071", {0}, 0},
    {"watch", "w", {0}, 0},
    {"watch-share", NULL, {0}, 0},
    {"download-dir", "d", {0}, 0},
    {"delete-data", NULL, {0}, 0},
    {"home", "h", {0}, 0},
    {"config", "", {0}, 0}, /* an empty file, made by the test */
    {"no-config", NULL, {0}, 0},
    {"log-level", "info", {0}, 0},
    {"json", NULL, {0}, 0},
    {"quiet", NULL, {0}, 0},
    {"help", NULL, {0}, 0},
    {"version", NULL, {0}, 0},
};
#define NOPTS (sizeof(g_opts) / sizeof(g_opts[0]))

static void doc_path(char *out, size_t cap) {
  const char *vec = getenv("SHOAL_TEST_VECTORS");
  if (vec != NULL && vec[0] != '\0') {
    snprintf(out, cap, "%s/../../docs/shoal-peer.1", vec);
  } else {
    snprintf(out, cap, "docs/shoal-peer.1");
  }
}

/* Reads one table of the man page, whose header is "option;" and the
 * commands of its columns (cmds, ncols of them), into g_opts: a row names
 * its long option as \-\-NAME. Returns the rows read. */
static size_t read_table(const char *text, const char *header, const int *cmds,
                         int ncols) {
  size_t rows = 0;
  const char *p = strstr(text, header);
  if (p == NULL) {
    fail_msg("docs/shoal-peer.1 has no table \"%s\"", header);
  }
  const char *end = strstr(p, "\n.TE");
  assert_non_null(end);
  for (const char *line = strchr(p, '\n') + 1; line < end;) {
    const char *next = strchr(line, '\n');
    char row[256];
    size_t len = (size_t)(next - line);
    assert_true(len < sizeof(row));
    memcpy(row, line, len);
    row[len] = '\0';
    line = next + 1;
    char *dd = strstr(row, "\\-\\-");
    char *semi = strchr(row, ';');
    if (dd == NULL || semi == NULL) {
      continue;
    }
    char name[64];
    size_t n = 0;
    for (char *q = dd + 4; q < semi && n + 1 < sizeof(name); q++) {
      if (*q != '\\') {
        name[n++] = *q;
      }
    }
    name[n] = '\0';
    size_t k = 0;
    while (k < NOPTS && strcmp(g_opts[k].name, name) != 0) {
      k++;
    }
    if (k == NOPTS) {
      fail_msg("docs/shoal-peer.1 lists --%s, which the test does not know",
               name);
    }
    rows++;
    if (cmds[0] == CLI_SHARE) {
      g_opts[k].in_doc = 1;
    }
    char *col = semi + 1;
    for (int i = 0; i < ncols && col != NULL; i++) {
      g_opts[k].doc[cmds[i]] = *col == 'x';
      col = strchr(col, ';');
      col = col != NULL ? col + 1 : NULL;
    }
  }
  return rows;
}

/* Reads both tables: every option has a row in the first; the second (the
 * client commands) lists only the options they take. */
static void read_doc_table(void) {
  static const int first[] = {CLI_SHARE, CLI_GET, CLI_SEARCH, CLI_ID,
                              CLI_DAEMON};
  static const int second[] = {CLI_ADD,     CLI_PUBLISH, CLI_LS,
                               CLI_PAUSE,   CLI_RESUME,  CLI_RM,
                               CLI_RECHECK, CLI_STATUS,  CLI_LIMITS};
  char path[512];
  size_t len = 0;
  doc_path(path, sizeof(path));
  char *text = tu_read_text(path, &len);
  if (text == NULL) {
    fail_msg("cannot read %s (run from the top of the tree)", path);
  }
  for (size_t k = 0; k < NOPTS; k++) {
    memset(g_opts[k].doc, 0, sizeof(g_opts[k].doc));
    g_opts[k].in_doc = 0;
  }
  read_table(text, "option;share;get;search;id;daemon\n", first, 5);
  assert_true(read_table(text,
                         "option;add;publish;ls;pause;resume;rm;recheck;"
                         "status;limits\n",
                         second, 9) > 0);
  free(text);
  for (size_t k = 0; k < NOPTS; k++) {
    if (!g_opts[k].in_doc) {
      fail_msg("docs/shoal-peer.1's table has no row for --%s", g_opts[k].name);
    }
  }
}

static void options_apply_to_the_commands_the_man_page_says(void **state) {
  char key[TEXTID_STRLEN], link[LINK_MAX_CHARS + 1], cid[TEXTID_STRLEN];
  char empty[600];
  (void)state;
  read_doc_table();
  key_text(key, 5);
  content_text(cid, 5);
  make_link(link, sizeof(link), 6, 1);
  tu_path(empty, sizeof(empty), g_dir, "empty.conf");
  tu_write_file(g_dir, "empty.conf", "", 0);
  for (size_t k = 0; k < NOPTS; k++) {
    for (int cmd = CLI_SHARE; cmd <= CLI_LIMITS; cmd++) {
      const char *words[8];
      char opt[700];
      struct cli c;
      int n = 0;
      const char *value = g_opts[k].value;
      if (strcmp(g_opts[k].name, "tracker-key") == 0) {
        value = key;
      } else if (strcmp(g_opts[k].name, "config") == 0) {
        value = empty;
      }
      words[n++] = g_cmds[cmd];
      if (cmd == CLI_SHARE || cmd == CLI_SEARCH) {
        words[n++] = "word";
        /* Through the variable, so that --tracker stays the option under
         * test. */
        setenv(CLI_TRACKER_ENV, "t", 1);
      } else if (cmd == CLI_GET || cmd == CLI_ADD) {
        words[n++] = link;
      } else if (cmd == CLI_PUBLISH) {
        words[n++] = "p";
      } else if (cmd == CLI_PAUSE || cmd == CLI_RESUME || cmd == CLI_RM ||
                 cmd == CLI_RECHECK) {
        words[n++] = cid;
      }
      snprintf(opt, sizeof(opt), "--%s%s%s", g_opts[k].name, value ? "=" : "",
               value ? value : "");
      words[n++] = opt;
      if (strcmp(g_opts[k].name, "watch-share") == 0 && cmd == CLI_DAEMON) {
        words[n++] = "--watch=w"; /* what it needs */
      }
      words[n] = NULL;
      int rc = parse_array(&c, words);
      unsetenv(CLI_TRACKER_ENV);
      if (strcmp(g_opts[k].name, "help") == 0 ||
          strcmp(g_opts[k].name, "version") == 0) {
        /* Answered before the command is looked at. */
        assert_int_equal(rc, 0);
        assert_true(g_opts[k].doc[cmd]);
      } else if (g_opts[k].doc[cmd]) {
        if (rc != 0) {
          fail_msg("%s %s: refused: %s", g_cmds[cmd], opt, c.error);
        }
      } else {
        char want[128];
        if (rc == 0) {
          fail_msg("%s %s: accepted; the man page says it does not apply",
                   g_cmds[cmd], opt);
        }
        snprintf(want, sizeof(want), "--%s does not apply to %s" HINT,
                 g_opts[k].name, g_cmds[cmd]);
        if (strstr(c.error, want) == NULL) {
          fail_msg("%s %s: \"%s\"", g_cmds[cmd], opt, c.error);
        }
      }
      cli_close(&c);
    }
  }
}

static void short_forms_are_named_in_refusals(void **state) {
  struct cli c;
  (void)state;
  refused_with(&c, PARSE(&c, "share", "p", "--tracker", "t", "-o", "x"),
               "-o/--output does not apply to share" HINT);
  refused_with(&c, PARSE(&c, "id", "--seed"),
               "--seed does not apply to id" HINT);
  /* The first option of the table that does not apply is named, however
   * they were ordered. */
  refused_with(&c, PARSE(&c, "id", "--limit", "3", "--seed"),
               "--seed does not apply to id" HINT);
}

static void help_names_every_option(void **state) {
  (void)state;
  for (size_t k = 0; k < NOPTS; k++) {
    char want[64];
    snprintf(want, sizeof(want), "--%s", g_opts[k].name);
    if (strstr(cli_usage, want) == NULL) {
      fail_msg("-h does not name %s", want);
    }
  }
  assert_non_null(strstr(cli_usage, "-o, --output"));
  assert_non_null(strstr(cli_usage, "-q, --quiet"));
  assert_non_null(strstr(cli_usage, CLI_TRACKER_ENV));
}

/* ------------------------------------------------------------------------ */
/* Values */

static void numbers_are_taken_within_their_ranges(void **state) {
  struct cli c;
  char link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 7, 1);
  accepted(&c,
           PARSE(&c, "get", link, "--max-peers", "1", "--interval-cap", "0"));
  assert_int_equal(c.node.max_peers, 1);
  assert_int_equal(c.node.interval_cap_s, 0);
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", link, "--max-peers", "256", "--interval-cap",
                     "86400"));
  assert_int_equal(c.node.max_peers, 256);
  assert_int_equal(c.node.interval_cap_s, 86400);
  cli_close(&c);
  static const char *const bad_peers[] = {"0", "257", "abc", "-1", "", " 5"};
  for (size_t i = 0; i < sizeof(bad_peers) / sizeof(bad_peers[0]); i++) {
    char want[128];
    snprintf(want, sizeof(want),
             "--max-peers must be a number from 1 to 256, not '%s'" HINT,
             bad_peers[i]);
    refused_with(&c, PARSE(&c, "get", link, "--max-peers", bad_peers[i]), want);
  }
  refused_with(&c, PARSE(&c, "get", link, "--interval-cap", "86401"),
               "--interval-cap must be seconds from 0 to 86400, not "
               "'86401'" HINT);
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "t", "--limit", "1"));
  assert_int_equal(c.query.limit, 1);
  cli_close(&c);
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "t", "--limit", "50"));
  assert_int_equal(c.query.limit, 50);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "search", "x", "--tracker", "t", "--limit", "0"),
               "--limit must be a number from 1 to 50, not '0'" HINT);
  refused_with(&c, PARSE(&c, "search", "x", "--tracker", "t", "--limit=51"),
               "--limit must be a number from 1 to 50, not '51'" HINT);
}

static void rates_modes_levels_and_listen(void **state) {
  struct cli c;
  char link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 8, 1);
  accepted(&c,
           PARSE(&c, "get", link, "--upload-rate", "500k", "--download-rate",
                 "10M", "--mode", "p2p", "--listen", "[::1]:7000"));
  assert_int_equal(c.node.upload_rate, 500 * 1024);
  assert_int_equal(c.node.download_rate, 10 * 1024 * 1024);
  assert_int_equal(c.node.mode, NODE_MODE_P2P);
  assert_string_equal(c.node.listen, "[::1]:7000");
  cli_close(&c);
  refused_with(&c, PARSE(&c, "get", link, "--upload-rate", "10X"),
               "--upload-rate must be bytes a second like 500k or 10M, not "
               "'10X'" HINT);
  refused_with(&c, PARSE(&c, "get", link, "--download-rate", "1.5"),
               "--download-rate must be bytes a second like 500k or 10M, not "
               "'1.5'" HINT);
  refused_with(&c, PARSE(&c, "get", link, "--mode", "P2P"),
               "--mode must be p2p or cs, not 'P2P'" HINT);
  accepted(&c, PARSE(&c, "get", link));
  assert_int_equal(c.node.crypto, NODE_CRYPTO_AUTO);
  cli_close(&c);
  static const char *const wheres[] = {"auto", "loop", "pool"};
  static const enum node_crypto want[] = {NODE_CRYPTO_AUTO, NODE_CRYPTO_LOOP,
                                          NODE_CRYPTO_POOL};
  for (int i = 0; i < 3; i++) {
    accepted(&c, PARSE(&c, "get", link, "--crypto-on", wheres[i]));
    assert_int_equal(c.node.crypto, want[i]);
    cli_close(&c);
  }
  refused_with(&c, PARSE(&c, "get", link, "--crypto-on", "Pool"),
               "--crypto-on must be auto, loop or pool, not 'Pool'" HINT);
  refused_with(&c, PARSE(&c, "search", "x", "--crypto-on", "pool"),
               "--crypto-on does not apply to search" HINT);
  static const char *const levels[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++) {
    accepted(&c, PARSE(&c, "id", "--log-level", levels[i]));
    assert_int_equal(c.log_level, i);
    cli_close(&c);
  }
  refused_with(&c, PARSE(&c, "id", "--log-level", "verbose"),
               "--log-level must be error, warn, info or debug, not "
               "'verbose'" HINT);
  static const char *const bad_listen[] = {"bad", "127.0.0.1:99999", "[::1",
                                           "127.0.0.1", ""};
  for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
    REFUSED(&c, PARSE(&c, "get", link, "--listen", bad_listen[i]),
            "--listen must be ADDR:PORT", bad_listen[i]);
  }
}

static void home_and_output_must_be_paths(void **state) {
  struct cli c;
  char link[LINK_MAX_CHARS + 1];
  char *longest = malloc(CLI_HOME_BYTES + 1);
  (void)state;
  assert_non_null(longest);
  make_link(link, sizeof(link), 9, 1);
  memset(longest, 'h', CLI_HOME_BYTES - 1);
  longest[CLI_HOME_BYTES - 1] = '\0';
  accepted(&c, PARSE(&c, "id", "--home", longest));
  assert_int_equal(strlen(c.home), CLI_HOME_BYTES - 1);
  cli_close(&c);
  longest[CLI_HOME_BYTES - 1] = 'h';
  longest[CLI_HOME_BYTES] = '\0';
  refused_with(&c, PARSE(&c, "id", "--home", longest),
               "--home needs a folder path of at most 4095 bytes" HINT);
  refused_with(&c, PARSE(&c, "id", "--home", ""),
               "--home needs a folder path of at most 4095 bytes" HINT);
  refused_with(&c, PARSE(&c, "get", link, "-o", ""),
               "-o/--output needs a folder, not ''" HINT);
  free(longest);
}

static void tracker_key_must_be_a_key(void **state) {
  struct cli c;
  char key[TEXTID_STRLEN], cid[TEXTID_STRLEN];
  (void)state;
  key_text(key, 10);
  content_text(cid, 10);
  accepted(&c,
           PARSE(&c, "search", "x", "--tracker", "t", "--tracker-key", key));
  assert_true(c.have_key);
  uint8_t want[32];
  tu_fill(want, sizeof(want), 10);
  assert_memory_equal(c.tracker_key, want, 32);
  cli_close(&c);
  /* A content ID is not a key, though it is written alike. */
  REFUSED(&c, PARSE(&c, "search", "x", "--tracker", "t", "--tracker-key", cid),
          "--tracker-key '", "is not a key ID (56 characters");
  REFUSED(&c, PARSE(&c, "search", "x", "--tracker", "t", "--tracker-key=abc"),
          "--tracker-key 'abc' is not a key ID");
}

static void trackers_get_the_default_port(void **state) {
  struct cli c;
  (void)state;
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "t.example", "--tracker",
                     "10.0.0.1:9000", "--tracker", "[::1]", "--tracker",
                     "[::1]:7"));
  assert_int_equal(c.ntrackers, 4);
  assert_string_equal(c.trackers[0].host, "t.example");
  assert_int_equal(c.trackers[0].port, FMT_TRACKER_PORT);
  assert_string_equal(c.trackers[1].host, "10.0.0.1");
  assert_int_equal(c.trackers[1].port, 9000);
  assert_string_equal(c.trackers[2].host, "::1");
  assert_int_equal(c.trackers[2].port, FMT_TRACKER_PORT);
  assert_int_equal(c.trackers[3].port, 7);
  cli_close(&c);
  REFUSED(&c, PARSE(&c, "search", "x", "--tracker", "host:99999"),
          "--tracker 'host:99999': tracker port must be a number");
  REFUSED(&c, PARSE(&c, "search", "x", "--tracker", "::1"),
          "--tracker '::1': tracker IPv6 address must be in brackets");
  REFUSED(&c, PARSE(&c, "search", "x", "--tracker", ""),
          "--tracker '': tracker address is empty");
}

static void at_most_eight_trackers(void **state) {
  struct cli c;
  const char *words[2 + 2 * (LINK_MAX_TRACKERS + 1) + 1];
  int n = 0;
  (void)state;
  words[n++] = "search";
  words[n++] = "x";
  static const char *const names[] = {"t1", "t2", "t3", "t4", "t5",
                                      "t6", "t7", "t8", "t9"};
  for (int i = 0; i < LINK_MAX_TRACKERS; i++) {
    words[n++] = "--tracker";
    words[n++] = names[i];
  }
  words[n] = NULL;
  accepted(&c, parse_array(&c, words));
  assert_int_equal(c.ntrackers, LINK_MAX_TRACKERS);
  cli_close(&c);
  words[n++] = "--tracker";
  words[n++] = names[LINK_MAX_TRACKERS];
  words[n] = NULL;
  refused_with(&c, parse_array(&c, words),
               "--tracker: at most 8 trackers" HINT);
}

/* ------------------------------------------------------------------------ */
/* Each command's arguments */

static void share_and_search_need_arguments_and_a_tracker(void **state) {
  struct cli c;
  (void)state;
  refused_with(&c, PARSE(&c, "share", "--tracker", "t"),
               "share needs at least one PATH" HINT);
  refused_with(&c, PARSE(&c, "search", "--tracker", "t"),
               "search needs WORDS to look for" HINT);
  refused_with(&c, PARSE(&c, "share", "p"),
               "share needs --tracker HOST[:PORT] or SHOAL_TRACKER" HINT);
  refused_with(&c, PARSE(&c, "search", "w"),
               "search needs --tracker HOST[:PORT] or SHOAL_TRACKER" HINT);
  refused_with(&c, PARSE(&c, "id", "extra"),
               "id takes no arguments, not 'extra'" HINT);
  refused_with(&c, PARSE(&c, "get"),
               "get needs a LINK or CONTENT-ID (or several)" HINT);
}

static void search_words_are_joined_and_bounded(void **state) {
  struct cli c;
  char word[TMSG_MAX_QUERY + 2];
  (void)state;
  refused_with(&c, PARSE(&c, "search", "", "--tracker", "t"),
               "search needs words to look for, not ''" HINT);
  refused_with(&c, PARSE(&c, "search", "ok", " \t", "--tracker", "t"),
               "search needs words to look for, not ' \t'" HINT);
  memset(word, 'w', TMSG_MAX_QUERY);
  word[TMSG_MAX_QUERY] = '\0';
  accepted(&c, PARSE(&c, "search", word, "--tracker", "t"));
  assert_int_equal(strlen(c.query.query), TMSG_MAX_QUERY);
  cli_close(&c);
  word[TMSG_MAX_QUERY - 1] = '\0';
  refused_with(&c, PARSE(&c, "search", word, "w", "--tracker", "t"),
               "search words are longer than 256 bytes" HINT);
}

static void get_takes_links_and_content_ids(void **state) {
  struct cli c;
  char l1[LINK_MAX_CHARS + 1], l2[LINK_MAX_CHARS + 1];
  char cid[TEXTID_STRLEN], key[TEXTID_STRLEN];
  uint8_t want[32];
  (void)state;
  make_link(l1, sizeof(l1), 20, 2);
  make_link(l2, sizeof(l2), 30, 1);
  content_text(cid, 40);
  key_text(key, 50);

  /* A link brings its trackers and its key. */
  accepted(&c, PARSE(&c, "get", l1, l2));
  assert_int_equal(c.ngets, 2);
  tu_fill(want, sizeof(want), 20);
  assert_memory_equal(c.gets[0].content, want, 32);
  assert_string_equal(c.gets[0].link.name, "file-20.bin");
  assert_int_equal(c.gets[0].link.size, 1020);
  assert_int_equal(c.gets[0].ntrackers, 2);
  assert_string_equal(c.gets[0].trackers[1].host, "10.0.0.2");
  assert_true(c.gets[0].have_key);
  tu_fill(want, sizeof(want), 21);
  assert_memory_equal(c.gets[0].key, want, 32);
  assert_int_equal(c.gets[1].ntrackers, 1);
  cli_close(&c);

  /* The command line's trackers come first, and its key wins. */
  accepted(&c,
           PARSE(&c, "get", l1, "--tracker", "mine:1", "--tracker-key", key));
  assert_int_equal(c.gets[0].ntrackers, 3);
  assert_string_equal(c.gets[0].trackers[0].host, "mine");
  assert_string_equal(c.gets[0].trackers[1].host, "10.0.0.1");
  tu_fill(want, sizeof(want), 50);
  assert_memory_equal(c.gets[0].key, want, 32);
  cli_close(&c);

  /* A content ID: the command line's trackers, no key. */
  accepted(&c, PARSE(&c, "get", cid, "--tracker", "t:5"));
  tu_fill(want, sizeof(want), 40);
  assert_memory_equal(c.gets[0].content, want, 32);
  assert_int_equal(c.gets[0].link.name[0], '\0');
  assert_int_equal(c.gets[0].ntrackers, 1);
  assert_int_equal(c.gets[0].trackers[0].port, 5);
  assert_false(c.gets[0].have_key);
  cli_close(&c);

  /* The same content twice is two items; the node makes one download. */
  accepted(&c, PARSE(&c, "get", l1, l1));
  assert_int_equal(c.ngets, 2);
  cli_close(&c);
}

static void get_refuses_malformed_links_without_the_help_hint(void **state) {
  struct cli c;
  char l1[LINK_MAX_CHARS + 1], cid[TEXTID_STRLEN];
  (void)state;
  make_link(l1, sizeof(l1), 60, 1);
  content_text(cid, 61);
  refused_with(&c, PARSE(&c, "get", "shoal:zzz"),
               "bad link: content ID is not 56 base32 characters — copy the "
               "whole link as 'shoal-peer share' printed it");
  /* A bad second argument after a good first: the items already read
   * are freed by cli_close (LeakSanitizer watches this one). */
  refused_with(&c, PARSE(&c, "get", l1, "shoal:zzz"),
               "bad link: content ID is not 56 base32 characters — copy the "
               "whole link as 'shoal-peer share' printed it");
  refused_with(&c, PARSE(&c, "get", "xyz"),
               "'xyz' is neither a share link (shoal:...) nor a content ID: "
               "malformed encoding");
  /* A content ID with one character changed fails its checksum. */
  cid[5] = cid[5] == 'a' ? 'b' : 'a';
  REFUSED(&c, PARSE(&c, "get", cid, "--tracker", "t"),
          "is neither a share link (shoal:...) nor a content ID: checksum");
}

/* ------------------------------------------------------------------------ */
/* SHOAL_TRACKER */

static void shoal_tracker_stands_for_tracker(void **state) {
  struct cli c;
  char cid[TEXTID_STRLEN], l1[LINK_MAX_CHARS + 1];
  (void)state;
  content_text(cid, 70);
  make_link(l1, sizeof(l1), 71, 1);
  setenv(CLI_TRACKER_ENV, "a:1, b:2 c", 1);
  accepted(&c, PARSE(&c, "search", "x"));
  assert_int_equal(c.ntrackers, 3);
  assert_string_equal(c.trackers[0].host, "a");
  assert_int_equal(c.trackers[2].port, FMT_TRACKER_PORT);
  cli_close(&c);
  accepted(&c, PARSE(&c, "share", "p"));
  assert_int_equal(c.ntrackers, 3);
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", cid));
  assert_int_equal(c.gets[0].ntrackers, 3);
  cli_close(&c);
  /* A link has its own trackers: the variable is not added. */
  accepted(&c, PARSE(&c, "get", l1));
  assert_int_equal(c.gets[0].ntrackers, 1);
  cli_close(&c);
  /* --tracker wins. */
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "mine"));
  assert_int_equal(c.ntrackers, 1);
  assert_string_equal(c.trackers[0].host, "mine");
  cli_close(&c);
}

static void a_bad_shoal_tracker_is_named(void **state) {
  struct cli c;
  char cid[TEXTID_STRLEN], l1[LINK_MAX_CHARS + 1];
  (void)state;
  content_text(cid, 80);
  make_link(l1, sizeof(l1), 81, 1);
  setenv(CLI_TRACKER_ENV, "not a::tracker", 1);
  refused_with(&c, PARSE(&c, "search", "x"),
               "SHOAL_TRACKER: 'a::tracker' is not HOST[:PORT]: tracker IPv6 "
               "address must be in brackets: [address]:port" HINT);
  REFUSED(&c, PARSE(&c, "get", cid), "SHOAL_TRACKER: 'a::tracker'");
  /* Not read when it is not needed. */
  accepted(&c, PARSE(&c, "search", "x", "--tracker", "t"));
  cli_close(&c);
  accepted(&c, PARSE(&c, "get", l1));
  cli_close(&c);
  setenv(CLI_TRACKER_ENV, ", ,", 1);
  refused_with(&c, PARSE(&c, "share", "p"),
               "SHOAL_TRACKER=', ,': no tracker in the list; it holds 1 to 8 "
               "trackers separated by commas or spaces" HINT);
  setenv(CLI_TRACKER_ENV, "a b c d e f g h i", 1);
  REFUSED(&c, PARSE(&c, "share", "p"), "too many trackers");
  /* Empty is unset. */
  setenv(CLI_TRACKER_ENV, "", 1);
  refused_with(&c, PARSE(&c, "share", "p"),
               "share needs --tracker HOST[:PORT] or SHOAL_TRACKER" HINT);
  refused_with(&c, PARSE(&c, "get", cid),
               "get CONTENT-ID needs --tracker HOST[:PORT] or "
               "SHOAL_TRACKER" HINT);
}

/* ------------------------------------------------------------------------ */
/* The daemon */

/* The current folder, resolved, joined to rel. */
static void cwd_join(char *out, size_t cap, const char *rel) {
  char *cwd = realpath(".", NULL);
  assert_non_null(cwd);
  snprintf(out, cap, "%s/%s", cwd, rel);
  free(cwd);
}

static void daemon_takes_its_options(void **state) {
  struct cli c;
  char key[TEXTID_STRLEN], want[1024];
  (void)state;
  key_text(key, 11);
  accepted(&c,
           PARSE(&c, "daemon", "--home", "/srv/shoal", "--listen",
                 "127.0.0.1:7000", "--api-listen", "127.0.0.1:7071", "--watch",
                 "/in", "--watch-share", "--download-dir", "/out", "--tracker",
                 "a:1", "--tracker", "b", "--tracker-key", key, "--upload-rate",
                 "1M", "--download-rate", "2M", "--max-peers", "9",
                 "--log-level", "info", "--json"));
  assert_int_equal(c.cmd, CLI_DAEMON);
  assert_string_equal(c.home, "/srv/shoal");
  assert_string_equal(c.node.listen, "127.0.0.1:7000");
  assert_string_equal(c.api_listen, "127.0.0.1:7071");
  assert_string_equal(c.watch_dir, "/in");
  assert_true(c.watch_share);
  assert_string_equal(c.download_dir, "/out");
  assert_int_equal(c.ntrackers, 2);
  assert_true(c.have_key);
  assert_int_equal(c.node.upload_rate, 1 << 20);
  assert_int_equal(c.node.download_rate, 2 << 20);
  assert_int_equal(c.node.max_peers, 9);
  assert_int_equal(c.log_level, LOG_INFO);
  assert_true(c.json);
  cli_close(&c);

  /* Nothing is required; relative folders are made absolute, since the
   * daemon may run elsewhere. */
  accepted(&c, PARSE(&c, "daemon", "--watch", "in", "--download-dir", "o/d"));
  assert_null(c.api_listen);
  assert_false(c.watch_share);
  assert_int_equal(c.ntrackers, 0);
  cwd_join(want, sizeof(want), "in");
  assert_string_equal(c.watch_dir, want);
  cwd_join(want, sizeof(want), "o/d");
  assert_string_equal(c.download_dir, want);
  cli_close(&c);

  /* SHOAL_TRACKER stands for --tracker here too, and a bad one is named. */
  setenv(CLI_TRACKER_ENV, "x:5 y", 1);
  accepted(&c, PARSE(&c, "daemon"));
  assert_int_equal(c.ntrackers, 2);
  cli_close(&c);
  setenv(CLI_TRACKER_ENV, "::1", 1);
  REFUSED(&c, PARSE(&c, "daemon"), "SHOAL_TRACKER: '::1'");
  unsetenv(CLI_TRACKER_ENV);

  refused_with(&c, PARSE(&c, "daemon", "extra"),
               "daemon takes no arguments, not 'extra'" HINT);
  refused_with(&c, PARSE(&c, "daemon", "--seed"),
               "--seed does not apply to daemon" HINT);
  refused_with(&c, PARSE(&c, "daemon", "--mode", "cs"),
               "--mode does not apply to daemon" HINT);
  refused_with(&c, PARSE(&c, "daemon", "--watch", ""),
               "--watch needs a folder path of at most 4095 bytes" HINT);
  refused_with(&c, PARSE(&c, "daemon", "--download-dir="),
               "--download-dir needs a folder path of at most 4095 "
               "bytes" HINT);
}

static void watch_share_needs_watch(void **state) {
  struct cli c;
  (void)state;
  refused_with(&c, PARSE(&c, "daemon", "--watch-share"),
               "--watch-share needs --watch DIR: the folder whose files are "
               "shared" HINT);
  refused_with(&c, PARSE(&c, "daemon", "--watch-share=yes"),
               "--watch-share takes no value" HINT);
  refused_with(&c, PARSE(&c, "ls", "--watch-share"),
               "--watch-share does not apply to ls" HINT);
}

static void api_listen_is_a_loopback_address(void **state) {
  struct cli c;
  (void)state;
  static const char *const good[] = {"127.0.0.1:7071", "127.1.2.3:1",
                                     "[::1]:7071", "127.0.0.1:0",
                                     "127.0.0.1:65535"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    accepted(&c, PARSE(&c, "daemon", "--api-listen", good[i]));
    assert_string_equal(c.api_listen, good[i]);
    cli_close(&c);
  }
  static const char *const remote[] = {"0.0.0.0:7071",
                                       "[::]:7071",
                                       "192.0.2.1:80",
                                       "[2001:db8::1]:7071",
                                       "[::ffff:127.0.0.1]:7071",
                                       "128.0.0.1:7071"};
  for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
    char want[256];
    snprintf(want, sizeof(want),
             "--api-listen '%s' is not a loopback address: the API listens "
             "on 127.0.0.1 or [::1] only (reach it from elsewhere through "
             "ssh -L)" HINT,
             remote[i]);
    refused_with(&c, PARSE(&c, "daemon", "--api-listen", remote[i]), want);
  }
  static const char *const malformed[] = {
      "localhost:7071", "127.0.0.1", "127.0.0.1:70000", "[::1]", "", ":7071"};
  for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
    char want[256];
    snprintf(want, sizeof(want),
             "--api-listen must be a loopback address and a port, like "
             "127.0.0.1:7071 or [::1]:7071, not '%s'" HINT,
             malformed[i]);
    refused_with(&c, PARSE(&c, "daemon", "--api-listen", malformed[i]), want);
  }
}

/* ------------------------------------------------------------------------ */
/* The client commands */

static void client_commands_take_their_arguments(void **state) {
  struct cli c;
  char cid[TEXTID_STRLEN], cid2[TEXTID_STRLEN];
  (void)state;
  content_text(cid, 100);
  content_text(cid2, 101);
  static const struct {
    const char *word;
    enum cli_cmd cmd;
  } bare[] = {{"ls", CLI_LS}, {"status", CLI_STATUS}, {"limits", CLI_LIMITS}};
  for (size_t i = 0; i < 3; i++) {
    accepted(&c, PARSE(&c, bare[i].word, "--home", "h", "--json"));
    assert_int_equal(c.cmd, bare[i].cmd);
    assert_true(CLI_IS_CLIENT(c.cmd));
    assert_string_equal(c.home, "h");
    assert_true(c.json);
    cli_close(&c);
    char want[128];
    snprintf(want, sizeof(want), "%s takes no arguments, not 'x'" HINT,
             bare[i].word);
    refused_with(&c, PARSE(&c, bare[i].word, "x"), want);
  }
  static const struct {
    const char *word;
    enum cli_cmd cmd;
  } each[] = {{"pause", CLI_PAUSE},
              {"resume", CLI_RESUME},
              {"rm", CLI_RM},
              {"recheck", CLI_RECHECK}};
  for (size_t i = 0; i < 4; i++) {
    char want[128];
    accepted(&c, PARSE(&c, each[i].word, cid, cid2));
    assert_int_equal(c.cmd, each[i].cmd);
    assert_true(CLI_IS_CLIENT(c.cmd));
    assert_int_equal(c.nargs, 2);
    assert_string_equal(c.args[1], cid2);
    cli_close(&c);
    snprintf(want, sizeof(want),
             "%s needs a content ID (or several; 'shoal-peer ls' lists "
             "them)" HINT,
             each[i].word);
    refused_with(&c, PARSE(&c, each[i].word), want);
  }
  assert_false(CLI_IS_CLIENT(CLI_DAEMON));
  assert_false(CLI_IS_CLIENT(CLI_GET));
  assert_false(CLI_IS_CLIENT(CLI_HELP));
}

static void ids_are_whole_or_prefixes_of_eight_or_more(void **state) {
  struct cli c;
  char cid[TEXTID_STRLEN], pfx[TEXTID_STRLEN + 1], want[256];
  (void)state;
  content_text(cid, 102);
  /* Every prefix from 8 to 55 characters, in either case. */
  for (size_t n = CLI_ID_PREFIX_MIN; n < TEXTID_CHARS; n++) {
    snprintf(pfx, sizeof(pfx), "%.*s", (int)n, cid);
    accepted(&c, PARSE(&c, "pause", pfx));
    cli_close(&c);
  }
  accepted(&c, PARSE(&c, "resume", "ABCDEFGH"));
  cli_close(&c);
  /* Shorter, other characters, longer, or a whole one that is wrong. */
  static const char *const bad[] = {"abcdefg", "abcdefg1", "abcd-efgh",
                                    "abcdefgh ", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(want, sizeof(want),
             "'%s' is not a content ID, nor its first 8 characters or more "
             "('shoal-peer ls' lists them)",
             bad[i]);
    refused_with(&c, PARSE(&c, "rm", bad[i]), want);
  }
  snprintf(pfx, sizeof(pfx), "%sa", cid);
  REFUSED(&c, PARSE(&c, "rm", cid, pfx), "is not a content ID, nor its first");
  memcpy(pfx, cid, sizeof(cid));
  pfx[7] = pfx[7] == 'a' ? 'b' : 'a';
  REFUSED(&c, PARSE(&c, "recheck", pfx), "is not a content ID: checksum");
  /* A peer's key is written alike, but is not a content ID. */
  key_text(pfx, 102);
  REFUSED(&c, PARSE(&c, "pause", pfx), "is not a content ID: checksum");
}

static void rm_takes_delete_data(void **state) {
  struct cli c;
  char cid[TEXTID_STRLEN];
  (void)state;
  content_text(cid, 103);
  accepted(&c, PARSE(&c, "rm", cid));
  assert_false(c.delete_data);
  cli_close(&c);
  accepted(&c, PARSE(&c, "rm", "--delete-data", cid));
  assert_true(c.delete_data);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "pause", cid, "--delete-data"),
               "--delete-data does not apply to pause" HINT);
  refused_with(&c, PARSE(&c, "rm", "--delete-data"),
               "rm needs a content ID (or several; 'shoal-peer ls' lists "
               "them)" HINT);
}

static void limits_shows_or_sets_what_is_given(void **state) {
  struct cli c;
  (void)state;
  accepted(&c, PARSE(&c, "limits"));
  assert_false(c.have_upload_rate || c.have_download_rate);
  cli_close(&c);
  accepted(&c, PARSE(&c, "limits", "--upload-rate", "1.5M"));
  assert_true(c.have_upload_rate);
  assert_false(c.have_download_rate);
  assert_int_equal(c.node.upload_rate, 1572864);
  cli_close(&c);
  accepted(&c, PARSE(&c, "limits", "--download-rate=0", "--upload-rate=10k"));
  assert_true(c.have_upload_rate && c.have_download_rate);
  assert_int_equal(c.node.download_rate, 0);
  assert_int_equal(c.node.upload_rate, 10240);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "limits", "--upload-rate", "fast"),
               "--upload-rate must be bytes a second like 500k or 10M, not "
               "'fast'" HINT);
  refused_with(&c, PARSE(&c, "limits", "--max-peers", "3"),
               "--max-peers does not apply to limits" HINT);
}

static void add_takes_links_and_makes_output_absolute(void **state) {
  struct cli c;
  char l1[LINK_MAX_CHARS + 1], l2[LINK_MAX_CHARS + 1], cid[TEXTID_STRLEN];
  char want[1024], here[1024], sub[600];
  (void)state;
  make_link(l1, sizeof(l1), 110, 1);
  make_link(l2, sizeof(l2), 111, 2);
  content_text(cid, 112);
  assert_non_null(getcwd(here, sizeof(here)));
  /* A folder whose path has a symbolic link in it: the parent resolves. */
  tu_write_file(g_dir, "real/x", "", 0);
  tu_path(sub, sizeof(sub), g_dir, "link");
  tu_path(want, sizeof(want), g_dir, "real");
  assert_int_equal(symlink(want, sub), 0);
  assert_int_equal(chdir(g_dir), 0);

  accepted(&c, PARSE(&c, "add", l1, l2));
  assert_int_equal(c.cmd, CLI_ADD);
  assert_int_equal(c.nargs, 2);
  assert_string_equal(c.args[0], l1);
  assert_null(c.out_dir); /* the daemon's --download-dir */
  cli_close(&c);

  accepted(&c, PARSE(&c, "add", l1, "-o", "dl"));
  cwd_join(want, sizeof(want), "dl");
  assert_string_equal(c.out_dir, want);
  cli_close(&c);
  /* A missing parent: joined to the current folder as written. */
  accepted(&c, PARSE(&c, "add", l1, "-o", "new/deeper/dl"));
  cwd_join(want, sizeof(want), "new/deeper/dl");
  assert_string_equal(c.out_dir, want);
  cli_close(&c);
  accepted(&c, PARSE(&c, "add", l1, "-o", "link/in/"));
  cwd_join(want, sizeof(want), "real/in");
  assert_string_equal(c.out_dir, want);
  cli_close(&c);
  accepted(&c, PARSE(&c, "add", l1, "-o", "."));
  cwd_join(want, sizeof(want), "");
  want[strlen(want) - 1] = '\0';
  assert_string_equal(c.out_dir, want);
  cli_close(&c);
  accepted(&c, PARSE(&c, "add", l1, "-o", "/abs/dir"));
  assert_string_equal(c.out_dir, "/abs/dir");
  cli_close(&c);

  assert_int_equal(chdir(here), 0);
  refused_with(&c, PARSE(&c, "add"), "add needs a LINK (or several)" HINT);
  snprintf(want, sizeof(want),
           "'%s' is not a share link (shoal:...) — add takes links as "
           "'shoal-peer share' prints them",
           cid);
  refused_with(&c, PARSE(&c, "add", cid), want);
  refused_with(&c, PARSE(&c, "add", l1, "shoal:zzz"),
               "bad link: content ID is not 56 base32 characters — copy the "
               "whole link as 'shoal-peer share' printed it");
  refused_with(&c, PARSE(&c, "add", l1, "-o", ""),
               "-o/--output needs a folder, not ''" HINT);
  refused_with(&c, PARSE(&c, "add", l1, "--seed"),
               "--seed does not apply to add" HINT);
}

static void publish_makes_paths_absolute(void **state) {
  struct cli c;
  char want[1024], here[1024], target[600], link[600];
  (void)state;
  assert_non_null(getcwd(here, sizeof(here)));
  tu_write_file(g_dir, "data/photos/a.jpg", "a", 1);
  tu_path(target, sizeof(target), g_dir, "data/photos");
  tu_path(link, sizeof(link), g_dir, "pics");
  assert_int_equal(symlink(target, link), 0);
  assert_int_equal(chdir(g_dir), 0);
  accepted(&c, PARSE(&c, "publish", "data/photos/", "pics", "data/photos/a.jpg",
                     "/abs/path", "missing"));
  assert_int_equal(c.cmd, CLI_PUBLISH);
  assert_int_equal(c.nargs, 5);
  cwd_join(want, sizeof(want), "data/photos");
  assert_string_equal(c.args[0], want);
  /* A symbolic link keeps its name: it is shared under it. */
  cwd_join(want, sizeof(want), "pics");
  assert_string_equal(c.args[1], want);
  cwd_join(want, sizeof(want), "data/photos/a.jpg");
  assert_string_equal(c.args[2], want);
  assert_string_equal(c.args[3], "/abs/path");
  /* The daemon says that it is missing. */
  cwd_join(want, sizeof(want), "missing");
  assert_string_equal(c.args[4], want);
  cli_close(&c);
  assert_int_equal(chdir(here), 0);
  refused_with(&c, PARSE(&c, "publish"),
               "publish needs at least one PATH" HINT);
  refused_with(&c, PARSE(&c, "publish", ""),
               "publish needs a path, not ''" HINT);
  refused_with(&c, PARSE(&c, "publish", "p", "--tracker", "t"),
               "--tracker does not apply to publish" HINT);
}

/* ------------------------------------------------------------------------ */
/* The config file */

static void config_file_at_the_top_and_under_peer(void **state) {
  struct cli c;
  (void)state;
  write_conf("# shoal\n"
             "; comments both ways\n"
             "tracker = a.example:7000\n"
             "home = /srv/shoal\n"
             "\n"
             "[peer]\n"
             "upload-rate = 1M\n"
             "json = true\n"
             "quiet = no\n"
             "log-level = info ; inline comment\n"
             "api-listen = 127.0.0.1:7071\n");
  accepted(&c, PARSE(&c, "share", "p"));
  assert_int_equal(c.ntrackers, 1);
  assert_string_equal(c.trackers[0].host, "a.example");
  assert_int_equal(c.trackers[0].port, 7000);
  assert_string_equal(c.home, "/srv/shoal");
  assert_int_equal(c.node.upload_rate, 1 << 20);
  assert_true(c.json);
  assert_false(c.quiet);
  assert_int_equal(c.log_level, LOG_INFO);
  assert_null(c.api_listen); /* the daemon's only */
  assert_string_equal(c.config_path, g_conf);
  cli_close(&c);
  accepted(&c, PARSE(&c, "daemon"));
  assert_string_equal(c.api_listen, "127.0.0.1:7071");
  cli_close(&c);
}

static void config_unknown_keys_and_sections_name_file_and_line(void **state) {
  struct cli c;
  char want[1024];
  (void)state;
  write_conf("# comment\n\njson = true\nfrob = 1\n");
  snprintf(want, sizeof(want), "%s:4: unknown option 'frob'", g_conf);
  refused_with(&c, PARSE(&c, "id"), want);
  write_conf("[peer]\nquiet = true\n[tracker]\nlisten = 127.0.0.1:1\n");
  snprintf(want, sizeof(want),
           "%s:4: unknown section [tracker] (options go at the top or under "
           "[peer])",
           g_conf);
  refused_with(&c, PARSE(&c, "id"), want);
  write_conf("json\n");
  snprintf(want, sizeof(want),
           "%s:1: not 'option = value', '[peer]' or a comment (# or ;)",
           g_conf);
  refused_with(&c, PARSE(&c, "id"), want);
  write_conf("--json = true\n");
  snprintf(want, sizeof(want), "%s:1: unknown option '--json'", g_conf);
  refused_with(&c, PARSE(&c, "id"), want);
  static const char *const not_here[] = {"config", "no-config", "help",
                                         "version"};
  for (size_t i = 0; i < 4; i++) {
    char text[64];
    snprintf(text, sizeof(text), "\n%s = x\n", not_here[i]);
    write_conf(text);
    snprintf(want, sizeof(want), "%s:2: '%s' is not read from a config file",
             g_conf, not_here[i]);
    refused_with(&c, PARSE(&c, "id"), want);
  }
  /* A line longer than inih reads whole is refused, not cut in two. */
  char big[400];
  memset(big, 'a', sizeof(big));
  memcpy(big, "home = ", 7);
  big[sizeof(big) - 2] = '\n';
  big[sizeof(big) - 1] = '\0';
  write_conf(big);
  REFUSED(&c, PARSE(&c, "id"), ":1: a line longer than");
  tu_write_file(g_dir, "xdg/" CLI_CONFIG_NAME, "json = true\n\0x = 1\n", 19);
  REFUSED(&c, PARSE(&c, "id"), ":2: a NUL byte");
}

static void config_values_are_checked_as_the_command_line_s(void **state) {
  struct cli c;
  char want[1024];
  (void)state;
  write_conf("upload-rate = 10X\n");
  snprintf(want, sizeof(want),
           "%s:1: --upload-rate must be bytes a second like 500k or 10M, not "
           "'10X'" HINT,
           g_conf);
  refused_with(&c, PARSE(&c, "daemon"), want);
  write_conf("\n\n[peer]\ntracker = ok\ntracker = ::1\n");
  snprintf(want, sizeof(want),
           "%s:5: --tracker '::1': tracker IPv6 address must be in "
           "brackets: [address]:port" HINT,
           g_conf);
  refused_with(&c, PARSE(&c, "daemon"), want);
  write_conf("json = maybe\n");
  snprintf(want, sizeof(want), "%s:1: json must be true or false, not 'maybe'",
           g_conf);
  refused_with(&c, PARSE(&c, "ls"), want);
  write_conf("watch-share = true\n");
  refused_with(&c, PARSE(&c, "daemon"),
               "--watch-share needs --watch DIR: the folder whose files are "
               "shared" HINT);
  /* Nine trackers are eight too many in the file as well. */
  write_conf("tracker=a\ntracker=a\ntracker=a\ntracker=a\ntracker=a\n"
             "tracker=a\ntracker=a\ntracker=a\ntracker=a\n");
  snprintf(want, sizeof(want), "%s:9: --tracker: at most 8 trackers" HINT,
           g_conf);
  refused_with(&c, PARSE(&c, "daemon"), want);
}

static void the_command_line_wins_over_the_file(void **state) {
  struct cli c;
  (void)state;
  write_conf("upload-rate = 1M\nhome = /from/file\ntracker = f1\n"
             "tracker = f2\nlog-level = debug\n");
  accepted(&c, PARSE(&c, "share", "p", "--upload-rate", "2M", "--home", "h"));
  assert_int_equal(c.node.upload_rate, 2 << 20);
  assert_string_equal(c.home, "h");
  assert_int_equal(c.log_level, LOG_DEBUG);
  /* Without --tracker, the file's list. */
  assert_int_equal(c.ntrackers, 2);
  assert_string_equal(c.trackers[1].host, "f2");
  cli_close(&c);
  /* A --tracker replaces the file's list rather than adding to it. */
  accepted(&c, PARSE(&c, "share", "p", "--tracker", "c1"));
  assert_int_equal(c.ntrackers, 1);
  assert_string_equal(c.trackers[0].host, "c1");
  cli_close(&c);
  /* The file's trackers stand before SHOAL_TRACKER's. */
  setenv(CLI_TRACKER_ENV, "env1 env2 env3", 1);
  accepted(&c, PARSE(&c, "search", "w"));
  assert_int_equal(c.ntrackers, 2);
  assert_string_equal(c.trackers[0].host, "f1");
  cli_close(&c);
  /* A bad value in the file is not read when the command line gives
   * its own. */
  write_conf("max-peers = 9999\n");
  accepted(&c, PARSE(&c, "share", "p", "--max-peers", "3", "--tracker", "t"));
  assert_int_equal(c.node.max_peers, 3);
  cli_close(&c);
}

static void keys_for_other_commands_are_ignored(void **state) {
  struct cli c;
  char want[1024], link[LINK_MAX_CHARS + 1];
  (void)state;
  make_link(link, sizeof(link), 120, 1);
  write_conf("limit = 3\nseed = true\napi-listen = 0.0.0.0:1\n"
             "output = /downloads\ndelete-data = true\nmode = cs\n");
  accepted(&c, PARSE(&c, "id"));
  assert_false(c.seed || c.delete_data);
  assert_null(c.api_listen);
  assert_int_equal(c.limit, CLI_LIMIT_DEFAULT);
  cli_close(&c);
  accepted(&c, PARSE(&c, "ls"));
  cli_close(&c);
  /* Each is taken by the commands it applies to. */
  accepted(&c, PARSE(&c, "search", "w", "--tracker", "t"));
  assert_int_equal(c.limit, 3);
  cli_close(&c);
  accepted(&c, PARSE(&c, "rm", "abcdefgh"));
  assert_true(c.delete_data);
  cli_close(&c);
  accepted(&c, PARSE(&c, "add", link));
  assert_string_equal(c.out_dir, "/downloads");
  cli_close(&c);
  snprintf(want, sizeof(want),
           "%s:3: --api-listen '0.0.0.0:1' is not a loopback address", g_conf);
  REFUSED(&c, PARSE(&c, "daemon"), want);
}

static void no_config_and_config_file(void **state) {
  struct cli c;
  char other[600], want[1024];
  (void)state;
  write_conf("frob = 1\n");
  /* --no-config reads nothing. */
  accepted(&c, PARSE(&c, "id", "--no-config"));
  assert_null(c.config_path);
  cli_close(&c);
  /* --config reads its file instead of the default. */
  tu_write_file(g_dir, "other.conf", "json = on\n", 10);
  tu_path(other, sizeof(other), g_dir, "other.conf");
  accepted(&c, PARSE(&c, "id", "--config", other));
  assert_true(c.json);
  assert_string_equal(c.config_path, other);
  cli_close(&c);
  refused_with(&c, PARSE(&c, "id", "--config", other, "--no-config"),
               "--config and --no-config do not go together" HINT);
  refused_with(&c, PARSE(&c, "id", "--config="),
               "--config needs a file, not ''" HINT);
  /* A missing --config file is an error; a missing default is none. */
  tu_path(other, sizeof(other), g_dir, "missing.conf");
  snprintf(want, sizeof(want),
           "cannot read the config file %s: No such file or directory", other);
  refused_with(&c, PARSE(&c, "id", "--config", other), want);
  snprintf(want, sizeof(want), "cannot read the config file %s: not a file",
           g_dir);
  refused_with(&c, PARSE(&c, "ls", "--config", g_dir), want);
  unlink(g_conf);
  accepted(&c, PARSE(&c, "id"));
  assert_null(c.config_path);
  cli_close(&c);
  /* Without XDG_CONFIG_HOME, the file is under $HOME/.config. */
  char home[600], *saved = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  tu_path(home, sizeof(home), g_dir, "home");
  tu_write_file(home, ".config/" CLI_CONFIG_NAME, "quiet = yes\n", 12);
  unsetenv("XDG_CONFIG_HOME");
  setenv("HOME", home, 1);
  int rc = PARSE(&c, "id");
  if (saved != NULL) {
    setenv("HOME", saved, 1);
  } else {
    unsetenv("HOME");
  }
  free(saved);
  accepted(&c, rc);
  assert_true(c.quiet);
  cli_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Memory */

static void close_is_safe_on_zero_and_twice(void **state) {
  struct cli c;
  char l1[LINK_MAX_CHARS + 1];
  (void)state;
  memset(&c, 0, sizeof(c));
  cli_close(&c);
  make_link(l1, sizeof(l1), 90, 1);
  accepted(&c, PARSE(&c, "get", l1));
  cli_close(&c);
  cli_close(&c);
  assert_null(c.gets);
  assert_null(c.words);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(each_command_takes_its_arguments),
      T(defaults_when_nothing_is_given),
      T(a_command_is_needed_and_must_be_known),
      T(help_and_version_stop_the_parse),
      T(unknown_options_and_values_are_named),
      T(values_come_after_equals_or_as_the_next_word),
      T(options_come_anywhere_and_double_dash_ends_them),
      T(POSIXLY_CORRECT_does_not_stop_at_the_first_word),
      T(long_options_may_be_shortened_to_one_prefix),
      T(options_apply_to_the_commands_the_man_page_says),
      T(short_forms_are_named_in_refusals),
      T(help_names_every_option),
      T(numbers_are_taken_within_their_ranges),
      T(rates_modes_levels_and_listen),
      T(home_and_output_must_be_paths),
      T(tracker_key_must_be_a_key),
      T(trackers_get_the_default_port),
      T(at_most_eight_trackers),
      T(share_and_search_need_arguments_and_a_tracker),
      T(search_words_are_joined_and_bounded),
      T(get_takes_links_and_content_ids),
      T(get_refuses_malformed_links_without_the_help_hint),
      T(shoal_tracker_stands_for_tracker),
      T(a_bad_shoal_tracker_is_named),
      T(daemon_takes_its_options),
      T(watch_share_needs_watch),
      T(api_listen_is_a_loopback_address),
      T(client_commands_take_their_arguments),
      T(ids_are_whole_or_prefixes_of_eight_or_more),
      T(rm_takes_delete_data),
      T(limits_shows_or_sets_what_is_given),
      T(add_takes_links_and_makes_output_absolute),
      T(publish_makes_paths_absolute),
      T(config_file_at_the_top_and_under_peer),
      T(config_unknown_keys_and_sections_name_file_and_line),
      T(config_values_are_checked_as_the_command_line_s),
      T(the_command_line_wins_over_the_file),
      T(keys_for_other_commands_are_ignored),
      T(no_config_and_config_file),
      T(close_is_safe_on_zero_and_twice),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
