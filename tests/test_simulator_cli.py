"""``flask call``: the terminal call simulator, scripted."""

from __future__ import annotations

from flask import Flask


def test_scripted_call_walks_the_demo_flow(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["call", "--script", "1,X Y Z 7 8 9,2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("omnivoice: Thanks for calling Omnivoice Air.")
    assert any("OV 220 from London to Boston is on time" in line for line in lines)
    assert lines[-1] == "[call ended: hangup]"


def test_script_that_runs_out_hangs_up_and_the_next_call_resumes(app: Flask) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["call", "--script", "1"])
    assert first.output.splitlines()[-1] == "[call ended: caller-hangup]"
    second = runner.invoke(args=["call", "--script", "continue"])
    assert "Welcome back. Last time you were giving us your confirmation code." in second.output


def test_server_errors_are_reported_not_raised(make_app: object) -> None:
    app = make_app(TWILIO_AUTH_TOKEN=None)  # type: ignore[operator]
    result = app.test_cli_runner().invoke(args=["call", "--script", "1"])
    assert result.exit_code == 1
    assert "answered HTTP 403" in result.output
