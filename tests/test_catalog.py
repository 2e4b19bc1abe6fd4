"""The flow catalog: reloading a directory, keeping the last good version, refusing clashes."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from ivr.catalog import Catalog
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

BROKEN = "start: welcome\nnodes:\n  welcome:\n    say: [never closed\n"


def flow_text(
    flow_id: str | None = None,
    numbers: tuple[str, ...] = (),
    say: str = "Hello.",
    default: bool = False,
) -> str:
    lines = [f"id: {flow_id}"] if flow_id else []
    if numbers:
        lines.append("numbers:")
        lines.extend(f'  - "{number}"' for number in numbers)
    if default:
        lines.append("default: true")
    lines += ["start: welcome", "nodes:", "  welcome:", f"    say: {say}", "    hangup: true"]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    """Write ``text``, making sure the file's stamp changes as it would a second later."""
    before = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(text, encoding="utf-8")
    if before is not None:
        later = max(path.stat().st_mtime_ns, before + 1_000_000_000)
        os.utime(path, ns=(later, later))
    return path


def catalog_of(directory: Path, default_flow: str | None = None) -> Catalog:
    catalog = Catalog(directory, default_flow)
    assert catalog.refresh() == []
    return catalog


# ---- loading -------------------------------------------------------------------------------
def test_every_yaml_file_of_the_directory_is_loaded(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", flow_text("one"))
    write(tmp_path / "two.yml", flow_text("two"))
    write(tmp_path / "notes.txt", "not a flow")
    write(tmp_path / "three.yaml.bak", BROKEN)
    catalog = catalog_of(tmp_path)
    assert [f.id for f in catalog.flows()] == ["one", "two"]
    assert catalog.get("two") is not None
    assert catalog.get("notes") is None


def test_a_missing_directory_has_no_flows(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "nowhere")
    assert catalog.refresh() == []
    assert catalog.flows() == []
    assert catalog.default() is None


def test_a_broken_overwrite_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = write(tmp_path / "main.yaml", flow_text("main", say="Old prompt."))
    catalog = catalog_of(tmp_path)
    old = catalog.get("main")
    assert old is not None

    write(path, BROKEN)
    problems = catalog.refresh()
    assert [(p.path, p.line, p.col) for p in problems] == [(str(path), 4, 10)]
    assert "not valid YAML" in problems[0].message
    assert catalog.get("main") is old

    write(path, flow_text("main", say="New prompt."))
    assert catalog.refresh() == []
    new = catalog.get("main")
    assert new is not None and new.version != old.version
    assert new.node("welcome").say == "New prompt."
    assert catalog.version(old.version) is old
    assert catalog.version(new.version) is new


def test_a_file_broken_from_the_start_serves_nothing(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", flow_text("good"))
    write(tmp_path / "bad.yaml", BROKEN)
    catalog = Catalog(tmp_path)
    problems = catalog.refresh()
    assert {p.path for p in problems} == {str(tmp_path / "bad.yaml")}
    assert [f.id for f in catalog.flows()] == ["good"]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes(b"start: a\nnodes:\n  a: {say: Caf\xe9}\n")
    [problem] = Catalog(tmp_path).refresh()
    assert (problem.line, problem.col) == (1, 1)
    assert "not UTF-8" in problem.message


def test_problems_stay_reported_until_the_file_is_fixed(tmp_path: Path) -> None:
    path = write(tmp_path / "main.yaml", BROKEN)
    catalog = Catalog(tmp_path)
    assert len(catalog.refresh()) == 1
    assert len(catalog.refresh()) == 1
    write(path, flow_text("main"))
    assert catalog.refresh() == []


def test_a_removed_file_stops_serving_but_its_version_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "gone.yaml", flow_text("gone", numbers=("+14155550101",)))
    write(tmp_path / "stays.yaml", flow_text("stays"))
    catalog = catalog_of(tmp_path)
    gone = catalog.get("gone")
    assert gone is not None
    path.unlink()
    assert catalog.refresh() == []
    assert catalog.get("gone") is None
    assert [f.id for f in catalog.flows()] == ["stays"]
    assert catalog.version(gone.version) is gone
    assert catalog.for_number("+14155550101") is catalog.get("stays")


# ---- clashes -------------------------------------------------------------------------------
def test_a_number_claimed_twice_is_refused_in_the_second_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("a", numbers=("+14155550101",)))
    second = write(tmp_path / "b.yaml", flow_text("b", numbers=("+14155550102", "+14155550101")))
    catalog = Catalog(tmp_path)
    [problem] = catalog.refresh()
    assert problem.path == str(second)
    assert (problem.line, problem.col) == (4, 5)
    assert problem.message.startswith("Clash: +14155550101 is already answered by flow 'a'")
    assert [f.id for f in catalog.flows()] == ["a"]
    assert catalog.for_number("+14155550101") is catalog.get("a")


def test_a_flow_id_used_twice_is_refused_in_the_second_file(tmp_path: Path) -> None:
    write(tmp_path / "first.yaml", flow_text("shared", say="First."))
    second = write(tmp_path / "second.yaml", flow_text("shared", say="Second."))
    catalog = Catalog(tmp_path)
    [problem] = catalog.refresh()
    assert problem.path == str(second)
    assert "Clash: flow id 'shared' is already used by" in problem.message
    shared = catalog.get("shared")
    assert shared is not None and shared.node("welcome").say == "First."


