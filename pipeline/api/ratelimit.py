"""Per-key rate limits: a token bucket per application key, kept in Redis so that every API
process (and every server) shares it.

One Lua script refills the bucket by the time elapsed (Redis' own clock, so servers with skewed
clocks agree) and takes one token, atomically. When Redis cannot be reached the call is let
through and a warning logged: a broken limiter must not take the whole API down.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import Settings

logger = logging.getLogger(__name__)

_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return allowed
"""


class RateLimiter:
    """``allow(key_id)``: may this key make one more call now?"""

    def __init__(self, settings: Settings) -> None:
        import redis

        self.rate = settings.api_rate_per_s
        self.burst = settings.api_rate_burst
        url = settings.api_rate_redis_url or settings.broker_url
        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script: Any = self._redis.register_script(_BUCKET_LUA)

    def allow(self, key_id: str) -> bool:
        if self.rate <= 0:
            return True
        import redis

        try:
            key = f"facepipe:rate:{key_id}"
            return bool(self._script(keys=[key], args=[self.rate, self.burst]))
        except redis.RedisError as exc:
            logger.warning("rate limiter unavailable, call let through: %s", exc)
            return True
