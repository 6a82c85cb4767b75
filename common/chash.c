#include "common/chash.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "common/error.h"

/* OpenSSL 3 looks a digest's implementation up in its providers on every
 * init given the static EVP_sha256(); fetching it once spares the lookup
 * (and the lock it takes) per chunk. When the fetch fails, the static one
 * still works. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_fetched;

static void fetch_md(void) {
  g_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *md(void) {
  (void)pthread_once(&g_once, fetch_md);
  return g_fetched != NULL ? g_fetched : EVP_sha256();
}

int chash_init(struct chash *h) {
  EVP_MD_CTX *cx = h->cx;
  if (cx == NULL) {
    cx = EVP_MD_CTX_new();
    if (cx == NULL) {
      return SHOAL_ENOMEM;
    }
    h->cx = cx;
  }
  return EVP_DigestInit_ex(cx, md(), NULL) == 1 ? 0 : SHOAL_ENOMEM;
}

int chash_update(struct chash *h, const void *data, size_t len) {
  if (len == 0) {
    return 0;
  }
  return EVP_DigestUpdate(h->cx, data, len) == 1 ? 0 : SHOAL_ENOMEM;
}

int chash_final(struct chash *h, uint8_t out[CHASH_BYTES]) {
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(h->cx, out, &n) != 1 || n != CHASH_BYTES) {
    memset(out, 0, CHASH_BYTES);
    return SHOAL_ENOMEM;
  }
  return 0;
}

void chash_free(struct chash *h) {
  EVP_MD_CTX_free(h->cx);
  h->cx = NULL;
}

int chash_once(uint8_t out[CHASH_BYTES], const void *data, size_t len) {
  unsigned int n = 0;
  if (EVP_Digest(data, len, out, &n, md(), NULL) != 1 || n != CHASH_BYTES) {
    memset(out, 0, CHASH_BYTES);
    return SHOAL_ENOMEM;
  }
  return 0;
}
