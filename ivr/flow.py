"""A loaded flow version: the validated spec, its content hash and its compiled templates.

:func:`load_flow_text` turns YAML text into a :class:`Flow` or raises :class:`FlowLoadError`
listing every problem at ``file:line:col``. Warnings (unreachable nodes, dead ends) do not stop a
flow from loading; they are kept on :attr:`Flow.warnings` for ``flows validate`` to print.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers
from pydantic import ValidationError

from ivr import blocks, dip_urls, flow_checks, hours, keywords, languages, templates
from ivr.blocks import BLOCKS_DIRECTORY, Block, BlockSpec
from ivr.errors import FlowLoadError, Problem
from ivr.schema import (
    FlowSpec,
    Node,
    PageSpec,
    PausePart,
    PlayPart,
    SayPart,
)
from ivr.schema_errors import schema_problems
from ivr.templates import Template
from ivr.yamlsource import Positions, parse


@dataclass(frozen=True)
class Flow:
    """One immutable version of a flow."""

    id: str
    version: str
    path: str
    source: str
    spec: FlowSpec
    numbers: tuple[str, ...]
    compiled_templates: dict[str, Template] = field(repr=False)
    compiled_expressions: dict[str, templates.Expression] = field(repr=False)
    warnings: tuple[Problem, ...] = ()
    number_positions: tuple[tuple[int, int], ...] = ()
    compiled_urls: dict[str, Template] = field(default_factory=dict, repr=False)
    uses_clock: bool = True  # a template or condition reads now, open_now... (see hours)

    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` if the version has none."""
        return self.spec.nodes[name]

    def template(self, text: str) -> Template:
        """The compiled template for ``text`` (compiled at load, or now for engine-made text)."""
        found = self.compiled_templates.get(text)
        return found if found is not None else templates.compile_template(text)

    def url_template(self, text: str) -> Template:
        """The compiled template of a data dip's URL (its values are encoded, unlike a prompt's)."""
        found = self.compiled_urls.get(text)
        return found if found is not None else templates.compile_url(text)

    def html_template(self, text: str) -> Template:
        """The compiled template of an email's HTML body (its values are HTML-escaped)."""
        return templates.compile_html(text)

    def expression(self, text: str) -> templates.Expression:
        """The compiled expression for ``text``."""
        found = self.compiled_expressions.get(text)
        return found if found is not None else templates.compile_expression(text)


