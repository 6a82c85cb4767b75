/* Unit tests for peer/report.c: what shoal-peer prints for each thing a
 * run does, in its three outputs (--json, plain lines, a terminal).
 *
 * The report writes into two memory streams here, so every byte of
 * stdout and stderr is compared: the JSON object of each node event with
 * its keys in order, the plain lines and which of them --quiet drops,
 * escaping of names that would drive a terminal, how often progress comes
 * (after one period, then every period; per content; 0.5 s and 2 s for
 * JSON; the terminal's line 0.5 s), and that a line on the terminal is
 * cleared before anything else is written. The terminal itself is faked
 * by setting tty and cols: isatty is the only thing not covered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/textid.h"
#include "peer/report.h"
#include "tests/lib/testutil.h"

#define CLEAR "\r\033[K"

/* Both streams of a report, in memory. */
struct capture {
  struct report r;
  FILE *out, *err;
  char *obuf, *ebuf;
  size_t olen, elen;
};

static void capture_start(struct capture *c, int json, int quiet,
                          int key_given) {
  memset(c, 0, sizeof(*c));
  c->out = open_memstream(&c->obuf, &c->olen);
  c->err = open_memstream(&c->ebuf, &c->elen);
  assert_non_null(c->out);
  assert_non_null(c->err);
  report_init(&c->r, c->out, c->err, json, quiet, key_given);
}

/* Makes the report believe err is a terminal of cols columns. */
static void capture_tty(struct capture *c, size_t cols) {
  c->r.tty = 1;
  c->r.cols = cols;
}

static const char *out_text(struct capture *c) {
  fflush(c->out);
  return c->obuf;
}

static const char *err_text(struct capture *c) {
  fflush(c->err);
  return c->ebuf;
}

/* Forgets what was written so far: new streams, the same report. */
static void capture_reset(struct capture *c) {
  fclose(c->out);
  fclose(c->err);
  free(c->obuf);
  free(c->ebuf);
  c->out = open_memstream(&c->obuf, &c->olen);
  c->err = open_memstream(&c->ebuf, &c->elen);
  assert_non_null(c->out);
  assert_non_null(c->err);
  c->r.out = c->out;
  c->r.err = c->err;
}

static void capture_end(struct capture *c) {
  report_close(&c->r);
  fclose(c->out);
  fclose(c->err);
  free(c->obuf);
  free(c->ebuf);
}

static uint8_t g_content[32];
static char g_cid[TEXTID_STRLEN];

static struct node_swarm_info swarm(const char *name, uint64_t have,
                                    uint64_t total, int seeding) {
  /* What it is, how far it got, and the peers it trades with. */
  return (struct node_swarm_info){.content = g_content,
                                  .name = name,
                                  .total = total,
                                  .chunks = 4,
                                  .have = have,
                                  .downloaded = have,
                                  .rate = 1024,
                                  .peers = 2,
                                  .seeders = 1,
                                  .uploaded = 7,
                                  .seeding = seeding};
}

static struct node_event event(enum node_event_type type,
                               const struct node_swarm_info *s) {
  struct node_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = type;
  ev.swarm = s;
  return ev;
}

/* Reports the n events of evs in turn, at time 0. */
static void report_each(struct report *r, const struct node_event *evs,
                        size_t n) {
  for (size_t i = 0; i < n; i++) {
    report_event(r, 0, &evs[i]);
  }
}

static int setup(void **state) {
  (void)state;
  tu_fill(g_content, sizeof(g_content), 0xc0);
  textid_encode(TEXTID_CONTENT, g_content, g_cid);
  return 0;
}

/* ------------------------------------------------------------------------ */

