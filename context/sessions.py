"""The session store: one Redis hash per caller, saved with a compare-and-set.

A webhook makes at most two round trips on a single Redis: :meth:`SessionStore.load` (one
script: the session, the reply already sent for a step that may be a retry, and whether the call
ever owned the session) and :meth:`SessionStore.save` (one script: a compare-and-set of the session,
the cached reply, the call marker and, on a single or Sentinel-managed Redis, the turn's events
appended to the event stream). The first webhook of a call from a caller Redis holds nothing
about makes one: :meth:`SessionStore.start` saves the fresh turn worked out beforehand, and
when there was something after all it returns what the load would have (see
:mod:`conversation.first_turns`). The hash holds ``seq`` (bumped by every save; the compare-and-set
fences racing writers), ``call`` (the CallSid that owns the session; older calls are fenced off)
and ``doc`` (JSON). Every key a script touches carries the caller's hash tag, so on Redis
Cluster each script runs in one slot, and a failed shard only affects the callers it holds.
Every write sets a TTL.

A live call that another call from the same number kept apart from has its own hash
(:meth:`~context.keys.Keys.call_session`), which the load finds first. The save script refuses
to write when its deadline, in Redis's own clock (read by the load), has passed: the client
gave up on it and the caller already heard the fallback. On a single or Sentinel-managed Redis
it also refuses while the session's flow version is missing, and is sent again with the YAML.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_client import socket_timeout_of
from context.redis_direct import commands_for
from context.redis_errors import STORE_UNAVAILABLE, describe, is_store_unavailable, masked_keys
from context.sealing import Sealer
from context.session_documents import SessionCodec
from ivr.errors import SessionCorrupt, StoreError, StoreUnavailable
from ivr.session import Session

log = logging.getLogger(__name__)

# KEYS: the session hash written, cached reply, call marker, where a live call's session is
#       set aside, flow version, event stream shard (unused ones repeat the first key, so a
#       cluster sees one slot)
# ARGV: expected seq, doc, call sid, ttl, reply, reply ttl, mark call (1/0), deadline (Redis
#       seconds, '' for none), set aside (1/0), flow version ('' unchecked, 'check', 'publish'),
#       flow YAML, stream maxlen, stream ttl, events...
# Returns the new seq, or -1 (somebody saved since), -2 (the flow version is not in Redis:
# send its YAML), -3 (past the deadline: the caller was already given up on); nothing is
# written then.
_SAVE = """
if ARGV[8] ~= '' then
  local now = redis.call('TIME')
  if tonumber(now[1]) + tonumber(now[2]) / 1000000 > tonumber(ARGV[8]) then return -3 end
end
local current = redis.call('HGET', KEYS[1], 'seq')
if (current or '0') ~= ARGV[1] then return -1 end
if ARGV[10] == 'check' and redis.call('EXISTS', KEYS[5]) == 0 then return -2 end
if ARGV[10] == 'publish' then
  redis.call('SET', KEYS[5], ARGV[11], 'EX', tonumber(ARGV[4]) * 2)
end
if ARGV[9] == '1' and current then redis.call('RENAME', KEYS[1], KEYS[4]) end
local seq = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'seq', seq, 'doc', ARGV[2], 'call', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
if ARGV[7] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[4]) end
if #ARGV > 13 then
  for i = 14, #ARGV do
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[12], '*', 'e', ARGV[i])
  end
  redis.call('EXPIRE', KEYS[6], ARGV[13])
end
return seq
"""

# KEYS: the caller's session hash[, the call's own session hash[, cached reply, call marker,
#       customer card]]
# Returns seq, doc, reply, problem, whether the call is known, whether the session came from
# the call's own hash, Redis's clock (TIME) and the customer card (the history writer's summary, if any).
_LOAD = """
local source = KEYS[1]
local own = 0
if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  source = KEYS[2]
  own = 1
end
local ok, fields = pcall(redis.call, 'HMGET', source, 'seq', 'doc')
local reply = false
local known = 0
if #KEYS > 2 then
  local found, value = pcall(redis.call, 'GET', KEYS[3])
  if found and value then reply = value end
  known = redis.call('EXISTS', KEYS[4])
end
local card = false
if #KEYS > 4 then
  local found, value = pcall(redis.call, 'GET', KEYS[5])
  if found and value then card = value end
