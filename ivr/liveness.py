"""Whether a call is still live: when its next webhook is due at the latest.

Twilio posts a call's next webhook when the caller answers a gather, or when the gather gives up
waiting (the renderer's redirect). So after a reply, a call that is still connected is heard from
within the time it takes to play the reply, wait for input and send the request; a call that
stays silent longer has ended, whether or not its status callback ever came. :func:`live_until`
estimates that moment from the reply's actions, and :func:`is_live` reads it back.

The estimate errs long on purpose: taking a connected caller for gone would let a second call
from the same number (lines behind one PBX trunk share it) take over their session and cut them
off, while taking a dropped call for live a little too long only means that a redial within
that time starts afresh instead of resuming.
"""

from __future__ import annotations

from collections.abc import Iterable

from ivr.session import Session
from ivr.states import Status
from ivr.turn import Action, Gather, Pause, Play, Record, Say

SPOKEN_CHARACTERS_PER_SECOND = 10.0  # text-to-speech reads about 15; slow voices exist
PLAY_SECONDS = 120.0  # an audio file's length is not known here
LOOPS_FOREVER = 10  # a say or play with loop 0 repeats until the caller acts
SPEECH_SECONDS = 60.0  # the longest speech Twilio recognises in one gather
DIGITS_WITHOUT_LIMIT = 12  # digits a caller may key, each within the gather's timeout
WEBHOOK_GRACE = 20.0  # Twilio waits 15 s for a webhook's reply; the request travels too
LEGACY_LIVE_SECONDS = 120.0  # sessions saved before live_until: live this long after activity


def live_until(actions: Iterable[Action], now: float) -> float:
    """When a call that was just sent ``actions`` at ``now`` must have been heard from again."""
    return now + _quiet_seconds(actions) + WEBHOOK_GRACE


def is_live(session: Session, now: float) -> bool:
    """Whether ``session``'s call may still be connected and about to send its next webhook."""
    if session.status != Status.ACTIVE:
        return False  # ended, transferred to a person, or its status callback came
    until = session.live_until
    if until is None:
        until = session.updated_at + LEGACY_LIVE_SECONDS
    return now <= until


def _quiet_seconds(actions: Iterable[Action]) -> float:
    """How long Twilio may play and wait before it posts the next webhook (after a gather)."""
    total = 0.0
    for action in actions:
        if isinstance(action, Gather):
            total += sum(_playing_seconds(part) for part in action.prompt)
            return total + _waiting_seconds(action)
        if isinstance(action, Record):  # the message, then its action (or the redirect)
            return total + action.max_length + action.timeout
        if isinstance(action, Say | Play | Pause):
            total += _playing_seconds(action)
    return total


def _playing_seconds(action: Say | Play | Pause) -> float:
    if isinstance(action, Pause):
        return float(action.seconds)
    loops = action.loop if action.loop > 0 else LOOPS_FOREVER
    if isinstance(action, Play):
        return PLAY_SECONDS * loops
    return len(action.text) / SPOKEN_CHARACTERS_PER_SECOND * loops


def _waiting_seconds(gather: Gather) -> float:
    """The longest a gather waits: for every digit in turn, or for speech to start and end."""
    waits = [float(gather.timeout)]
    if "dtmf" in gather.input:
        waits.append(gather.timeout * float(gather.num_digits or DIGITS_WITHOUT_LIMIT))
    if "speech" in gather.input:
        end = gather.speech_timeout  # whole seconds, or "auto" (Twilio decides: a few seconds)
        after_speech = float(end) if end and end.isdigit() else 5.0
        waits.append(gather.timeout + SPEECH_SECONDS + after_speech)
    return max(waits)