static void each_node_event_is_one_json_object(void **state) {
  struct capture c;
  uint8_t pk[32], peer[32];
  char key[TEXTID_STRLEN], me[TEXTID_STRLEN], want[2048];
  (void)state;
  tu_fill(pk, sizeof(pk), 1);
  tu_fill(peer, sizeof(peer), 2);
  textid_encode(TEXTID_KEY, pk, key);
  textid_encode(TEXTID_KEY, peer, me);
  struct node_swarm_info s = swarm("a\"b.bin", 10, 100, 0);
  /* --quiet changes nothing in JSON output. */
  capture_start(&c, 1, 1, 0);
  report_set_peer(&c.r, peer);

  const struct node_event evs[] = {
      {.type = NODE_EV_LISTENING, .port = 4567},
      {.type = NODE_EV_TRACKER, .key = pk},
      {.type = NODE_EV_HASHING},
      {.type = NODE_EV_SHARED, .swarm = &s, .link = "shoal:LINK"},
      {.type = NODE_EV_MANIFEST, .swarm = &s, .resumed = 5},
      {.type = NODE_EV_COMPLETE,
       .swarm = &s,
       .path = "out/a\"b.bin",
       .seconds = 1.5},
      {.type = NODE_EV_BANNED, .swarm = &s, .key = pk, .message = "bad data"},
      {.type = NODE_EV_WARNING, .swarm = &s, .message = "no peers yet"},
      {.type = NODE_EV_WARNING, .message = "node-wide"},
  };
  report_each(&c.r, evs, sizeof(evs) / sizeof(evs[0]));
  snprintf(
      want, sizeof(want),
      "{\"event\":\"listening\",\"port\":4567,\"id\":\"%s\"}\n"
      "{\"event\":\"tracker\",\"key\":\"%s\"}\n"
      "{\"event\":\"shared\",\"name\":\"a\\\"b.bin\",\"content\":\"%s\","
      "\"size\":100,\"link\":\"shoal:LINK\"}\n"
      "{\"event\":\"manifest\",\"name\":\"a\\\"b.bin\",\"size\":100,"
      "\"chunks\":4,\"resumed_bytes\":5}\n"
      "{\"event\":\"complete\",\"content\":\"%s\",\"path\":\"out/a\\\"b.bin\","
      "\"seconds\":1.500,\"downloaded\":10,\"uploaded\":7}\n"
      "{\"event\":\"banned\",\"peer\":\"%s\",\"reason\":\"bad data\"}\n"
      "{\"event\":\"warning\",\"content\":\"%s\",\"message\":\"no peers "
      "yet\"}\n"
      "{\"event\":\"warning\",\"message\":\"node-wide\"}\n",
      me, key, g_cid, g_cid, key, g_cid);
  assert_string_equal(out_text(&c), want);
  assert_string_equal(err_text(&c), "");

  /* A failure: one line on stderr and an "error" event. */
  capture_reset(&c);
  const struct node_event failed = {.type = NODE_EV_FAILED,
                                    .swarm = &s,
                                    .code = SHOAL_EHASH,
                                    .message = "it broke"};
  report_event(&c.r, 0, &failed);
  assert_string_equal(out_text(&c), "{\"event\":\"error\",\"code\":"
                                    "\"SHOAL_EHASH\",\"message\":\"it "
                                    "broke\"}\n");
  assert_string_equal(err_text(&c), "shoal-peer: error: it broke\n");
  capture_end(&c);
}

static void plain_lines_and_what_quiet_drops(void **state) {
  uint8_t pk[32];
  char key[TEXTID_STRLEN], want[1024];
  (void)state;
  tu_fill(pk, sizeof(pk), 3);
  textid_encode(TEXTID_KEY, pk, key);
  struct node_swarm_info s = swarm("n.bin", 10, 100, 0);
  const struct node_event evs[] = {
      {.type = NODE_EV_LISTENING},
      {.type = NODE_EV_TRACKER, .key = pk},
      {.type = NODE_EV_SHARED, .swarm = &s, .link = "shoal:LINK"},
      {.type = NODE_EV_MANIFEST, .swarm = &s, .resumed = 2048},
      {.type = NODE_EV_COMPLETE, .swarm = &s, .path = "out/n.bin"},
      {.type = NODE_EV_BANNED, .swarm = &s, .key = pk, .message = "bad data"},
      {.type = NODE_EV_WARNING, .swarm = &s, .message = "no peers yet"},
      {.type = NODE_EV_FAILED,
       .swarm = &s,
       .code = SHOAL_EHASH,
       .message = "it broke"},
  };
  for (int quiet = 0; quiet <= 1; quiet++) {
    struct capture c;
    capture_start(&c, 0, quiet, 0);
    report_each(&c.r, evs, sizeof(evs) / sizeof(evs[0]));
    /* Results stay with --quiet, and so do errors. */
    assert_string_equal(out_text(&c), "shoal:LINK\nout/n.bin\n");
    if (quiet) {
      assert_string_equal(err_text(&c), "shoal-peer: error: it broke\n");
    } else {
      snprintf(want, sizeof(want),
               "shoal-peer: tracker key %s (learned on first use)\n"
               "shoal-peer: n.bin: resuming with 2.00 KiB already verified\n"
               "shoal-peer: banned peer %s: bad data\n"
               "shoal-peer: no peers yet\n"
               "shoal-peer: error: it broke\n",
               key, key);
      assert_string_equal(err_text(&c), want);
    }
    capture_end(&c);
  }
  /* A key given on the command line is not news; nothing resumed is not
   * either. */
  struct capture c;
  capture_start(&c, 0, 0, 1);
  struct node_event ev = event(NODE_EV_TRACKER, NULL);
  ev.key = pk;
  report_event(&c.r, 0, &ev);
  ev = event(NODE_EV_MANIFEST, &s);
  report_event(&c.r, 0, &ev);
  assert_string_equal(err_text(&c), "");
  capture_end(&c);
}

