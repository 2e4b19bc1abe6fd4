"""The flow's clock: its time zone, its business hours, and what a call sees of them.

A flow may name an IANA ``timezone:`` and declare ``hours:``: weekly opening hours (``mon-fri:
09:00-17:30``, ``sat: [10:00-12:00, 13:00-16:00]``, ``sun: closed``), ``holidays`` (a date and
its name; closed all day) and ``exceptions`` (a date with hours of its own, such as a short
Christmas Eve). :func:`clock_variables` turns the time a turn happens (the ``at`` the service
passes, from its own clock) into the variables templates and conditions read: ``now`` in the
flow's zone, and with hours ``open_now``, ``holiday`` (its name, only on a holiday) and
``opens_next`` (the next opening within two weeks). The module is pure: it never reads a clock.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = "(?:" + "|".join(DAYS) + ")"
DAY_KEY_PATTERN = f"^{_DAY}(?:-{_DAY})?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_RANGE = re.compile(r"^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$")
_RANGE_PATTERN = r"^(closed|[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2})$"
LOOKAHEAD_DAYS = 14  # how far opens_next looks for the next opening
CLOCK_NAMES = frozenset({"open_now", "holiday", "opens_next"})  # need an hours: block

Span = tuple[int, int]  # minutes after midnight: opens at, closes at (up to 24:00 = 1440)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _span(text: str) -> Span:
    found = _RANGE.match(text.strip())
    if found is None:
        raise ValueError(
            f"{text!r} is not opening hours: write a range such as 09:00-17:30 (24-hour clock), "
            "a list of ranges, or closed."
        )
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{text!r} is not a time of day: hours go 00-23 (or 24:00 to close).")
    opens, closes = h1 * 60 + m1, h2 * 60 + m2
    if closes <= opens:
        raise ValueError(
            f"{text!r} closes before it opens: a range past midnight is two, one on each day "
            "(22:00-24:00, then 00:00-02:00 on the next)."
        )
    return opens, closes


def parse_opening(value: Any) -> tuple[Span, ...]:
    """One day's opening hours: ``closed``, a range ``09:00-17:30`` or a list of ranges."""
    if isinstance(value, tuple) and all(isinstance(item, tuple) for item in value):
        return value  # already parsed (a model copied)
    if value == "closed" or value == []:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise ValueError(
            "opening hours are closed, a range such as 09:00-17:30, or a list of them."
        )
    spans = sorted(_span(item) for item in items)
    for (o1, c1), (o2, c2) in pairwise(spans):
        if o2 < c1:
            raise ValueError(
                f"the ranges {_hhmm(o1)}-{_hhmm(c1)} and {_hhmm(o2)}-{_hhmm(c2)} overlap."
            )
    return tuple(spans)


Opening = Annotated[
    tuple[tuple[int, int], ...],
    BeforeValidator(parse_opening),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _RANGE_PATTERN},
                {"type": "array", "items": {"type": "string", "pattern": _RANGE_PATTERN}},
            ],
            "description": "closed, a range such as 09:00-17:30, or a list of ranges.",
        }
    ),
]


def _day_key(value: Any) -> Any:
    if isinstance(value, str) and not re.match(DAY_KEY_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a day of the week: write mon, tue, wed, thu, fri, sat or sun, "
            "or a range such as mon-fri."
        )
    return value


def _date_key(value: Any) -> Any:
    if isinstance(value, str):
        try:
            if not re.match(DATE_PATTERN, value):
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date: write it as YYYY-MM-DD (2026-12-25)."
            ) from None
    return value


DayKey = Annotated[
    str, BeforeValidator(_day_key), WithJsonSchema({"type": "string", "pattern": DAY_KEY_PATTERN})
]
DateKey = Annotated[
    str, BeforeValidator(_date_key), WithJsonSchema({"type": "string", "pattern": DATE_PATTERN})
]


def days_of(key: str) -> list[str]:
    """The weekdays a weekly key covers: ``mon-fri`` is five days, ``fri-mon`` wraps the week."""
    first, _, last = key.partition("-")
    start, end = DAYS.index(first), DAYS.index(last or first)
    count = (end - start) % 7 + 1
    return [DAYS[(start + i) % 7] for i in range(count)]


