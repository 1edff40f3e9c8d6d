"""Redirect walks across flows: which walk a request continues, and the targets clients were sent to."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

from guard.names import User
from guard.rules.walk import Walk, url_key

REDIRECT_TTL = 120.0  # seconds a client has to follow a redirect and stay in the same walk
REDIRECT_SLOTS = 4096  # pending redirect targets remembered at most (oldest dropped first)


class PendingRedirects:
    """Redirect targets clients were just sent to, each with the walk that led there.

    A request from the same client to a pending target continues that walk, so every hop is
    judged for the ORIGINAL user and counted. Bounded (oldest dropped) and expiring, so memory
    stays flat whatever clients do; entries are not consumed, because clients try several URLs
    for one redirect address in parallel.
    """

    def __init__(self, ttl: float = REDIRECT_TTL, slots: int = REDIRECT_SLOTS) -> None:
        self.ttl = ttl
        self.slots = slots
        self._pending: OrderedDict[tuple[str, str], tuple[float, Walk]] = OrderedDict()

    def offer(self, client: str, key: str, walk: Walk, now: float) -> None:
        self._pending[(client, key)] = (now + self.ttl, walk)
        self._pending.move_to_end((client, key))
        while len(self._pending) > self.slots:
            self._pending.popitem(last=False)

    def claim(self, client: str, keys: Iterable[str], now: float) -> Walk | None:
        for key in keys:
            entry = self._pending.get((client, key))
            if entry is not None and entry[0] > now:
                return entry[1]
        return None

    def __len__(self) -> int:
        return len(self._pending)

    def join(self, client: str, url: str, user: User | None) -> tuple[Walk, bool]:
        """The walk a request to `url` continues (else a new one), and whether it came from a redirect.

        A continued walk keeps its original user; the request's own URL and address join its visited set.
        """
        keys = [key for key in (url_key(url),) if key]
        if user is not None and user.address:
            keys.append("mailto:" + user.address.lower())
        walk = self.claim(client, keys, time.monotonic())
        redirected = walk is not None and walk.user is not None
        if walk is not None and walk.user is not None:
            user = walk.user
        visited, hops = (walk.visited, walk.hops) if walk is not None else (frozenset(), 0)
        return Walk(user, visited.union(keys), hops), redirected
