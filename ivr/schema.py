"""The flow schema: typed, frozen pydantic models of what a designer may write in ``flows/*.yaml``.

A flow is a map of named nodes. A node does its parts in a fixed order: ``set`` variables, run an
``http`` data dip, speak (``say``/``play``/``pause``), then one of ``gather`` (wait for the caller),
``transfer``, ``hangup``, ``branch`` or move on with ``next``/``goto``. The models reject unknown
keys, so a typo is an error with its position rather than a silently ignored line.
:func:`flow_json_schema` exports the same models as JSON Schema for editor autocompletion.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ivr import regex_words
from ivr.durations import DURATION_PATTERN, parse_duration
from ivr.hours import HoursSpec, TimeZone
from ivr.languages import MessagesSpec
from ivr.states import ConcurrentCalls

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
            "description": "Seconds, or a duration such as 5s, 500ms, 30m.",
        }
    ),
]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]
VarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
# A variable, or a path into one that holds a mapping (a data dip's result): ``arrangement.dob``.
VarPath = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$", max_length=200)
]


class Model(BaseModel):
    """Base of every schema model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SayPart(Model):
    """Speak text with Twilio's text-to-speech; ``text`` may use ``{{ variables }}``."""

    say: str = Field(min_length=1)
    voice: str | None = None
    language: str | None = None
    loop: int = Field(default=1, ge=1, le=10)


class PlayPart(Model):
    """Play an audio file by URL."""

    play: str = Field(min_length=1)
    loop: int = Field(default=1, ge=1, le=10)


class PausePart(Model):
    """Stay silent for a while."""

    pause: Duration


PromptPart = str | SayPart | PlayPart | PausePart
Prompt = PromptPart | list[PromptPart]


class GatherSpec(Model):
    """Ask the caller something and wait for keypad digits and/or speech.

    ``max_attempts`` caps the failed answers of both kinds together; ``reprompt_mode`` says
    whether a reprompt leads into the question again (``before``) or stands in for it
    (``replace``).
    """

    prompt: Prompt | None = None
    input: list[Literal["dtmf", "speech"]] = Field(
        default_factory=lambda: ["dtmf"],  # type: ignore[arg-type]
        min_length=1,
    )
    num_digits: int | None = Field(default=None, ge=1, le=64)
    finish_on_key: str | None = Field(default=None, pattern=r"^[0-9#*]?$")
    timeout: Duration = 5.0
    speech_timeout: Literal["auto"] | Duration | None = None
    hints: list[str] = Field(default_factory=list)
    language: str | None = None
    min_confidence: float = Field(default=0.4, ge=0.0, le=1.0)
    # How many failed answers (no_input and no_match together) the node takes before the call
    # goes to the failing kind's ``then``, besides each kind's own ``retries``.
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    # A reprompt is played before the question (``before``) or instead of it (``replace``).
    reprompt_mode: Literal["before", "replace"] = "before"

    @field_validator("input", mode="before")
    @classmethod
    def _split_input(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(",", " ").split()
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_range(cls, value: float) -> float:
        if not 1 <= value <= 60:
            raise ValueError("gather timeout must be between 1s and 60s.")
        return value


class ValidateSpec(Model):
    """Checks an answer must pass before it is accepted; a failure is a no-match."""

    pattern: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    choices: list[str] | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(regex_words.explain(value, exc)) from None
            if (escaped := regex_words.escaped_control(value)) is not None:
                raise ValueError(escaped)
        return value

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(item) for item in value]
        return value


class RetrySpec(Model):
    """What happens when the caller says nothing (no_input) or nothing usable (no_match).

    The caller hears ``reprompts[attempt]`` (or ``reprompt``) and is asked again, up to ``retries``
    times; after that the call goes to ``then``.
    """

    retries: int = Field(default=2, ge=0, le=10)
    reprompt: Prompt | None = None
    reprompts: list[Prompt] | None = None
    then: NodeName | None = None


FormValue = str | int | float | bool


