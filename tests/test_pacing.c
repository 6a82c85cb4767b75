/* Unit tests for peer/pacing.c: how much a peer keeps in flight.
 *
 * Rates and round trips are numbers the test chooses, not measurements:
 * the read slots shared among busy sessions, the bytes a session lets wait
 * unsent, the send buffer it asks of the kernel (what it_peer once watched
 * with ss: at a 2 MiB/s upload, a loopback socket holds a quarter of a
 * second's worth at most, where the kernel alone grows it to megabytes),
 * when a socket option is set again, the pipeline's depth and the request
 * timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/pwire.h"
#include "peer/limits.h"
#include "peer/pacing.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Blocks are opened on the pool from a loop busy NODE_LOOP_BUSY_HIGH of
 * the time, on the loop again below NODE_LOOP_BUSY_LOW, and in between
 * where they were (no flapping at one threshold). */
static void
test_blocks_open_on_the_pool_only_while_the_loop_is_busy(void **state) {
  (void)state;
  for (int now = 0; now <= 1; now++) {
    assert_int_equal(pacing_crypto_on_pool(now, 0.0), 0);
    assert_int_equal(pacing_crypto_on_pool(now, NODE_LOOP_BUSY_LOW - 0.01), 0);
    assert_int_equal(pacing_crypto_on_pool(now, NODE_LOOP_BUSY_LOW), now);
    assert_int_equal(pacing_crypto_on_pool(now, NODE_LOOP_BUSY_HIGH - 0.01),
                     now);
    assert_int_equal(pacing_crypto_on_pool(now, NODE_LOOP_BUSY_HIGH), 1);
    assert_int_equal(pacing_crypto_on_pool(now, 1.0), 1);
    assert_int_equal(pacing_crypto_on_pool(now, 1.7), 1); /* rounding */
  }
  /* A loop going from idle to saturated and back switches once each way. */
  int at = 0, switches = 0;
  for (int step = 0; step <= 200; step++) {
    double busy = step <= 100 ? step / 100.0 : (200 - step) / 100.0;
    int next = pacing_crypto_on_pool(at, busy);
    switches += next != at;
    at = next;
  }
  assert_int_equal(switches, 2);
  assert_int_equal(at, 0);
}

static void test_read_slots_are_shared_among_busy_sessions(void **state) {
  (void)state;
  assert_int_equal(pacing_reads(0), NODE_READS_IN_FLIGHT);
  for (unsigned busy = 1; busy <= NODE_READS_MAX / NODE_READS_IN_FLIGHT;
       busy++) {
    assert_int_equal(pacing_reads(busy), NODE_READS_IN_FLIGHT);
  }
  assert_int_equal(pacing_reads(5), 6); /* 32 / 5 */
  assert_int_equal(pacing_reads(8), 4);
  assert_int_equal(pacing_reads(16), 2);
  assert_int_equal(pacing_reads(32), 1);
  assert_int_equal(pacing_reads(33), 1); /* never none */
  assert_int_equal(pacing_reads(256), 1);
  for (unsigned busy = 1; busy <= 300; busy++) {
    unsigned r = pacing_reads(busy);
    assert_true(r >= 1 && r <= NODE_READS_IN_FLIGHT);
    /* Together they stay within the node's reads, while there are fewer
     * busy sessions than reads. */
    if (busy <= NODE_READS_MAX) {
      assert_true(r * busy <= NODE_READS_MAX);
    }
  }
}

static void test_the_upload_is_shared_evenly(void **state) {
  (void)state;
  assert_int_equal(pacing_share(3 * MiB, 3), MiB);
  assert_int_equal(pacing_share(3 * MiB, 0), 3 * MiB);
  assert_int_equal(pacing_share(0, 4), 0);
  assert_int_equal(pacing_share(10, 3), 3);
}

