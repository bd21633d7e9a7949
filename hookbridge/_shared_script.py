"""The Lua script that keeps a shared limit's GCRA state in Redis, and how its replies read.

One script, loaded once per server (``EVALSHA``, with ``SCRIPT LOAD`` again after a ``NOSCRIPT``),
does every state change atomically: reserve a slot, confirm it after the wait, start a cool-down,
give a cancelled reservation back. It is the same algorithm as the in-process ``Limits``: a
reservation takes the next slot at once (first come, first served across every process), and
the reply says how long to wait for it, so a caller sleeps exactly that long instead of polling.

Two schedules, because a reservation is not a grant. The reservation TAT (``tat``) hands out
slots in arrival order; the grant TAT (``gt``) counts the grants the script actually issues, at the
time it issues them. A caller whose process is busy wakes late for its slot and confirms late; were
it granted then, its grant would land beside the grants of those queued behind it, on time, and a
1 s window would hold more than ``rate + burst``. So every grant, at reservation or on confirming,
must conform to the grant TAT (the GCRA test, with the same burst): the script never issues more
than ``burst + rate * t`` grants in any ``t`` seconds of its own clock, however late callers are.
A late confirmation that does not conform is not granted: the caller reserves again, at the end
of the queue, as a newcomer would (no grant is lost: it is refused only when the grants already
issued use all that the rate allows). Nobody else moves, so the callers queued behind it, on
time, are granted on time; moving them all back instead (as a cool-down does) would move them
once per late caller when a stalled process wakes with many. Conversely, when a queued caller is
granted and finds that nothing was granted since the rate last allowed it (the callers whose
slots those were are late, or gone, and the burst allowance was full), that much rate was lost:
as much (up to a burst) goes to the next newcomers, granted at once ahead of the queue when the
rate allows, so that the rate a stalled process leaves unused goes to the others. A limiter cannot
control when a caller runs after its grant, only when the grant is issued: the bound is over the
script's clock.

Times are microseconds. The script reads Redis ``TIME`` (one clock for every process, whatever
their hosts' clocks say) unless the caller passes ``now``: tests drive it on a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONFIRM",
    "GIVE_BACK",
    "RESERVE",
    "SCRIPT",
    "THROTTLE",
    "Reply",
    "key_for",
    "limit_args",
    "script_args",
]

RESERVE, CONFIRM, THROTTLE, GIVE_BACK = "r", "c", "t", "g"

# The arguments, in one string: op, now ('-' = Redis TIME), interval, burst, grace (idle time
# before the key expires), the op's two arguments (confirm: the slot and the shift seen; give
# back: the end and the shift seen), a cool-down to apply first ('-' = none), tokens.
# One hash per limit: tat (the theoretical arrival time of reservations), gt (that of grants),
# cd (the end of the cool-down), sh (every cool-down's shift of the queue so far), and lc and lt
# (the rate late callers left unused, as credit for newcomers, and when it was seen). Waiters
# remember the shift they were given; on confirming, the difference tells them how far a
# cool-down set meanwhile moved their slot.
SCRIPT = r"""
local key = KEYS[1]
-- Every argument in one string (one to encode and send, rather than nine); '-' is "none".
local arg = {}
for field in string.gmatch(ARGV[1], '%S+') do arg[#arg + 1] = field end
local op = arg[1]
local now
if arg[2] == '-' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(arg[2])
end
local interval = tonumber(arg[3])
local span = tonumber(arg[4]) * interval
local grace = tonumber(arg[5])
local state = redis.call('HMGET', key, 'tat', 'cd', 'sh', 'gt', 'lc', 'lt')
local tat = tonumber(state[1]) or 0
local cd = tonumber(state[2]) or 0
local sh = tonumber(state[3]) or 0
local gt = tonumber(state[4]) or 0
local lc = tonumber(state[5]) or 0
local lt = tonumber(state[6]) or 0
local dirty = false

-- A cool-down (retry-after, in µs) moves every pending reservation together so that the
-- earliest lands on its end, keeping their spacing; later reservations queue behind them.
local function throttle(retry_after)
  local untl = now + retry_after
  if untl > cd then
    if tat > now then
      local from = now
      if cd > from then from = cd end
      tat = tat + (untl - from)
      sh = sh + (untl - from)
    end
    cd = untl
    dirty = true
  end
end

-- Every op first applies the cool-down its caller has to report, if any ('t' does nothing else).
if arg[8] ~= '-' then throttle(tonumber(arg[8])) end
local wait, at, fin = 0, 0, 0
local tokens = tonumber(arg[9])

-- The next slot, first come first served: after the last reservation, and after the last grant
-- (late grants may have run ahead of the reservations, and a slot they leave no room for would
-- only be refused). Granted at once when it has come (under a microsecond is rounding).
local function reserve()
  if interval == 0 then
    at = math.max(now, cd)
    fin = at
    return
  end
  local start = now
  if cd > start then start = cd end
  local base = math.max(tat, start)
  -- (gt is the sum of other doubles than tat: within a microsecond, it is tat.)
  if gt - base >= 1 then base = gt end
  fin = base + tokens * interval
  at = fin - span
  if at < start then at = start end
  if at - now < 1 then
    gt = math.max(gt, now) + tokens * interval
  elseif lc >= tokens * interval and now - lt <= span and start == now
      and gt - span + tokens * interval - now < 1 then
    -- A queued caller lately found rate lost (see grant()), and the rate allows a grant now:
    -- this newcomer takes it, ahead of the queue; no slot moves.
    lc = lc - tokens * interval
    gt = math.max(gt, now) + tokens * interval
    at = now
    dirty = true
    return
  end
  tat = fin
  dirty = true
end

-- A queued caller granted on confirming, counted at its slot if it came within rounding of it
-- (a wait is rounded up to whole µs: the slot then stays exact, as the local GCRA has it), else
-- when it came. Had nothing been granted since the rate last allowed it (beyond half an
-- interval: not rounding, nor the cool-down's doing), the callers whose slots those were are
-- late (a busy process) or gone, and the burst allowance was full: that rate is lost. Up to a
-- burst of it is credited to the next newcomers (see reserve()).
local function grant()
  local t = now
  if t - at < 1 then t = at end
  local lost = t - math.max(gt, cd)
  if lost > interval / 2 then
    lc = math.min(lost, span)
    lt = now
  end
  gt = math.max(gt, t) + tokens * interval
  dirty = true
end

if op ~= 't' then
  if op == 'r' then
    reserve()
  elseif op == 'c' then
    local moved = sh - tonumber(arg[7])
    if moved < 0 then moved = 0 end
    at = tonumber(arg[6]) + moved
    if cd > at then at = cd end
    if at - now < 1 and interval > 0 then
      -- The slot has come. Grant only what the grants so far leave room for (see the module);
      -- a caller too late for that queues again, behind everyone, and nobody else moves.
      if gt - span + tokens * interval - now < 1 then
        grant()
      else
        reserve()
      end
    end
  elseif op == 'g' then
    local moved = sh - tonumber(arg[7])
    if moved < 0 then moved = 0 end
    -- Only the newest reservation can be given back: an older one has others behind it.
    if math.abs(tat - (tonumber(arg[6]) + moved)) < 0.5 then
      tat = tat - tokens * interval
      dirty = true
    end
  end
  wait = at - now
end

if dirty then
  redis.call('HSET', key, 'tat', tat, 'cd', cd, 'sh', sh, 'gt', gt, 'lc', lc, 'lt', lt)
  -- Idle once both TATs and the cool-down have passed: the state then means nothing.
  local last = math.max(tat, gt, cd)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((last - now + grace) / 1000)))