def content_version(source: str) -> str:
    """The version id of a flow: a short hash of its exact YAML text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


MAX_FLOW_BYTES = 1024 * 1024  # the default FLOW_MAX_BYTES; the 5,000-node benchmark flow is 0.7 MiB


BlockSources = Mapping[str, tuple[str, str]]
"""The block files a flow may use: name -> (path, text)."""


def read_blocks(directory: str | Path) -> dict[str, tuple[str, str]]:
    """The block files in ``directory/blocks`` (``*.yaml``), by name; unreadable ones are left
    out (a flow using one is refused: there is no such block)."""
    folder = Path(directory) / BLOCKS_DIRECTORY
    if not folder.is_dir():
        return {}
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            found[path.stem] = (str(path), path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return found


_Spec = TypeVar("_Spec", FlowSpec, BlockSpec)


def _validated(model: type[_Spec], text: str, path: str, not_a_map: str) -> tuple[_Spec, Positions]:
    """YAML ``text`` parsed and validated as ``model``, with the positions of its values.

    Raises:
        FlowLoadError: the YAML does not parse, is not a map, or does not fit ``model``.
    """
    data, positions = parse(text, path)
    if not isinstance(data, dict):
        raise FlowLoadError([Problem(path, 1, 1, not_a_map)])
    try:
        return model.model_validate(data), positions
    except ValidationError as exc:
        raise FlowLoadError(schema_problems(exc, positions)) from None


def load_block_text(text: str, path: str, name: str) -> Block:
    """Validate a block file (problems point into it) into a :class:`~ivr.blocks.Block`."""
    spec, positions = _validated(
        BlockSpec, text, path, "A block file must be a map with exits, start and nodes."
    )
    problems: list[Problem] = []
    for node_name, node in spec.nodes.items():
        if node.use:
            problems.append(
                positions.problem(
                    ("nodes", node_name, "use"),
                    "A block cannot use another block; put the nodes in this block, or use "
                    "both blocks from the flow.",
                )
            )
    for i, exit_name in enumerate(spec.exits):
        if exit_name in spec.nodes:
            problems.append(
                positions.problem(
                    ("exits", i), f"{exit_name!r} is both an exit and a node; rename one."
                )
            )
    if not problems:  # checked as a flow whose exits end it
        ends = {exit_name: Node(hangup=True) for exit_name in spec.exits}
        as_flow = FlowSpec(start=spec.start, nodes={**spec.nodes, **ends})
        _compile(as_flow, positions, problems)
        _compile_urls(as_flow, positions, problems)
        problems.extend(_reference_problems(as_flow, positions))
        problems.extend(_page_problems(as_flow, positions))
        if not problems:
            problems.extend(flow_checks.errors(as_flow, positions))
    if problems:
        raise FlowLoadError(problems)
    return Block(name, path, text, spec)


def _blocks_of(
    spec: FlowSpec, sources: BlockSources, positions: Positions, problems: list[Problem]
) -> dict[str, Block]:
    """The blocks ``spec`` uses, loaded from ``sources``; their problems, and the flow's
    problems with its uses of them, go to ``problems``."""
    loaded: dict[str, Block] = {}
    broken: set[str] = set()
    for name in blocks.used(spec.nodes):
        if name not in sources:
            continue
        block_path, block_text = sources[name]
        try:
            loaded[name] = load_block_text(block_text, block_path, name)
        except FlowLoadError as exc:
            broken.add(name)
            problems.extend(exc.problems)
    for name, node in spec.nodes.items():
        if node.use in broken:
            problems.append(
                positions.problem(
                    ("nodes", name, "use"),
                    f"The block {node.use!r} has problems (listed with its file); this flow "
                    "waits until it loads.",
                )
            )
    usable = {n: b for n, b in loaded.items()}
    unknown = {
        n: node for n, node in spec.nodes.items() if node.use is None or node.use not in broken
    }
    problems.extend(blocks.use_problems(unknown, usable, positions, sources))
    return loaded


def load_flow_file(
    path: str | Path, max_bytes: int = MAX_FLOW_BYTES, blocks_from: BlockSources | None = None
) -> Flow:
    """Read and load one flow file of at most ``max_bytes`` bytes.

    A larger file is refused before it is read (and a file that grows past the limit while it
    is read is refused too): loading one costs about a second of CPU per megabyte, and no
    designer writes a call tree that big on purpose.

    Raises:
        FlowLoadError: the file is too big, not UTF-8, or fails to parse or validate.
        OSError: the file cannot be opened or read.
    """
    path = Path(path)
    with path.open("rb") as source:
        size = os.fstat(source.fileno()).st_size
        data = source.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:
        raise FlowLoadError([_too_big(path, max(size, len(data)), max_bytes)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FlowLoadError([Problem(str(path), 1, 1, "The file is not UTF-8 text.")]) from None
    found = read_blocks(path.parent) if blocks_from is None else blocks_from
    return load_flow_text(text, str(path), default_id=path.stem, blocks_from=found)


def _too_big(path: Path, size: int, max_bytes: int) -> Problem:
    return Problem(
        str(path),
        1,
        1,
        f"The file is {size:,} bytes, over the limit of {max_bytes:,} bytes (FLOW_MAX_BYTES); "
        "split the flow into several files or raise the limit.",
    )


def load_flow_text(
    text: str, path: str, default_id: str, blocks_from: BlockSources | None = None
) -> Flow:
    """Validate YAML ``text`` (named ``path`` in messages) into a :class:`Flow`.

    ``blocks_from`` are the block files the flow may use; a source made by
    :func:`ivr.blocks.pack` (a stored version) carries its own.
    """
    packed = blocks.unpack(text)
    flow_text, sources = packed if packed is not None else (text, dict(blocks_from or {}))
    spec, positions = _validated(
        FlowSpec, flow_text, path, "A flow file must be a map with start and nodes."
    )
    problems: list[Problem] = []
    numbers = _normalised_numbers(spec, positions, problems)
    compiled_templates, compiled_expressions = _compile(spec, positions, problems)
    compiled_urls = _compile_urls(spec, positions, problems)
    used_blocks = _blocks_of(spec, sources, positions, problems)
    problems.extend(_reference_problems(spec, positions))
    problems.extend(_clock_problems(spec, positions))
    problems.extend(_language_problems(spec, positions))
    if not problems:  # the shape checks need every target to exist
        problems.extend(flow_checks.errors(spec, positions))
    if problems:
        raise FlowLoadError(problems)
    warnings = (
        *_graph_warnings(spec, positions),
        *dip_urls.warnings(spec, positions),
        *flow_checks.warnings(spec, positions),
    )
    uses_clock = _uses_clock(spec)
    if used_blocks:  # the blocks' nodes join the flow's; their texts compile with them
        spec = spec.model_copy(update={"nodes": blocks.expand(spec.nodes, used_blocks)})
        compiled_templates, compiled_expressions = _compile(spec, positions, [])
        compiled_urls = _compile_urls(spec, positions, [])
        uses_clock = _uses_clock(spec)
    source = blocks.pack(flow_text, used_blocks)
    return Flow(
        id=spec.id or default_id,
        version=content_version(source),
        path=path,
        source=source,
        spec=spec,
        numbers=numbers,
        compiled_templates=compiled_templates,
        compiled_expressions=compiled_expressions,
        warnings=warnings,
        number_positions=tuple(positions.locate(("numbers", i)) for i in range(len(numbers))),
        compiled_urls=compiled_urls,
        uses_clock=uses_clock,
    )


def _normalised_numbers(
    spec: FlowSpec, positions: Positions, problems: list[Problem]
) -> tuple[str, ...]:
    numbers = []
    for i, raw in enumerate(spec.numbers):
        try:
            parsed = phonenumbers.parse(raw, None)
            if not phonenumbers.is_possible_number(parsed):
                raise phonenumbers.NumberParseException(0, "impossible number")
        except phonenumbers.NumberParseException:
            problems.append(
                positions.problem(
                    ("numbers", i), f"{raw!r} is not a phone number in E.164 form (+14155550100)."
                )
            )
            continue
        numbers.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return tuple(numbers)


def _texts(node: Node) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every template string of a node, with its path inside the node."""

    def prompt(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[Any, str]]:
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, SayPart):
            yield path, value.say
            for key in ("voice", "language"):  # templates too: a call may choose its language
                if setting := getattr(value, key):
                    yield (*path, key), setting
        elif isinstance(value, PlayPart):
            yield path, value.play
        elif isinstance(value, list):
            for i, part in enumerate(value):
                yield from prompt(part, (*path, i))
        elif value is not None and not isinstance(value, PausePart):
            raise TypeError(value)  # pragma: no cover

    if node.description:
        yield ("description",), node.description
    if node.topic:
        yield ("topic",), node.topic
    yield from prompt(node.say, ("say",))
    if node.play:
        yield ("play",), node.play
    if node.gather:
        yield from prompt(node.gather.prompt, ("gather", "prompt"))
        if node.gather.language:
            yield ("gather", "language"), node.gather.language
    for key in ("no_input", "no_match"):
        retry = getattr(node, key)
        if retry is not None:
            yield from prompt(retry.reprompt, (key, "reprompt"))
            for i, item in enumerate(retry.reprompts or []):
                yield from prompt(item, (key, "reprompts", i))
    if node.http:  # its url is a template of its own kind: see _compile_urls
        for name, value in node.http.headers.items():
            yield ("http", "headers", name), value
        yield from _json_strings(node.http.json_body, ("http", "json"))
        yield from _json_strings(node.http.form, ("http", "form"))
    for name, value in (node.set or {}).items():
        if isinstance(value, str):
            yield ("set", name), value
    if node.transfer:
        for key in ("reason", "whisper", "hold_music"):
            if text := getattr(node.transfer, key):
                yield ("transfer", key), text
        yield from prompt(node.transfer.hold, ("transfer", "hold"))
    if node.callback and node.callback.reason:
        yield ("callback", "reason"), node.callback.reason
    if node.send_sms:
        if node.send_sms.to:
            yield ("send_sms", "to"), node.send_sms.to
        yield ("send_sms", "body"), node.send_sms.body
    if node.send_email:  # its html is a template of its own kind: see _compile_html
        for key in ("to", "subject", "text"):
            yield ("send_email", key), getattr(node.send_email, key)
    if node.wait_for:
        yield from prompt(node.wait_for.hold, ("wait_for", "hold"))
    if node.with_:
        yield from _json_strings(node.with_, ("with",))