static void test_a_seeder_paces_the_sessions_over_the_average(void **state) {
  (void)state;
  /* Two sessions at 59% and 41% of 5 MB/s: the faster is paced at 105% of
   * the 2.5 MB/s average, 4% more for the headers; the slower is not. */
  uint64_t cap =
      2500000ull * NODE_PACE_CAP_PCT / 100 * NODE_PACE_WIRE_PCT / 100;
  assert_int_equal(pacing_cap(2950000, 5000000, 2, 0), cap);
  assert_int_equal(pacing_cap(2050000, 5000000, 2, 0), 0);
  /* Not paced up to NODE_PACE_OVER_PCT of the average, paced past it. */
  assert_int_equal(pacing_cap(2700000, 5000000, 2, 0), 0);
  assert_int_equal(pacing_cap(2700001, 5000000, 2, 0), cap);
  /* Once paced, it stays so down to NODE_PACE_UNDER_PCT of the average,
   * and is let go under it. */
  assert_int_equal(pacing_cap(2500000, 5000000, 2, 1), cap);
  assert_int_equal(pacing_cap(2375000, 5000000, 2, 1), cap);
  assert_int_equal(pacing_cap(2374999, 5000000, 2, 1), 0);
  /* One busy session, or nothing sent yet: no limit. */
  assert_int_equal(pacing_cap(5000000, 5000000, 1, 0), 0);
  assert_int_equal(pacing_cap(5000000, 5000000, 1, 1), 0);
  assert_int_equal(pacing_cap(0, 0, 4, 0), 0);
  assert_int_equal(pacing_cap(0, 0, 4, 1), 0);
  /* Never paced under NODE_PACE_MIN: a session held at next to nothing
   * would keep the average there. */
  assert_int_equal(pacing_cap(3, 3, 3, 1), 0);
  assert_int_equal(pacing_cap(0, 1, 2, 1), 0);
  uint64_t floor_sum = 2 * (uint64_t)NODE_PACE_MIN;
  assert_int_equal(pacing_cap(floor_sum, floor_sum, 2, 1),
                   (uint64_t)NODE_PACE_MIN * NODE_PACE_CAP_PCT / 100 *
                       NODE_PACE_WIRE_PCT / 100);
  assert_int_equal(pacing_cap(floor_sum / 2, floor_sum / 2, 2, 1), 0);
}

/* The rule's point: whatever the split between sessions that all take
 * what they are given, none is paced at less than the average, so the
 * paced ones together never take less than their even share, and the
 * cap leaves the rest room to grow. */
static void test_pacing_never_holds_a_session_under_the_average(void **state) {
  (void)state;
  for (unsigned busy = 2; busy <= 64; busy *= 2) {
    for (uint64_t sum = 1000; sum <= 1000000000; sum *= 7) {
      uint64_t avg = sum / busy;
      for (uint64_t pct = 0; pct <= 300; pct += 5) {
        uint64_t mine = avg * pct / 100;
        for (int paced = 0; paced <= 1; paced++) {
          uint64_t cap = pacing_cap(mine, sum, busy, paced);
          if (cap != 0) {
            assert_true(cap >= avg);
            assert_true(cap >= NODE_PACE_MIN);
          }
          /* Paced past the trigger, held until under the release, where
           * the average is enough to pace at. */
          if (avg >= NODE_PACE_MIN) {
            assert_int_equal(cap != 0,
                             paced ? mine * 100 >= avg * NODE_PACE_UNDER_PCT
                                   : mine * 100 > avg * NODE_PACE_OVER_PCT);
          }
        }
      }
    }
  }
}

static void test_queued_bytes_are_100_ms_of_the_share(void **state) {
  (void)state;
  assert_int_equal(pacing_queue_bytes(0), NODE_QUEUE_MIN);
  assert_int_equal(pacing_queue_bytes(320 * KiB), NODE_QUEUE_MIN);
  assert_int_equal(pacing_queue_bytes(330 * KiB), 33792);
  assert_int_equal(pacing_queue_bytes(2 * MiB), 209715);
  assert_int_equal(pacing_queue_bytes(10 * MiB), NODE_WRITE_QUEUE_MAX);
  assert_int_equal(pacing_queue_bytes(100 * MiB), NODE_WRITE_QUEUE_MAX);
  /* 10 Mbit/s shared by 16: 7.8 KB a second each, the floor. */
  assert_int_equal(pacing_queue_bytes(10000000 / 8 / 16), NODE_QUEUE_MIN);
}