static void names_and_messages_are_escaped(void **state) {
  struct capture c;
  (void)state;
  struct node_swarm_info s = swarm("bad\x1b[2J\nname", 10, 100, 0);
  capture_start(&c, 0, 0, 0);
  struct node_event ev = event(NODE_EV_COMPLETE, &s);
  ev.path = "out/bad\x1b[2J\nname";
  report_event(&c.r, 0, &ev);
  ev = event(NODE_EV_WARNING, &s);
  ev.message = "peer said \x07\x9b";
  report_event(&c.r, 0, &ev);
  report_left_out(&c.r, "dir/\x1b]0;t\x07", "a symbolic link");
  report_error(&c.r, SHOAL_EINVAL, "cannot share \x1b[31m");
  report_usage(c.err, "unknown option --\x1b");
  assert_string_equal(out_text(&c), "out/bad\\x1b[2J\\nname\n");
  assert_string_equal(err_text(&c),
                      "shoal-peer: peer said \\x07\\x9b\n"
                      "shoal-peer: left out dir/\\x1b]0;t\\x07: a symbolic "
                      "link\n"
                      "shoal-peer: error: cannot share \\x1b[31m\n"
                      "shoal-peer: unknown option --\\x1b\n");
  capture_end(&c);
}

/* ------------------------------------------------------------------------ */
/* Progress */

static void progress(struct capture *c, uint64_t now,
                     const struct node_swarm_info *s) {
  struct node_event ev = event(NODE_EV_PROGRESS, s);
  report_event(&c->r, now, &ev);
}

static void plain_progress_comes_every_five_seconds(void **state) {
  struct capture c;
  (void)state;
  struct node_swarm_info s = swarm("p.bin", 512, 1024, 0);
  capture_start(&c, 0, 0, 0);
  assert_int_equal(c.r.tty, 0);
  assert_int_equal(c.r.cols, REPORT_PLAIN_COLS);
  /* The first line comes one period after the first event. */
  progress(&c, 1000, &s);
  progress(&c, 5999, &s);
  assert_string_equal(err_text(&c), "");
  progress(&c, 6000, &s);
  assert_string_equal(err_text(&c), "p.bin: 50.0% 512 B/1.00 KiB 1.00 KiB/s "
                                    "ETA 0s peers 2 seeders 1\n");
  capture_reset(&c);
  progress(&c, 10999, &s);
  assert_string_equal(err_text(&c), "");
  progress(&c, 11000, &s);
  assert_non_null(strstr(err_text(&c), "p.bin: 50.0%"));
  capture_end(&c);
  /* --quiet: none. */
  capture_start(&c, 0, 1, 0);
  for (uint64_t t = 1000; t < 30000; t += 1000) {
    progress(&c, t, &s);
  }
  assert_string_equal(err_text(&c), "");
  capture_end(&c);
}

static void each_content_has_its_own_clock(void **state) {
  struct capture c;
  uint8_t other[32];
  (void)state;
  tu_fill(other, sizeof(other), 0xc1);
  struct node_swarm_info a = swarm("a.bin", 1, 2, 0);
  struct node_swarm_info b = swarm("b.bin", 1, 2, 0);
  b.content = other;
  capture_start(&c, 0, 0, 0);
  progress(&c, 1000, &a);
  progress(&c, 3000, &b);
  progress(&c, 6000, &a);
  progress(&c, 6000, &b); /* b's period is not over */
  progress(&c, 8000, &b);
  const char *err = err_text(&c);
  const char *pa = strstr(err, "a.bin:");
  const char *pb = strstr(err, "b.bin:");
  assert_non_null(pa);
  assert_non_null(pb);
  assert_true(pa < pb);
  assert_null(strstr(pa + 1, "a.bin:"));
  assert_null(strstr(pb + 1, "b.bin:"));
  capture_end(&c);
}

