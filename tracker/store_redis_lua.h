/* The Lua scripts of the Redis store (store_redis.c), one per operation.
 *
 * Each script is one atomic step on Redis and reads the time from Redis's
 * own TIME, the clock every tracker instance on one Redis shares. Keys:
 *
 *   sh:S{ID} sh:D{ID}  hashes, a swarm's seeders and downloaders: public key
 *                      (32 bytes) -> packed record (expiry, 4 bytes of
 *                      big-endian Redis seconds; family, port, address:
 *                      11 bytes in all for IPv4, 23 for IPv6)
 *   sh:C{ID}           the swarm's completed downloads
 *   sh:X{ID}           hash, where an unfinished expiry sweep of the swarm
 *                      stands (only while one is)
 *   sh:due             sorted set: swarm ID -> the earliest expiry in it
 *   sh:npeers          registrations, for the figures
 *   sh:{cat}:e:ID      hash, one catalog entry: p (publisher), n (name),
 *                      s (size), g (manifest signature)
 *   sh:{cat}:w:WORD    set of the IDs whose name has a word starting WORD
 *   sh:{cat}:t         sorted set: ID -> last announced (Redis seconds)
 *   sh:r{PK}           a sender's replay window (20-digit mark, then 64
 *                      '0'/'1' for the mark and the 63 below it), with a
 *                      time to live of twice the clock window
 *
 * ID and PK in key names are 64 lower-case hex digits; {ID} is the swarm's
 * hash tag, so under Redis Cluster a swarm's keys live on one shard
 * (docs/design.md, "Growing past one Redis").
 */
#ifndef SHOAL_TRACKER_STORE_REDIS_LUA_H
#define SHOAL_TRACKER_STORE_REDIS_LUA_H

/* put: KEYS S D C due npeers; ARGV pk rec life completed max_peers
 * seeding id. Stores the record behind its expiry (4 bytes, big-endian
 * Redis seconds). Returns 1 (changed), 0 (renewed) or -1 (swarm full). */
#define LUA_PUT                                                                \
  "local now = tonumber(redis.call('TIME')[1])\n"                              \
  "local pk, rec = ARGV[1], ARGV[2]\n"                                         \
  "local exp = now + tonumber(ARGV[3])\n"                                      \
  "local seeding = ARGV[6] == '1'\n"                                           \
  "local mine, other = KEYS[2], KEYS[1]\n"                                     \
  "if seeding then mine, other = KEYS[1], KEYS[2] end\n"                       \
  "local old = redis.call('HGET', mine, pk)\n"                                 \
  "local changed = 0\n"                                                        \
  "if not old then\n"                                                          \
  "  if redis.call('HDEL', other, pk) == 0 then\n"                             \
  "    local n = redis.call('HLEN', KEYS[1]) + redis.call('HLEN', KEYS[2])\n"  \
  "    if n >= tonumber(ARGV[5]) then return -1 end\n"                         \
  "    if n == 0 then redis.call('ZADD', KEYS[4], 'NX', exp, ARGV[7]) end\n"   \
  "    redis.call('INCR', KEYS[5])\n"                                          \
  "  end\n"                                                                    \
  "  changed = 1\n"                                                            \
  "  if seeding and ARGV[4] == '1' then redis.call('INCR', KEYS[3]) end\n"     \
  "elseif string.sub(old, 5) ~= rec then\n"                                    \
  "  changed = 1\n"                                                            \
  "end\n"                                                                      \
  "redis.call('HSET', mine, pk, struct.pack('>I4', exp) .. rec)\n"             \
  "return changed\n"

/* del: KEYS S D C X due npeers; ARGV pk id. Returns 1 or 0 (absent). An
 * emptied swarm's keys go at once, its sweep's place (X) too. */
#define LUA_DEL                                                                \
  "local n = redis.call('HDEL', KEYS[1], ARGV[1]) +\n"                         \
  "          redis.call('HDEL', KEYS[2], ARGV[1])\n"                           \
  "if n == 0 then return 0 end\n"                                              \
  "redis.call('DECR', KEYS[6])\n"                                              \
  "if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then\n"                      \
  "  redis.call('DEL', KEYS[3], KEYS[4])\n"                                    \
  "  redis.call('ZREM', KEYS[5], ARGV[2])\n"                                   \
  "end\n"                                                                      \
  "return 1\n"

