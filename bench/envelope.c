/* bench/envelope: signed envelopes opened per second against raw Ed25519.
 *
 * Seals --count envelopes (default 20000) from --senders distinct keys with
 * a payload the size of a typical announce, then measures in the same run:
 *   raw   crypto_sign_verify_detached over exactly the bytes each envelope's
 *         signature covers (domain string and header), prepared in advance;
 *   open  envelope_open() with the clock window and a replay guard, as the
 *         tracker runs it.
 * Each figure is the best of --runs runs; every run uses a fresh guard, so
 * every envelope is accepted. Target: open >= 0.9 x raw.
 * Usage: envelope [--count N] [--senders N] [--payload BYTES] [--runs N]
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench/lib/benchutil.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"

struct sealed {
  uint8_t *msg;
  size_t len;
  uint8_t *signed_bytes; /* domain || NUL || header+payload, for raw */
  size_t signed_len;
};

int main(int argc, char **argv) {
  size_t count = benchutil_arg_ul("envelope", argc, argv, "--count", 20000);
  size_t senders = benchutil_arg_ul("envelope", argc, argv, "--senders", 1000);
  size_t payload_len =
      benchutil_arg_ul("envelope", argc, argv, "--payload", 96);
  unsigned long runs = benchutil_arg_ul("envelope", argc, argv, "--runs", 3);
  const char *dom = envelope_domain(ENVELOPE_TRACKER_REQUEST);
  size_t dlen = strlen(dom) + 1;
  uint64_t now = clock_wall_ms();
  int rc = 1;

  if (sodium_init() < 0 || payload_len > ENVELOPE_PAYLOAD_MAX) {
    fprintf(stderr, "envelope: bad set-up\n");
    return 1;
  }
  struct identity *ids = calloc(senders, sizeof(*ids));
  struct sealed *s = calloc(count, sizeof(*s));
  uint8_t *payload = malloc(payload_len);
  if (ids == NULL || s == NULL || payload == NULL) {
    fprintf(stderr, "envelope: out of memory\n");
    goto out;
  }
  randombytes_buf(payload, payload_len);
  for (size_t i = 0; i < senders; i++) {
    identity_generate(&ids[i]);
  }
  for (size_t i = 0; i < count; i++) {
    struct buf b;
    buf_init(&b, ENVELOPE_OVERHEAD + payload_len);
    int err = envelope_seal(&b, ENVELOPE_TRACKER_REQUEST, 1, &ids[i % senders],
                            now, 1000 + i / senders, payload, payload_len);
    if (err != 0) {
      fprintf(stderr, "envelope: seal: %s\n", shoal_strerror(err));
      buf_free(&b);
      goto out;
    }
    s[i].msg = buf_steal(&b, &s[i].len);
    s[i].signed_len = dlen + s[i].len - ENVELOPE_SIG_BYTES;
    s[i].signed_bytes = malloc(s[i].signed_len);
    if (s[i].signed_bytes == NULL) {
      goto out;
    }
    memcpy(s[i].signed_bytes, dom, dlen);
    memcpy(s[i].signed_bytes + dlen, s[i].msg, s[i].len - ENVELOPE_SIG_BYTES);
  }

  double best_raw = 1e30, best_open = 1e30;
  for (unsigned long r = 0; r < runs; r++) {
    double t0 = benchutil_now_s();
    for (size_t i = 0; i < count; i++) {
      const uint8_t *sig = s[i].msg + s[i].len - ENVELOPE_SIG_BYTES;
      if (crypto_sign_verify_detached(sig, s[i].signed_bytes, s[i].signed_len,
                                      s[i].msg + 4) != 0) {
        fprintf(stderr, "envelope: raw verify failed\n");
        goto out;
      }
    }
    double t = benchutil_now_s() - t0;
    best_raw = t < best_raw ? t : best_raw;

    struct replay_guard g;
    if (replay_guard_init(&g, senders * 2, ENVELOPE_WINDOW_MS_DEFAULT) != 0) {
      goto out;
    }
    struct envelope_policy pol = {.cls = ENVELOPE_TRACKER_REQUEST,
                                  .now_ms = now,
                                  .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
                                  .guard = &g};
    t0 = benchutil_now_s();
    for (size_t i = 0; i < count; i++) {
      struct envelope e;
      int err = envelope_open(s[i].msg, s[i].len, &pol, &e);
      if (err != 0) {
        fprintf(stderr, "envelope: open: %s\n", shoal_strerror(err));
        replay_guard_close(&g);
        goto out;
      }
    }
    t = benchutil_now_s() - t0;
    replay_guard_close(&g);
    best_open = t < best_open ? t : best_open;
  }

  double ratio = best_raw / best_open;
  printf("bench/envelope: %zu envelopes, %zu senders, %zu-byte payload, "
         "best of %lu runs\n",
         count, senders, payload_len, runs);
  printf("  raw crypto_sign_verify_detached   %9.0f /s\n",
         (double)count / best_raw);
  printf("  envelope_open (clock + replay)    %9.0f /s  ratio %.3f "
         "(target >= 0.90) %s\n",
         (double)count / best_open, ratio,
         ratio >= 0.9 ? "ok" : "BELOW TARGET");
  rc = 0;

out:
  if (s != NULL) {
    for (size_t i = 0; i < count; i++) {
      free(s[i].msg);
      free(s[i].signed_bytes);
    }
  }
  if (ids != NULL) {
    for (size_t i = 0; i < senders; i++) {
      identity_close(&ids[i]);
    }
  }
  free(ids);
  free(s);
  free(payload);
  return rc;
}
