"""Every Redis key Omnivoice uses, built in one place.

Keys of one caller share the hash tag ``{caller}``, so the Lua script that saves a session and its
cached reply touches one Redis Cluster slot. The prefix is configurable so tests (and several
deployments on one Redis) never see each other's keys.
"""

from __future__ import annotations

from dataclasses import dataclass


def _tag(value: str) -> str:
    """Make ``value`` safe inside a ``{hash tag}``."""
    return value.replace("{", "(").replace("}", ")")


@dataclass(frozen=True)
class Keys:
    """Key templates under one prefix (default ``omnivoice``)."""

    prefix: str = "omnivoice"

    def session(self, caller: str) -> str:
        """The hash holding a caller's session document, its sequence number and owning call."""
        return f"{self.prefix}:{{{_tag(caller)}}}:session"

    def reply(self, caller: str, call_sid: str, step: int) -> str:
        """The TwiML already sent for one step of one call (replayed if Twilio retries)."""
        return f"{self.prefix}:{{{_tag(caller)}}}:reply:{call_sid}:{step}"

    def call(self, call_sid: str) -> str:
        """CallSid → caller index, for callbacks that arrive without a usable caller."""
        return f"{self.prefix}:call:{{{_tag(call_sid)}}}"

    def flow_version(self, version: str) -> str:
        """The YAML text of one flow version, so pinned calls survive a restart."""
        return f"{self.prefix}:flow:{version}"

    def resume_code(self, code: str) -> str:
        """A short code that lets a caller without caller ID resume a session."""
        return f"{self.prefix}:resume-code:{code}"

    def resume_code_failures(self, minute: int) -> str:
        """How many wrong resume codes were keyed in one minute, across all callers."""
        return f"{self.prefix}:resume-code-failures:{minute}"

    def health(self, tag: str) -> str:
        """A short-lived key ``/healthz`` writes to prove a node accepts writes (``tag``: which)."""
        return f"{self.prefix}:health:{{{_tag(tag)}}}"