static void json_progress_every_half_second_or_two_when_seeding(void **state) {
  struct capture c;
  (void)state;
  struct node_swarm_info s = swarm("j.bin", 5, 10, 0);
  capture_start(&c, 1, 0, 0);
  report_set_start(&c.r, 200); /* the command started at 200 ms */
  progress(&c, 1000, &s);      /* the first comes at once */
  progress(&c, 1449, &s);
  progress(&c, 1450, &s); /* 50 ms of slack for the loop's ticks */
  char want[512];
  snprintf(want, sizeof(want),
           "{\"event\":\"progress\",\"content\":\"%s\",\"have\":5,"
           "\"total\":10,\"rate\":1024,\"peers\":2,\"seeders\":1,"
           "\"uploaded\":7,\"downloaded\":5,\"seconds\":0.800}\n",
           g_cid);
  size_t one = strlen(want);
  assert_int_equal(strlen(out_text(&c)), 2 * one);
  assert_memory_equal(out_text(&c), want, one);
  /* The second says the seconds since the start, not since the first. */
  assert_non_null(strstr(out_text(&c) + one, "\"seconds\":1.250}"));
  capture_reset(&c);
  s.seeding = 1;
  progress(&c, 3399, &s);
  assert_string_equal(out_text(&c), "");
  progress(&c, 3400, &s);
  assert_non_null(strstr(out_text(&c), "\"event\":\"progress\""));
  capture_end(&c);
}

static void terminal_line_is_rewritten_and_cleared(void **state) {
  struct capture c;
  (void)state;
  struct node_swarm_info s =
      swarm("a-rather-long-name-for-a-narrow-terminal.bin", 512, 1024, 0);
  capture_start(&c, 0, 0, 0);
  capture_tty(&c, 30);
  progress(&c, 1000, &s);
  const char *err = err_text(&c);
  assert_memory_equal(err, CLEAR, strlen(CLEAR));
  assert_null(strchr(err, '\n'));
  assert_true(strlen(err) - strlen(CLEAR) <= 29); /* ASCII: bytes = cols */
  assert_true(c.r.line_up);
  /* Within half a second: not drawn again. */
  capture_reset(&c);
  progress(&c, 1449, &s);
  assert_string_equal(err_text(&c), "");
  progress(&c, 1450, &s);
  assert_memory_equal(err_text(&c), CLEAR, strlen(CLEAR));
  /* Anything else clears the line first, once. */
  capture_reset(&c);
  struct node_event ev = event(NODE_EV_WARNING, NULL);
  ev.message = "w";
  report_event(&c.r, 1500, &ev);
  report_error(&c.r, SHOAL_EINVAL, "e");
  assert_string_equal(err_text(&c), CLEAR "shoal-peer: w\nshoal-peer: error: "
                                          "e\n");
  assert_false(c.r.line_up);
  capture_end(&c);
}

/* ------------------------------------------------------------------------ */
/* Sharing, totals, id and search */

static void hashing_events_and_the_bar(void **state) {
  struct capture c;
  (void)state;
  capture_start(&c, 1, 0, 0);
  report_hashing(&c.r, 1000, "big.iso", 1, 100);
  report_hashing(&c.r, 1249, "big.iso", 50, 100); /* too soon */
  report_hashing(&c.r, 1250, "big.iso", 60, 100);
  report_hashing(&c.r, 1251, "big.iso", 100, 100); /* the last always */
  assert_string_equal(
      out_text(&c),
      "{\"event\":\"hashing\",\"name\":\"big.iso\",\"done\":1,\"total\":100}\n"
      "{\"event\":\"hashing\",\"name\":\"big.iso\",\"done\":60,\"total\":100}\n"
      "{\"event\":\"hashing\",\"name\":\"big.iso\",\"done\":100,"
      "\"total\":100}\n");
  capture_end(&c);
  /* A terminal gets a bar, for a large path only. */
  capture_start(&c, 0, 0, 0);
  capture_tty(&c, 80);
  report_hashing(&c.r, 1000, "small", 1, 100);
  assert_string_equal(err_text(&c), "");
  report_hashing(&c.r, 2000, "big.iso", REPORT_HASH_BAR_BYTES / 2,
                 REPORT_HASH_BAR_BYTES);
  assert_string_equal(err_text(&c), CLEAR "hashing big.iso [###############"
                                          "...............] 32.0 MiB/64.0 "
                                          "MiB");
  capture_end(&c);
  /* Plain output: none. */
  capture_start(&c, 0, 0, 0);
  report_hashing(&c.r, 1000, "big.iso", 1, REPORT_HASH_BAR_BYTES);
  assert_string_equal(err_text(&c), "");
  assert_string_equal(out_text(&c), "");
  capture_end(&c);
}