class HttpSpec(Model):
    """A data dip: call an HTTP JSON API and keep the answer in a variable.

    The request body is ``json`` (any value) or ``form`` (``name: value`` pairs sent as
    ``application/x-www-form-urlencoded``, as many older back ends expect).
    """

    url: str = Field(min_length=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    json_body: Any = Field(default=None, alias="json")
    form: dict[str, FormValue | None] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 3.0
    save_as: VarName | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout_range(cls, value: float) -> float:
        if not 0 < value <= 10:
            raise ValueError(
                "http timeout must be more than 0 and at most 10s: Twilio gives a webhook 15s."
            )
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpSpec:
        if self.form is not None and self.json_body is not None:
            raise ValueError("a data dip sends json or form, not both.")
        if self.form is not None and self.method == "GET":
            raise ValueError(
                "a form is sent as the request body, which GET has none of: add method: POST "
                "(or PUT, PATCH), or put the values in the url's query."
            )
        return self


class BranchCase(Model):
    """One case of a branch: go to ``then`` when the expression ``if`` is true."""

    when: str = Field(alias="if", min_length=1)
    then: NodeName


TransferOutcome = Literal["no_answer", "busy", "queue_full", "waited_too_long", "failed"]
"""How a transfer can fail to reach a person, each routable to a node with ``transfer.on``."""

_SIP_URI = re.compile(r"^sips?:[^\s@]+@[^\s@?;]+(:[0-9]{1,5})?(;[^\s?]*)?$")
_CLIENT_IDENTITY = re.compile(r"^[A-Za-z0-9_.@\-]{1,121}$")
_WORKFLOW_SID = re.compile(r"^WW[0-9a-fA-F]{32}$")


class TransferSpec(Model):
    """Hand the caller to a person: a queue, a phone number, a client (agent app) or a SIP URI.

    ``reason`` (a template) says why, for the agent; ``context`` names extra variables for the
    handoff bundle; ``whisper`` overrides the sentence a number transfer reads to the agent
    before connecting. A queue plays ``hold`` (``{{ queue.position }}``, ``{{ queue.wait }}``)
    and ``hold_music`` while the caller waits, for at most ``max_wait``; ``workflow`` routes it
    through a TaskRouter workflow. ``on`` sends each way of not reaching a person to a node.
    """

    queue: str | None = Field(default=None, min_length=1, max_length=64)
    number: str | None = None
    client: str | None = None
    sip: str | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=200)
    context: list[VarPath] = Field(default_factory=list)
    timeout: Duration = 30.0
    whisper: str | None = Field(default=None, min_length=1, max_length=300)
    hold: Prompt | None = None
    hold_music: str | None = Field(default=None, min_length=1)
    max_wait: Duration | None = None
    workflow: str | None = None
    on: dict[TransferOutcome, NodeName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> TransferSpec:
        targets = [k for k in ("queue", "number", "client", "sip") if getattr(self, k) is not None]
        if len(targets) != 1:
            raise ValueError(
                "a transfer needs exactly one of queue, number, client or sip"
                + (f", not {targets}." if targets else ".")
            )
        queued = self.queue is not None
        for key in ("hold", "hold_music", "max_wait", "workflow"):
            if getattr(self, key) is not None and not queued:
                raise ValueError(f"{key} only makes sense for a transfer to a queue.")
        if self.whisper is not None and self.number is None:
            raise ValueError("whisper only makes sense for a transfer to a number.")
        waits = {"queue_full", "waited_too_long"} & set(self.on)
        if waits and not queued:
            raise ValueError(f"on {sorted(waits)[0]} only happens to a transfer to a queue.")
        if "waited_too_long" in self.on and self.max_wait is None:
            raise ValueError("on waited_too_long needs a max_wait to wait for.")
        calls = {"no_answer", "busy"} & set(self.on)
        if calls and queued:
            raise ValueError(
                f"on {sorted(calls)[0]} only happens to a transfer that dials (number, client, "
                "sip); a queue has queue_full, waited_too_long and failed."
            )
        return self

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = phonenumbers.parse(str(value), None)
            if not phonenumbers.is_possible_number(parsed):
                raise phonenumbers.NumberParseException(0, "impossible number")
        except phonenumbers.NumberParseException:
            raise ValueError(
                f"{value!r} is not a phone number in E.164 form (+14155550100)."
            ) from None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("client")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        if value is not None and not _CLIENT_IDENTITY.match(value):
            raise ValueError(
                f"{value!r} is not a client identity: up to 121 letters, digits and _ . @ -."
            )
        return value

    @field_validator("sip")
    @classmethod
    def _sip_uri(cls, value: str | None) -> str | None:
        if value is not None and not _SIP_URI.match(value):
            raise ValueError(
                f"{value!r} is not a SIP URI such as sip:agent@pbx.example.com (no headers: "
                "the handoff id is added as X-Handoff-Id)."
            )
        return value

    @field_validator("workflow")
    @classmethod
    def _workflow_sid(cls, value: str | None) -> str | None:
        if value is not None and not _WORKFLOW_SID.match(value):
            raise ValueError(f"{value!r} is not a TaskRouter workflow SID (WW and 32 hex digits).")
        return value

    @field_validator("max_wait")
    @classmethod
    def _wait_range(cls, value: float | None) -> float | None:
        if value is not None and not 10 <= value <= 4 * 3600:
            raise ValueError("max_wait must be between 10s and 4h.")
        return value

    @field_validator("timeout")
    @classmethod
    def _ring_range(cls, value: float) -> float:
        if not 5 <= value <= 600:
            raise ValueError("transfer timeout (how long to ring) must be between 5s and 600s.")
        return value


class RecordSpec(Model):
    """Record a message after an optional beep (voicemail): ``<Record>``.

    The recording ends after ``max_length``, after ``timeout`` of silence, or when the caller
    presses a key of ``finish_on_key``; its URL, duration and the key pressed are kept on the
    session (and in the variable ``save_as``: ``{url, duration, digits}``), and the call goes
    on to ``next``. ``transcribe`` asks Twilio for a transcription (English, up to 2 minutes).
    """

    max_length: Duration = 120.0
    finish_on_key: str = Field(default="1234567890*#", pattern=r"^[0-9#*]*$", max_length=12)
    beep: bool = True
    timeout: Duration = 5.0
    transcribe: bool = False
    save_as: VarName | None = None

    @field_validator("max_length")
    @classmethod
    def _length_range(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("record max_length must be between 1s and 1h.")
        return value

    @field_validator("timeout")
    @classmethod
    def _silence_range(cls, value: float) -> float:
        if not 1 <= value <= 60:
            raise ValueError("record timeout (silence that ends it) must be between 1s and 60s.")
        return value

    @model_validator(mode="after")
    def _transcribable(self) -> RecordSpec:
        if self.transcribe and self.max_length > 120:
            raise ValueError("transcribe works on recordings of at most 2 minutes: max_length: 2m.")
        return self


class CallbackSpec(Model):
    """Record that the caller wants a call back (it shows in the agent console)."""

    reason: str | None = Field(default=None, min_length=1, max_length=200)


BlockName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]
PageName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]
EmailAddress = Annotated[str, Field(min_length=3, max_length=320)]


