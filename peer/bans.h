/* A swarm's strikes and bans (bans.c), by identity key: a list that keeps
 * every key that was ever struck.
 *
 * Who calls what: swarm.c strikes (and then logs, tells the user and
 * closes the banned key's sessions); session.c and announce.c ask whether
 * a key is banned before they take its hello or dial it. bans.c calls
 * nothing above it.
 *
 * Ownership: the swarm's list owns its entries (bans_free).
 */
#ifndef SHOAL_PEER_BANS_H
#define SHOAL_PEER_BANS_H

#include <stdint.h>

struct swarm;

struct ban {
  struct ban *next;
  uint8_t pk[32]; /* IDENTITY_PK_BYTES */
  unsigned strikes;
  int banned;
};

/* What a strike did. */
enum bans_verdict {
  BANS_NONE = 0,   /* nothing: the key was banned already, or no memory */
  BANS_STRUCK = 1, /* one more strike */
  BANS_BANNED = 2, /* one more strike, and now the key is banned */
};

/* One strike against pk (32 bytes): at NODE_STRIKES_BAN strikes, or at
 * once with ban set, the key is banned. Returns a bans_verdict; *strikes
 * is the key's count then. */
int bans_strike(struct swarm *sw, const uint8_t *pk, int ban,
                unsigned *strikes);
/* Whether pk is banned from sw. */
int bans_is_banned(const struct swarm *sw, const uint8_t *pk);
/* Frees the list. */
void bans_free(struct swarm *sw);

#endif
