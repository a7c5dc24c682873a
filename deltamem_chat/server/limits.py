"""What one request and one server may ask for: bounds that keep a client from exhausting the machine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 8 * 2**20       # a request body (a document included)
    max_tokens: int = 4096                # the longest reply a request may ask for
    default_max_tokens: int = 256         # when a request names none
    live_sessions: int = 16               # engines in memory; past it the least recently used is evicted
    max_sessions: int = 10_000            # sessions on disk and in memory together