class SendSmsSpec(Model):
    """A text to send when the node is entered (off the call's path, through the job queue).

    ``to`` is a template (default: the caller's own number); ``body`` may hold
    ``{{ link('page') }}``, a signed link to one of the flow's ``pages:``.
    """

    to: str | None = Field(default=None, min_length=1)
    body: str = Field(min_length=1, max_length=1600)


class SendEmailSpec(Model):
    """An email to send when the node is entered: ``text`` and optional ``html`` bodies, both
    templates that may hold ``{{ link('page') }}``; ``to`` is a template (an address the flow
    collected, or the customer's)."""

    to: str = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)
    html: str | None = Field(default=None, min_length=1)


class WaitForSpec(Model):
    """Keep the caller on the line (hold prompts) until a page is submitted or time runs out.

    A submission while the call is live redirects the call to ``on_submit`` at once; a key
    pressed while waiting, or ``timeout`` passing, goes to ``on_timeout``.
    """

    page: PageName
    timeout: Duration = 180.0
    on_submit: NodeName
    on_timeout: NodeName
    hold: Prompt | None = None  # repeated while waiting (default: a built-in sentence)
    every: Duration = 10.0  # seconds of silence between hold prompts

    @field_validator("timeout", "every")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 1:
            raise ValueError("it must be at least 1s.")
        return value


class PageFieldSpec(Model):
    """One input of a page's form."""

    label: str = Field(min_length=1, max_length=200)
    type: Literal["text", "email", "tel", "number", "date", "textarea"] = "text"
    required: bool = True
    pattern: str | None = None  # a regular expression the whole value must match
    min_length: int | None = Field(default=None, ge=0)
    max_length: int = Field(default=200, ge=1, le=2000)
    hint: str | None = Field(default=None, max_length=300)  # a sentence under the label
    error: str | None = Field(default=None, max_length=300)  # what a failed check says


class PageChoicesSpec(Model):
    """A list to pick one item from (a radio group), made from a list the flow holds.

    ``items`` names the list (a variable or a path into a data dip's result); ``value`` and
    ``label`` are templates rendered once per item, with the item as ``item``.
    """

    field: VarName = "choice"
    items: VarPath
    value: str = Field(min_length=1)
    label: str = Field(min_length=1)
    required: bool = True
    empty: str | None = Field(default=None, max_length=300)  # shown when the list is empty


