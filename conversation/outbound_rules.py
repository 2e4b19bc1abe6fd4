"""When the business may reach out first: quiet hours in the recipient's local time.

Pure functions: the recipient's time zone comes from the customer's record when known, else
from the number itself (``phonenumbers``' geography; a number spanning several zones, like a
North American mobile, takes the first, and every one of them is checked to be outside quiet
hours). The window is written ``21:00-08:00`` (``OUTBOUND_QUIET_HOURS``) and may wrap midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

from ivr.errors import ConfigError

SETTING = "OUTBOUND_QUIET_HOURS"


@dataclass(frozen=True)
class QuietHours:
    """A daily window (local time) in which nobody is called or texted first."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``21:00-08:00`` as a window.

        Raises:
            ConfigError: the text is not two ``HH:MM`` times joined by ``-``.
        """
        try:
            start_text, end_text = text.replace(" ", "").split("-")
            return cls(time.fromisoformat(start_text), time.fromisoformat(end_text))
        except ValueError:
            raise ConfigError(
                SETTING, text, "it must be two times of day, e.g. 21:00-08:00."
            ) from None

    def covers(self, moment: time) -> bool:
        """Whether ``moment`` (local) falls in the window."""
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def zones_of(number: str, customer_zone: str | None) -> list[str]:
    """The time zones to respect for ``number``: the customer's, else the number's own."""
    if customer_zone:
        return [customer_zone]
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return []
    return [z for z in number_zones.time_zones_for_number(parsed) if z != "Etc/Unknown"]


def quiet_refusal(
    number: str, customer_zone: str | None, window: QuietHours, now: float
) -> str | None:
    """Why ``number`` must not be contacted now, or ``None`` when it may be."""
    zones = zones_of(number, customer_zone)
    if not zones:
        return None  # no geography to go by: the business's own hours apply elsewhere
    moment = datetime.fromtimestamp(now, UTC)
    for name in zones:
        try:
            local = moment.astimezone(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue
        if window.covers(local.time()):
            return (
                f"it is {local:%H:%M} in {name}, inside quiet hours "
                f"({window.start:%H:%M}-{window.end:%H:%M}); try again after {window.end:%H:%M}"
            )
    return None
