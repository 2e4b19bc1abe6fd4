"""Flow checks for data-dip URLs: where a value from the caller reaches a URL unsafely.

Values substituted into a ``url`` are encoded as one path segment or query value
(:func:`ivr.templates.compile_url`), which is enough wherever the value stands after the URL's
host. Encoding cannot help in two places, and ``flows validate`` warns (at the ``url``'s
file:line:col) about both when the value comes from the caller: a gathered answer (``save_as``
of a gather), the caller's own number or SIP identity (``caller``), or a ``set`` variable
computed from one of them.

- through ``raw_url``, the value goes in as it is: ``../../admin`` walks the path, ``x?admin=1#``
  adds a query;
- before the path (scheme, host, port), the value picks the server.

A value is *checked*, and not warned about, when every gather that saves it has ``validate``
with a ``pattern`` or ``choices``. A URL that starts with an encoded value is warned about too,
wherever the value comes from: it can never give the scheme and host (``{{ env.API }}/x`` must
be ``{{ env.API | raw_url }}/x``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from ivr import templates
from ivr.errors import Problem
from ivr.schema import FlowSpec
from ivr.yamlsource import Positions

RAW_FILTER = "raw_url"


def warnings(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """Every unsafe use of a caller's value in the flow's data-dip URLs (see the docstring)."""
    from_caller, checked = _caller_values(spec)
    for name, node in spec.nodes.items():
        if node.http is None or templates.is_static(node.http.url):
            continue
        tree = _parse(node.http.url)
        if tree is None:
            continue  # the load reports the syntax error
        loc = ("nodes", name, "http", "url")
        for prefix, expression in _outputs(tree):
            raw = _is_raw(expression)
            before_path = _before_path(prefix)
            if not prefix.strip() and not raw:
                yield positions.problem(loc, _STARTS_ENCODED, "warning")
                continue
            unchecked = sorted((_names(expression) & from_caller) - checked)
            if not unchecked:
                continue
            which = _listed(unchecked)
            if raw:
                yield positions.problem(loc, _RAW.format(which=which), "warning")
            elif before_path:
                yield positions.problem(loc, _HOST.format(which=which), "warning")


_STARTS_ENCODED = (
    "This URL starts with a value, which is encoded as one path segment and so can never give "
    "the scheme and host: write {{ env.NAME | raw_url }} for a base URL."
)
_RAW = (
    "{which} from the caller reaches this URL unencoded through raw_url, so '../../admin' could "
    "reach another path and 'x?admin=1#' add a query. Drop raw_url (values are encoded by "
    "default) or check the answer with validate: pattern or choices."
)
_HOST = (
    "{which} from the caller stands before this URL's path, so the caller could pick the "
    "server. Put it in the path or the query, or check the answer with validate: pattern or "
    "choices."
)


def _caller_values(spec: FlowSpec) -> tuple[set[str], set[str]]:
    """Variables holding what the caller gave, and those of them every gather checks."""
    every_gather_checks: dict[str, bool] = {}
    for node in spec.nodes.values():
        if node.gather and node.save_as:
            rule = node.validation
            ok = rule is not None and bool(rule.pattern or rule.choices)
            every_gather_checks[node.save_as] = every_gather_checks.get(node.save_as, True) and ok
    from_caller = {"caller", *every_gather_checks}
    checked = {name for name, ok in every_gather_checks.items() if ok}
    computed = [  # (variable, the variables its set template reads), each parsed once
        (key, meta.find_undeclared_variables(tree))
        for node in spec.nodes.values()
        for key, value in (node.set or {}).items()
        if isinstance(value, str) and not templates.is_static(value)
        and (tree := _parse(value)) is not None
    ]  # fmt: skip
    changed = True
    while changed:  # set variables computed from caller values, to a fixed point
        changed = False
        for key, reads in computed:
            used = reads & from_caller
            if used and key not in from_caller:
                from_caller.add(key)
                changed = True
            if used - checked and key in checked:
                checked.discard(key)
                changed = True
    return from_caller, checked


def _parse(text: str) -> nodes.Template | None:
    try:
        return templates.parse_url(text)
    except TemplateSyntaxError:
        return None


def _outputs(tree: nodes.Template) -> Iterator[tuple[str, nodes.Expr]]:
    """Each ``{{ expression }}`` of the URL, with the literal text before it."""
    prefix = ""
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                prefix += child.data
            else:
                yield prefix, child


def _names(expression: nodes.Expr) -> set[str]:
    found: list[Any] = [expression, *expression.find_all(nodes.Name)]
    return {node.name for node in found if isinstance(node, nodes.Name)}


def _is_raw(expression: nodes.Expr) -> bool:
    found: list[Any] = [expression, *expression.find_all(nodes.Filter)]
    return any(isinstance(node, nodes.Filter) and node.name == RAW_FILTER for node in found)


def _before_path(prefix: str) -> bool:
    """True when text following ``prefix`` is still the scheme, host or port."""
    if prefix.startswith("/") and not prefix.startswith("//"):
        return False  # a path on this app
    _, separator, rest = prefix.partition("://")
    return not separator or "/" not in rest


def _listed(names: list[str]) -> str:
    quoted = [f"{{{{ {name} }}}}" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
