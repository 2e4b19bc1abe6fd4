"""``flask --app app flows validate|schema`` run as a designer runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr.schema import FlowSpec, GatherSpec, Node
from ivr.yamlsource import parse
from webhooks.cli import quiet_start

REPO = Path(__file__).resolve().parent.parent
BAD_FLOWS = Path(__file__).resolve().parent / "bad_flows"
FLASK = [sys.executable, "-m", "flask"]  # the flask of the Python running the tests
LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): (?P<msg>.+)$"
)

try:
    import jsonschema
except ImportError:  # optional: the structural check below always runs
    jsonschema = None


def flows_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMNIVOICE_DEV"}
    env["LOG_LEVEL"] = "ERROR"
    return subprocess.run(
        [*FLASK, "--app", "app", "flows", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def located(output: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in output.splitlines() if (m := LINE.match(line))]


# ---- validate ------------------------------------------------------------------------------
def test_validate_a_bad_file_prints_file_line_col_and_fails() -> None:
    path = BAD_FLOWS / "unknown_node_key.yaml"
    result = flows_cli("validate", str(path))
    assert result.returncode == 1
    [problem] = located(result.stdout)  # findings are the output, on stdout
    assert problem["path"] == str(path)
    assert (problem["line"], problem["col"], problem["severity"]) == ("6", "5", "error")
    assert "Did you mean 'next'?" in problem["msg"]
    assert result.stderr.strip() == "1 error(s); no flow loaded."
    assert "ok:" not in result.stdout


def test_validate_logs_nothing_about_redis_or_loading() -> None:
    """Without REDIS_URL the app warns about Redis at start-up; validate is not a server."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIVOICE_DEV", "REDIS_URL")}
    env["LOG_LEVEL"] = "DEBUG"
    for args in (["validate", "flows/"], ["schema"]):
        result = subprocess.run(
            [*FLASK, "--app", "app", "flows", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert "REDIS_URL" not in result.stdout
    assert result.stdout.startswith("{")  # the schema, and nothing before it


@pytest.mark.parametrize(
    ("argv", "quiet"),
    [
        (["/venv/bin/flask", "--app", "app", "flows", "validate"], True),
        (["/lib/flask/__main__.py", "-A", "app", "flows", "schema"], True),
        (["/venv/bin/flask", "--app", "app", "call", "--script", "1"], True),
        (["/venv/bin/flask", "--app", "app", "call", "--verbose"], False),
        (["/venv/bin/flask", "--app", "app", "run"], False),
        (["/venv/bin/flask", "--app", "flows", "run"], False),  # an app named flows
        (["/venv/bin/gunicorn", "flows"], False),
        ([], False),
    ],
)
def test_only_designer_commands_start_quietly(argv: list[str], quiet: bool) -> None:
    assert quiet_start(argv) is quiet


def test_validate_the_demo_flows_succeeds() -> None:
    result = flows_cli("validate", "flows/")
    assert result.returncode == 0, result.stderr
    assert located(result.stdout + result.stderr) == []
    assert re.search(r"^ok: airline \(version [0-9a-f]{16}, \d+ nodes\) ", result.stdout, re.M)


def test_validate_a_directory_reports_bad_files_and_loads_good_ones(tmp_path: Path) -> None:
    shutil.copy(REPO / "flows" / "airline.yaml", tmp_path / "airline.yaml")
    shutil.copy(BAD_FLOWS / "bad_duration.yaml", tmp_path / "bad.yaml")
    result = flows_cli("validate", str(tmp_path))
    assert result.returncode == 1
    [problem] = located(result.stdout)
    assert (problem["path"], problem["line"], problem["col"]) == (
        str(tmp_path / "bad.yaml"),
        "5",
        "12",
    )
    assert "ok: airline" in result.stdout
    assert "1 error(s)." in result.stderr


def test_warnings_are_printed_but_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "lonely.yaml"
    path.write_text(
        "start: a\nnodes:\n  a:\n    hangup: true\n  orphan:\n    hangup: true\n",
        encoding="utf-8",
    )
    result = flows_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    [warning] = located(result.stdout)
    assert (warning["line"], warning["col"], warning["severity"]) == ("6", "5", "warning")
    assert "can never be reached" in warning["msg"]


def test_validate_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = flows_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


# ---- schema --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = flows_cli("schema")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def schema_errors(
    value: Any, node: dict[str, Any], root: dict[str, Any], at: str = ""
) -> list[str]:
    """A small JSON Schema check: the keywords the flow schema uses, enough to fail a bad flow."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, root, at)
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [schema_errors(value, option, root, at) for option in node[combinator]]
            if all(options):
                return [f"{at}: fits none of {combinator}: {options}"]
    kind = node.get("type")
    if kind is not None and not _is_type(value, kind):
        return [f"{at}: {value!r} is not {kind}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{at}: {value!r} not in {node['enum']}"]
    if "const" in node and value != node["const"]:
        return [f"{at}: {value!r} is not {node['const']!r}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties = node.get("properties", {})
        errors += [f"{at}.{key}: required" for key in node.get("required", []) if key not in value]
        for key, item in value.items():
            if "propertyNames" in node:
                errors += schema_errors(key, node["propertyNames"], root, f"{at}[{key}]")
            patterns = [
                s for p, s in node.get("patternProperties", {}).items() if re.search(p, key)
            ]
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{at}.{key}")
            elif patterns:
                for pattern_schema in patterns:
                    errors += schema_errors(item, pattern_schema, root, f"{at}.{key}")
            elif node.get("additionalProperties") is False:
                errors.append(f"{at}.{key}: not allowed")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += schema_errors(item, node["additionalProperties"], root, f"{at}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            errors += schema_errors(item, node["items"], root, f"{at}[{i}]")
        if len(value) < node.get("minItems", 0):
            errors.append(f"{at}: too few items")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0):
            errors.append(f"{at}: too short")
    return errors


def _is_type(value: Any, kind: str | list[str]) -> bool:
    kinds = [kind] if isinstance(kind, str) else kind
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return any(checks[k](value) for k in kinds)


def demo_flow() -> Any:
    data, _ = parse((REPO / "flows" / "airline.yaml").read_text(encoding="utf-8"), "airline")
    return data


def test_schema_is_a_2020_12_json_schema_of_a_flow(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Omnivoice flow"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"start", "nodes"}
    assert set(schema["properties"]) == set(FlowSpec.model_fields)


def test_schema_lists_every_node_key(schema: dict[str, Any]) -> None:
    node = schema["$defs"]["Node"]
    expected = {field.alias or name for name, field in Node.model_fields.items()}
    assert set(node["properties"]) == expected
    assert {"say", "gather", "on", "validate", "save_as", "transfer", "next"} <= expected
    assert "validation" not in node["properties"]
    assert node["additionalProperties"] is False
    gather = schema["$defs"]["GatherSpec"]
    assert set(gather["properties"]) == set(GatherSpec.model_fields)
    assert schema["$defs"]["HttpSpec"]["properties"].keys() >= {"url", "json", "save_as"}


def test_schema_accepts_the_demo_flow(schema: dict[str, Any]) -> None:
    flow = demo_flow()
    assert schema_errors(flow, schema, schema) == []
    if jsonschema is not None:
        jsonschema.validate(flow, schema)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda f: f["nodes"]["welcome"].update(sya="hi"), "nodes.welcome.sya: not allowed"),
        (lambda f: f.update(bogus=1), ".bogus: not allowed"),
        (lambda f: f.pop("start"), ".start: required"),
        (lambda f: f["nodes"]["confirmation"]["gather"].update(timeout="5 parsecs"), "timeout"),
        (lambda f: f["nodes"]["main_menu"]["gather"].update(input=["video"]), "input[0]"),
    ],
)
def test_schema_rejects_broken_flows(schema: dict[str, Any], change: Any, complaint: str) -> None:
    flow = demo_flow()
    change(flow)
    errors = schema_errors(flow, schema, schema)
    assert any(complaint in error for error in errors), errors
    if jsonschema is not None:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(flow, schema)


def test_schema_refuses_node_names_the_loader_refuses() -> None:
    from ivr.schema import flow_json_schema

    nodes = flow_json_schema()["properties"]["nodes"]
    assert nodes["additionalProperties"] is False
    (pattern,) = nodes["patternProperties"]
    assert re.fullmatch(pattern, "main_menu")
    assert not re.fullmatch(pattern, "9lives")