static void test_send_buffer_is_a_round_trip_and_100_ms(void **state) {
  (void)state;
  assert_int_equal(pacing_send_buffer(0, 0, 1448), NODE_QUEUE_MIN);
  assert_int_equal(pacing_send_buffer(2 * MiB, 0, 1448), 209715);
  /* 2 MiB/s over a 50 us round trip. */
  assert_int_equal(pacing_send_buffer(2 * MiB, 50, 1448), 209820);
  /* 100 Mbit/s over 100 ms: 200 ms of 12.5 MB/s. */
  assert_int_equal(pacing_send_buffer(12500000, 100000, 1448), 2500000);
  assert_int_equal(pacing_send_buffer(100 * MiB, 100000, 1448),
                   NODE_SEND_BUFFER_MAX);
  /* Linear in the share between the bounds. */
  assert_int_equal(pacing_send_buffer(4 * MiB, 20000, 1448),
                   2 * pacing_send_buffer(2 * MiB, 20000, 1448));
}

/* A buffer of fewer than two full segments sends only part-filled ones,
 * and the receiver acknowledges a lone part-filled segment after its
 * delayed-ACK timer (40 ms on Linux): on loopback, whose segments are
 * 64 KiB, a fresh seeder (no rate measured yet, so the floor) sent in
 * bursts 44 ms apart for its first 100-140 ms. Four segments keep two in
 * flight while two fill; on a 1,500-byte path the floor is the same. */
static void test_send_buffer_holds_four_full_segments(void **state) {
  (void)state;
  /* Loopback's segment, nothing measured yet. */
  assert_int_equal(pacing_send_buffer(0, 0, 65483), 4 * 65483);
  assert_int_equal(pacing_send_buffer(0, 30, 65483),
                   NODE_SEND_SEGMENTS * 65483);
  /* Jumbo frames (MTU 9000): just over the old floor. */
  assert_int_equal(pacing_send_buffer(0, 200, 8948), 4 * 8948);
  /* An Ethernet segment, or none known yet: NODE_QUEUE_MIN rules. */
  assert_int_equal(pacing_send_buffer(0, 0, 1448), NODE_QUEUE_MIN);
  assert_int_equal(pacing_send_buffer(0, 0, 0), NODE_QUEUE_MIN);
  /* A measured share above the floor is kept as it was. */
  assert_int_equal(pacing_send_buffer(10 * MiB, 50, 65483), 1049100);
  /* The ceiling holds whatever the segment. */
  assert_int_equal(pacing_send_buffer(0, 0, UINT32_MAX), NODE_SEND_BUFFER_MAX);
  /* A share whose round trip and 100 ms is less (2 MiB/s: 205 KiB) gets
   * the floor. */
  assert_int_equal(pacing_send_buffer(2 * MiB, 0, 65483), 4 * 65483);
}

/* What bench/pacing watches from outside: a seeder held to 2 MiB/s on loopback
 * keeps at most a quarter of a second's worth in its socket. The node's meter
 * may read up to the bucket's burst over the cap, the round trip a few ms, and
 * the option is reset only when it moved by a quarter: all within the bound. */
static void test_a_2_mib_s_upload_keeps_a_quarter_second(void **state) {
  const uint64_t rate = 2 * MiB;
  (void)state;
  for (uint64_t share = 0; share <= rate + rate / 4; share += 4 * KiB) {
    for (uint32_t rtt = 0; rtt <= 5000; rtt += 250) {
      uint32_t want = pacing_send_buffer(share, rtt, 65483);
      assert_true(want <= rate / 4);
      /* The kernel holds twice what SO_SNDBUF passes, half of want. */
      assert_true(2 * (want / 2) <= rate / 4);
    }
  }
}

static void test_options_are_set_again_when_they_move_a_quarter(void **state) {
  (void)state;
  assert_true(pacing_moved(0, 12345)); /* never set */
  assert_true(pacing_moved(1000, 1250));
  assert_false(pacing_moved(1000, 1249));
  assert_false(pacing_moved(1000, 1000));
  assert_false(pacing_moved(1000, 751));
  assert_true(pacing_moved(1000, 750));
  assert_true(pacing_moved(1000, 0));
}

