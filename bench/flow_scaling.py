"""Does flow size cost anything per call? A 5,000-node flow against a 5-node flow, in-process.

``python -m bench.flow_scaling`` generates two flows of the same shape: a welcome, then a ring of
units of three nodes (a gather with a keypad route, a say with a template that sets a variable,
a branch on an expression back into the next unit's gather) and a goodbye. It measures:

* load + validate of the big flow with :func:`ivr.flow.load_flow_text` (target < 1 s), with the
  YAML parse and schema validation also timed on their own to show where the time goes;
* :func:`ivr.engine.start` and :func:`ivr.engine.step` (answer a gather, run the say and branch,
  stop at the next gather) on both flows, alternating batches, median of batch means
  (target: the big flow within +/-10% of the small one). A step is timed two ways:

  - *same path*: every step answers the first menu of a call waiting there, so both flows run
    the same nodes each time. This is what the target applies to: it shows whether anything in
    a step grows with the size of the flow.
  - *whole-flow walk*: one call walks on through every unit, so on the big flow each step runs
    nodes last touched 1,666 steps ago. The small flow has no such nodes; the difference is the
    CPU caches refilling, and is reported (not judged) so it stays visible.

No server and no Redis. Results go to ``bench/results/flow_scaling.json``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

from pydantic import ValidationError

from bench import report
from ivr import engine
from ivr.flow import Flow, load_flow_text
from ivr.schema import FlowSpec
from ivr.session import Session
from ivr.turn import Answer
from ivr.yamlsource import parse

LOAD_TARGET_SECONDS = 1.0
STEP_TOLERANCE = 0.10


def flow_yaml(nodes: int) -> str:
    """A flow of exactly ``nodes`` nodes (``nodes % 3 == 2``): welcome, units, goodbye."""
    if nodes < 5 or nodes % 3 != 2:
        raise ValueError("the generated flows have 3k + 2 nodes (5, 8, ..., 5000)")
    units = (nodes - 2) // 3
    lines = [
        f"id: scale_{nodes}",
        f"description: Generated flow with {nodes} nodes for the scaling benchmark.",
        "start: welcome",
        "defaults:",
        '  no_input: {retries: 2, reprompt: "Sorry, I didn\'t hear anything.", then: goodbye}',
        '  no_match: {retries: 2, reprompt: "Sorry, I didn\'t get that.", then: goodbye}',
        "nodes:",
        "  welcome:",
        "    say: Welcome to the generated flow.",
        "    next: menu_0",
    ]
    for i in range(units):
        following = (i + 1) % units
        lines += [
            f"  menu_{i}:",
            f"    description: at menu {i}",
            "    gather:",
            f"      prompt: This is menu {i}. Press 1 to go on, or 9 to leave.",
            "      input: [dtmf, speech]",
            "      num_digits: 1",
            "    on:",
            f'      "1|next|continue": heard_{i}',
            '      "9|leave|goodbye": goodbye',
            f"  heard_{i}:",
            f"    set: {{visited: {i}}}",
            f'    say: "You are past menu {{{{ visited }}}} of {units}."',
            f"    next: route_{i}",
            f"  route_{i}:",
            "    branch:",
            f"      - if: visited == {i}",
            f"        then: menu_{following}",
            "    next: goodbye",
        ]
    lines += ["  goodbye:", "    say: Goodbye.", "    hangup: true"]
    return "\n".join(lines) + "\n"


def load_times(text: str, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds for parse, parse + validate, and the full load."""
    parse_s, validate_s, load_s = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        data, _ = parse(text, "generated.yaml")
        parse_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            FlowSpec.model_validate(data)
        except ValidationError as exc:  # pragma: no cover - the generator writes valid flows
            raise RuntimeError(f"the generated flow is invalid: {exc}") from None
        validate_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_flow_text(text, "generated.yaml", "generated")
        load_s.append(time.perf_counter() - started)
    return {
        "yaml_parse_s": round(min(parse_s), 4),
        "schema_validate_s": round(min(validate_s), 4),
        "load_flow_text_s": round(min(load_s), 4),
        "load_flow_text_median_s": round(statistics.median(load_s), 4),
    }