def test_a_change_that_clashes_keeps_the_file_serving_its_previous_version(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.yaml", flow_text("a", numbers=("+14155550101",)))
    b = write(tmp_path / "b.yaml", flow_text("b", numbers=("+14155550102",), say="B one."))
    catalog = catalog_of(tmp_path)
    served = catalog.get("b")

    write(b, flow_text("b", numbers=("+14155550102", "+14155550101"), say="B two."))
    [problem] = catalog.refresh()
    assert problem.message.startswith("Clash: +14155550101")
    assert catalog.get("b") is served
    assert catalog.for_number("+14155550102") is served
    assert catalog.for_number("+14155550101") is catalog.get("a")


def test_a_new_file_cannot_take_a_number_that_is_being_served(tmp_path: Path) -> None:
    write(tmp_path / "main.yaml", flow_text("main", numbers=("+14155550101",)))
    catalog = catalog_of(tmp_path)
    main = catalog.get("main")
    newcomer = write(tmp_path / "a-copy.yaml", flow_text("copy", numbers=("+14155550101",)))
    [problem] = catalog.refresh()
    assert problem.path == str(newcomer)
    assert catalog.for_number("+14155550101") is main
    assert catalog.get("copy") is None


def test_a_refused_file_is_admitted_once_the_number_is_free(tmp_path: Path) -> None:
    z = write(tmp_path / "z.yaml", flow_text("z", numbers=("+14155550101",)))
    write(tmp_path / "a.yaml", flow_text("a", numbers=("+14155550102",)))
    catalog = catalog_of(tmp_path)
    write(tmp_path / "a.yaml", flow_text("a", numbers=("+14155550101",)))
    assert len(catalog.refresh()) == 1
    write(z, flow_text("z", numbers=("+14155550103",)))
    assert catalog.refresh() == []
    assert catalog.for_number("+14155550101") is catalog.get("a")
    assert catalog.for_number("+14155550103") is catalog.get("z")


def test_two_default_flows_clash(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("a", default=True))
    write(tmp_path / "b.yaml", flow_text("b", default=True))
    catalog = Catalog(tmp_path)
    [problem] = catalog.refresh()
    assert "Clash: flow 'a' is already the default" in problem.message
    assert catalog.default() is catalog.get("a")


# ---- the default flow ----------------------------------------------------------------------
def test_the_only_flow_is_the_default(tmp_path: Path) -> None:
    write(tmp_path / "only.yaml", flow_text("only", numbers=("+14155550101",)))
    catalog = catalog_of(tmp_path)
    assert catalog.default() is catalog.get("only")
    assert catalog.for_number("+19995550100") is catalog.get("only")
    assert catalog.for_number(None) is catalog.get("only")


def test_two_unmarked_flows_have_no_default(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("a", numbers=("+14155550101",)))
    write(tmp_path / "b.yaml", flow_text("b"))
    catalog = catalog_of(tmp_path)
    assert catalog.default() is None
    assert catalog.for_number("+19995550100") is None
    assert catalog.for_number("+14155550101") is catalog.get("a")


def test_the_flow_marked_default_is_the_default(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("a"))
    write(tmp_path / "b.yaml", flow_text("b", default=True))
    catalog = catalog_of(tmp_path)
    assert catalog.default() is catalog.get("b")


def test_the_configured_default_wins_over_the_marked_one(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("a"))
    write(tmp_path / "b.yaml", flow_text("b", default=True))
    configured = catalog_of(tmp_path, default_flow="a").default()
    assert configured is not None and configured.id == "a"
    unknown = catalog_of(tmp_path, default_flow="missing").default()
    assert unknown is not None and unknown.id == "b"


# ---- over HTTP -----------------------------------------------------------------------------
def main_menu_prompt(app: Flask, caller: str) -> str:
    """Dial the demo number as ``caller`` and return what the first gather says."""
    call = Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial()
    gather = call.last.find("Gather")
    assert gather is not None, ET.tostring(call.last, encoding="unicode")
    return " ".join((say.text or "").strip() for say in gather.iter("Say"))


def test_a_running_server_keeps_serving_the_last_good_flow(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = make_app()  # no watcher: the test refreshes where a running server's watcher would
    catalog = app.extensions["omnivoice.catalog"]
    path = flows_dir / "airline.yaml"
    original = path.read_text(encoding="utf-8")
    assert "For flight status, press 1" in main_menu_prompt(app, "+14155550111")

    write(path, original.replace("nodes:\n", "nodes: [\n", 1))
    assert any(p.path == str(path) for p in catalog.refresh())
    assert "For flight status, press 1" in main_menu_prompt(app, "+14155550112")

    write(path, original.replace("For flight status, press 1", "For arrivals, press 1"))
    assert catalog.refresh() == []
    prompt = main_menu_prompt(app, "+14155550113")
    assert "For arrivals, press 1" in prompt
    assert "For flight status" not in prompt


@pytest.mark.parametrize("default_flow", [None, "second"])
def test_the_server_answers_unknown_numbers_with_the_default_flow(
    make_app: Callable[..., Flask], flows_dir: Path, default_flow: str | None
) -> None:
    write(flows_dir / "second.yaml", flow_text("second", say="Second line."))
    app = make_app(DEFAULT_FLOW=default_flow)
    call = Call(FlaskTransport(app), AUTH_TOKEN, called="+19995550100").dial()
    heard = " ".join(call.heard)
    if default_flow is None:
        assert "Thanks for calling Omnivoice Air." in heard
    else:
        assert heard == "Second line."