/* sample: KEYS S D C; ARGV want seeders_first exclude seed. Returns
 * {seeders, downloaders, completed, excluded, seeders taken, pk, rec, ...},
 * the seeders taken first. Without seeders first, how many come from each
 * hash is drawn as a uniform sample of the swarm would fall. */
#define LUA_SAMPLE                                                             \
  "local want = tonumber(ARGV[1])\n"                                           \
  "local ex = ARGV[3]\n"                                                       \
  "local ns = redis.call('HLEN', KEYS[1])\n"                                   \
  "local nd = redis.call('HLEN', KEYS[2])\n"                                   \
  "local c = tonumber(redis.call('GET', KEYS[3]) or '0')\n"                    \
  "local xs, xd = 0, 0\n"                                                      \
  "if ex ~= '' then\n"                                                         \
  "  xs = redis.call('HEXISTS', KEYS[1], ex)\n"                                \
  "  if xs == 0 then xd = redis.call('HEXISTS', KEYS[2], ex) end\n"            \
  "end\n"                                                                      \
  "local out = {ns, nd, c, xs + xd, 0}\n"                                      \
  "if want == 0 then return out end\n"                                         \
  "local as, ad = ns - xs, nd - xd\n"                                          \
  "local ks, kd\n"                                                             \
  "if ARGV[2] == '1' then\n"                                                   \
  "  ks = math.min(want, as)\n"                                                \
  "  kd = math.min(want - ks, ad)\n"                                           \
  "else\n"                                                                     \
  "  math.randomseed(tonumber(ARGV[4]))\n"                                     \
  "  ks, kd = 0, 0\n"                                                          \
  "  local rs, rd = as, ad\n"                                                  \
  "  for i = 1, math.min(want, as + ad) do\n"                                  \
  "    if math.random() * (rs + rd) < rs then ks, rs = ks + 1, rs - 1\n"       \
  "    else kd, rd = kd + 1, rd - 1 end\n"                                     \
  "  end\n"                                                                    \
  "end\n"                                                                      \
  "local function take(key, k, x)\n"                                           \
  "  if k <= 0 then return 0 end\n"                                            \
  "  local r = redis.call('HRANDFIELD', key, k + x, 'WITHVALUES')\n"           \
  "  local got = 0\n"                                                          \
  "  for i = 1, #r, 2 do\n"                                                    \
  "    if got < k and r[i] ~= ex then\n"                                       \
  "      out[#out + 1] = r[i]\n"                                               \
  "      out[#out + 1] = r[i + 1]\n"                                           \
  "      got = got + 1\n"                                                      \
  "    end\n"                                                                  \
  "  end\n"                                                                    \
  "  return got\n"                                                             \
  "end\n"                                                                      \
  "out[5] = take(KEYS[1], ks, xs)\n"                                           \
  "take(KEYS[2], kd, xd)\n"                                                    \
  "return out\n"

/* expire: KEYS due npeers; ARGV max_work. Sweeps the swarms whose
 * earliest expiry has passed: HSCAN over both hashes removes the expired
 * registrations and finds the earliest expiry left, which becomes the
 * swarm's place in due. A sweep stops after about max_work registrations
 * looked at; a swarm left halfway keeps its cursor in sh:X{ID} (k: which
 * hash, c: cursor, m: earliest expiry seen) and stays due. A swarm of n
 * registrations is swept at most once per n/100 s, so a lapsed one may
 * outlive its expiry by that (100 s at 10 000). HSCAN may return a field
 * twice (HDEL then counts it once) and may miss one added meanwhile (a new
 * registration, which the next sweep sees). Returns how many went. (The
 * one script that reaches keys it is not given: one Redis only; see
 * docs/design.md.) */
