"""A rate limit and cool-down shared by every worker and triggerer, through Redis.

``Limits(rate="100/s", shared=SharedLimit(key="my-api", redis_url=...))`` is a
:class:`SharedLimits`: the same API as the in-process ``Limits`` (the adapter and ``amap`` cannot
tell them apart), but the GCRA state and the cool-down live in Redis under the limit key, so
every process using that key draws on one budget and a 429 seen by one pauses all of them.
The concurrency cap stays per process.

Each acquire is one script call (one round trip) that reserves the next slot, first come first
served across processes, and answers how long to wait for it; a caller that has to wait sleeps
that long, then confirms (a second round trip) in case a cool-down moved its slot meanwhile, or
its process woke it so late that granting it now would crowd the grants of those behind it (the
script then gives it a later slot: see ``_shared_script``). The rate bound holds over the times
the script issues grants; when a caller runs after its grant is its event loop's business.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio

from ._errors import ConfigurationError, HookBridgeError, redact
from ._limits import Limits, LimitsStatistics, Rate
from ._shared_redis import Transport, down_errors, resolve_target
from ._shared_script import CONFIRM, GIVE_BACK, RESERVE, THROTTLE, Reply, key_for, limit_args

__all__ = ["FAIL_CLOSED", "FALLBACK_LOCAL", "SharedLimit", "SharedLimits"]

log = logging.getLogger("hookbridge")

FAIL_CLOSED = "fail_closed"
FALLBACK_LOCAL = "fallback_local"
_POLICIES = (FAIL_CLOSED, FALLBACK_LOCAL)
_KEYS = ("key", "redis_url", "redis_conn_id", "on_failure", "local_share", "timeout")

# The modes statistics() reports.
SHARED = "shared"
WAITING = "fail_closed"  # Redis is unreachable and callers wait for it
FALLBACK = "fallback_local"  # Redis is unreachable and each process limits itself

#: While on the local fallback, Redis is tried again at most this often (seconds).
PROBE_INTERVAL = 1.0
#: fail_closed: the first and the longest pause between attempts to reach Redis (seconds).
RETRY_FIRST, RETRY_MAX = 0.05, 1.0
#: How long a limit's key outlives its last reservation and cool-down (seconds).
IDLE_GRACE = 5.0

_NEVER = -math.inf


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, repr=False)
class SharedLimit:
    """Where a shared limit lives: its key, its Redis, and what to do when Redis is down.

    ``key`` names the budget: every process whose limits use the same key (and the same Redis)
    shares it. Redis is either ``redis_url`` (``redis://[user:password@]host:port/db``) or the
    Airflow connection ``redis_conn_id`` (conn_type ``redis``; its password stays there).
    ``on_failure`` is ``"fail_closed"`` (callers wait for Redis, bounded by their deadline) or
    ``"fallback_local"`` (each process allows ``local_share`` of the rate on its own until Redis
    answers again). A call slower than ``timeout`` seconds counts as Redis being down.
    """

    key: str
    redis_url: str | None = None
    redis_conn_id: str | None = None
    on_failure: str = FAIL_CLOSED
    local_share: float | None = None
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(
                f"key must be non-empty text naming the shared budget (every process using the "
                f"same key shares it), got {self.key!r}.",
                field="shared.key",
            )
        for field in ("redis_url", "redis_conn_id"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                shown = redact(value) if isinstance(value, str) else type(value).__name__
                raise ConfigurationError(
                    f"{field} must be non-empty text, got {shown!r}.", field=f"shared.{field}"
                )
        if (self.redis_url is None) == (self.redis_conn_id is None):
            raise ConfigurationError(
                "give exactly one of redis_url ('redis://host:6379/0') and redis_conn_id (an "
                "Airflow connection of type 'redis', which keeps the password out of the code).",
                field="shared.redis_url" if self.redis_url is not None else "shared",
            )
        if self.on_failure not in _POLICIES:
            raise ConfigurationError(
                f"on_failure must be 'fail_closed' (wait for Redis) or 'fallback_local' (each "
                f"process takes local_share of the rate), got {self.on_failure!r}.",
                field="shared.on_failure",
            )
        share = self.local_share
        if self.on_failure == FALLBACK_LOCAL:
            if not _is_number(share) or not 0 < share <= 1:  # type: ignore[operator]
                raise ConfigurationError(
                    f"on_failure='fallback_local' needs local_share, the fraction of the rate "
                    f"each process may use alone (0 < local_share <= 1; 1 / the number of "
                    f"processes keeps the total), got {share!r}.",
                    field="shared.local_share",
                )
            object.__setattr__(self, "local_share", float(share))  # type: ignore[arg-type]
        elif share is not None:
            raise ConfigurationError(
                "local_share only applies with on_failure='fallback_local'; drop it or set "
                "on_failure.",
                field="shared.local_share",
            )
        if not _is_number(self.timeout) or not 0 < self.timeout < math.inf:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {self.timeout!r}.",
                field="shared.timeout",
            )
        object.__setattr__(self, "timeout", float(self.timeout))

    @classmethod
    def from_mapping(cls, value: Any) -> SharedLimit:
        """Read the ``"shared"`` object of a spec or of a connection extra's ``hookbridge`` key."""
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f'shared must be an object such as {{"key": "my-api", "redis_conn_id": '
                f'"redis_default"}}, got {type(value).__name__}.',
                field="shared",
            )
        unknown = sorted(set(value) - set(_KEYS))
        if unknown:
            raise ConfigurationError(
                f"unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(_KEYS)}.",
                field=f"shared.{unknown[0]}",
            )
        if "key" not in value:
            raise ConfigurationError(
                "key is missing: name the shared budget (every process using it shares it).",
                field="shared.key",
            )
        return cls(**value)

    def to_spec(self) -> dict[str, Any]:
        """JSON-safe; refused for a URL with a password, which must not be serialized."""
        if self.redis_url is not None and _has_password(self.redis_url):
            raise ConfigurationError(
                "a redis_url with a password cannot be written to a spec (triggers serialize "
                "it); put the credentials in an Airflow connection of type 'redis' and pass "
                "redis_conn_id instead.",
                field="shared.redis_url",
            )
        spec = {name: getattr(self, name) for name in _KEYS}
        return {k: v for k, v in spec.items() if v is not None and v != _DEFAULTS.get(k)}

    def where(self) -> str:
        """The Redis, for messages: the URL without credentials, or the connection id."""
        if self.redis_url is not None:
            return redact(self.redis_url)
        return f"connection {self.redis_conn_id!r}"

    def __repr__(self) -> str:
        parts = [f"key={self.key!r}"]
        parts.append(
            f"redis_url={self.where()!r}"
            if self.redis_url is not None
            else f"redis_conn_id={self.redis_conn_id!r}"
        )
        if self.on_failure != FAIL_CLOSED:
            parts += [f"on_failure={self.on_failure!r}", f"local_share={self.local_share!r}"]
        if self.timeout != 1.0:
            parts.append(f"timeout={self.timeout!r}")
        return f"SharedLimit({', '.join(parts)})"