class PageSpec(Model):
    """A web page behind a signed link (``{{ link('id') }}``), sharing the caller's session.

    ``content`` is a template; a page may offer ``choices``, a form of ``fields``, both or
    neither. A submission sets ``save_as`` (default: the page's id) to the values, for the flow
    and the call to use (``{{ rebooking.flight }}``).
    """

    title: str = Field(min_length=1, max_length=200)
    content: str | None = None
    choices: PageChoicesSpec | None = None
    fields: dict[VarName, PageFieldSpec] = Field(default_factory=dict)
    submit: str = Field(default="Send", min_length=1, max_length=60)
    done: str | None = None  # what the page says once submitted (a template)
    save_as: VarName | None = None
    expires: Duration = 3600.0  # how long a link to this page works

    @model_validator(mode="after")
    def _coherent(self) -> PageSpec:
        if self.choices and self.choices.field in self.fields:
            raise ValueError(
                f"the choice and a field are both named {self.choices.field!r}; rename one."
            )
        return self


class SmsSpec(Model):
    """What the flow answers to texts sent to its number (``POST /sms``).

    ``replies`` maps what a caller may text (matched without case or surrounding spaces, e.g.
    ``"1"``, ``"confirm"``; not STOP, START or HELP words, which are always theirs) to the node
    it takes them to; ``otherwise`` answers a known caller's
    text that matches none; ``unknown`` answers a sender with no conversation in this flow;
    ``help`` answers HELP.
    """

    replies: dict[str, NodeName] = Field(default_factory=dict)
    otherwise: str | None = Field(default=None, min_length=1, max_length=1600)
    unknown: str | None = Field(default=None, min_length=1, max_length=1600)
    help: str | None = Field(default=None, min_length=1, max_length=1600)