def _page_texts(page: PageSpec) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every template string of a page, with its path inside the page."""
    for key in ("title", "content", "done"):
        if text := getattr(page, key):
            yield (key,), text
    if page.choices:
        for key in ("value", "label", "empty"):
            if text := getattr(page.choices, key):
                yield ("choices", key), text
    for name, item in page.fields.items():
        for key in ("label", "hint", "error"):
            if text := getattr(item, key):
                yield ("fields", name, key), text


def _json_strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[Any, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_strings(item, (*path, i))


def _compile(
    spec: FlowSpec, positions: Positions, problems: list[Problem]
) -> tuple[dict[str, Template], dict[str, templates.Expression]]:
    compiled: dict[str, Template] = {}
    expressions: dict[str, templates.Expression] = {}
    prompt_text = spec.resume.prompt
    sources: list[tuple[tuple[str | int, ...], str]] = []
    if prompt_text:
        sources.append((("resume", "prompt"), prompt_text))
    for key in ("language", "voice"):
        if setting := getattr(spec, key):
            sources.append(((key,), setting))
    if spec.messages is not None:
        sources.extend((("messages", *path), text) for path, text in spec.messages.texts())
    for name, page in spec.pages.items():
        sources.extend((("pages", name, *path), text) for path, text in _page_texts(page))
    if spec.sms is not None:
        for key in ("otherwise", "unknown", "help"):
            if text := getattr(spec.sms, key):
                sources.append((("sms", key), text))
    for name, node in spec.nodes.items():
        sources.extend((("nodes", name, *path), text) for path, text in _texts(node))
        if node.send_email and node.send_email.html:
            html = node.send_email.html
            try:
                templates.compile_html(html)
            except ValueError as exc:
                problems.append(
                    positions.problem(("nodes", name, "send_email", "html"), _capital(exc))
                )
        for i, case in enumerate(node.branch or []):
            loc: tuple[str | int, ...] = ("nodes", name, "branch", i, "if")
            try:
                expressions.setdefault(case.when, templates.compile_expression(case.when))
            except ValueError as exc:
                problems.append(positions.problem(loc, _capital(exc)))
    for loc, text in sources:
        if text in compiled or templates.is_static(text):
            continue  # static text is spoken as written; the engine never renders it
        try:
            compiled[text] = templates.compile_template(text)
            expression = templates.single_expression(text)
            if expression is not None:
                expressions.setdefault(expression, templates.compile_expression(expression))
        except ValueError as exc:
            problems.append(positions.problem(loc, _capital(exc)))
    return compiled, expressions


def _compile_urls(
    spec: FlowSpec, positions: Positions, problems: list[Problem]
) -> dict[str, Template]:
    compiled: dict[str, Template] = {}
    for name, node in spec.nodes.items():
        url = node.http.url if node.http else None
        if url is None or url in compiled or templates.is_static(url):
            continue
        try:
            compiled[url] = templates.compile_url(url)
        except ValueError as exc:
            problems.append(positions.problem(("nodes", name, "http", "url"), _capital(exc)))
    return compiled


def _capital(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:]


def _reference_problems(spec: FlowSpec, positions: Positions) -> list[Problem]:
    problems = []
    names = spec.nodes

    def check(loc: tuple[str | int, ...], target: str) -> None:
        if target not in names:
            hint = difflib.get_close_matches(target, list(names), n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                positions.problem(loc, f"There is no node named {target!r}.{suggestion}")
            )

    check(("start",), spec.start)
    for key in ("transferred", "verify"):
        if target := getattr(spec.resume, key):
            check(("resume", key), target)
    if spec.fallback:
        check(("fallback",), spec.fallback)
    for key in ("no_input", "no_match"):
        retry = getattr(spec.defaults, key)
        if retry is not None and retry.then:
            check(("defaults", key, "then"), retry.then)
    saved = _saved_variables(spec)
    for i, secret in enumerate(spec.sensitive):
        root = secret.split(".", 1)[0]
        if root not in saved:
            hint = difflib.get_close_matches(root, sorted(saved), n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                positions.problem(
                    ("sensitive", i),
                    f"No node saves a variable named {root!r}, so {secret!r} would protect "
                    f"nothing.{suggestion}",
                )
            )
    problems.extend(_reserved_variable_problems(spec, positions))
    problems.extend(_sms_reply_problems(spec, positions, check))
    problems.extend(_page_problems(spec, positions))
    for name, node in names.items():
        for path, target in node.targets():
            check(("nodes", name, *path), target)
        if node.gather and not node.on and not node.following:
            problems.append(
                positions.problem(
                    ("nodes", name, "gather"),
                    "A gather needs 'on' routes or a 'next' node for the answer to go to.",
                    at_key=True,
                )
            )
    return problems


def _sms_reply_problems(
    spec: FlowSpec, positions: Positions, check: Callable[[tuple[str | int, ...], str], None]
) -> Iterator[Problem]:
    """Each ``sms.replies`` target must be a node, and no reply may be STOP, START or HELP
    (or a synonym): those texts opt the sender out or in, or ask for help, and never reach
    the flow."""
    if spec.sms is None:
        return
    for text, target in spec.sms.replies.items():
        check(("sms", "replies", text), target)
        if (word := keywords.keyword(text)) is not None:
            yield positions.problem(
                ("sms", "replies", text),
                f"A text of {text.strip()!r} is {word.value.upper()} (texts of it "
                f"{_KEYWORD_EFFECT[word]} and never reach the flow); choose another reply.",
                at_key=True,
            )


_KEYWORD_EFFECT = {
    keywords.Keyword.STOP: "opt the sender out of texts",
    keywords.Keyword.START: "opt the sender back in",
    keywords.Keyword.HELP: "get the help text",
}


_LINK_CALL = re.compile(r"\blink\(\s*(?:'([^']*)'|\"([^\"]*)\")\s*\)")
_ANY_LINK = re.compile(r"\blink\s*\(")


def _page_problems(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """Pages named by ``wait_for`` and ``link('...')`` exist; links sit only in messages."""
    pages = spec.pages

    def unknown(loc: tuple[str | int, ...], page: str) -> Problem:
        hint = difflib.get_close_matches(page, list(pages), n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        known = f" (the flow's pages: {', '.join(sorted(pages))})" if pages else ""
        return positions.problem(
            loc, f"There is no page named {page!r} under pages:{known}.{suggestion}"
        )

    for name, node in spec.nodes.items():
        if node.wait_for and node.wait_for.page not in pages:
            yield unknown(("nodes", name, "wait_for", "page"), node.wait_for.page)
        bodies: list[tuple[tuple[str | int, ...], str]] = []
        if node.send_sms:
            bodies.append((("send_sms", "body"), node.send_sms.body))
        if node.send_email:
            bodies.append((("send_email", "text"), node.send_email.text))
            if node.send_email.html:
                bodies.append((("send_email", "html"), node.send_email.html))
        for path, text in bodies:
            for match in _LINK_CALL.finditer(text):
                page = match.group(1) if match.group(1) is not None else match.group(2)
                if page not in pages:
                    yield unknown(("nodes", name, *path), page)
        for path, text in _texts(node):
            if path[0] in ("send_sms", "send_email") and path[-1] in ("body", "text"):
                continue
            if _ANY_LINK.search(text) and "{{" in text:
                yield positions.problem(
                    ("nodes", name, *path),
                    "link('...') makes a link for a text or an email: put it in send_sms.body "
                    "or send_email.text/html.",
                )


_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_CLOCK_NAME = re.compile(r"\b(" + "|".join(sorted(hours.CLOCK_NAMES)) + r")\b")


def _clock_problems(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """``open_now``, ``holiday`` and ``opens_next`` mean nothing in a flow without ``hours:``."""
    if spec.hours is not None:
        return
    saved = _saved_variables(spec)
    for name, node in spec.nodes.items():
        found: list[tuple[tuple[str | int, ...], str]] = [
            (path, code) for path, text in _texts(node) for code in _TEMPLATE_CODE.findall(text)
        ]
        found += [(("branch", i, "if"), case.when) for i, case in enumerate(node.branch or [])]
        for path, code in found:
            match = _CLOCK_NAME.search(code)
            if match and match.group(1) not in saved:
                yield positions.problem(
                    ("nodes", name, *path),
                    f"The variable {match.group(1)} comes from the flow's business hours, and this flow has "
                    "no hours: block (weekly opening hours, holidays, exceptions).",
                )


def _language_problems(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """Languages written as plain text must be tags Twilio knows the shape of (es-MX)."""
    found: list[tuple[tuple[str | int, ...], Any]] = [(("language",), spec.language)]
    for name, node in spec.nodes.items():
        if node.set and "language" in node.set:
            found.append((("nodes", name, "set", "language"), node.set["language"]))
        if node.gather and node.gather.language:
            found.append((("nodes", name, "gather", "language"), node.gather.language))
        for path, part in _say_parts(node):
            if part.language:
                found.append((("nodes", name, *path, "language"), part.language))
    for loc, value in found:
        if (problem := languages.language_problem(value)) is not None:
            yield positions.problem(loc, problem)


def _say_parts(node: Node) -> Iterator[tuple[tuple[str | int, ...], SayPart]]:
    """Every ``{say: ...}`` part of a node's prompts, with its path inside the node."""
    prompts: list[tuple[tuple[str | int, ...], Any]] = [(("say",), node.say)]
    if node.gather:
        prompts.append((("gather", "prompt"), node.gather.prompt))
    for path, prompt in prompts:
        items = prompt if isinstance(prompt, list) else [prompt]
        for i, item in enumerate(items):
            if isinstance(item, SayPart):
                yield ((*path, i) if isinstance(prompt, list) else path), item