end
local left = cd - now
if left < 0 then left = 0 end
-- Under a microsecond is rounding (a double holds Redis TIME in µs to 1/4 µs), not a wait.
if wait < 1 then wait = 0 end
-- One string rather than an array: a reply the client reads in one go. Last, the script's
-- clock: when a grant (wait 0) was issued, for the tests and the benchmark.
return string.format(
  '%d %.17g %.17g %.17g %d %.17g', math.ceil(wait), at, sh, fin, math.ceil(left), now)
"""


def key_for(key: str) -> str:
    """The Redis key of a limit key (a hash tag, so that Redis Cluster keeps it on one node)."""
    return f"hookbridge:limit:{{{key}}}"


def script_args(
    op: str,
    *,
    interval_us: float,
    burst: int,
    grace_us: float,
    now_us: float | None = None,
    a: str = "-",
    b: str = "-",
    throttle_us: float | None = None,
    tokens: int = 1,
) -> list[str]:
    """ARGV (one string): op, now, interval, burst, grace, the op's two arguments, a pending
    throttle, tokens."""
    return [
        f"{op} {'-' if now_us is None else repr(float(now_us))} "
        f"{limit_args(interval_us, burst, grace_us)} {a} {b} "
        f"{'-' if throttle_us is None else repr(float(throttle_us))} {tokens}"
    ]


def limit_args(interval_us: float, burst: int, grace_us: float) -> str:
    """The limit's part of the arguments (the same on every call: build it once)."""
    return f"{float(interval_us)!r} {burst} {float(grace_us)!r}"


@dataclass(frozen=True)
class Reply:
    """What the script said: the wait and what to show it again on confirming or giving back."""

    #: Seconds until the slot (0.0: granted now).
    wait: float
    #: The slot, the shift seen and the reservation's end, as the script wrote them (exact).
    at: str
    shift: str
    end: str
    #: Seconds until the shared cool-down ends (0.0: none).
    cooldown: float
    #: The script's clock when it answered, in µs (Redis TIME): when a grant was issued.
    clock: str

    @classmethod
    def read(cls, raw: bytes | str) -> Reply:
        text = raw.decode() if isinstance(raw, bytes) else raw
        wait, at, shift, end, left, clock = text.split(" ")
        return cls(int(wait) / 1e6, at, shift, end, int(left) / 1e6, clock)
