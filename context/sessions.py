"""The session store: one Redis hash per caller, saved with a compare-and-set.

A webhook makes at most two round trips: :meth:`SessionStore.load` (one pipeline: the session
and, for a step that may be a retry, the reply already sent for it) and :meth:`SessionStore.save`
(one pipeline: a Lua compare-and-set of the session and cached reply, plus the CallSid index).
The hash holds ``seq`` (bumped by every save; the compare-and-set fences racing writers),
``call`` (the CallSid that owns the session; older calls are fenced off) and ``doc`` (JSON).
Every write sets a TTL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis

from context.callers import masked
from context.keys import Keys
from context.redis_errors import STORE_UNAVAILABLE
from ivr.errors import SessionCorrupt, StoreUnavailable
from ivr.session import Session

_SAVE = """
local current = redis.call('HGET', KEYS[1], 'seq')
if (current or '0') ~= ARGV[1] then return -1 end
local seq = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'seq', seq, 'doc', ARGV[2], 'call', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
return seq
"""

_LOAD = """
local ok, fields = pcall(redis.call, 'HMGET', KEYS[1], 'seq', 'doc')
local reply = false
if #KEYS > 1 then
  local found, value = pcall(redis.call, 'GET', KEYS[2])
  if found and value then reply = value end
end
if not ok then return {false, false, reply, 'not a session hash'} end
return {fields[1], fields[2], reply, false}
"""

_T = TypeVar("_T")

REDIS_DOWN = STORE_UNAVAILABLE


@dataclass(frozen=True)
class Loaded:
    """What :meth:`SessionStore.load` found: the session (if any), its ``seq`` and a cached reply."""

    session: Session | None
    seq: int
    reply: str | None = None


class SessionStore:
    """Sessions of callers in Redis, keyed by caller (see :mod:`context.callers`)."""

    def __init__(
        self,
        connection: redis.Redis,
        keys: Keys | None = None,
        ttl: int = 86400,
        reply_ttl: int = 600,
    ) -> None:
        self.redis = connection
        self.keys = keys or Keys()
        self.ttl = ttl
        self.reply_ttl = reply_ttl
        self._sha = {source: hashlib.sha1(source.encode()).hexdigest() for source in (_SAVE, _LOAD)}

    def load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        """One round trip: the caller's session, and the reply cached for ``(call_sid, step)``.

        Raises:
            StoreUnavailable: Redis did not answer.
            SessionCorrupt: the stored document cannot be decoded.
        """
        key = self.keys.session(caller)
        keys = [key]
        if call_sid is not None and step is not None:
            keys.append(self.keys.reply(caller, call_sid, step))
        try:
            seq_raw, doc_raw, reply, problem = self._script(_LOAD, keys, ())
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"Redis did not answer loading {_safe(key)}: {exc}") from exc
        if problem:
            raise SessionCorrupt(_safe(key), _text(problem) or "unreadable")
        if seq_raw is None and doc_raw is None:
            return Loaded(None, 0)
        return Loaded(_decode(key, doc_raw), _sequence(key, seq_raw), _text(reply))

    def save(
        self,
        session: Session,
        expected_seq: int,
        reply: str | None = None,
        reply_step: int | None = None,
        index_call: bool = False,
        also_set: Sequence[tuple[str, str, int]] = (),
    ) -> int | None:
        """Store ``session`` if nobody saved since ``expected_seq``; return the new seq or ``None``.

        ``reply`` is cached under the session's call and ``reply_step`` (the step named in the
        request being answered) so a retried webhook gets the same answer; ``index_call`` also records
        CallSid → caller (once per call is enough); ``also_set`` (key, value, ttl) rides in the
        same round trip. These extra writes happen even when the compare-and-set loses, so they
        must be harmless then: the index and a flow version are true whoever wins, and a resume
        code whose announcement was never sent matches no session's ``resume_code``.
        """
        key = self.keys.session(session.caller)
        doc = _encode(session)
        step = session.step if reply_step is None else reply_step
        reply_key = self.keys.reply(session.caller, session.call_sid, step)
        args = (expected_seq, doc, session.call_sid, self.ttl, reply or "", self.reply_ttl)
        try:
            if index_call or also_set:
                results = self._save_pipeline(key, reply_key, args, session, index_call, also_set)
            else:  # the usual answer: one command, none of a pipeline's bookkeeping
                results = [self._script(_SAVE, [key, reply_key], args)]
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"Redis did not answer saving {_safe(key)}: {exc}") from exc
        seq = int(results[0])
        return None if seq < 0 else seq

    def _save_pipeline(
        self,
        key: str,
        reply_key: str,
        args: tuple[Any, ...],
        session: Session,
        index_call: bool,
        also_set: Sequence[tuple[str, str, int]],
    ) -> list[Any]:
        """The save script plus its extra writes, in one round trip."""

        def send() -> list[Any]:
            # EVALSHA straight away: redis-py's Script objects would add a SCRIPT EXISTS
            # round trip to every save.
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._sha[_SAVE], 2, key, reply_key, *args)
                if index_call:
                    pipe.set(self.keys.call(session.call_sid), session.caller, ex=self.ttl)
                for extra_key, value, ttl in also_set:
                    pipe.set(extra_key, value, ex=ttl)
                return pipe.execute()

        return self._with_script(_SAVE, send)

    def _script(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA in one command."""
        # execute_command: redis-py's evalsha() wrapper costs more than the command's own work.
        command = ("EVALSHA", self._sha[source], len(keys), *keys, *args)
        return self._with_script(source, lambda: self.redis.execute_command(*command))

    def _with_script(self, source: str, send: Callable[[], _T]) -> _T:
        """``send()``; if Redis does not know the script (yet, or after a restart), load it
        and send again."""
        try:
            return send()
        except redis.exceptions.NoScriptError:
            self.redis.script_load(source)
            return send()

    def caller_of(self, call_sid: str) -> str | None:
        """The caller key a call's session is stored under, from the CallSid index."""
        return self._get(self.keys.call(call_sid))

    def caller_by_code(self, code: str) -> str | None:
        """The caller key a resume code was issued to."""
        return self._get(self.keys.resume_code(code))

    def claim_code(self, code: str, caller: str) -> bool:
        """Issue resume ``code`` to ``caller`` unless another caller holds it (SET NX)."""
        try:
            return bool(self.redis.set(self.keys.resume_code(code), caller, ex=self.ttl, nx=True))
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"Redis did not answer claiming a resume code: {exc}") from exc

    def code_failures(self, now: float, add: int = 0) -> int:
        """Wrong resume codes keyed this minute by all callers (after adding ``add``)."""
        key = self.keys.resume_code_failures(int(now // 60))
        try:
            if not add:
                return int(self.redis.get(key) or 0)
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrby(key, add)
                pipe.expire(key, 120)
                return int(pipe.execute()[0])
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"Redis did not answer counting code failures: {exc}") from exc

    def flow_source(self, version: str) -> str | None:
        """The YAML text of a flow version published with :meth:`save` (``also_set``)."""
        return self._get(self.keys.flow_version(version))

    def _get(self, key: str) -> str | None:
        try:
            return _text(self.redis.get(key))
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"Redis did not answer reading {_safe(key)}: {exc}") from exc
        except redis.ResponseError:
            return None

    def discard(self, caller: str) -> None:
        """Delete a caller's session (after it was found corrupt, for instance)."""
        self.delete(self.keys.session(caller))

    def delete(self, *keys: str) -> None:
        """Delete ``keys`` (a used resume code and the session it moved from, for instance)."""
        try:
            self.redis.delete(*keys)
        except REDIS_DOWN as exc:
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