_CLOCK_USE = re.compile(r"\b(?:now|" + "|".join(sorted(hours.CLOCK_NAMES)) + r")\b")


def _uses_clock(spec: FlowSpec) -> bool:
    """Whether any template or condition of ``spec`` may read the clock's variables.

    Working them out costs more than a whole turn of a small flow, so flows that never read
    them skip it.
    """
    texts = [spec.resume.prompt or "", spec.language, spec.voice or ""]
    texts += [text for _, text in spec.messages.texts()] if spec.messages else []
    conditions: list[str] = []
    for node in spec.nodes.values():
        texts += [text for _, text in _texts(node)]
        if node.http:
            texts.append(node.http.url)
        conditions += [case.when for case in node.branch or []]
    code = [chunk for text in texts for chunk in _TEMPLATE_CODE.findall(text)]
    return any(_CLOCK_USE.search(text) for text in (*code, *conditions))


RESERVED_VARIABLES = ("attempts",)  # names the engine fills in for templates (ivr.attempts)


def _reserved_variable_problems(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """A flow may not save a variable under a name the engine gives templates itself."""
    for name, node in spec.nodes.items():
        places: list[tuple[tuple[str | int, ...], str | None, bool]] = [
            (("save_as",), node.save_as, False),
            (("http", "save_as"), node.http.save_as if node.http else None, False),
            *((("set", key), key, True) for key in node.set or {}),
        ]
        for path, variable, at_key in places:
            if variable in RESERVED_VARIABLES:
                yield positions.problem(
                    ("nodes", name, *path),
                    f"{variable!r} is the call's count of failed tries per node "
                    f"({variable}.<node>.no_match); save this variable under another name.",
                    at_key=at_key,
                )
    for page_id, page in spec.pages.items():  # a page saves its answer too
        variable = page.save_as or page_id
        if variable in RESERVED_VARIABLES:
            yield positions.problem(
                ("pages", page_id, "save_as") if page.save_as else ("pages", page_id),
                f"{variable!r} is the call's count of failed tries per node "
                f"({variable}.<node>.no_match); save this page's answer under another name "
                "(save_as).",
                at_key=page.save_as is None,
            )


def _saved_variables(spec: FlowSpec) -> set[str]:
    """Every variable a node of ``spec`` can save (gathers, data dips, ``set``), and what a
    page's submission saves (its ``save_as``, else its id)."""
    saved: set[str] = set()
    for node in spec.nodes.values():
        saved.update(name for name in (node.save_as, node.http and node.http.save_as) if name)
        saved.update(node.set or {})
    saved.update(page.save_as or page_id for page_id, page in spec.pages.items())
    return saved


def _graph_warnings(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    optional = (spec.fallback, spec.resume.transferred, spec.resume.verify)
    roots = [spec.start, *(x for x in optional if x)]
    roots += [r.then for r in (spec.defaults.no_input, spec.defaults.no_match) if r and r.then]
    reachable = _reachable(spec, roots)
    verifying = _reachable(spec, [spec.resume.verify]) if spec.resume.verify else set()
    others = _reachable(spec, [r for r in roots if r != spec.resume.verify])
    for name, node in spec.nodes.items():
        if name not in reachable:
            yield positions.problem(
                ("nodes", name), f"Node {name!r} can never be reached from start.", "warning"
            )
        if (
            node.gather
            or node.transfer
            or node.hangup
            or node.wait_for
            or node.use
            or node.following
        ):
            continue
        if node.verified and name in verifying:  # a resumed caller goes back where they were
            if name in others:
                yield positions.problem(
                    ("nodes", name),
                    f"Node {name!r} leads nowhere for a caller who is not resuming: a resumed "
                    "caller goes back to where they were, any other caller is hung up on. Add "
                    "next for the others.",
                    "warning",
                )
            continue
        yield positions.problem(
            ("nodes", name),
            f"Node {name!r} leads nowhere: the call hangs up after it. "
            "Add next, or hangup: true to say so.",
            "warning",
        )


def _reachable(spec: FlowSpec, roots: list[str]) -> set[str]:
    """Every node a call can get to from ``roots``."""
    reachable: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in reachable:
            continue
        reachable.add(name)
        pending.extend(target for _, target in spec.nodes[name].targets())
    return reachable