#define LUA_EXPIRE                                                             \
  "local now = tonumber(redis.call('TIME')[1])\n"                              \
  "local budget = tonumber(ARGV[1])\n"                                         \
  "local removed = 0\n"                                                        \
  "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,\n"            \
  "                       'LIMIT', 0, 256)\n"                                  \
  "for _, id in ipairs(due) do\n"                                              \
  "  if budget <= 0 then break end\n"                                          \
  "  local S, D = 'sh:S{' .. id .. '}', 'sh:D{' .. id .. '}'\n"                \
  "  local C, X = 'sh:C{' .. id .. '}', 'sh:X{' .. id .. '}'\n"                \
  "  local st = redis.call('HMGET', X, 'k', 'c', 'm')\n"                       \
  "  local k, cur = tonumber(st[1]) or 1, st[2] or '0'\n"                      \
  "  local m = tonumber(st[3]) or -1\n"                                        \
  "  local done = false\n"                                                     \
  "  while budget > 0 do\n"                                                    \
  "    local key = S\n"                                                        \
  "    if k == 2 then key = D end\n"                                           \
  "    local r = redis.call('HSCAN', key, cur, 'COUNT', math.min(budget, "     \
  "1000))\n"                                                                   \
  "    cur = r[1]\n"                                                           \
  "    local f = r[2]\n"                                                       \
  "    for i = 1, #f, 2 do\n"                                                  \
  "      local e = struct.unpack('>I4', f[i + 1])\n"                           \
  "      if e < now then\n"                                                    \
  "        removed = removed + redis.call('HDEL', key, f[i])\n"                \
  "      elseif m < 0 or e < m then\n"                                         \
  "        m = e\n"                                                            \
  "      end\n"                                                                \
  "    end\n"                                                                  \
  "    budget = budget - #f / 2 - 1\n"                                         \
  "    if cur == '0' then\n"                                                   \
  "      if k == 2 then done = true break end\n"                               \
  "      k = 2\n"                                                              \
  "    end\n"                                                                  \
  "  end\n"                                                                    \
  "  if not done then\n"                                                       \
  "    redis.call('HSET', X, 'k', k, 'c', cur, 'm', m)\n"                      \
  "  else\n"                                                                   \
  "    redis.call('DEL', X)\n"                                                 \
  "    local n = redis.call('HLEN', S) + redis.call('HLEN', D)\n"              \
  "    if n == 0 then\n"                                                       \
  "      redis.call('DEL', S, D, C)\n"                                         \
  "      redis.call('ZREM', KEYS[1], id)\n"                                    \
  "    else\n"                                                                 \
  "      redis.call('ZADD', KEYS[1], math.max(m, now + math.floor(n / 100)), " \
  "id)\n"                                                                      \
  "    end\n"                                                                  \
  "  end\n"                                                                    \
  "end\n"                                                                      \
  "if removed > 0 then redis.call('DECRBY', KEYS[2], removed) end\n"           \
  "return removed\n"

/* The catalog's word index: every word of a name (ASCII letters and
 * digits, lower-cased, its first 20 characters) and each of its
 * prefixes. */
#define LUA_INDEX                                                              \
  "local function index(name, op, id)\n"                                       \
  "  local seen = {}\n"                                                        \
  "  for w in string.gmatch(string.lower(name), '%w+') do\n"                   \
  "    w = string.sub(w, 1, 20)\n"                                             \
  "    for l = 1, #w do\n"                                                     \
  "      local k = string.sub(w, 1, l)\n"                                      \
  "      if not seen[k] then\n"                                                \
  "        seen[k] = true\n"                                                   \
  "        redis.call(op, 'sh:{cat}:w:' .. k, id)\n"                           \
  "      end\n"                                                                \
  "    end\n"                                                                  \
  "  end\n"                                                                    \
  "end\n"

/* publish: KEYS entry t; ARGV publisher name size sig max id. Returns 0,
 * -1 (another publisher) or -2 (catalog full). */
#define LUA_PUBLISH                                                            \
  LUA_INDEX                                                                    \
  "local now = tonumber(redis.call('TIME')[1])\n"                              \
  "local id = ARGV[6]\n"                                                       \
  "local pub = redis.call('HGET', KEYS[1], 'p')\n"                             \
  "if pub and pub ~= ARGV[1] then return -1 end\n"                             \
  "if not pub and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then\n"    \
  "  return -2\n"                                                              \
  "end\n"                                                                      \
  "if pub then\n"                                                              \
  "  local old = redis.call('HGET', KEYS[1], 'n')\n"                           \
  "  if old and old ~= ARGV[2] then index(old, 'SREM', id) end\n"              \
  "end\n"                                                                      \
  "redis.call('HSET', KEYS[1], 'p', ARGV[1], 'n', ARGV[2], 's', ARGV[3],\n"    \
  "           'g', ARGV[4])\n"                                                 \
  "index(ARGV[2], 'SADD', id)\n"                                               \
  "redis.call('ZADD', KEYS[2], now, id)\n"                                     \
  "return 0\n"

/* touch: KEYS t; ARGV id... Marks the listed entries announced now. */
#define LUA_TOUCH                                                              \
  "local now = tonumber(redis.call('TIME')[1])\n"                              \
  "for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i]) end\n"  \
  "return 0\n"

