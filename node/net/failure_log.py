"""The node's own failures on peers' messages, logged so that one repeated at every
message (a broken install fails at every block a peer sends; a peer that finds a bug can
send it again and again) cannot fill the disk: the first of its kind with its traceback,
the same again only as a count once a FAILURE_LOG_PERIOD_S."""
from __future__ import annotations

import logging

FAILURE_LOG_PERIOD_S = 60.0


class FailureLog:
    def __init__(self, log: logging.Logger):
        self._log = log
        # (message type, exception type) -> [when last logged, failures since]
        self._kinds: dict[tuple[str, str], list] = {}

    def failed(self, name: str, peer: bytes, exc: Exception, now: float) -> None:
        """Handling a message of type name from peer raised exc, at time now."""
        kind = (name, type(exc).__name__)
        seen = self._kinds.get(kind)
        if seen is None:
            self._kinds[kind] = [now, 0]
            self._log.error("handling %s from peer %s failed", name, peer.hex()[:16], exc_info=exc)
            return
        seen[1] += 1
        if now - seen[0] >= FAILURE_LOG_PERIOD_S:
            first_line = (str(exc).splitlines() or [""])[0]
            self._log.error("handling %s failed %d more times in %.0f s, the last from peer %s: %s: %s",
                            name, seen[1], now - seen[0], peer.hex()[:16], type(exc).__name__, first_line)
            seen[0], seen[1] = now, 0
