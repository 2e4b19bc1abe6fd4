"""Logging in to the agent console: passwords, the failure limits, sessions and CSRF.

Real Redis on every topology (the failure counters), a real SQLite history database (agents),
Flask's test client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from console.agents import directory_of
from tests.support_console import (
    PASSWORD,
    add_agent,
    close_history,
    console_config,
    csrf_from,
    logged_in,
    login,
)


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    built = make_app(**console_config(flows_dir, tmp_path))
    add_agent(built)
    yield built
    close_history(built)


def test_a_page_without_login_redirects_to_the_login_page(app: Flask) -> None:
    response = app.test_client().get("/agent?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/agent/login?next=")
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["next"] == ["/agent?x=1"]


def test_scripts_without_login_get_401(app: Flask) -> None:
    client = app.test_client()
    stream = client.get("/agent/events", headers={"Accept": "text/event-stream"})
    assert stream.status_code == 401
    assert stream.get_json()["error"]
    posted = client.post("/agent/calls/CA" + "1" * 32 + "/notes", data={"text": "x"})
    assert posted.status_code == 401


def test_the_right_password_logs_in_and_goes_where_asked(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/agent/login?next=/agent%3Fview%3D1").get_data(as_text=True))
    response = client.post(
        "/agent/login",
        data={"name": "ann", "password": PASSWORD, "csrf_token": token, "next": "/agent?view=1"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/agent?view=1"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = client.get("/agent")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert directory_of(app).get("ann").last_login_at is not None  # type: ignore[union-attr]


def test_login_never_sends_anyone_to_another_site(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/agent/login").get_data(as_text=True))
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        client.get("/agent/login")
        response = client.post(
            "/agent/login",
            data={"name": "ann", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["Location"] == "/agent", target
        token = csrf_from(client.get("/agent").get_data(as_text=True))


def test_login_rotates_the_session(app: Flask) -> None:
    client = app.test_client()
    before = csrf_from(client.get("/agent/login").get_data(as_text=True))
    assert login(client).status_code == 302
    after = csrf_from(client.get("/agent").get_data(as_text=True))
    assert after != before  # a token planted before the login is worth nothing after it


@pytest.mark.parametrize(
    ("name", "password"),
    [("ann", "wrong password!"), ("nobody", PASSWORD), ("", PASSWORD)],
    ids=["wrong-password", "unknown-name", "no-name"],
)
def test_a_wrong_login_is_refused_alike(app: Flask, name: str, password: str) -> None:
    client = app.test_client()
    response = login(client, name, password)
    assert response.status_code == 401
    assert "do not match an active agent" in response.get_data(as_text=True)
    assert client.get("/agent").status_code == 302


def test_a_disabled_agent_cannot_log_in_and_is_logged_out(app: Flask) -> None:
    client, _token = logged_in(app)
    directory_of(app).disable("ann")
    assert client.get("/agent").status_code == 302  # the open login ends at the next request
    assert login(app.test_client()).status_code == 401


def test_five_failures_for_a_name_refuse_even_the_right_password(app: Flask) -> None:
    client = app.test_client()
    for _ in range(5):
        assert login(client, "ann", "not the password").status_code == 401
    limited = login(client, "ann", PASSWORD)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 15 * 60 + 1
    assert "Too many failed logins" in limited.get_data(as_text=True)
    assert client.get("/agent").status_code == 302
    add_agent(app, "bob")
    assert login(app.test_client(), "bob").status_code == 302  # another name is not limited


def test_twenty_failures_from_an_address_refuse_every_name(app: Flask) -> None:
    add_agent(app, "bob")
    address = {"REMOTE_ADDR": "192.0.2.7"}
    for attempt in range(20):
        assert login(app.test_client(), f"guess{attempt}", "x" * 12, **address).status_code == 401
    assert login(app.test_client(), "bob", **address).status_code == 429
    assert login(app.test_client(), "bob", **{"REMOTE_ADDR": "192.0.2.8"}).status_code == 302


def test_failures_are_counted_in_redis_with_a_ttl(app: Flask) -> None:
    login(app.test_client(), "ann", "not the password")
    redis_client = app.extensions["omnivoice.feed"].redis
    prefix = app.extensions["omnivoice.store"].keys.prefix
    keys = [k for k in _keys(redis_client, f"{prefix}:*login-failures*")]
    assert len(keys) == 2  # the name's and the address's
    assert all(0 < redis_client.ttl(key) <= 16 * 60 for key in keys)


def _keys(connection: Any, pattern: str) -> list[Any]:
    from context.redis_client import Topology, topology_of

    if topology_of(connection) is Topology.CLUSTER:
        found = []
        for node in connection.get_primaries():
            found.extend(node.redis_connection.scan_iter(pattern))
        return found
    return list(connection.scan_iter(pattern))


def test_logout_ends_the_login(app: Flask) -> None:
    client, token = logged_in(app)
    assert client.post("/agent/logout", data={"csrf_token": "wrong"}).status_code == 400
    assert client.get("/agent").status_code == 200
    response = client.post("/agent/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/agent").status_code == 302


def test_the_api_token_does_not_open_the_console(
    make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path
) -> None:
    app = make_app(**console_config(flows_dir, tmp_path, API_TOKEN="api-token-123"))
    client = app.test_client()
    bearer = {"Authorization": "Bearer api-token-123"}
    assert client.get("/agent", headers=bearer).status_code == 302
    assert client.get("/agent/events", headers=bearer).status_code == 401
    basic = {"Authorization": "Basic YW5uOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ=="}
    assert client.get("/agent", headers=basic).status_code == 302


def test_a_login_without_its_csrf_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    client.get("/agent/login")
    response = client.post("/agent/login", data={"name": "ann", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/agent").status_code == 302


def test_the_cookie_is_not_secure_on_a_plain_http_deployment(
    make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path
) -> None:
    app = make_app(**console_config(flows_dir, tmp_path, PUBLIC_BASE_URL="http://127.0.0.1:5000"))
    add_agent(app)
    response = login(app.test_client())
    assert response.status_code == 302
    assert "Secure" not in response.headers["Set-Cookie"]