static void test_the_pipeline_holds_two_seconds_of_the_limit(void **state) {
  (void)state;
  assert_int_equal(pacing_pipeline_cap(0), NODE_PIPELINE);
  assert_int_equal(pacing_pipeline_cap(1), 1);
  assert_int_equal(pacing_pipeline_cap(32 * KiB), 1);
  assert_int_equal(pacing_pipeline_cap(64 * KiB), 2);
  assert_int_equal(pacing_pipeline_cap(MiB), 32);
  assert_int_equal(pacing_pipeline_cap(2 * MiB), NODE_PIPELINE);
  assert_int_equal(pacing_pipeline_cap(100 * MiB), NODE_PIPELINE);
}

static void test_depth_is_a_second_of_the_peers_rate_and_four(void **state) {
  (void)state;
  /* Nothing known yet: four blocks to find out. */
  assert_int_equal(pacing_depth(0, 18, NODE_PIPELINE), NODE_PIPELINE_MIN);
  /* 1 MiB/s in 64 KiB blocks: 16 more. */
  assert_int_equal(pacing_depth(MiB, 18, NODE_PIPELINE), 20);
  /* Chunks of 16 KiB are blocks of 16 KiB: 64 more, over the cap. */
  assert_int_equal(pacing_depth(MiB, 14, NODE_PIPELINE), NODE_PIPELINE);
  assert_int_equal(pacing_depth(256 * KiB, 14, NODE_PIPELINE), 20);
  /* The limit's cap wins. */
  assert_int_equal(pacing_depth(MiB, 18, 3), 3);
}

static void test_request_timeout_follows_what_is_in_flight(void **state) {
  (void)state;
  /* Twice the time: 64 blocks at 1 MiB/s take 4 s; 8 s allowed. */
  assert_int_equal(pacing_arrival_ms(64ull * PWIRE_BLOCK_BYTES, MiB), 8000);
  assert_int_equal(pacing_arrival_ms(PWIRE_BLOCK_BYTES, 64 * KiB), 2000);
  assert_int_equal(pacing_request_timeout(0), NODE_REQUEST_TIMEOUT_MS);
  assert_int_equal(pacing_request_timeout(8000), NODE_REQUEST_TIMEOUT_MS);
  assert_int_equal(pacing_request_timeout(50000), 50000);
  assert_int_equal(pacing_request_timeout(500000), NODE_REQUEST_TIMEOUT_MAX_MS);
}

/* DATA waits while a manifest part waits for the kernel, and goes again
 * when the last part is taken. */
static void test_data_waits_behind_manifest_parts(void **state) {
  struct pacing_ahead a = {0};
  (void)state;
  assert_int_equal(pacing_ahead_wait(&a, 1000), 0);
  /* Nothing sent lately, so no rate to size the wait by: the bound. */
  pacing_ahead_wrote(&a, 1000, 64 * KiB, 0);
  assert_int_equal(pacing_ahead_wait(&a, 1000), NODE_MANIFEST_AHEAD_MS);
  pacing_ahead_wrote(&a, 1200, 64 * KiB, 0); /* a second newcomer's part */
  assert_int_equal(pacing_ahead_wait(&a, 1300), NODE_MANIFEST_AHEAD_MS - 300);
  assert_false(pacing_ahead_taken(&a));
  assert_true(pacing_ahead_wait(&a, 1400) > 0); /* one still waits */
  assert_true(pacing_ahead_taken(&a));
  assert_int_equal(pacing_ahead_wait(&a, 1400), 0);
  /* More "taken" than written (a failed write reported twice) is no
   * part at all, and no wait. */
  assert_false(pacing_ahead_taken(&a));
  assert_int_equal(a.parts, 0);
  assert_int_equal(pacing_ahead_wait(&a, 1500), 0);
}

/* A part nobody reads holds DATA NODE_MANIFEST_AHEAD_MS at most, and the
 * parts written meanwhile do not extend it: only a part after none waited
 * starts a new hold. */