/* search: KEYS (none); ARGV offset limit word... Returns {total, id,
 * publisher, name, size, ...} for the page, in ID order (stable while the
 * catalog does not change). */
#define LUA_SEARCH                                                             \
  "local keys = {}\n"                                                          \
  "for i = 3, #ARGV do keys[#keys + 1] = 'sh:{cat}:w:' .. ARGV[i] end\n"       \
  "local ids = redis.call('SINTER', unpack(keys))\n"                           \
  "table.sort(ids)\n"                                                          \
  "local out = {#ids}\n"                                                       \
  "local off, lim = tonumber(ARGV[1]), tonumber(ARGV[2])\n"                    \
  "for i = off + 1, math.min(#ids, off + lim) do\n"                            \
  "  local e = redis.call('HMGET', 'sh:{cat}:e:' .. ids[i], 'p', 'n', 's')\n"  \
  "  if e[1] then\n"                                                           \
  "    out[#out + 1] = ids[i]\n"                                               \
  "    out[#out + 1] = e[1]\n"                                                 \
  "    out[#out + 1] = e[2]\n"                                                 \
  "    out[#out + 1] = e[3]\n"                                                 \
  "  end\n"                                                                    \
  "end\n"                                                                      \
  "return out\n"

/* catalog expire: KEYS t; ARGV ttl max_work. Returns how many went. */
#define LUA_CATALOG_EXPIRE                                                     \
  LUA_INDEX                                                                    \
  "local now = tonumber(redis.call('TIME')[1])\n"                              \
  "local cut = now - tonumber(ARGV[1])\n"                                      \
  "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cut,\n"    \
  "                        'LIMIT', 0, tonumber(ARGV[2]))\n"                   \
  "for _, id in ipairs(gone) do\n"                                             \
  "  local e = 'sh:{cat}:e:' .. id\n"                                          \
  "  local name = redis.call('HGET', e, 'n')\n"                                \
  "  if name then index(name, 'SREM', id) end\n"                               \
  "  redis.call('DEL', e)\n"                                                   \
  "  redis.call('ZREM', KEYS[1], id)\n"                                        \
  "end\n"                                                                      \
  "return #gone\n"

/* replay: KEYS r; ARGV seq (20 digits) ttl_ms. The sliding window of
 * common/replay.c: returns 0 (accepted), 1 (a repeat) or 2 (below the
 * window). Sequence numbers are compared as 20-digit strings, exactly;
 * their difference is exact whenever it is small enough to matter. */
#define LUA_REPLAY                                                             \
  "local function diff(a, b)\n"                                                \
  "  return (tonumber(string.sub(a, 1, 5)) - tonumber(string.sub(b, 1, 5)))\n" \
  "         * 1e15 + (tonumber(string.sub(a, 6)) - tonumber(string.sub(b, "    \
  "6)))\n"                                                                     \
  "end\n"                                                                      \
  "local seq = ARGV[1]\n"                                                      \
  "local v = redis.call('GET', KEYS[1])\n"                                     \
  "local hwm, bits\n"                                                          \
  "if not v then\n"                                                            \
  "  hwm, bits = seq, '1' .. string.rep('0', 63)\n"                            \
  "else\n"                                                                     \
  "  hwm, bits = string.sub(v, 1, 20), string.sub(v, 21)\n"                    \
  "  if seq > hwm then\n"                                                      \
  "    local d = diff(seq, hwm)\n"                                             \
  "    if d >= 64 then bits = '1' .. string.rep('0', 63)\n"                    \
  "    else bits = '1' .. string.rep('0', d - 1) .. string.sub(bits, 1, 64 - " \
  "d)\n"                                                                       \
  "    end\n"                                                                  \
  "    hwm = seq\n"                                                            \
  "  else\n"                                                                   \
  "    local d = diff(hwm, seq)\n"                                             \
  "    if d >= 64 then return 2 end\n"                                         \
  "    if string.sub(bits, d + 1, d + 1) == '1' then return 1 end\n"           \
  "    bits = string.sub(bits, 1, d) .. '1' .. string.sub(bits, d + 2)\n"      \
  "  end\n"                                                                    \
  "end\n"                                                                      \
  "redis.call('SET', KEYS[1], hwm .. bits, 'PX', ARGV[2])\n"                   \
  "return 0\n"

#endif