end
local now = redis.call('TIME')
if not ok then return {false, false, reply, 'not a session hash', known, own, now, card} end
return {fields[1], fields[2], reply, false, known, own, now, card}
"""

# A new call's first turn in one round trip (see SessionStore.start): the save, made only when
# the load would find nothing, else the load's reply. The two scripts above run as functions
# of their own KEYS (and ARGV), unchanged.
# KEYS: the save's six, then the call's own session hash and the customer card
# ARGV: the save's
_START = f"""
local function load(KEYS)
{_LOAD}
end
local function save(KEYS, ARGV)
{_SAVE}
end
if redis.call('EXISTS', KEYS[1], KEYS[7], KEYS[2], KEYS[3], KEYS[8]) == 0 then
  return save({{KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}}, ARGV)
end
return load({{KEYS[1], KEYS[7], KEYS[2], KEYS[3], KEYS[8]}})
"""

_T = TypeVar("_T")
_CONFLICT, _VERSION_MISSING, _TOO_LATE = -1, -2, -3  # the save script's refusals
# What a script's round trip can fail with: an outage, or a script error that may be one (OOM).
_STORE_OR_SCRIPT_ERRORS: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, redis.ResponseError)


@dataclass(frozen=True)
class RedisClock:
    """Redis's own clock as a load saw it, tied to this process's monotonic clock.

    A save's deadline is written in Redis's time (the script checks it with ``TIME``), so the
    clocks of the web box and the Redis box never need to agree.
    """

    redis_seconds: float
    monotonic: float

    @classmethod
    def of(cls, raw: Any) -> RedisClock | None:
        """The clock from a ``TIME`` reply (seconds, microseconds), read just now."""
        try:
            return cls(int(raw[0]) + int(raw[1]) / 1_000_000, time.monotonic())
        except (TypeError, ValueError, IndexError):
            return None

    def now(self) -> float:
        """Redis's time now, by this process's clock (at most one load's return trip early)."""
        return self.redis_seconds + (time.monotonic() - self.monotonic)

    def age(self) -> float:
        """Seconds since the load that read this clock."""
        return time.monotonic() - self.monotonic


@dataclass(frozen=True)
class Loaded:
    """What :meth:`SessionStore.load` found: the session (if any), its ``seq`` and a cached reply.

    ``own`` says the session came from the call's own hash (a live call set aside by another
    call from the same number, see :meth:`SessionStore.save`); saves of it go back there.
    """

    session: Session | None
    seq: int
    reply: str | None = None
    call_known: bool = False  # the call asked about once owned this caller's session
    own: bool = False
    clock: RedisClock | None = None
    card: dict[str, Any] | None = None  # the customer card, when the history writer made one


@dataclass(frozen=True)
class Saved:
    """A save that stood: the session's new ``seq``, and whether the flow version got published."""

    seq: int
    published: bool = False


@dataclass(frozen=True)
class FlowPin:
    """The flow version a saved session runs on: its key, its YAML, and whether to send the
    YAML with this save (``publish``) or only make sure it is there."""

    key: str
    source: str
    publish: bool = False


@dataclass(frozen=True)
class _SaveCommand:
    """A save script's keys and arguments, and what to do once it answered."""

    caller: str
    keys: list[str]
    args: list[Any]
    flow: FlowPin | None
    checked: bool  # the script checks (or publishes) the flow version
    encoded: list[Any]  # the events, as the stream stores them
    inline: bool  # the events ride in the script


class SessionStore:
    """Sessions of callers in Redis, keyed by caller (see :mod:`context.callers`).

    ``cluster`` says the connection is a Redis Cluster client: the event stream then cannot ride
    in the save script (its shard is in another slot), and flow versions are published by a
    write of their own, so a failed shard breaks only the calls whose keys it holds.
    ``give_up_after`` is how long the client waits for a reply (by default the connection's
    socket timeout): a save that reaches Redis later than that after it was sent is refused,
    because the webhook has already answered the caller without it.
    ``sealer`` seals sensitive values (:mod:`context.session_documents`); the app passes the one
    its settings make, and without one a random key is used, good for this object only.
    """

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys | None = None,
        ttl: int = 86400,
        reply_ttl: int = 600,
        events: EventStream | None = None,
        cluster: bool = False,
        give_up_after: float | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.redis = connection
        self._send = commands_for(connection)  # the two scripts per webhook, sent directly
        self.keys = keys or Keys()
        self.ttl = ttl
        self.reply_ttl = reply_ttl
        self.events = events
        self.cluster = cluster
        self.give_up_after = (
            socket_timeout_of(connection) if give_up_after is None else give_up_after
        )
        self.codec = SessionCodec(sealer or Sealer.ephemeral())
        self._sha = {
            source: hashlib.sha1(source.encode()).hexdigest() for source in (_SAVE, _LOAD, _START)
        }
        self.clock: RedisClock | None = None  # Redis's clock as the latest load saw it

    def load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        """One round trip: the session of ``caller`` (the call's own one, if it was set aside),
        the reply cached for ``(call_sid, step)``, whether ``call_sid`` ever owned the session,
        and Redis's clock.

        Raises:
            StoreUnavailable: Redis did not answer.
            SessionCorrupt: the stored document cannot be decoded.
        """
        keys = self._load_keys(caller, call_sid, step)
        try:
            found = self._script(_LOAD, keys, ())
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("loading", keys[0], exc) from None
        return self._loaded(keys, found)

    def _load_keys(self, caller: str, call_sid: str | None, step: int | None) -> list[str]:
        """The load script's keys: the session, then (with a call) the call's own session,
        then (with a step) the reply cached for it, the call marker and the customer card."""
        keys = [self.keys.session(caller)]
        if call_sid is not None:
            keys.append(self.keys.call_session(caller, call_sid))
            if step is not None:
                keys.append(self.keys.reply(caller, call_sid, step))
                keys.append(self.keys.call(caller, call_sid))
                keys.append(self.keys.card(caller))
        return keys

    def _loaded(self, keys: list[str], found: Any) -> Loaded:
        """What the load script's reply ``found`` (for ``keys``) says."""
        seq_raw, doc_raw, reply, problem, known, own, now, card = found
        clock = RedisClock.of(now)
        if clock is not None:
            self.clock = clock
        key = keys[0]
        source = keys[1] if own else key
        if problem:
            raise SessionCorrupt(_safe(source), _text(problem) or "unreadable", own=bool(own))
        customer_card = _card(card)
        if seq_raw is None and doc_raw is None:
            return Loaded(None, 0, call_known=bool(known), clock=clock, card=customer_card)
        try:
            session = self.codec.decode(_safe(source), doc_raw)
        except SessionCorrupt as exc:
            exc.own = bool(own)  # which hash was read: the one to discard
            raise
        return Loaded(
            session,
            _sequence(source, seq_raw),
            self.codec.open_reply(_text(reply)),
            bool(known),
            bool(own),
            clock,
            customer_card,
        )

    def load_parked(self, caller: str, flow: str) -> Loaded:
        """The progress ``caller`` made in ``flow`` before calling another flow's number, with
        its ``seq`` (one round trip, only when a call or a page is about a flow that is not the
        session's). A document that cannot be read is dropped (logged), not a failure.

        Raises:
            StoreUnavailable: Redis did not answer.
        """
        key = self.keys.flow_session(caller, flow)
        try:
            seq_raw, doc_raw, _reply, problem, *_ = self._script(_LOAD, [key], ())
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("loading", key, exc) from None
        if problem:
            log.error("dropping an unreadable parked session %s: %s", _safe(key), _text(problem))
            return Loaded(None, 0)
        if doc_raw is None:
            return Loaded(None, 0)
        try:
            session = self.codec.decode(_safe(key), doc_raw)
        except SessionCorrupt as exc:
            log.error("dropping an unreadable parked session %s: %s", _safe(key), exc.reason)
            return Loaded(None, 0)
        return Loaded(session, _sequence(key, seq_raw))

    def save(
        self,
        session: Session,
        expected_seq: int,
        reply: str | None = None,
        reply_step: int | None = None,
        mark_call: bool = False,
        events: Sequence[Mapping[str, Any]] = (),
        flow: FlowPin | None = None,
        own: bool = False,
        set_aside: str | None = None,
        clock: RedisClock | None = None,
        park: str | None = None,
        parked: bool = False,
    ) -> Saved | None:
        """Store ``session`` if nobody saved since ``expected_seq``; ``None`` if somebody did.

        ``reply`` is cached under the session's call and ``reply_step`` (the step named in the
        request being answered) so a retried webhook gets the same answer; ``mark_call`` records
        that the call owns the session (once per call is enough); ``events`` (event documents) are
        appended to the event stream, when the store has one, only if the save stands: inside
        the script, or on a cluster right after it.

        ``flow`` is the version the session runs on. On a single or Sentinel-managed Redis the
        script refuses to save while that version's YAML is missing (a Redis that restarted
        empty), and the save is sent again with the YAML, so no session is ever stored pinned
        to a version other processes cannot read; ``flow.publish`` sends the YAML at once. On a
        cluster the version lives in another slot: it is published by a write of its own when
        ``flow.publish`` asks, and a failure is only logged.

        ``own`` saves to the call's own hash (see :meth:`load`); ``set_aside`` names the live
        call whose session is moved to its own hash, in the same script, before ``session``
        (another call from the same number) takes the caller's; ``park`` names the flow whose
        session is moved aside the same way, to the caller's hash for that flow
        (:meth:`load_parked`), when the caller calls another flow's number; ``parked`` saves
        to that hash of the session's own flow (a page submitted for a flow the caller has since
        left). ``clock`` (from the load) gives
        the save a deadline in Redis's time, ``give_up_after`` after it is sent.

        Raises:
            StoreUnavailable: Redis did not answer in time, or refused a save that reached it
                after the client had given up on it (nothing was written).
        """
        command = self._save_command(
            session, expected_seq, reply, reply_step, mark_call, events, flow, own, set_aside,
            clock, park, parked,
        )  # fmt: skip
        try:
            seq = int(self._script(_SAVE, command.keys, command.args))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("saving", command.keys[0], exc) from None
        return self._saved(command, seq)

    def start(
        self,
        session: Session,
        reply: str,
        reply_step: int,
        events: Sequence[Mapping[str, Any]] = (),
        flow: FlowPin | None = None,
        clock: RedisClock | None = None,
    ) -> Saved | Loaded | None:
        """A new call's first turn in one round trip: save ``session`` (with its ``reply``, the
        call marker and ``events``, as :meth:`save` with ``expected_seq`` 0 and ``mark_call``)
        only if the load of its call would find nothing at all: no session of the caller, none
        of the call's own, no reply cached for ``reply_step``, no call marker, no customer card.

        Returns the :class:`Saved` save, or, when something was there, what :meth:`load` of
        the call at ``reply_step`` would have returned: the caller then gets the turn that what
        is stored calls for, saved as usual. ``None``: nothing was written and nothing was
        read, so the first turn takes the usual way (a load, then a save); that happens when
        the save reached Redis after its deadline by ``clock``, Redis's clock as an earlier
        load saw it (:attr:`clock`), which a failover to a server whose clock differs can make
        wrong.

        Raises:
            StoreUnavailable: Redis did not answer in time.
            SessionCorrupt: something was there, and the stored document cannot be decoded.
        """
        command = self._save_command(
            session, 0, reply, reply_step, True, events, flow, False, None, clock, None, False
        )
        load_keys = self._load_keys(session.caller, session.call_sid, reply_step)
        keys = [*command.keys, load_keys[1], load_keys[4]]  # the call's own session, the card
        try:
            found = self._script(_START, keys, command.args)
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("starting", command.keys[0], exc) from None
        if isinstance(found, list):
            return self._loaded(load_keys, found)
        if int(found) == _TOO_LATE:  # by a clock an earlier load saw: the usual way reads it anew
            return None
        return self._saved(command, int(found))

    def _save_command(
        self,
        session: Session,
        expected_seq: int,
        reply: str | None,
        reply_step: int | None,
        mark_call: bool,
        events: Sequence[Mapping[str, Any]],
        flow: FlowPin | None,
        own: bool,
        set_aside: str | None,
        clock: RedisClock | None,
        park: str | None,
        parked: bool,
    ) -> _SaveCommand:
        """The save script's keys and arguments (see :meth:`save`)."""
        if parked:
            key = self.keys.flow_session(session.caller, session.flow_id)
        elif own:
            key = self.keys.call_session(session.caller, session.call_sid)
        else:
            key = self.keys.session(session.caller)
        doc, sealed = self.codec.encode(session)
        if sealed and reply:
            reply = self.codec.seal_reply(reply)
        step = session.step if reply_step is None else reply_step
        checked = flow is not None and not self.cluster
        keys = [
            key,
            self.keys.reply(session.caller, session.call_sid, step),
            self.keys.call(session.caller, session.call_sid),
            self.keys.call_session(session.caller, set_aside)
            if set_aside
            else self.keys.flow_session(session.caller, park)
            if park
            else key,
            flow.key if flow is not None and checked else key,
            key,
        ]
        stream = self.events
        encoded = [stream.encode(event) for event in events] if stream is not None else []
        inline = stream is not None and not self.cluster and bool(encoded)
        if inline:
            assert stream is not None
            keys[5] = stream.key_for(session.caller)
        deadline = ""
        if clock is not None and self.give_up_after is not None:
            deadline = f"{clock.now() + self.give_up_after:.6f}"
        args: list[Any] = [
            expected_seq, doc, session.call_sid, self.ttl, reply or "", self.reply_ttl,
            1 if mark_call else 0, deadline, 1 if set_aside or park else 0, "", "",
        ]  # fmt: skip
        if inline:
            assert stream is not None
            args += [stream.maxlen, stream.ttl, *encoded]
        if checked:
            assert flow is not None
            args[9:11] = ["publish", flow.source] if flow.publish else ["check", ""]
        return _SaveCommand(session.caller, keys, args, flow, checked, encoded, inline)

    def _saved(self, command: _SaveCommand, seq: int) -> Saved | None:
        """What a save whose script answered ``seq`` comes to: sent again with the flow's YAML
        when its version was missing; the events and the version written after it on a
        cluster."""
        key, flow, args = command.keys[0], command.flow, command.args
        try:
            if seq == _VERSION_MISSING:
                assert flow is not None  # only a checked save is refused for its version
                log.warning("flow version %s was missing from Redis: publishing it again", flow.key)
                args[9:11] = ["publish", flow.source]
                seq = int(self._script(_SAVE, command.keys, args))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("saving", key, exc) from None
        published = command.checked and args[9] == "publish"
        if seq == _TOO_LATE:
            raise StoreUnavailable(
                f"the save of {_safe(key)} reached Redis after its deadline; nothing was written"
            )
        if seq == _CONFLICT:
            return None
        stream = self.events
        if stream is not None and command.encoded and not command.inline:
            stream.append(command.caller, command.encoded)
        if flow is not None and flow.publish and self.cluster:
            published = self.publish_flow(flow.key, flow.source)
        return Saved(seq, published)

    def publish_flow(self, key: str, source: str) -> bool:
        """Publish a flow version's YAML (best-effort: a failure is logged, never raised)."""
        try:
            self.redis.set(key, source, ex=self.ttl * 2)
        except STORE_UNAVAILABLE as exc:
            log.warning("could not publish flow version %s: %s", key, describe(exc))
            return False
        return True

    def _script(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA in one command."""
        # Not redis-py's evalsha(), nor its execute_command: see context.redis_direct.
        command = ("EVALSHA", self._sha[source], len(keys), *keys, *args)
        return self._with_script(source, lambda: self._send(*command))

    def _with_script(self, source: str, send: Callable[[], _T]) -> _T:
        """``send()``; if Redis does not know the script (yet, or after a restart or failover),
        load it and send again."""
        try:
            return send()
        except redis.exceptions.NoScriptError:
            self.redis.script_load(source)
            return send()

    def claim_step(self, caller: str, call_sid: str, step: int, ttl: int) -> bool:
        """Claim ``step`` of ``call_sid`` for the request about to run its side-effecting data
        dips (SET NX, one round trip); ``False`` when another request holds the claim.

        ``ttl`` need only outlive the holder's request: once it saved, its cached reply answers
        every copy; if it died, a retry after ``ttl`` may run the dips again, with the same
        ``Idempotency-Key``.
        """
        key = self.keys.dip_claim(caller, call_sid, step)
        try:
            return bool(self.redis.set(key, "1", ex=ttl, nx=True))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("claiming", key, exc) from None

    # ---- resume codes ---------------------------------------------------------------------
    def claim_code(self, code: str, caller: str, ttl: int) -> bool:
        """Issue resume ``code`` to ``caller`` for ``ttl`` seconds unless another caller holds it
        (SET NX)."""
        try:
            return bool(self.redis.set(self.keys.resume_code(code), caller, ex=ttl, nx=True))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("claiming a resume code", None, exc) from None

    def caller_by_code(self, code: str) -> str | None:
        """The caller key a resume code was issued to (the code stays issued)."""
        return self._get(self.keys.resume_code(code))

    def redeem_code(self, code: str) -> str | None:
        """Take resume ``code`` (GETDEL): of calls redeeming one code at once, one gets its caller."""
        try:
            return _text(self.redis.getdel(self.keys.resume_code(code)))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("redeeming a resume code", None, exc) from None

    def expire_code(self, code: str, ttl: int) -> None:
        """Let an issued code live ``ttl`` more seconds (from the end of its call); best-effort."""
        try:
            self.redis.expire(self.keys.resume_code(code), max(1, ttl))
        except STORE_UNAVAILABLE as exc:
            log.warning("could not shorten a resume code's life: %s", describe(exc))

    def code_counts(self, source: str, minute: int, shards: int) -> tuple[int, int, int]:
        """Wrong codes keyed this minute by ``source`` and by everyone, and code prompts (calls
        asked for a code) this minute and the one before: one round trip on a single Redis."""
        keys = [self.keys.code_failures_of(source, minute)]
        keys += [self.keys.code_failures(minute, shard) for shard in range(shards)]
        for past in (minute - 1, minute):
            keys += [self.keys.code_prompts(past, shard) for shard in range(shards)]
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                values = [int(v or 0) for v in pipe.execute()]
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("counting resume codes", None, exc) from None
        return values[0], sum(values[1 : 1 + shards]), sum(values[1 + shards :])

    def count_code(self, source: str, minute: int, shard: int, failed: bool) -> None:
        """Count a code prompt (``failed=False``) or a wrong code of ``source`` (``True``)."""
        keys: tuple[str, ...]
        if failed:
            keys = (
                self.keys.code_failures_of(source, minute),
                self.keys.code_failures(minute, shard),
            )
        else:
            keys = (self.keys.code_prompts(minute, shard),)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, 180)
                pipe.execute()
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("counting resume codes", None, exc) from None

    def flow_source(self, version: str) -> str | None:
        """The YAML text of a flow version published with :meth:`save` (``publish``)."""
        return self._get(self.keys.flow_version(version))

    def _get(self, key: str) -> str | None:
        try:
            return _text(self.redis.get(key))
        except STORE_UNAVAILABLE as exc:
            raise _store_error("reading", key, exc) from None
        except redis.ResponseError:
            return None

    def discard(self, caller: str, call_sid: str | None = None) -> None:
        """Delete a caller's session, or with ``call_sid`` that call's own set-aside one (the
        one found corrupt, for instance: never the other call's)."""
        key = self.keys.call_session(caller, call_sid) if call_sid else self.keys.session(caller)
        self.delete(key)

    def forget(self, caller: str) -> int:
        """Delete every key under the caller's hash tag (session, set-aside sessions, cached
        replies, call markers, claims, the customer card); how many there were."""
        pattern = self.keys.session(caller).removesuffix(":session") + ":*"
        try:
            found = [key for key in self.redis.scan_iter(match=pattern, count=500)]
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error("looking up the keys of", self.keys.session(caller), exc) from None
        for key in found:
            self.delete(key.decode() if isinstance(key, bytes) else key)
        return len(found)

    def delete(self, *keys: str) -> None:
        """Delete ``keys`` (the session a resume code moved from, for instance), key by key on a
        cluster, where they may live in several slots."""
        try:
            if self.cluster:
                for key in keys:
                    self.redis.delete(key)
            else:
                self.redis.delete(*keys)
        except _STORE_OR_SCRIPT_ERRORS as exc:
            raise _store_error(f"deleting {len(keys)} key(s)", None, exc) from None


def _safe(key: str) -> str:
    """``key`` fit for logs and error messages: the caller inside its hash tag is masked."""
    return masked_keys(key)


def _store_error(doing: str, key: str | None, exc: Exception) -> StoreError:
    """The error to raise for ``exc``, met while ``doing`` something (to ``key``).

    Raised ``from None``: redis-py's exception may carry the command it sent, keys and values
    in full, and a chained exception would show it in every traceback that is logged.
    """
    what = f"{doing} {_safe(key)}" if key is not None else doing
    if is_store_unavailable(exc):  # an OOM refusal from inside a script is one too
        return StoreUnavailable(f"Redis did not answer {what}: {describe(exc)}")
    return StoreError(f"Redis refused {what}: {describe(exc)}")


def _text(value: Any) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _sequence(key: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SessionCorrupt(_safe(key), f"sequence number {raw!r} is not a number") from None


def _card(raw: Any) -> dict[str, Any] | None:
    """The customer card the load found; one that cannot be read counts as none."""
    if not raw:
        return None
    try:
        card = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return card if isinstance(card, dict) else None
