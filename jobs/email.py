"""Emails over SMTP with the standard library: one ``SMTP_URL``, a text and an HTML body.

``SMTP_URL`` is ``smtp://[user:pass@]host[:port]`` (plain, port 25), ``smtp+starttls://``
(STARTTLS, port 587) or ``smtps://`` (TLS from the start, port 465); ``SMTP_FROM`` is the From
address. Each email's Message-ID is derived from the message's idempotency key
(``<KEY@from-domain>``).

Unlike Twilio, an SMTP server cannot be asked whether it already took a message, so a job whose
worker died between handing the message over and recording it is sent again: at least once,
with the same Message-ID, which lets receiving systems drop the duplicate.

Errors: a 4xx reply, a refused or dropped connection and a timeout are :class:`Transient`; a 5xx
reply (an unknown mailbox, a refused sender, failed authentication) is :class:`Permanent`.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from ivr.errors import ConfigError
from jobs.outcome import Permanent, Sent, Transient

SETTING = "SMTP_URL"
PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TIMEOUT = 10.0


@dataclass(frozen=True)
class SmtpTarget:
    """A parsed ``SMTP_URL``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """Read ``SMTP_URL``.

    Raises:
        ConfigError: an unknown scheme, no host or a bad port (the password is never shown).
    """
    parts = urlsplit(url.strip())
    shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
    scheme = parts.scheme.lower()
    if scheme not in PORTS:
        raise ConfigError(
            SETTING, shown, "it must start with smtp://, smtp+starttls:// or smtps://."
        )
    try:
        port = parts.port or PORTS[scheme]
    except ValueError:
        raise ConfigError(SETTING, shown, "its port is not a number from 1 to 65535.") from None
    if not parts.hostname:
        raise ConfigError(SETTING, shown, "it names no host, as in smtp+starttls://host:587.")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SmtpTarget(scheme, parts.hostname, port, user, password)


def check_from(address: str | None, smtp_url: str | None) -> str | None:
    """``SMTP_FROM``, required with ``SMTP_URL``.

    Raises:
        ConfigError: it is missing while ``SMTP_URL`` is set, or is not an address.
    """
    value = (address or "").strip()
    if not smtp_url:
        return value or None
    if not value:
        raise ConfigError("SMTP_FROM", None, "SMTP_URL is set, so emails need a From address.")
    if "@" not in value.rpartition("<")[2]:
        raise ConfigError(
            "SMTP_FROM", value, "it must be an email address, as in Omnivoice <hi@example.com>."
        )
    return value


class EmailSender:
    """Sends emails through the SMTP server of ``SMTP_URL``."""

    def __init__(self, target: SmtpTarget, from_address: str, timeout: float = TIMEOUT) -> None:
        self.target = target
        self.from_address = from_address
        self.timeout = timeout

    def message_id(self, key: str) -> str:
        """The Message-ID of message ``key``: the same for every attempt."""
        domain = self.from_address.rpartition("@")[2].strip(" >") or "omnivoice.invalid"
        return f"<{key}@{domain}>"

    def compose(self, to: str, subject: str, text: str, html: str | None, key: str) -> EmailMessage:
        """The email: plain text, with the HTML as its alternative when there is one."""
        email = EmailMessage()
        email["From"] = self.from_address
        email["To"] = to
        email["Subject"] = subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email["Message-ID"] = self.message_id(key)
        email.set_content(text)
        if html:
            email.add_alternative(html, subtype="html")
        return email

    def send(self, to: str, subject: str, text: str, html: str | None, key: str) -> Sent:
        """Hand the email to the SMTP server.

        Raises:
            Transient: try again later.
            Permanent: record the failure.
        """
        email = self.compose(to, subject, text, html, key)
        try:
            with self._connect() as smtp:
                if self.target.username:
                    smtp.login(self.target.username, self.target.password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            failure = Transient if codes and all(400 <= c < 500 for c in codes) else Permanent
            raise failure(
                f"the SMTP server refused the recipient (codes {codes})", _first(codes)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            failure = Transient if 400 <= code < 500 else Permanent
            reply = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise failure(f"the SMTP server answered {code}: {reply[:150]}", str(code)) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, dropped, timed out, TLS
            raise Transient(f"the SMTP server cannot be reached: {type(exc).__name__}") from exc
        return Sent(self.message_id(key))

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        if target.scheme == "smtps":
            return smtplib.SMTP_SSL(
                target.host, target.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
        if target.scheme == "smtp+starttls":
            try:
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp


def _first(codes: list[int]) -> str | None:
    return str(codes[0]) if codes else None
