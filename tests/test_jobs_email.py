"""Emails through the job queue, received by a real SMTP server (aiosmtpd): headers, both
bodies and the signed link; the server's refusals and absence retried or recorded."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from ivr.errors import ConfigError
from jobs.email import parse_smtp_url
from jobs.outcome import Transient
from tests.support_jobs import (
    BASE,
    live_session,
    message_entry,
    queue_message,
    queued_jobs,
    runtime,
    sending_app,
    stream_events,
)
from tests.support_twilio import free_port

pytestmark = pytest.mark.timeout(60)
ADDRESS = "jane@example.org"
FROM = "Omnivoice Airline <trips@airline.example>"


class Mailbox:
    """What the SMTP server received, and how it answers (``refuse``: an SMTP reply)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse_data: str | None = None
        self.refuse_rcpt: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_data:
            return self.refuse_data
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], tmp_path: Path, mailbox: tuple[Mailbox, int]) -> Flask:
    return sending_app(
        make_app, tmp_path, SMTP_URL=f"smtp://127.0.0.1:{mailbox[1]}", SMTP_FROM=FROM
    )


def test_an_email_arrives_with_both_bodies_and_the_link(
    mail_app: Flask, mailbox: tuple[Mailbox, int]
) -> None:
    from ivr import links

    call = live_session(mail_app)
    link = links.link_id(call.call_sid, 7, "offer_link", "flights")
    message = queue_message(
        mail_app,
        call,
        channel="email",
        to=ADDRESS,
        subject="Your new flight",
        body=f"Pick a flight: {links.mark(link)}",
        html=f"<p>Pick a flight: <a href='{links.mark(link)}'>here</a></p>",
    )
    [job] = queued_jobs(mail_app)
    assert runtime(mail_app).jobs.deliver(job) == "sent"
    [(sender, recipients, raw)] = mailbox[0].received
    assert sender == "trips@airline.example" and recipients == [ADDRESS]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Your new flight"
    assert parsed["To"] == ADDRESS and parsed["From"] == FROM
    assert parsed["Message-ID"] == f"<{message.key}@airline.example>"
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"{BASE}/p/" in text and "[[link:" not in text
    url = text.split("Pick a flight: ")[1].strip()
    assert f"href='{url}'" in html and "[[link:" not in html
    entry = message_entry(mail_app, message.key)
    assert entry["status"] == "sent" and entry["sid"] == f"<{message.key}@airline.example>"
    assert [e["data"]["channel"] for e in stream_events(mail_app, "message_sent")] == ["email"]


def test_a_temporary_refusal_is_retried(mail_app: Flask, mailbox: tuple[Mailbox, int]) -> None:
    message = queue_message(
        mail_app, live_session(mail_app), channel="email", to=ADDRESS, subject="S",
        body="Hello", page=None,
    )  # fmt: skip
    [job] = queued_jobs(mail_app)
    mailbox[0].refuse_data = "451 Mailbox busy, try later"
    with pytest.raises(Transient) as caught:
        runtime(mail_app).jobs.deliver(job, final=False)
    assert "451" in str(caught.value)
    mailbox[0].refuse_data = None
    assert runtime(mail_app).jobs.deliver(job, final=False) == "sent"
    assert len(mailbox[0].received) == 1
    assert message_entry(mail_app, message.key)["status"] == "sent"


def test_an_unknown_mailbox_is_recorded_at_once(
    mail_app: Flask, mailbox: tuple[Mailbox, int]
) -> None:
    message = queue_message(
        mail_app, live_session(mail_app), channel="email", to=ADDRESS, subject="S",
        body="Hello", page=None,
    )  # fmt: skip
    [job] = queued_jobs(mail_app)
    mailbox[0].refuse_rcpt = "550 No such user here"
    assert runtime(mail_app).jobs.deliver(job, final=False) == "failed"
    entry = message_entry(mail_app, message.key)
    assert entry["status"] == "failed" and entry["error_code"] == "550"
    assert not mailbox[0].received


def test_an_smtp_server_that_is_down_is_retried_then_recorded(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = sending_app(
        make_app, tmp_path, SMTP_URL=f"smtp://127.0.0.1:{free_port()}", SMTP_FROM=FROM
    )
    message = queue_message(
        app, live_session(app), channel="email", to=ADDRESS, subject="S", body="Hi", page=None
    )
    [job] = queued_jobs(app)
    with pytest.raises(Transient) as caught:
        runtime(app).jobs.deliver(job, final=False)
    assert "cannot be reached" in str(caught.value)
    assert message_entry(app, message.key)["status"] == "queued"
    assert runtime(app).jobs.deliver(job, final=True) == "failed"
    entry = message_entry(app, message.key)
    assert entry["status"] == "failed" and "cannot be reached" in entry["error"]


@pytest.mark.parametrize(
    ("url", "scheme", "port"),
    [
        ("smtp://mail.example:2525", "smtp", 2525),
        ("smtp+starttls://u:p%40ss@mail.example", "smtp+starttls", 587),
        ("smtps://mail.example", "smtps", 465),
    ],
)
def test_smtp_urls_are_read(url: str, scheme: str, port: int) -> None:
    target = parse_smtp_url(url)
    assert (target.scheme, target.host, target.port) == (scheme, "mail.example", port)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://mail.example", "must start with smtp://"),
        ("smtp://", "names no host"),
        ("smtp://mail.example:99999", "port"),
    ],
)
def test_bad_smtp_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url(url)
    assert reason in str(caught.value) and "SMTP_URL" in str(caught.value)


def test_a_password_in_a_bad_smtp_url_is_not_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url("smtpx://user:hunter2@mail.example")
    assert "hunter2" not in str(caught.value)


def test_smtp_url_without_a_from_address_refuses_to_start(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        sending_app(make_app, tmp_path, SMTP_URL="smtp://127.0.0.1:25", SMTP_FROM=None)
    assert "SMTP_FROM" in str(caught.value)
