"""Basic auth checks of the web config's users, kept from stalling the relay.

A bcrypt check costs tens of milliseconds by design. Run in asyncio's default
executor, a flood of wrong passwords would fill it, and everything else that
waits there (the /metrics encoder, good requests' own checks) would wait
behind the flood: a false AlertRelayDown. So the checks get a small pool of
their own, at most MAX_WAITING of them wait for it (more are answered 503 at
once: a client retries), and a successful check is remembered, as
exporter-toolkit does: keyed on a keyed hash of the whole Authorization header,
forgotten when the web config changes. A known good header then costs a hash
on the event loop, whatever the flood.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

from exporter_web.webconfig import Serving, WebConfigWatcher

THREADS = 2  # exporter_web runs one bcrypt at a time anyway; the other serves its own cache
MAX_WAITING = 16  # about a second of bcrypt at cost 10
CACHE_SIZE = 256


class Verdict(Enum):
    GRANTED = "granted"
    DENIED = "denied"
    BUSY = "busy"  # too many checks under way: not checked, answer 503


class PasswordChecks:
    """Checks ``Authorization: Basic`` headers against the web config in force."""

    def __init__(self, web: WebConfigWatcher) -> None:
        self._web = web
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="basic-auth")
        self._key = secrets.token_bytes(32)  # the cache's keys mean nothing outside
        self._granted: OrderedDict[bytes, None] = OrderedDict()
        self._granted_for: Serving | None = None  # the web config the cache is valid for
        self._waiting = 0
        self.results: dict[str, int] = {"cached": 0, "granted": 0, "denied": 0, "busy": 0}

    async def check(self, header: str | None) -> Verdict:
        serving = self._web.current()
        if not serving.auth.enabled:
            return Verdict.GRANTED
        if serving is not self._granted_for:  # a new web config: new users or passwords
            self._granted.clear()
            self._granted_for = serving
        if not header:
            self.results["denied"] += 1
            return Verdict.DENIED
        key = hmac.new(self._key, header.encode("utf-8", "surrogateescape"), hashlib.sha256)
        digest = key.digest()
        if digest in self._granted:
            self._granted.move_to_end(digest)
            self.results["cached"] += 1
            return Verdict.GRANTED
        if self._waiting >= MAX_WAITING:
            self.results["busy"] += 1
            return Verdict.BUSY
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            granted = await loop.run_in_executor(self._pool, serving.auth.check_header, header)
        finally:
            self._waiting -= 1
        if not granted:
            self.results["denied"] += 1
            return Verdict.DENIED
        self.results["granted"] += 1
        if serving is self._granted_for:  # not for a web config replaced meanwhile
            self._granted[digest] = None
            while len(self._granted) > CACHE_SIZE:
                self._granted.popitem(last=False)
        return Verdict.GRANTED

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