static void test_a_part_nobody_reads_holds_data_only_so_long(void **state) {
  struct pacing_ahead a = {0};
  uint64_t t0 = 50000;
  (void)state;
  pacing_ahead_wrote(&a, t0, 256 * KiB, 0);
  for (uint64_t t = t0; t < t0 + 10 * NODE_MANIFEST_AHEAD_MS; t += 100) {
    pacing_ahead_wrote(&a, t, 256 * KiB, 0); /* another asks every 100 ms */
    if (t > t0) {
      assert_false(pacing_ahead_taken(&a)); /* ... and is answered */
    }
    if (t < t0 + NODE_MANIFEST_AHEAD_MS) {
      assert_int_equal(pacing_ahead_wait(&a, t),
                       t0 + NODE_MANIFEST_AHEAD_MS - t);
    } else {
      assert_int_equal(pacing_ahead_wait(&a, t), 0);
    }
  }
  /* The first part is taken at last, then the last one: a new hold may
   * begin with the next part. */
  assert_false(pacing_ahead_taken(&a));
  assert_true(pacing_ahead_taken(&a));
  pacing_ahead_wrote(&a, t0 + 20 * NODE_MANIFEST_AHEAD_MS, 256 * KiB, 0);
  assert_int_equal(pacing_ahead_wait(&a, t0 + 20 * NODE_MANIFEST_AHEAD_MS),
                   NODE_MANIFEST_AHEAD_MS);
}

/* With the node's upload rate known, DATA waits NODE_MANIFEST_AHEAD_TIMES
 * as long as the parts would take at it: a flash crowd's many parts hold
 * it up to the bound, but one part for a peer whose own link is slow (its
 * part drains at that link's pace, not the node's) holds it only briefly. */
static void test_the_wait_is_some_times_the_parts_at_the_rate(void **state) {
  struct pacing_ahead a = {0};
  uint64_t rate = 32 * MiB, t0 = 7000;
  uint64_t one = (NODE_MANIFEST_AHEAD_TIMES * 1000u * 64 * KiB + rate - 1) /
                 rate; /* ms for one part of 64 KiB */
  (void)state;
  assert_true(one > 0 && 12 * one < NODE_MANIFEST_AHEAD_MS);
  pacing_ahead_wrote(&a, t0, 64 * KiB, rate);
  assert_int_equal(pacing_ahead_wait(&a, t0), one);
  /* A slow peer never takes it: DATA goes again after that. */
  assert_int_equal(pacing_ahead_wait(&a, t0 + one - 1), 1);
  assert_int_equal(pacing_ahead_wait(&a, t0 + one), 0);
  assert_int_equal(pacing_ahead_wait(&a, t0 + 5000), 0);
  assert_true(pacing_ahead_taken(&a));
  /* Ten newcomers' parts at once: each adds its own share. */
  for (unsigned i = 0; i < 10; i++) {
    pacing_ahead_wrote(&a, t0 + 10000, 64 * KiB, rate);
  }
  assert_true(pacing_ahead_wait(&a, t0 + 10000) >= 10 * one - 10);
  assert_true(pacing_ahead_wait(&a, t0 + 10000) <= 10 * one);
  /* Many more: the bound, from the first part. */
  for (unsigned i = 0; i < 1000; i++) {
    pacing_ahead_wrote(&a, t0 + 10100, 64 * KiB, rate);
  }
  assert_int_equal(pacing_ahead_wait(&a, t0 + 10100),
                   NODE_MANIFEST_AHEAD_MS - 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_blocks_open_on_the_pool_only_while_the_loop_is_busy),
      cmocka_unit_test(test_read_slots_are_shared_among_busy_sessions),
      cmocka_unit_test(test_the_upload_is_shared_evenly),
      cmocka_unit_test(test_a_seeder_paces_the_sessions_over_the_average),
      cmocka_unit_test(test_pacing_never_holds_a_session_under_the_average),
      cmocka_unit_test(test_queued_bytes_are_100_ms_of_the_share),
      cmocka_unit_test(test_send_buffer_is_a_round_trip_and_100_ms),
      cmocka_unit_test(test_send_buffer_holds_four_full_segments),
      cmocka_unit_test(test_a_2_mib_s_upload_keeps_a_quarter_second),
      cmocka_unit_test(test_options_are_set_again_when_they_move_a_quarter),
      cmocka_unit_test(test_the_pipeline_holds_two_seconds_of_the_limit),
      cmocka_unit_test(test_depth_is_a_second_of_the_peers_rate_and_four),
      cmocka_unit_test(test_request_timeout_follows_what_is_in_flight),
      cmocka_unit_test(test_data_waits_behind_manifest_parts),
      cmocka_unit_test(test_a_part_nobody_reads_holds_data_only_so_long),
      cmocka_unit_test(test_the_wait_is_some_times_the_parts_at_the_rate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