class Walker:
    """Steps one flow forever: answer "1" at each menu, which leads to the next menu's gather."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.session = self.fresh()

    def fresh(self) -> Session:
        """A new call waiting at the first menu."""
        return engine.start(self.flow, caller="+12125550100", call_sid="CAbench", at=0.0).session

    def steps(self, count: int, same_path: bool = False) -> float:
        """Seconds for ``count`` engine steps: the call walking on through the flow, or (with
        ``same_path``) each step answering the first menu of the same waiting call."""
        waiting = self.fresh() if same_path else self.session
        session = waiting
        answer = Answer(digits="1", at=1.0)
        started = time.perf_counter()
        for _ in range(count):
            session = engine.step(self.flow, waiting if same_path else session, answer).session
        elapsed = time.perf_counter() - started
        if session.waiting != "input":
            raise RuntimeError(f"the walk left the menus: {session.node} {session.status}")
        if not same_path:
            self.session = session
        return elapsed

    def starts(self, count: int) -> float:
        """Seconds for ``count`` call starts."""
        started = time.perf_counter()
        for _ in range(count):
            engine.start(self.flow, caller="+12125550100", call_sid="CAbench", at=0.0)
        return time.perf_counter() - started


def engine_times(flows: dict[str, Flow], batches: int, per_batch: int) -> dict[str, Any]:
    """Median of per-batch mean microseconds for start and step, batches alternating flows."""
    walkers = {name: Walker(flow) for name, flow in flows.items()}
    step_us: dict[str, list[float]] = {name: [] for name in flows}
    walk_us: dict[str, list[float]] = {name: [] for name in flows}
    start_us: dict[str, list[float]] = {name: [] for name in flows}
    for walker in walkers.values():  # warm caches and compiled templates once
        walker.steps(per_batch // 10 or 1)
        walker.steps(per_batch // 10 or 1, same_path=True)
        walker.starts(per_batch // 10 or 1)
    for batch in range(batches):
        order = list(walkers) if batch % 2 == 0 else list(reversed(walkers))
        for name in order:
            walker = walkers[name]
            step_us[name].append(1e6 * walker.steps(per_batch, same_path=True) / per_batch)
            walk_us[name].append(1e6 * walker.steps(per_batch) / per_batch)
            start_us[name].append(1e6 * walker.starts(per_batch) / per_batch)
    return {
        name: {
            "step_us": round(statistics.median(step_us[name]), 2),
            "step_us_spread": [round(min(step_us[name]), 2), round(max(step_us[name]), 2)],
            "walk_step_us": round(statistics.median(walk_us[name]), 2),
            "walk_step_us_spread": [round(min(walk_us[name]), 2), round(max(walk_us[name]), 2)],
            "start_us": round(statistics.median(start_us[name]), 2),
        }
        for name in flows
    }


def measure(big: int, small: int, batches: int, per_batch: int, repeats: int) -> dict[str, Any]:
    """Generate, load and step both flows."""
    texts = {f"{big} nodes": flow_yaml(big), f"{small} nodes": flow_yaml(small)}
    loads = {name: load_times(text, repeats) for name, text in texts.items()}
    flows = {
        name: load_flow_text(text, f"{name}.yaml", "generated") for name, text in texts.items()
    }
    gc.freeze()  # as app.py does once the flows are loaded: start-up objects skip full GC passes
    engines = engine_times(flows, batches, per_batch)
    big_name, small_name = f"{big} nodes", f"{small} nodes"
    step_ratio = engines[big_name]["step_us"] / engines[small_name]["step_us"]
    walk_ratio = engines[big_name]["walk_step_us"] / engines[small_name]["walk_step_us"]
    start_ratio = engines[big_name]["start_us"] / engines[small_name]["start_us"]
    load_s = loads[big_name]["load_flow_text_s"]
    return {
        "flows": {
            name: {
                "nodes": len(flows[name].spec.nodes),
                "yaml_bytes": len(texts[name]),
                **loads[name],
                **engines[name],
            }
            for name in texts
        },
        "ratios": {
            "step_big_over_small": round(step_ratio, 3),
            "walk_step_big_over_small": round(walk_ratio, 3),
            "start_big_over_small": round(start_ratio, 3),
        },
        "targets": {
            "load": {
                "target": f"load + validate {big} nodes < {LOAD_TARGET_SECONDS:g} s",
                "value_s": load_s,
                "result": report.verdict(load_s < LOAD_TARGET_SECONDS),
            },
            "step": {
                "target": f"per-step engine time (same path) within +/-{STEP_TOLERANCE:.0%}",
                "value": round(step_ratio, 3),
                "result": report.verdict(abs(step_ratio - 1) <= STEP_TOLERANCE),
            },
            "walk step": {
                "target": "per-step time walking the whole flow (cold CPU caches)",
                "value": round(walk_ratio, 3),
                "result": "-",
            },
            "start": {
                "target": f"per-start engine time within +/-{STEP_TOLERANCE:.0%}",
                "value": round(start_ratio, 3),
                "result": report.verdict(abs(start_ratio - 1) <= STEP_TOLERANCE),
            },
        },
        "settings": {"batches": batches, "steps_per_batch": per_batch, "load_repeats": repeats},
    }


def print_report(doc: dict[str, Any]) -> None:
    """A table per flow, then the verdicts."""
    headers = ["flow", "nodes", "YAML bytes", "parse s", "validate s", "load s", "start us"]
    rows = [
        [name, f["nodes"], f["yaml_bytes"], f["yaml_parse_s"], f["schema_validate_s"],
         f["load_flow_text_s"], f["start_us"], f["step_us"], f["walk_step_us"]]
        for name, f in doc["flows"].items()
    ]  # fmt: skip
    print(report.table([*headers, "step us", "walk step us"], rows))
    print()
    verdicts = [
        [name, value.get("value_s", value.get("value")), value["target"], value["result"]]
        for name, value in doc["targets"].items()
    ]
    print(report.table(["measure", "value", "target", "result"], verdicts))


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write ``bench/results/flow_scaling.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.flow_scaling", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--small", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1000, help="engine steps per batch")
    parser.add_argument("--load-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    doc = measure(args.nodes, args.small, args.batches, args.steps, args.load_repeats)
    print_report(doc)
    print(f"\nwritten: {report.write('flow_scaling', doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
