"""Helpers for webhook tests: Twilio-signed posts, parsed TwiML and a look at what Redis holds.

Requests are signed with the SDK's ``RequestValidator`` exactly as Twilio signs them: the full URL
Twilio requested (query string included) plus the sorted form parameters, HMAC-SHA1 with the
account's auth token.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from typing import Any

import redis
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from ivr.session import Session
from tests import support_topologies
from tests.conftest import AUTH_TOKEN

LOCAL = "http://localhost"
CALLER = "+14155550123"
CALLED = "+14155550100"


def form(call_sid: str = "CA" + "1" * 32, **fields: str) -> dict[str, str]:
    """A voice webhook form as Twilio posts it; ``fields`` add to or replace the defaults."""
    base = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": CALLED,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    base.update(fields)
    return base


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a POST of ``params`` to ``url``."""
    return RequestValidator(token).compute_signature(url, params)


def post(
    client: FlaskClient,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    headers: dict[str, str] | None = None,
) -> TestResponse:
    """POST ``params`` to ``path``, signed for ``signed_url`` (default: the URL actually posted)."""
    url = signed_url if signed_url is not None else LOCAL + path
    all_headers = {"X-Twilio-Signature": sign(url, params, token), **(headers or {})}
    return client.post(path, data=params, headers=all_headers)


def twiml(response: TestResponse) -> ET.Element:
    """The ``<Response>`` root of a webhook answer, after checking it is TwiML."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> list[str]:
    """Every ``<Say>`` text of a document, in order, including those inside a ``<Gather>``."""
    return [(say.text or "").strip() for say in root.iter("Say")]


def verbs(root: ET.Element) -> list[str]:
    """The top-level verbs of a document, in order."""
    return [child.tag for child in root]


@dataclass(frozen=True)
class Stored:
    """A caller's session hash as Redis holds it; ``doc`` has every field, defaults included,
    except the sensitive values, which are in ``sealed`` (encrypted) when there are any."""

    seq: int
    call: str
    doc: dict[str, Any]
    raw: bytes
    sealed: str | None = None


def prefix_of(connection: redis.Redis) -> str:
    """The key prefix the ``redis_client`` fixture gave this test."""
    prefix: str = connection.test_prefix  # type: ignore[attr-defined]
    return prefix


def session_key(connection: redis.Redis, caller: str) -> str:
    """The session hash of ``caller`` under the test's prefix."""
    return f"{prefix_of(connection)}:{{{caller}}}:session"


def stored(connection: redis.Redis, caller: str = CALLER) -> Stored:
    """The session of ``caller``; fails the test if there is none."""
    fields: dict[bytes, bytes] = connection.hgetall(session_key(connection, caller))  # type: ignore[assignment]
    assert fields, f"no session stored for {caller}"
    document = json.loads(fields[b"doc"])
    sealed = document.pop("sealed", None)
    return Stored(
        seq=int(fields[b"seq"]),
        call=fields[b"call"].decode(),
        doc=asdict(Session.from_dict(document)),
        raw=fields[b"doc"],
        sealed=sealed,
    )


def keys_under(connection: redis.Redis) -> list[str]:
    """Every key under the test's prefix."""
    return sorted(k.decode() for k in connection.scan_iter(f"{prefix_of(connection)}:*"))


def session_keys(connection: redis.Redis) -> list[str]:
    """The session hashes under the test's prefix."""
    return [k for k in keys_under(connection) if k.endswith(":session")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range (so no outgoing
    connection takes it before a server started on it binds)."""
    return support_topologies.free_ports(1)[0]
