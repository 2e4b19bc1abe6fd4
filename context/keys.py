"""Every Redis key Omnivoice uses, built in one place.

Keys of one caller share the hash tag ``{caller}``, so the Lua script that saves a session, its
cached reply and its call marker touches one Redis Cluster slot. Inside the tag ``%``, ``{`` and
``}`` are percent-escaped (:func:`hash_tag`): the tag ends at the first ``}``, so no caller can
move its keys to another slot or split them, and distinct callers keep distinct keys (E.164
numbers and CallSids hold none of the three: their tag is the caller as it is). Counters that
every caller bumps and the event stream are sharded over several keys, so no single key (and no
single cluster node) takes all the traffic. The prefix is configurable so tests (and several
deployments on one Redis) never see each other's keys.
"""

from __future__ import annotations

from dataclasses import dataclass


def hash_tag(value: str) -> str:
    """``value`` fit to go inside a ``{hash tag}``, escaped so that distinct values stay distinct.

    Three ``in`` tests and no copy for the values nearly every key holds (E.164 numbers).
    """
    if "%" in value or "{" in value or "}" in value:
        return value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return value


@dataclass(frozen=True)
class Keys:
    """Key templates under one prefix (default ``omnivoice``)."""

    prefix: str = "omnivoice"

    def session(self, caller: str) -> str:
        """The hash holding a caller's session document, its sequence number and owning call."""
        return f"{self.prefix}:{{{hash_tag(caller)}}}:session"

    def flow_session(self, caller: str, flow: str) -> str:
        """A caller's progress in one flow, kept aside while they call another flow's number."""
        return f"{self.prefix}:{{{hash_tag(caller)}}}:session:flow:{flow}"

    def call_session(self, caller: str, call_sid: str) -> str:
        """The session of one live call set aside by another call from the same number.

        Under the caller's hash tag, so the script that sets it aside and the load that finds
        it touch one slot.
        """
        return f"{self.prefix}:{{{hash_tag(caller)}}}:session:{call_sid}"

    def reply(self, caller: str, call_sid: str, step: int) -> str:
        """The TwiML already sent for one step of one call (replayed if Twilio retries)."""
        return f"{self.prefix}:{{{hash_tag(caller)}}}:reply:{call_sid}:{step}"

    def dip_claim(self, caller: str, call_sid: str, step: int) -> str:
        """Claims one step of one call for the request that runs its side-effecting data dips.

        Under the caller's hash tag, beside the session and the reply the claim's holder saves.
        """
        return f"{self.prefix}:{{{hash_tag(caller)}}}:dip-claim:{call_sid}:{step}"

    def call(self, caller: str, call_sid: str) -> str:
        """Marks that ``call_sid`` had this caller's session (fences a superseded call).

        Under the caller's hash tag: the save script writes it with the session, in one slot.
        """
        return f"{self.prefix}:{{{hash_tag(caller)}}}:call:{call_sid}"

    def card(self, caller: str) -> str:
        """The customer card of a caller (see :mod:`context.history.card`), read with the session."""
        return f"{self.prefix}:{{{hash_tag(caller)}}}:card"

    def outbound_grant(self, grant_id: str) -> str:
        """Marks an outbound call's grant as used (its webhook URL starts one call only)."""
        return f"{self.prefix}:outbound-grant:{grant_id}"

    def outbound_pace(self, second: int, channel: str) -> str:
        """Outbound contacts on ``channel`` in one second (pacing, as Twilio's limits require)."""
        return f"{self.prefix}:outbound-pace:{channel}:{second}"

    def flow_version(self, version: str) -> str:
        """The YAML text of one flow version, so pinned calls survive a restart."""
        return f"{self.prefix}:flow:{version}"

    def resume_code(self, code: str) -> str:
        """A short code that lets a caller without caller ID resume a session."""
        return f"{self.prefix}:resume-code:{code}"

    def code_failures_of(self, source: str, minute: int) -> str:
        """Wrong resume codes keyed by one source (a caller key or CallSid) in one minute."""
        return f"{self.prefix}:{{{hash_tag(source)}}}:code-failures:{minute}"

    def code_failures(self, minute: int, shard: int) -> str:
        """One shard of the wrong resume codes keyed in one minute by everyone."""
        return f"{self.prefix}:code-failures:{minute}:{shard}"

    def code_prompts(self, minute: int, shard: int) -> str:
        """One shard of how many calls were asked for a resume code in one minute."""
        return f"{self.prefix}:code-prompts:{minute}:{shard}"

    def events(self, shard: int) -> str:
        """One shard of the event stream (see :mod:`context.event_stream`)."""
        return f"{self.prefix}:events:{shard}"

    def handoff(self, handoff_id: str) -> str:
        """One handoff bundle, by its id (see :mod:`context.handoffs`)."""
        return f"{self.prefix}:handoff:{{{hash_tag(handoff_id)}}}"

    def call_handoff(self, call_sid: str) -> str:
        """The latest handoff bundle of one call, by its CallSid."""
        return f"{self.prefix}:call-handoff:{{{hash_tag(call_sid)}}}"

    def agent_feed(self) -> str:
        """The agents' live feed (see :mod:`context.agent_feed`): what consoles show.

        One stream, not sharded: it takes handoffs, queue and agent events (a few per transfer),
        never every webhook's events.
        """
        return f"{self.prefix}:agent-feed"

    def take_claim(self, call_sid: str, handoff_id: str) -> str:
        """Which agent is taking one handoff of a call from the console (one agent at a time)."""
        return f"{self.prefix}:take:{{{hash_tag(call_sid)}}}:{handoff_id}"

    def login_failures(self, who: str, minute: int) -> str:
        """Failed console logins for one agent name or one client address in one minute."""
        return f"{self.prefix}:{{{hash_tag(who)}}}:login-failures:{minute}"

    def link(self, link_id: str) -> str:
        """What one page link points at (see :mod:`context.links`)."""
        return f"{self.prefix}:link:{{{hash_tag(link_id)}}}"

    def message_claim(self, key: str) -> str:
        """Whether one message (by its idempotency key) is being sent or was sent."""
        return f"{self.prefix}:message:{{{hash_tag(key)}}}"

    def submission(self, link_id: str, digest: str) -> str:
        """One page submission already taken (a second, identical one changes nothing)."""
        return f"{self.prefix}:link:{{{hash_tag(link_id)}}}:submitted:{digest}"

    def text_reply(self, caller: str, message_sid: str) -> str:
        """The reply already sent to one inbound text (replayed if Twilio retries its webhook).

        Under the sender's hash tag, like the rest of what is kept about them.
        """
        return f"{self.prefix}:{{{hash_tag(caller)}}}:text-reply:{message_sid}"

    def health(self, tag: str) -> str:
        """A short-lived key ``/healthz`` writes to prove a node accepts writes (``tag``: which)."""
        return f"{self.prefix}:health:{{{hash_tag(tag)}}}"
