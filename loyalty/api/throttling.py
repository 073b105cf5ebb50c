"""Rate limiting per API key (its own `rate_limit`), counted in the Django cache."""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from loyalty.api.models import ApiKey

log = logging.getLogger(__name__)


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_rate(self):
        # The rate is the key's; resolved per request in allow_request.
        return None

    def allow_request(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        self.rate = key.rate_limit
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except RedisError:
            # The counter lives in Redis; the events it guards live in PostgreSQL. Losing a
            # client's purchase because the counter is down is worse than a minute without
            # a limit, so the request goes through (and the outage is logged).
            log.warning("Rate limit not applied: the cache is unreachable", exc_info=True)
            return True

    def get_cache_key(self, request, view):
        # The prefix is random per key, so keys of a flushed test database never share a counter.
        return f"throttle:api:{request.auth.prefix}"
