"""The flow's clock and business hours: ``timezone``, ``hours``, ``now`` and ``open_now``."""

from __future__ import annotations

import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ivr import engine, hours
from ivr.errors import FlowLoadError
from ivr.flow import Flow, load_flow_text
from ivr.schema import flow_json_schema
from ivr.turn import Say, Turn

CALLER = "+14155550123"
NEW_YORK = ZoneInfo("America/New_York")

AFTER_HOURS = """\
timezone: America/New_York
hours:
  weekly:
    mon-fri: 09:00-17:30
    sat: [10:00-12:00, 13:00-16:00]
    sun: closed
  holidays:
    "2026-12-25": Christmas Day
    2027-01-01: New Year's Day
  exceptions:
    2026-12-24: 09:00-13:00
start: welcome
nodes:
  welcome:
    say: It is {{ now.time }} on {{ now.weekday }}.
    branch:
      - if: holiday
        then: holiday
      - if: open_now
        then: open
    next: closed
  holiday:
    say: "We are closed for {{ holiday }}. We open again on {{ opens_next.date }} at {{ opens_next.time }}."
    hangup: true
  open:
    say: We are open.
    hangup: true
  closed:
    say: We are closed. We open again on {{ opens_next.weekday }} at {{ opens_next.time }}.
    hangup: true
"""


def flow_of(text: str) -> Flow:
    return load_flow_text(textwrap.dedent(text), "hours.yaml", "hours")


def at(text: str, zone: ZoneInfo = NEW_YORK) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def call_at(flow: Flow, when: str) -> list[str]:
    turn = engine.start(flow, caller=CALLER, call_sid="CA1", at=at(when))
    return said(turn)


def said(turn: Turn) -> list[str]:
    return [action.text for action in turn.actions if isinstance(action, Say)]


@pytest.mark.parametrize(
    ("when", "heard"),
    [
        ("2026-12-21T09:00", ["It is 09:00 on mon.", "We are open."]),
        ("2026-12-21T17:29", ["It is 17:29 on mon.", "We are open."]),
        (
            "2026-12-21T17:30",
            ["It is 17:30 on mon.", "We are closed. We open again on tue at 09:00."],
        ),
        (
            "2026-12-21T08:59",
            ["It is 08:59 on mon.", "We are closed. We open again on mon at 09:00."],
        ),
        (
            "2026-12-26T12:30",
            ["It is 12:30 on sat.", "We are closed. We open again on sat at 13:00."],
        ),
        (
            "2026-12-26T16:00",
            ["It is 16:00 on sat.", "We are closed. We open again on mon at 09:00."],
        ),
        (
            "2026-12-27T11:00",
            ["It is 11:00 on sun.", "We are closed. We open again on mon at 09:00."],
        ),
    ],
)
def test_weekly_hours_decide_open_now_in_the_flow_time_zone(when: str, heard: list[str]) -> None:
    assert call_at(flow_of(AFTER_HOURS), when) == heard


def test_an_exception_shortens_a_day_and_a_holiday_closes_one_with_its_name() -> None:
    flow = flow_of(AFTER_HOURS)
    assert call_at(flow, "2026-12-24T12:59")[-1] == "We are open."
    assert call_at(flow, "2026-12-24T18:00")[-1] == "We are closed. We open again on sat at 10:00."
    assert call_at(flow, "2026-12-25T11:00")[-1] == (
        "We are closed for Christmas Day. We open again on 2026-12-26 at 10:00."
    )
    assert call_at(flow, "2027-01-01T10:00")[-1].startswith("We are closed for New Year's Day.")


def test_the_same_instant_is_judged_in_the_flow_zone_not_utc() -> None:
    flow = flow_of(AFTER_HOURS)
    # 23:00 UTC on a Monday is 18:00 in New York: closed there, though 23:00 is no hour of UTC's.
    utc = ZoneInfo("UTC")
    turn = engine.start(flow, caller=CALLER, call_sid="CA1", at=at("2026-12-21T16:00", utc))
    assert said(turn) == ["It is 11:00 on mon.", "We are open."]
    turn = engine.start(flow, caller=CALLER, call_sid="CA1", at=at("2026-12-21T23:00", utc))
    assert said(turn)[0] == "It is 18:00 on mon."


