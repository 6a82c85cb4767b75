/* A swarm's strikes and bans by identity key (bans.h). The list only
 * grows: a key that was struck once is remembered while the swarm lives,
 * so that a peer cannot shed its strikes by reconnecting. */
#include "peer/bans.h"

#include <stdlib.h>
#include <string.h>

#include "peer/internal.h"

static struct ban *entry(struct swarm *sw, const uint8_t *pk) {
  struct ban *b;
  for (b = sw->bans; b != NULL; b = b->next) {
    if (memcmp(b->pk, pk, IDENTITY_PK_BYTES) == 0) {
      return b;
    }
  }
  b = calloc(1, sizeof(*b));
  if (b != NULL) {
    memcpy(b->pk, pk, IDENTITY_PK_BYTES);
    b->next = sw->bans;
    sw->bans = b;
  }
  return b;
}

int bans_strike(struct swarm *sw, const uint8_t *pk, int ban,
                unsigned *strikes) {
  struct ban *b = entry(sw, pk);
  if (b == NULL || b->banned) {
    *strikes = b != NULL ? b->strikes : 0;
    return BANS_NONE;
  }
  b->strikes++;
  *strikes = b->strikes;
  if (!ban && b->strikes < NODE_STRIKES_BAN) {
    return BANS_STRUCK;
  }
  b->banned = 1;
  return BANS_BANNED;
}

int bans_is_banned(const struct swarm *sw, const uint8_t *pk) {
  for (const struct ban *b = sw->bans; b != NULL; b = b->next) {
    if (b->banned && memcmp(b->pk, pk, IDENTITY_PK_BYTES) == 0) {
      return 1;
    }
  }
  return 0;
}

void bans_free(struct swarm *sw) {
  while (sw->bans != NULL) {
    struct ban *b = sw->bans;
    sw->bans = b->next;
    free(b);
  }
}
