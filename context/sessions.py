"""The session store: one Redis hash per caller, saved with a compare-and-set.

A webhook makes at most two round trips on a single Redis: :meth:`SessionStore.load` (one
script: the session, the reply already sent for a step that may be a retry, and whether the call
ever owned the session) and :meth:`SessionStore.save` (one script: a compare-and-set of the session,
the cached reply, the call marker and, on a single or Sentinel-managed Redis, the turn's events
appended to the event stream). The hash holds ``seq`` (bumped by every save; the compare-and-set
fences racing writers), ``call`` (the CallSid that owns the session; older calls are fenced off)
and ``doc`` (JSON). Every key a script touches carries the caller's hash tag, so on Redis
Cluster each script runs in one slot, and a failed shard only affects the callers it holds.
Every write sets a TTL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis

from context.callers import masked
from context.event_stream import EventStream
from context.keys import Keys
from context.redis_errors import STORE_UNAVAILABLE, is_store_unavailable
from ivr.errors import SessionCorrupt, StoreUnavailable
from ivr.session import Session

log = logging.getLogger(__name__)

# KEYS: session hash, cached reply, call marker[, event stream shard]
# ARGV: expected seq, doc, call sid, ttl, reply, reply ttl, mark call (1/0),
#       stream maxlen, stream ttl, events...
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'seq')
if (current or '0') ~= ARGV[1] then return -1 end
local seq = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'seq', seq, 'doc', ARGV[2], 'call', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
if ARGV[7] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[4]) end
if #KEYS > 3 and #ARGV > 9 then
  for i = 10, #ARGV do
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[i])
  end
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
return seq
"""

# KEYS: session hash[, cached reply[, call marker]]
_LOAD = """
local ok, fields = pcall(redis.call, 'HMGET', KEYS[1], 'seq', 'doc')
local reply = false
local known = 0
if #KEYS > 1 then
  local found, value = pcall(redis.call, 'GET', KEYS[2])
  if found and value then reply = value end
end
if #KEYS > 2 then known = redis.call('EXISTS', KEYS[3]) end
if not ok then return {false, false, reply, 'not a session hash', known} end
return {fields[1], fields[2], reply, false, known}
"""

_T = TypeVar("_T")
# What a script's round trip can fail with: an outage, or a script error that may be one (OOM).
_STORE_OR_SCRIPT_ERRORS: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, redis.ResponseError)


@dataclass(frozen=True)
class Loaded:
    """What :meth:`SessionStore.load` found: the session (if any), its ``seq`` and a cached reply."""

    session: Session | None
    seq: int
    reply: str | None = None
    call_known: bool = False  # the call asked about once owned this caller's session


@dataclass(frozen=True)
class Saved:
    """A save that stood: the session's new ``seq``, and whether the flow version got published."""

    seq: int
    published: bool = False