def test_now_follows_the_time_of_each_turn_not_of_the_call_start() -> None:
    flow = flow_of(
        """\
        timezone: Europe/Madrid
        start: ask
        nodes:
          ask:
            gather: {prompt: "It is {{ now.time }}. Press 1."}
            next: told
          told:
            say: "Now it is {{ now.time }}, {{ now.date }} ({{ now.timezone }}): {{ now }}."
            hangup: true
        """
    )
    madrid = ZoneInfo("Europe/Madrid")
    first = engine.start(flow, caller=CALLER, call_sid="CA1", at=at("2026-07-01T09:58", madrid))
    assert first.actions[-1].prompt[0].text == "It is 09:58. Press 1."  # type: ignore[attr-defined]
    answer = engine.Answer("1", None, None, at=at("2026-07-01T10:01", madrid))  # type: ignore[attr-defined]
    second = engine.step(flow, first.session, answer)
    assert said(second) == [
        "Now it is 10:01, 2026-07-01 (Europe/Madrid): 2026-07-01T10:01:00+02:00."
    ]


def test_a_flow_without_timezone_tells_utc_and_a_stored_now_is_plain_text() -> None:
    flow = flow_of(
        """\
        start: mark
        nodes:
          mark:
            set: {called_at: "{{ now }}", hour: "{{ now.hour }}", late: "{{ now.hour >= 17 }}"}
            say: "{{ called_at }}"
            hangup: true
        """
    )
    turn = engine.start(
        flow, caller=CALLER, call_sid="CA1", at=at("2026-12-21T18:30", ZoneInfo("UTC"))
    )
    variables = turn.session.variables
    assert variables == {"called_at": "2026-12-21T18:30:00+00:00", "hour": 18, "late": True}
    assert type(variables["called_at"]) is str
    assert said(turn) == ["2026-12-21T18:30:00+00:00"]


def test_open_until_midnight_carries_over_and_open_now_is_false_at_closing() -> None:
    spec = hours.HoursSpec.model_validate(
        {"weekly": {"fri": ["18:00-24:00"], "sat": "00:00-02:00", "sun": "00:00-24:00"}}
    )
    friday = datetime(2026, 12, 25, 23, 0, tzinfo=NEW_YORK)
    assert hours.clock_variables("America/New_York", spec, friday.timestamp())["open_now"] is True
    # The 00:00 Saturday opening continues Friday night's: the next opening is Sunday's.
    following = hours.next_opening(spec, NEW_YORK, friday)
    assert following == datetime(2026, 12, 27, 0, 0, tzinfo=NEW_YORK)
    closing = datetime(2026, 12, 26, 2, 0, tzinfo=NEW_YORK)
    found = hours.clock_variables("America/New_York", spec, closing.timestamp())
    assert found["open_now"] is False
    assert found["opens_next"] == "2026-12-27T00:00:00-05:00"


def test_no_opening_within_two_weeks_leaves_opens_next_unset() -> None:
    spec = hours.HoursSpec.model_validate({"weekly": {"mon-sun": "closed"}})
    found = hours.clock_variables(None, spec, 0.0)
    assert found["open_now"] is False
    assert "opens_next" not in found and "holiday" not in found


@pytest.mark.parametrize(
    ("key", "days"),
    [
        ("mon", ["mon"]),
        ("mon-fri", ["mon", "tue", "wed", "thu", "fri"]),
        ("fri-mon", ["fri", "sat", "sun", "mon"]),
    ],
)
def test_weekly_keys_name_a_day_or_a_range_that_may_wrap(key: str, days: list[str]) -> None:
    assert hours.days_of(key) == days


def problems_of(text: str) -> list[str]:
    with pytest.raises(FlowLoadError) as caught:
        flow_of(text)
    return [str(problem) for problem in caught.value.problems]