_DEFAULTS: dict[str, Any] = {"on_failure": FAIL_CLOSED, "timeout": 1.0}


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password is not None
    except ValueError:
        return True  # unreadable: assume the worst


class SharedLimits(Limits):
    """``Limits`` whose rate and cool-down live in Redis (build it as ``Limits(shared=...)``).

    Not for the synchronous fast path: :meth:`try_admit` returns False (every grant asks Redis),
    and callers go on to ``async with limits():`` as with a busy local limit.
    """

    __slots__ = (
        "_fallback",
        "_interval_us",
        "_limit_args",
        "_mode",
        "_next_probe",
        "_outage_since",
        "_pending_until",
        "_redis_key",
        "_remote_until",
        "_shared",
        "_transport",
    )

    def __init__(
        self, *, shared: SharedLimit | Mapping[str, Any] | None = None, **limits: Any
    ) -> None:
        # Built as Limits(..., shared=...): the other arguments are Limits' own, typed there.
        super().__init__(**limits)
        if isinstance(shared, Mapping):
            shared = SharedLimit.from_mapping(shared)
        elif not isinstance(shared, SharedLimit):
            raise ConfigurationError(
                f"shared must be a SharedLimit or a dict such as {{'key': 'my-api', "
                f"'redis_url': 'redis://host:6379/0'}}, got {type(shared).__name__}.",
                field="shared",
            )
        self._shared = shared
        self._redis_key = key_for(shared.key)
        self._interval_us = (self._interval or 0.0) * 1e6
        # The arguments every script call repeats (see _shared_script), built once.
        self._limit_args = limit_args(self._interval_us, self._burst, IDLE_GRACE * 1e6)
        self._transport: Transport | None = None
        self._mode = SHARED
        self._outage_since = _NEVER
        self._next_probe = _NEVER
        # In this loop's clock: a cool-down this process must still report, and the end of the
        # shared cool-down as Redis last told us (for statistics).
        self._pending_until = _NEVER
        self._remote_until = _NEVER
        self._fallback: Limits | None = None
        if shared.on_failure == FALLBACK_LOCAL:
            share = shared.local_share or 1.0
            local_rate = None
            if self._rate is not None:
                local_rate = Rate(self._rate.limit * share, self._rate.period)
            self._fallback = Limits(
                rate=local_rate,
                burst=max(1, math.floor(self._burst * share)) if local_rate else None,
            )

    @property
    def shared(self) -> SharedLimit:
        """Where the limit is shared."""
        return self._shared

    def __repr__(self) -> str:
        inner = super().__repr__()[len("Limits(") : -1]
        return f"Limits({inner}{', ' if inner else ''}shared={self._shared!r})"

    def to_spec(self) -> dict[str, Any]:
        spec = super().to_spec()
        spec["shared"] = self._shared.to_spec()
        return spec

    # -- acquiring -------------------------------------------------------------------------

    def _grant_now(self) -> bool:
        return False  # every grant is Redis's to give

    async def acquire(self, tokens: int = 1) -> None:
        """Wait for the shared cool-down, if any, then for ``tokens`` tokens of the shared rate."""
        if tokens != 1:
            self._check_tokens(tokens)
        self._sync_loop()
        self._waiting += 1
        try:
            grant = await self._acquire(tokens)
        finally:
            self._waiting -= 1
        self._granted += tokens
        if grant is not None:
            self._issued(grant)

    async def _acquire(self, tokens: int) -> Reply | None:
        """The reply that granted the tokens; None when they came from the local fallback or
        Redis went away before the confirmation."""
        transport = self._transport or await self._connect()
        while True:
            reply = await self._call(transport, RESERVE, tokens=tokens)
            if reply is not None:
                break
            await self._local().acquire(tokens)
            if self._mode != SHARED:
                return None
            # Redis came back while this caller queued locally: the local share must not run
            # beside the shared budget, so it takes its token from Redis like everyone else.
        last, wait, at, shift = reply, reply.wait, reply.at, reply.shift
        while wait > 0:
            try:
                await anyio.sleep(wait)
            except BaseException:
                await self._return_slot(transport, reply, tokens)
                raise
            # A cool-down set meanwhile (by any process) may have moved the slot: ask again.
            confirmed = await self._call(
                transport, CONFIRM, a=at, b=shift, tokens=tokens, confirming=True
            )
            if confirmed is None:
                return None  # Redis went away: the slot it gave stands
            if confirmed.end != "0":
                # Woken too late to be granted without crowding the grants of those behind it:
                # the script queued this caller again (see _shared_script). This is the
                # reservation to give back now.
                reply = confirmed
            last, wait, at, shift = confirmed, confirmed.wait, confirmed.at, confirmed.shift
        return last

    def _issued(self, grant: Reply) -> None:
        """Called with the script's reply of every grant from Redis, as the caller gets it.

        Nothing to do here; the tests and the benchmark override it to compare when the script
        issued each grant (``grant.clock``, Redis TIME) with when the caller got it.
        """

    async def _connect(self) -> Transport:
        shared = self._shared
        target = await resolve_target(shared.redis_url, shared.redis_conn_id, shared.timeout)
        if self._transport is None:  # another task may have connected meanwhile
            self._transport = Transport(target)
        return self._transport

    def _local(self) -> Limits:
        assert self._fallback is not None
        return self._fallback

    async def _call(
        self,
        transport: Transport,
        op: str,
        *,
        a: str = "-",
        b: str = "-",
        tokens: int = 1,
        confirming: bool = False,
    ) -> Reply | None:
        """One script call under the failure policy; None: Redis is down and the caller goes on
        locally (fallback_local, or a confirmation the caller can do without)."""
        delay = RETRY_FIRST
        while True:
            now = self._now()
            if self._mode == FALLBACK:
                if now < self._next_probe:
                    return None
                self._next_probe = now + PROBE_INTERVAL  # one probe at a time
            pending = self._pending_until
            try:
                throttle = f"{(pending - now) * 1e6!r}" if pending > now else "-"
                raw = await transport.run(
                    [f"{op} - {self._limit_args} {a} {b} {throttle} {tokens}"], self._redis_key
                )
            except down_errors() as exc:
                if _is_auth_error(exc):
                    raise self._refused(exc) from None
                self._outage(exc)
                if self._mode == FALLBACK or confirming:
                    return None
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            except Exception as exc:
                if _is_redis_error(exc):
                    raise self._refused(exc) from None
                raise
            if self._mode != SHARED:
                self._recovered()
            if self._pending_until == pending:
                self._pending_until = _NEVER  # reported (unless a newer one came meanwhile)
            reply = Reply.read(raw)
            if reply.cooldown > 0:
                self._remote_until = self._now() + reply.cooldown
            return reply

    def _set_idle_grace(self, seconds: float) -> None:
        # How long the key outlives its state (IDLE_GRACE); tests shorten it.
        self._limit_args = limit_args(self._interval_us, self._burst, seconds * 1e6)

    async def _return_slot(self, transport: Transport, reply: Reply, tokens: int) -> None:
        # Cancelled while waiting: hand the slot back if nobody reserved after it. Shielded and
        # bounded; the cancellation is re-raised by the caller. Failing is harmless: the slot
        # then stays a gap in the schedule (a little throughput lost, never the rate exceeded).
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self._shared.timeout
            try:
                await transport.run(
                    [f"{GIVE_BACK} - {self._limit_args} {reply.end} {reply.shift} - {tokens}"],
                    self._redis_key,
                )
            except Exception as exc:  # best effort, see above
                log.debug("shared limit %r: could not give a slot back: %r", self._shared.key, exc)

    # -- failure policy --------------------------------------------------------------------

    def _outage(self, exc: BaseException) -> None:
        if self._mode != SHARED:
            return  # logged when it started
        shared = self._shared
        self._outage_since = self._now()
        if shared.on_failure == FALLBACK_LOCAL:
            self._mode = FALLBACK
            self._next_probe = self._outage_since + PROBE_INTERVAL
            then = (
                f"this process now allows {shared.local_share:g} of the rate on its own "
                f"(on_failure='fallback_local') until Redis is reachable"
            )
        else:
            self._mode = WAITING
            then = "callers wait for it (on_failure='fail_closed')"
        log.warning(
            "shared limit %r: Redis at %s is unreachable (%s); %s.",
            shared.key,
            shared.where(),
            self._describe(exc),
            then,
        )

    def _recovered(self) -> None:
        self._mode = SHARED
        log.warning(
            "shared limit %r: Redis at %s answers again after %.1f s; back to the shared budget.",
            self._shared.key,
            self._shared.where(),
            max(0.0, self._now() - self._outage_since),
        )

    def _describe(self, exc: BaseException) -> str:
        secrets = [self._shared.redis_url]
        if self._transport is not None:
            secrets += self._transport.secrets()
        return redact(f"{type(exc).__name__}: {exc}", secrets)

    def _refused(self, exc: BaseException) -> HookBridgeError:
        return ConfigurationError(
            f"Redis at {self._shared.where()} refused the shared limit {self._shared.key!r}: "
            f"{self._describe(exc)}. Check the credentials and that the key "
            f"{self._redis_key!r} is not used by something else.",
            field="shared",
        )

    # -- cool-down -------------------------------------------------------------------------

    def throttled(self, retry_after: float) -> None:
        """Start the cool-down here at once, and in Redis with this process's next script call.

        ``throttled`` is synchronous, so it cannot make the round trip itself: the next acquire
        or confirmation of any task of this process carries it (in a busy process, within a
        few milliseconds). :meth:`share_cooldown` reports it immediately.
        """
        super().throttled(retry_after)  # checks the value, counts it, shows it in statistics
        until = self._now() + retry_after
        if until > self._pending_until:
            self._pending_until = until
        if self._fallback is not None:
            self._fallback.throttled(retry_after)

    async def share_cooldown(self) -> None:
        """Report a cool-down started by :meth:`throttled` to Redis now (one round trip)."""
        if self._pending_until > self._now():
            transport = self._transport or await self._connect()
            await self._call(transport, THROTTLE, confirming=True)

    # -- state -----------------------------------------------------------------------------

    def _sync_loop(self) -> float:
        before = self._loop
        now = super()._sync_loop()
        if self._loop is not before:
            # Our times are in the old loop's clock: forget them, as the base class does.
            self._pending_until = self._remote_until = self._next_probe = _NEVER
        return now

    def statistics(self) -> LimitsStatistics:
        stats = super().statistics()
        remaining = stats.cooldown_remaining
        if self._remote_until != _NEVER:
            try:
                now = self._now()
            except RuntimeError:
                now = math.inf
            remaining = max(remaining, self._remote_until - now)
        return replace(stats, cooldown_remaining=remaining, mode=self._mode)

    async def aclose(self) -> None:
        """Close this event loop's Redis connections (they also close when the loop ends)."""
        if self._transport is not None:
            await self._transport.aclose()


def _is_auth_error(exc: BaseException) -> bool:
    from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError

    return isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError))


def _is_redis_error(exc: BaseException) -> bool:
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError)