class SessionStore:
    """Sessions of callers in Redis, keyed by caller (see :mod:`context.callers`).

    ``cluster`` says the connection is a Redis Cluster client: the event stream then cannot ride
    in the save script (its shard is in another slot), and flow versions are published by a
    write of their own, so a failed shard breaks only the calls whose keys it holds.
    """

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys | None = None,
        ttl: int = 86400,
        reply_ttl: int = 600,
        events: EventStream | None = None,
        cluster: bool = False,
    ) -> None:
        self.redis = connection
        self.keys = keys or Keys()
        self.ttl = ttl
        self.reply_ttl = reply_ttl
        self.events = events
        self.cluster = cluster
        self._sha = {source: hashlib.sha1(source.encode()).hexdigest() for source in (_SAVE, _LOAD)}

    def load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        """One round trip: the caller's session, the reply cached for ``(call_sid, step)``, and
        whether ``call_sid`` ever owned the session.

        Raises:
            StoreUnavailable: Redis did not answer.
            SessionCorrupt: the stored document cannot be decoded.
        """
        key = self.keys.session(caller)
        keys = [key]
        if call_sid is not None and step is not None:
            keys.append(self.keys.reply(caller, call_sid, step))
            keys.append(self.keys.call(caller, call_sid))
        try:
            seq_raw, doc_raw, reply, problem, known = self._script(_LOAD, keys, ())
        except _STORE_OR_SCRIPT_ERRORS as exc:
            if not is_store_unavailable(exc):  # an OOM refusal from inside the script is one
                raise
            raise StoreUnavailable(f"Redis did not answer loading {_safe(key)}: {exc}") from exc
        if problem:
            raise SessionCorrupt(_safe(key), _text(problem) or "unreadable")
        if seq_raw is None and doc_raw is None:
            return Loaded(None, 0, call_known=bool(known))
        return Loaded(_decode(key, doc_raw), _sequence(key, seq_raw), _text(reply), bool(known))

    def save(
        self,
        session: Session,
        expected_seq: int,
        reply: str | None = None,
        reply_step: int | None = None,
        mark_call: bool = False,
        events: Sequence[Mapping[str, Any]] = (),
        publish: tuple[str, str] | None = None,
    ) -> Saved | None:
        """Store ``session`` if nobody saved since ``expected_seq``; ``None`` if somebody did.

        ``reply`` is cached under the session's call and ``reply_step`` (the step named in the
        request being answered) so a retried webhook gets the same answer; ``mark_call`` records
        that the call owns the session (once per call is enough); ``events`` (event documents) are
        appended to the event stream, when the store has one, only if the save stands: inside
        the script, or on a cluster right after it. ``publish`` (flow version
        key, YAML text) is best-effort: on a single Redis it rides in the same round trip, on a
        cluster it is a write of its own whose failure is only logged.
        """
        key = self.keys.session(session.caller)
        doc = _encode(session)
        step = session.step if reply_step is None else reply_step
        keys = [
            key,
            self.keys.reply(session.caller, session.call_sid, step),
            self.keys.call(session.caller, session.call_sid),
        ]
        stream = self.events
        encoded = [stream.encode(event) for event in events] if stream is not None else []
        inline = stream is not None and not self.cluster and bool(encoded)
        if inline:
            assert stream is not None
            keys.append(stream.key_for(session.caller))
        args: list[Any] = [
            expected_seq, doc, session.call_sid, self.ttl, reply or "", self.reply_ttl,
            1 if mark_call else 0,
        ]  # fmt: skip
        if inline:
            assert stream is not None
            args += [stream.maxlen, stream.ttl, *encoded]
        try:
            if publish is not None and not self.cluster:
                seq = int(self._save_and_publish(keys, args, publish)[0])
            else:  # the usual answer: one command, none of a pipeline's bookkeeping
                seq = int(self._script(_SAVE, keys, args))
        except _STORE_OR_SCRIPT_ERRORS as exc:
            if not is_store_unavailable(exc):
                raise
            raise StoreUnavailable(f"Redis did not answer saving {_safe(key)}: {exc}") from exc
        if seq < 0:
            return None
        if stream is not None and encoded and not inline:
            stream.append(session.caller, encoded)
        published = publish is not None
        if publish is not None and self.cluster:
            published = self.publish_flow(*publish)
        return Saved(seq, published)

    def _save_and_publish(
        self, keys: list[str], args: list[Any], publish: tuple[str, str]
    ) -> list[Any]:
        """The save script and a flow version's publication, in one round trip (single Redis)."""

        def send() -> list[Any]:
            # EVALSHA straight away: redis-py's Script objects would add a SCRIPT EXISTS
            # round trip to every save.
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._sha[_SAVE], len(keys), *keys, *args)
                pipe.set(publish[0], publish[1], ex=self.ttl * 2)
                return pipe.execute()

        return self._with_script(_SAVE, send)

    def publish_flow(self, key: str, source: str) -> bool:
        """Publish a flow version's YAML (best-effort: a failure is logged, never raised)."""
        try:
            self.redis.set(key, source, ex=self.ttl * 2)
        except STORE_UNAVAILABLE as exc:
            log.warning("could not publish flow version %s: %s", key, exc)
            return False
        return True

    def _script(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA in one command."""
        # execute_command: redis-py's evalsha() wrapper costs more than the command's own work.
        command = ("EVALSHA", self._sha[source], len(keys), *keys, *args)
        return self._with_script(source, lambda: self.redis.execute_command(*command))

    def _with_script(self, source: str, send: Callable[[], _T]) -> _T:
        """``send()``; if Redis does not know the script (yet, or after a restart or failover),
        load it and send again."""
        try:
            return send()
        except redis.exceptions.NoScriptError:
            self.redis.script_load(source)
            return send()

    def claim_step(self, caller: str, call_sid: str, step: int) -> bool:
        """Claim ``step`` of ``call_sid`` for the request about to run its side-effecting data
        dips (SET NX, one round trip); ``False`` when another request holds the claim. It lives
        as long as the reply that request caches for the step."""
        key = self.keys.dip_claim(caller, call_sid, step)
        try:
            return bool(self.redis.set(key, "1", ex=self.reply_ttl, nx=True))
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer claiming {_safe(key)}: {exc}") from exc

    # ---- resume codes ---------------------------------------------------------------------
    def claim_code(self, code: str, caller: str, ttl: int) -> bool:
        """Issue resume ``code`` to ``caller`` for ``ttl`` seconds unless another caller holds it
        (SET NX)."""
        try:
            return bool(self.redis.set(self.keys.resume_code(code), caller, ex=ttl, nx=True))
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer claiming a resume code: {exc}") from exc

    def caller_by_code(self, code: str) -> str | None:
        """The caller key a resume code was issued to (the code stays issued)."""
        return self._get(self.keys.resume_code(code))

    def redeem_code(self, code: str) -> str | None:
        """Take resume ``code`` (GETDEL): of calls redeeming one code at once, one gets its caller."""
        try:
            return _text(self.redis.getdel(self.keys.resume_code(code)))
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer redeeming a resume code: {exc}") from exc

    def expire_code(self, code: str, ttl: int) -> None:
        """Let an issued code live ``ttl`` more seconds (from the end of its call); best-effort."""
        try:
            self.redis.expire(self.keys.resume_code(code), max(1, ttl))
        except STORE_UNAVAILABLE as exc:
            log.warning("could not shorten a resume code's life: %s", exc)

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
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer counting resume codes: {exc}") from exc
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
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer counting resume codes: {exc}") from exc

    def flow_source(self, version: str) -> str | None:
        """The YAML text of a flow version published with :meth:`save` (``publish``)."""
        return self._get(self.keys.flow_version(version))

    def _get(self, key: str) -> str | None:
        try:
            return _text(self.redis.get(key))
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not answer reading {_safe(key)}: {exc}") from exc
        except redis.ResponseError:
            return None

    def discard(self, caller: str) -> None:
        """Delete a caller's session (after it was found corrupt, for instance)."""
        self.delete(self.keys.session(caller))

    def delete(self, *keys: str) -> None:
        """Delete ``keys`` (the session a resume code moved from, for instance), key by key on a
        cluster, where they may live in several slots."""
        try:
            if self.cluster:
                for key in keys:
                    self.redis.delete(key)
            else:
                self.redis.delete(*keys)
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"Redis did not answer deleting {len(keys)} key(s): {exc}"
            ) from exc


_TAG = re.compile(r"\{([^}]*)\}")


def _safe(key: str) -> str:
    """``key`` fit for logs and error messages: the caller inside its hash tag is masked."""
    return _TAG.sub(lambda m: "{" + masked(m.group(1)) + "}", key)


def _text(value: Any) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _sequence(key: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SessionCorrupt(_safe(key), f"sequence number {raw!r} is not a number") from None


def _encode(session: Session) -> bytes:
    """The session's JSON document; orjson, unless the data holds what only json can write.

    A data dip's result is stored as it came, and json writes what orjson refuses (an integer
    beyond 64 bits, half of a surrogate pair). Such documents start with a space, so they are
    read back by json too, exactly.
    """
    data = session.to_dict()
    try:
        return orjson.dumps(data, default=str)
    except TypeError:
        return b" " + json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")


def _decode(key: str, raw: Any) -> Session:
    try:
        if raw[:1] in (b" ", " "):
            data = json.loads(raw)
        else:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:  # a document json wrote (before orjson was used)
                data = json.loads(raw)
        return Session.from_dict(data)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise SessionCorrupt(_safe(key), str(exc)) from None