SIMPLE = """\
{head}
start: a
nodes:
  a:
    say: hello
    hangup: true
"""


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            "timezone: America/New_Yrok",
            "hours.yaml:1:11: error: timezone: 'America/New_Yrok' is not an IANA time zone such as "
            "America/New_York or Europe/Madrid. Did you mean 'America/New_York'?",
        ),
        (
            "hours:\n  weekly:\n    mon: 9-17",
            "hours.yaml:3:10: error: hours.weekly.mon: '9-17' is not opening hours: write a range such as 09:00-17:30 "
            "(24-hour clock), a list of ranges, or closed.",
        ),
        (
            "hours:\n  weekly:\n    mon: 17:00-09:00",
            "hours.yaml:3:10: error: hours.weekly.mon: '17:00-09:00' closes before it opens: a range past midnight is two, "
            "one on each day (22:00-24:00, then 00:00-02:00 on the next).",
        ),
        (
            "hours:\n  weekly:\n    mon: [09:00-12:00, 11:00-13:00]",
            "hours.yaml:3:10: error: hours.weekly.mon: the ranges 09:00-12:00 and 11:00-13:00 overlap.",
        ),
        (
            "hours:\n  weekly:\n    mon: 09:00-25:00",
            "hours.yaml:3:10: error: hours.weekly.mon: '09:00-25:00' is not a time of day: hours go 00-23 (or 24:00 to close).",
        ),
        (
            "hours:\n  weekly:\n    mon-fri: 09:00-17:00\n    fri: 10:00-12:00",
            "hours.yaml:2:3: error: hours: fri is in both 'mon-fri' and 'fri' of weekly.",
        ),
        (
            "hours:\n  weekly:\n    monday: 09:00-17:00",
            "hours.yaml:3:13: error: hours.weekly.monday: 'monday' is not a day of the week: "
            "write mon, tue, wed, thu, fri, sat or sun, or a range such as mon-fri.",
        ),
        (
            "hours:\n  weekly:\n    mon: 09:00-17:00\n  holidays:\n    2026-02-30: Nope",
            "hours.yaml:5:17: error: hours.holidays.2026-02-30: '2026-02-30' is not a date: "
            "write it as YYYY-MM-DD (2026-12-25).",
        ),
        (
            "hours:\n  weekly: {mon: 09:00-17:00}\n  holidays: {2026-12-25: Xmas}\n"
            "  exceptions: {2026-12-25: closed}",
            "hours.yaml:2:3: error: hours: 2026-12-25 is both a holiday and an exception: a holiday is closed "
            "all day; keep it in one of the two.",
        ),
    ],
)
def test_bad_time_zones_and_hours_are_refused_with_their_place(head: str, expected: str) -> None:
    found = problems_of(SIMPLE.format(head=head))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_open_now_in_a_flow_without_hours_is_a_load_error() -> None:
    found = problems_of(
        """\
        start: a
        nodes:
          a:
            say: "{% if holiday %}Closed today.{% endif %}"
            branch:
              - if: open_now and not vip
                then: b
          b:
            hangup: true
        """
    )
    assert found == [
        "hours.yaml:4:10: error: The variable holiday comes from the flow's business hours, and this flow has no "
        "hours: block (weekly opening hours, holidays, exceptions).",
        "hours.yaml:6:13: error: The variable open_now comes from the flow's business hours, and this flow has no "
        "hours: block (weekly opening hours, holidays, exceptions).",
    ]


def test_the_json_schema_describes_timezone_and_hours() -> None:
    schema = flow_json_schema()
    props = schema["properties"]
    assert props["timezone"]["anyOf"][0]["type"] == "string"
    spec = schema["$defs"]["HoursSpec"]
    assert set(spec["properties"]) == {"weekly", "holidays", "exceptions"}
    weekly = spec["properties"]["weekly"]
    assert weekly["additionalProperties"] is False
    assert list(weekly["patternProperties"]) == [hours.DAY_KEY_PATTERN]


def test_the_json_schema_accepts_hours_and_refuses_what_the_loader_refuses() -> None:
    import jsonschema

    from ivr.yamlsource import parse

    schema = flow_json_schema()
    data, _ = parse(AFTER_HOURS, "hours.yaml")
    jsonschema.validate(data, schema)
    for bad in ({"monday": "09:00-17:00"}, {"mon": "9-5"}):
        data["hours"]["weekly"] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_a_flow_that_never_reads_the_clock_skips_it() -> None:
    quiet = flow_of("start: a\nnodes:\n  a: {say: Call us now., hangup: true}\n")
    assert quiet.uses_clock is False
    assert flow_of(AFTER_HOURS).uses_clock is True
    late = flow_of(
        "start: a\nnodes:\n  a:\n    branch: [{if: now.hour >= 17, then: b}]\n    next: b\n"
        "  b: {hangup: true}\n"
    )
    assert late.uses_clock is True
