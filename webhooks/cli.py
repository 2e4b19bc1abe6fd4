"""``flask --app app flows ...``: designer tooling on the command line.

``flows validate [PATH]`` checks one file or a directory (default ``FLOWS_DIR``) and prints every
problem as ``file:line:col: severity: sentence``; it exits 1 if any error was found.
``flows schema`` prints the flow JSON Schema for editors. Their findings and the schema go to
stdout; the app's start-up logs (Redis, the catalog) are kept out (see :func:`quiet_start`), as
are a simulated call's (``flask call``, unless ``--verbose``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from ivr.catalog import Catalog
from ivr.errors import FlowLoadError, Problem
from ivr.flow import Flow, load_flow_file
from ivr.schema import block_json_schema, flow_json_schema

# Options of the flask command itself that take a value, before the command's name.
_FLASK_VALUE_OPTIONS = frozenset({"--app", "-A", "--env-file", "-e"})


def quiet_start(argv: Sequence[str]) -> bool:
    """True when ``argv`` runs a designer's command whose output must not mix with logs.

    ``flask --app app flows validate`` prints findings and ``flows schema`` a document; the app
    is built before either runs, and its start-up logs (no ``REDIS_URL``, flows loaded) are not
    findings. ``flask --app app call`` prints a transcript; ``--verbose`` keeps the logs in it.
    """
    if not argv or not _is_flask(argv[0]):
        return False
    words = iter(argv[1:])
    for word in words:
        if word in _FLASK_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word == "flows" or (word == "call" and "--verbose" not in argv)
    return False


def _is_flask(program: str) -> bool:
    path = Path(program)
    return path.name == "flask" or (path.name == "__main__.py" and path.parent.name == "flask")


flows = AppGroup("flows", help="Validate call flows and export their JSON Schema.")


@flows.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
def validate(path: Path | None) -> None:
    """Validate the flow file or directory PATH (default: FLOWS_DIR)."""
    target = path or Path(current_app.config["FLOWS_DIR"])
    problems, loaded = _check(target)
    for problem in problems:  # the findings are the output: stdout, for a pipe or a file
        click.echo(str(problem))
    for flow in loaded:
        click.echo(
            f"ok: {flow.id} (version {flow.version}, {len(flow.spec.nodes)} nodes) {flow.path}"
        )
    errors = sum(p.severity == "error" for p in problems)
    if errors or not loaded:
        raise SystemExit(
            f"{errors} error(s); no flow loaded." if not loaded else f"{errors} error(s)."
        )


def _check(target: Path) -> tuple[list[Problem], list[Flow]]:
    max_bytes = current_app.config["FLOW_MAX_BYTES"]
    if target.is_file():
        try:
            flow = load_flow_file(target, max_bytes)
        except FlowLoadError as exc:
            return list(exc.problems), []
        return list(flow.warnings), [flow]
    catalog = Catalog(target, max_bytes=max_bytes)
    with _catalog_logs_off():  # every problem is printed below; the log would say it twice
        problems = catalog.refresh()
    loaded = catalog.flows()
    warnings = [w for flow in loaded for w in flow.warnings]
    return problems + warnings, loaded


@contextmanager
def _catalog_logs_off() -> Iterator[None]:
    logger = logging.getLogger("ivr.catalog")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was_disabled


@flows.command("schema")
@click.option("--block", is_flag=True, help="The schema of block files (blocks/*.yaml) instead.")
def schema(block: bool) -> None:
    """Print the JSON Schema of flow files (or of block files)."""
    found = block_json_schema() if block else flow_json_schema()
    click.echo(json.dumps(found, indent=2, sort_keys=True))