class Node(Model):
    """One step of a call flow."""

    description: str | None = None
    topic: str | None = Field(default=None, min_length=1, max_length=200)
    checkpoint: bool = False
    verified: bool = False
    set: dict[VarName, Any] | None = None
    http: HttpSpec | None = None
    on_error: NodeName | None = None
    say: Prompt | None = None
    play: str | None = None
    pause: Duration | None = None
    gather: GatherSpec | None = None
    on: dict[str, NodeName] | None = None
    validation: ValidateSpec | None = Field(default=None, alias="validate")
    save_as: VarName | None = None
    no_input: RetrySpec | None = None
    no_match: RetrySpec | None = None
    branch: list[BranchCase] | None = None
    transfer: TransferSpec | None = None
    callback: CallbackSpec | None = None
    record: RecordSpec | None = None
    send_sms: SendSmsSpec | None = None
    send_email: SendEmailSpec | None = None
    wait_for: WaitForSpec | None = None
    use: BlockName | None = None  # a reusable block (FLOWS_DIR/blocks/<name>.yaml)
    with_: dict[VarName, Any] | None = Field(default=None, alias="with")
    exits: dict[NodeName, NodeName] | None = None
    hangup: bool | None = None
    goto: NodeName | None = None
    next: NodeName | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Node:
        if self.use is not None:
            others = [
                k
                for k in type(self).model_fields
                if k not in ("use", "with_", "exits", "description", "topic")
                and getattr(self, k) not in (None, False)
            ]
            if others:
                raise ValueError(
                    f"a node that uses a block does only that (with its with and exits), not "
                    f"{others}; put the rest in a node before or after it."
                )
            return self
        if self.with_ is not None or self.exits is not None:
            raise ValueError("with and exits belong to a node that uses a block (use: ...).")
        kinds = ("gather", "transfer", "hangup", "record", "wait_for")
        endings = [k for k in kinds if getattr(self, k)]
        if len(endings) > 1:
            raise ValueError(
                f"a node can do only one of gather, transfer, hangup, record, wait_for, "
                f"not {endings}."
            )
        if self.wait_for and (self.next or self.goto or self.branch):
            raise ValueError(
                "a wait_for node goes on with its on_submit and on_timeout; "
                "remove next, goto and branch."
            )
        if self.record and self.branch:
            raise ValueError("a record node goes on with next; put the branch in its own node.")
        if self.goto and self.next:
            raise ValueError("use either goto or next, not both.")
        if not self.gather:
            for key in ("on", "validation", "save_as", "no_input", "no_match"):
                if getattr(self, key) is not None:
                    name = "validate" if key == "validation" else key
                    raise ValueError(f"{name} only makes sense on a node with a gather.")
        if self.on_error and not self.http:
            raise ValueError("on_error only makes sense on a node with an http data dip.")
        if (self.transfer or self.hangup) and (self.next or self.goto or self.branch):
            raise ValueError("a node that transfers or hangs up cannot also go to another node.")
        if self.gather and self.branch:
            raise ValueError("a gather node routes with on/next; put the branch in its own node.")
        return self

    @property
    def following(self) -> str | None:
        """The node after this one when nothing else decides (``next`` or ``goto``)."""
        return self.next or self.goto

    def targets(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every node name this node can lead to, with the path of the key that names it."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for key in ("next", "goto", "on_error"):
            if value := getattr(self, key):
                found.append(((key,), value))
        for key, target in (self.on or {}).items():
            found.append((("on", key), target))
        for key in ("no_input", "no_match"):
            retry = getattr(self, key)
            if retry is not None and retry.then:
                found.append(((key, "then"), retry.then))
        for i, case in enumerate(self.branch or []):
            found.append((("branch", i, "then"), case.then))
        for outcome, target in (self.transfer.on if self.transfer else {}).items():
            found.append((("transfer", "on", outcome), target))
        if self.wait_for:
            found.append((("wait_for", "on_submit"), self.wait_for.on_submit))
            found.append((("wait_for", "on_timeout"), self.wait_for.on_timeout))
        for exit_name, target in (self.exits or {}).items():
            found.append((("exits", exit_name), target))
        return found


class ResumeSpec(Model):
    """How a dropped call is resumed when the same caller calls back.

    Within ``within`` of the drop, the caller continues at the last checkpoint (after a "welcome
    back" question when ``ask`` is true; ``prompt`` may use ``{{ where }}``). A caller who was
    transferred goes to ``transferred`` if set. ``codes`` offers callers without caller ID a
    six-digit resume code. ``verify`` names the node that checks a caller whose number is not
    fully attested before sensitive variables come back (reaching a ``verified: true`` node).
    ``concurrent`` says what a call gets while another call from the same number is still live
    (lines behind one PBX share a number): ``separate``, a session of its own, or ``takeover``,
    the live call's session, which then ends the live call.
    """

    within: Duration = 1800.0
    ask: bool = True
    prompt: str | None = None
    transferred: NodeName | None = None
    codes: bool = False
    verify: NodeName | None = None
    concurrent: ConcurrentCalls = ConcurrentCalls.SEPARATE


class Defaults(Model):
    """Flow-wide defaults for every gather that does not set its own."""

    no_input: RetrySpec | None = None
    no_match: RetrySpec | None = None


class FlowSpec(Model):
    """A whole call flow, as written in one YAML file."""

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$", max_length=64)
    description: str | None = None
    numbers: list[str] = Field(default_factory=list)
    default: bool = False
    language: str = "en-US"
    voice: str | None = None
    timezone: TimeZone | None = None
    hours: HoursSpec | None = None
    messages: MessagesSpec | None = None
    resume: ResumeSpec = Field(default_factory=ResumeSpec)
    sensitive: list[VarPath] = Field(default_factory=list)
    defaults: Defaults = Field(default_factory=Defaults)
    fallback: NodeName | None = None
    start: NodeName
    nodes: dict[NodeName, Node] = Field(min_length=1)
    pages: dict[PageName, PageSpec] = Field(default_factory=dict)
    sms: SmsSpec | None = None

    @field_validator("numbers", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(item) for item in value]
        return value


def flow_json_schema() -> dict[str, Any]:
    """The JSON Schema of a flow file, for editors (YAML language servers) and CI checks."""
    schema = FlowSpec.model_json_schema(by_alias=True)
    _close_pattern_maps(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Omnivoice flow"
    return schema


def block_json_schema() -> dict[str, Any]:
    """The JSON Schema of a block file (``blocks/*.yaml``, see :mod:`ivr.blocks`)."""
    from ivr.blocks import BlockSpec  # the block models build on these

    schema = BlockSpec.model_json_schema(by_alias=True)
    _close_pattern_maps(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Omnivoice block"
    return schema


def _close_pattern_maps(node: Any) -> None:
    """Maps whose keys must match a pattern (node and variable names) refuse other keys too.

    Pydantic emits ``patternProperties`` alone, which lets an editor accept a node called
    ``9lives`` that the loader refuses.
    """
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)
