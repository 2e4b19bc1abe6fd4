"""The app factory's safety nets: the embedded Redis stand-in is for demos only."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask


def test_without_redis_url_a_production_server_reports_itself_unfit(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(REDIS_CLIENT=None, REDIS_URL=None, DEV_MODE=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert "no REDIS_URL" in response.get_data(as_text=True)


def test_the_demo_mode_runs_on_the_stand_in(make_app: Callable[..., Flask]) -> None:
    app = make_app(REDIS_CLIENT=None, REDIS_URL=None, DEV_MODE=True)
    assert app.test_client().get("/healthz").status_code == 200
    call = app.test_cli_runner().invoke(args=["call", "--script", "1"])
    assert "confirmation code" in call.output


def test_with_redis_health_is_ok(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "ok: 1 flow(s)\n"