class HoursSpec(BaseModel):
    """Business hours: ``weekly`` opening hours, ``holidays`` (date: name), ``exceptions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _by_weekday: tuple[tuple[Span, ...], ...] = PrivateAttr(default=())

    weekly: dict[DayKey, Opening] = Field(min_length=1)
    holidays: dict[DateKey, Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=dict
    )
    exceptions: dict[DateKey, Opening] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> HoursSpec:
        seen: dict[str, str] = {}
        for key in self.weekly:
            for day in days_of(key):
                if day in seen:
                    raise ValueError(f"{day} is in both {seen[day]!r} and {key!r} of weekly.")
                seen[day] = key
        both = sorted(set(self.holidays) & set(self.exceptions))
        if both:
            raise ValueError(
                f"{both[0]} is both a holiday and an exception: a holiday is closed all day; "
                "keep it in one of the two."
            )
        return self

    def day(self, on: date) -> tuple[Span, ...]:
        """The opening hours on the date ``on``."""
        key = on.isoformat()
        if key in self.holidays:
            return ()
        if key in self.exceptions:
            return self.exceptions[key]
        return self._by_weekday[on.weekday()]

    def model_post_init(self, context: Any, /) -> None:
        """Spread the weekly keys (``mon-fri``) over the seven days once, at load."""
        by_day: dict[str, tuple[Span, ...]] = {}
        for key, spans in self.weekly.items():
            for day in days_of(key):
                by_day[day] = spans
        self._by_weekday = tuple(by_day.get(day, ()) for day in DAYS)


def check_timezone(value: str | None) -> str | None:
    """An IANA time zone name as written (``Europe/Madrid``), or a ``ValueError`` saying so."""
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(value, sorted(available_timezones()), n=1, cutoff=0.6)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(
            f"{value!r} is not an IANA time zone such as America/New_York or Europe/Madrid."
            + suggestion
        ) from None
    return value


TimeZone = Annotated[
    str,
    BeforeValidator(check_timezone),
    WithJsonSchema({"type": "string", "description": "An IANA time zone: America/New_York."}),
]


class Moment(str):
    """A time in the flow's zone: reads as ISO text, with parts for templates and conditions.

    ``{{ now }}`` is ``2026-12-24T18:00:00-05:00``; ``now.hour``, ``now.minute``, ``now.weekday``
    (``mon`` ... ``sun``), ``now.date`` (``2026-12-24``), ``now.time`` (``18:00``), ``now.day``,
    ``now.month``, ``now.year`` and ``now.timezone``. Stored in a variable it is its ISO text.
    """

    hour: int
    minute: int
    weekday: str
    date: str
    time: str
    day: int
    month: int
    year: int
    timezone: str

    def __new__(cls, moment: datetime, zone: str) -> Moment:
        made = super().__new__(cls, moment.isoformat(timespec="seconds"))
        made.hour, made.minute = moment.hour, moment.minute
        made.weekday = DAYS[moment.weekday()]
        made.date, made.time = moment.date().isoformat(), moment.strftime("%H:%M")
        made.day, made.month, made.year = moment.day, moment.month, moment.year
        made.timezone = zone
        return made


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def clock_variables(zone: str | None, hours: HoursSpec | None, at: float) -> dict[str, Any]:
    """What templates see of the time ``at`` (epoch seconds) in ``zone`` (default UTC)."""
    name = zone or "UTC"
    tz = _zone(name)
    moment = datetime.fromtimestamp(at, tz)
    found: dict[str, Any] = {"now": Moment(moment, name)}
    if hours is None:
        return found
    today = moment.date()
    minute = moment.hour * 60 + moment.minute
    found["open_now"] = any(opens <= minute < closes for opens, closes in hours.day(today))
    if (holiday := hours.holidays.get(today.isoformat())) is not None:
        found["holiday"] = holiday
    if (following := next_opening(hours, tz, moment)) is not None:
        found["opens_next"] = Moment(following, name)
    return found


def next_opening(hours: HoursSpec, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """When the business next opens after ``moment`` (within two weeks), else ``None``.

    While open, that is the opening after the current one closes.
    """
    minute = moment.hour * 60 + moment.minute
    # Open until midnight now: a 00:00 opening tomorrow is the same opening carried over.
    chained = any(opens <= minute < closes == 24 * 60 for opens, closes in hours.day(moment.date()))
    for offset in range(LOOKAHEAD_DAYS + 1):
        on = moment.date() + timedelta(days=offset)
        spans = hours.day(on)
        if offset and chained and not (spans and spans[0][0] == 0):
            chained = False
        for opens, closes in spans:
            if offset == 0 and opens <= minute:
                continue
            if chained and opens == 0:
                chained = closes == 24 * 60
                continue
            return datetime(on.year, on.month, on.day, opens // 60, opens % 60, tzinfo=tz)
    return None