static void left_out_is_an_event_or_a_warning(void **state) {
  struct capture c;
  (void)state;
  capture_start(&c, 1, 1, 0);
  report_left_out(&c.r, "d/link", "a symbolic link");
  assert_string_equal(out_text(&c), "{\"event\":\"left_out\",\"path\":\"d/"
                                    "link\",\"reason\":\"a symbolic link\"}\n");
  capture_end(&c);
  capture_start(&c, 0, 1, 0);
  report_left_out(&c.r, "d/link", "a symbolic link");
  assert_string_equal(err_text(&c), "");
  capture_end(&c);
}

static void totals_are_a_stats_event_or_a_line(void **state) {
  struct capture c;
  (void)state;
  capture_start(&c, 1, 1, 0);
  report_totals(&c.r, 2048, 3, 1, 2.25);
  assert_string_equal(out_text(&c), "{\"event\":\"stats\",\"uploaded\":2048,"
                                    "\"downloaded\":3,\"wasted\":1,"
                                    "\"seconds\":2.250}\n");
  capture_end(&c);
  capture_start(&c, 0, 0, 0);
  report_totals(&c.r, 2048, 3, 1, 2.25);
  assert_string_equal(err_text(&c),
                      "shoal-peer: uploaded 2.00 KiB, downloaded 3 B\n");
  capture_end(&c);
  capture_start(&c, 0, 1, 0);
  report_totals(&c.r, 2048, 3, 1, 2.25);
  assert_string_equal(err_text(&c), "");
  capture_end(&c);
}

static void id_and_search_results(void **state) {
  struct capture c;
  uint8_t pk[32];
  char key[TEXTID_STRLEN], want[1024];
  struct tmsg_result x;
  (void)state;
  tu_fill(pk, sizeof(pk), 9);
  textid_encode(TEXTID_KEY, pk, key);
  memset(&x, 0, sizeof(x));
  memcpy(x.content, g_content, 32);
  snprintf(x.name, sizeof(x.name), "\xe3\x83\x95-\x1b.bin");
  x.size = 1536;
  x.seeders = 3;
  x.downloaders = 4;

  capture_start(&c, 0, 0, 0);
  report_id(&c.r, pk);
  report_search_begin(&c.r, 1);
  report_search_result(&c.r, &x, "shoal:L");
  /* The name is escaped and padded to 32 columns: the wide character
   * counts two, "\x1b" four. */
  snprintf(want, sizeof(want),
           "%s\n"
           "NAME                                   SIZE SEEDERS DOWNLOADERS"
           "  LINK\n"
           "\xe3\x83\x95-\\x1b.bin%21s   1.50 KiB       3           4  "
           "shoal:L\n",
           key, "");
  assert_string_equal(out_text(&c), want);
  capture_reset(&c);
  report_search_begin(&c.r, 0);
  assert_string_equal(out_text(&c), "");
  assert_string_equal(err_text(&c), "shoal-peer: no matches\n");
  capture_end(&c);

  capture_start(&c, 0, 1, 0);
  report_search_begin(&c.r, 0);
  assert_string_equal(err_text(&c), "");
  capture_end(&c);

  capture_start(&c, 1, 0, 0);
  report_id(&c.r, pk);
  report_search_begin(&c.r, 1);
  report_search_begin(&c.r, 0);
  report_search_result(&c.r, &x, "shoal:L");
  snprintf(want, sizeof(want),
           "{\"event\":\"id\",\"id\":\"%s\"}\n"
           "{\"event\":\"search\",\"name\":\"\xe3\x83\x95-\\u001b.bin\","
           "\"size\":1536,\"seeders\":3,\"downloaders\":4,\"content\":\"%s\","
           "\"link\":\"shoal:L\"}\n",
           key, g_cid);
  assert_string_equal(out_text(&c), want);
  assert_string_equal(err_text(&c), "");
  capture_end(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(each_node_event_is_one_json_object),
      cmocka_unit_test(plain_lines_and_what_quiet_drops),
      cmocka_unit_test(names_and_messages_are_escaped),
      cmocka_unit_test(plain_progress_comes_every_five_seconds),
      cmocka_unit_test(each_content_has_its_own_clock),
      cmocka_unit_test(json_progress_every_half_second_or_two_when_seeding),
      cmocka_unit_test(terminal_line_is_rewritten_and_cleared),
      cmocka_unit_test(hashing_events_and_the_bar),
      cmocka_unit_test(left_out_is_an_event_or_a_warning),
      cmocka_unit_test(totals_are_a_stats_event_or_a_line),
      cmocka_unit_test(id_and_search_results),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
