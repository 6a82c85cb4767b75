/* How much a peer keeps in flight: pure arithmetic over the rates and
 * times the caller measured (pacing.h has each rule and docs/design.md,
 * "Serving" and "Requests", the measurements behind them). */
#include "peer/pacing.h"

#include "common/pwire.h"

int pacing_crypto_on_pool(int now, double loop_busy) {
  if (loop_busy >= NODE_LOOP_BUSY_HIGH) {
    return 1;
  }
  if (loop_busy < NODE_LOOP_BUSY_LOW) {
    return 0;
  }
  return now;
}

unsigned pacing_reads(unsigned busy) {
  busy = busy > 0 ? busy : 1;
  if (NODE_READS_MAX / busy >= NODE_READS_IN_FLIGHT) {
    return NODE_READS_IN_FLIGHT;
  }
  return NODE_READS_MAX / busy > 0 ? NODE_READS_MAX / busy : 1;
}

uint64_t pacing_share(uint64_t node_rate, unsigned serving) {
  return node_rate / (serving > 0 ? serving : 1);
}

uint64_t pacing_cap(uint64_t mine, uint64_t sum, unsigned busy, int paced) {
  uint64_t avg, cap;
  if (busy < 2 || sum == 0) {
    return 0;
  }
  avg = sum / busy;
  /* Rates of bytes a second are far below 2^64 / 100. */
  if (paced ? mine * 100 < avg * NODE_PACE_UNDER_PCT
            : mine * 100 <= avg * NODE_PACE_OVER_PCT) {
    return 0;
  }
  cap = avg * NODE_PACE_CAP_PCT / 100 * NODE_PACE_WIRE_PCT / 100;
  return cap >= NODE_PACE_MIN ? cap : 0;
}

void pacing_ahead_wrote(struct pacing_ahead *a, uint64_t now, uint64_t bytes,
                        uint64_t rate) {
  uint64_t ms = NODE_MANIFEST_AHEAD_MS;
  if (a->parts++ == 0) {
    a->start_ms = now;
    a->bytes = 0;
  }
  a->bytes += bytes;
  if (rate > 0 && a->bytes < UINT64_MAX / (1000u * NODE_MANIFEST_AHEAD_TIMES)) {
    uint64_t need =
        (1000u * NODE_MANIFEST_AHEAD_TIMES * a->bytes + rate - 1) / rate;
    ms = need < ms ? need : ms;
  }
  a->until_ms = a->start_ms + ms;
}

int pacing_ahead_taken(struct pacing_ahead *a) {
  if (a->parts == 0) {
    return 0;
  }
  return --a->parts == 0;
}

uint64_t pacing_ahead_wait(const struct pacing_ahead *a, uint64_t now) {
  if (a->parts == 0 || now >= a->until_ms) {
    return 0;
  }
  return a->until_ms - now;
}

uint32_t pacing_queue_bytes(uint64_t share) {
  uint64_t b = share * NODE_QUEUE_MS / 1000;
  if (b < NODE_QUEUE_MIN) {
    return NODE_QUEUE_MIN;
  }
  return b > NODE_WRITE_QUEUE_MAX ? NODE_WRITE_QUEUE_MAX : (uint32_t)b;
}

uint32_t pacing_send_buffer(uint64_t share, uint32_t rtt_us, uint32_t mss) {
  uint64_t b = share * ((uint64_t)rtt_us + NODE_QUEUE_MS * 1000u) / 1000000u;
  uint64_t least = (uint64_t)mss * NODE_SEND_SEGMENTS;
  if (least < NODE_QUEUE_MIN) {
    least = NODE_QUEUE_MIN;
  }
  if (b < least) {
    b = least;
  }
  return b > NODE_SEND_BUFFER_MAX ? NODE_SEND_BUFFER_MAX : (uint32_t)b;
}

int pacing_moved(uint32_t had, uint32_t want) {
  return had == 0 || want >= had + had / 4 || want <= had - had / 4;
}

unsigned pacing_pipeline_cap(uint64_t limit) {
  uint64_t blocks;
  if (limit == 0) {
    return NODE_PIPELINE;
  }
  blocks = 2 * limit / PWIRE_BLOCK_BYTES;
  if (blocks < 1) {
    blocks = 1;
  }
  return blocks < NODE_PIPELINE ? (unsigned)blocks : NODE_PIPELINE;
}

unsigned pacing_depth(uint64_t rate, unsigned chunk_log2, unsigned cap) {
  uint64_t chunk = (uint64_t)1 << chunk_log2;
  uint64_t block = chunk < PWIRE_BLOCK_BYTES ? chunk : PWIRE_BLOCK_BYTES;
  uint64_t blocks = NODE_PIPELINE_MIN + rate * NODE_PIPELINE_MS / 1000 / block;
  return blocks < cap ? (unsigned)blocks : cap;
}

uint64_t pacing_arrival_ms(uint64_t bytes, uint64_t rate) {
  return 2 * bytes * 1000 / rate;
}

uint64_t pacing_request_timeout(uint64_t longest_ms) {
  uint64_t ms = longest_ms > NODE_REQUEST_TIMEOUT_MS ? longest_ms
                                                     : NODE_REQUEST_TIMEOUT_MS;
  return ms < NODE_REQUEST_TIMEOUT_MAX_MS ? ms : NODE_REQUEST_TIMEOUT_MAX_MS;
}
