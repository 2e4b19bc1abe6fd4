"""Run every benchmark and check, then print one summary table (``python -m bench``).

Each script runs in its own process (so one failure does not stop the rest, and each cleans up
its own servers and keys), writes ``bench/results/<name>.json``, and this module reads those
files back into ``bench/results/summary.json``. The defaults are short (about five minutes);
``--full`` uses each script's own defaults (webhooks 3 x 10 s, soak 60 s, about ten minutes).
The profile runs only when py-spy is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.servers import REPO, RESULTS

_SHORT_ROUNDS = ["--seconds", "5", "--rounds", "3", "--warmup", "2"]
SHORT = {
    "webhooks_flask": [*_SHORT_ROUNDS, "--reference", "flask"],
    "webhooks_wsgi": [*_SHORT_ROUNDS, "--reference", "wsgi"],
    "webhooks_flask_incoming": [*_SHORT_ROUNDS, "--reference", "flask", "--scenario", "incoming"],
    "webhooks_wsgi_incoming": [*_SHORT_ROUNDS, "--reference", "wsgi", "--scenario", "incoming"],
    "roundtrips": [],
    "flow_scaling": ["--batches", "12"],
    "session_size": [],
    "fuzz": ["--cases", "10000"],
    "soak": ["--seconds", "20", "--calls", "200"],
    "slow_clients": ["--seconds", "4", "--rounds", "2"],
    "history": ["--seconds", "4", "--rounds", "2", "--warmup", "2"],
    "screen_pop": ["--seconds", "5", "--rounds", "2"],
    "messages": ["--seconds", "5", "--rounds", "3", "--warmup", "1"],
    "profile": ["--seconds", "5"],
    "page_submit": ["--samples", "200"],
}
FULL: dict[str, list[str]] = {name: [] for name in SHORT}
FULL["webhooks_flask"] = ["--reference", "flask"]
FULL["webhooks_wsgi"] = ["--reference", "wsgi"]
FULL["webhooks_flask_incoming"] = ["--reference", "flask", "--scenario", "incoming"]
FULL["webhooks_wsgi_incoming"] = ["--reference", "wsgi", "--scenario", "incoming"]
WEBHOOK_RUNS = (
    "webhooks_flask",
    "webhooks_wsgi",
    "webhooks_flask_incoming",
    "webhooks_wsgi_incoming",
)
APP_PACKAGES = ("webhooks", "conversation", "ivr", "context")  # where the app's own frames live
MODULES = dict.fromkeys(WEBHOOK_RUNS, "webhooks")  # result name -> script
FULL["profile"] = ["--seconds", "10"]


def has_py_spy() -> bool:
    """True when py-spy is next to this Python or on PATH."""
    return Path(sys.executable).with_name("py-spy").exists() or shutil.which("py-spy") is not None


def run_one(name: str, args: list[str]) -> dict[str, Any]:
    """Run ``python -m bench.<name> args``; report its exit status and duration."""
    print(f"\n=== bench.{name} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{MODULES.get(name, name)}", *args],
        cwd=REPO,
        check=False,
        timeout=1800,
    )
    return {"exit": completed.returncode, "seconds": round(time.perf_counter() - started, 1)}


def load(name: str) -> dict[str, Any] | None:
    """A results file, if the script wrote one."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows(results: dict[str, dict[str, Any] | None]) -> list[list[Any]]:
    """One row per target: benchmark, measure, value, target, verdict."""
    out: list[list[Any]] = []
    for name in WEBHOOK_RUNS:
        w = results.get(name)
        if w is None:
            continue
        ratios, targets = w["ratios"], w["targets"]
        out += [
            [name, "app / reference req/s",
             f"{ratios['throughput_app_over_reference']} ({w['app']['req_per_s']} / "
             f"{w['reference']['req_per_s']})", targets["throughput"]["target"],
             targets["throughput"]["result"]],
            [name, "app / reference p99",
             f"{ratios['p99_app_over_reference']} ({w['app']['p99_ms']} / "
             f"{w['reference']['p99_ms']} ms)", targets["p99"]["target"], targets["p99"]["result"]],
        ]  # fmt: skip
    if (r := results.get("roundtrips")) is not None:
        out.append(["roundtrips", "worst round trips (warm)", r["worst_round_trips"], "<= 2",
                    r["result"]])  # fmt: skip
    if (f := results.get("flow_scaling")) is not None:
        for key, target in f["targets"].items():
            value = target.get("value_s", target.get("value"))
            out.append(["flow_scaling", key, value, target["target"], target["result"]])
    if (s := results.get("session_size")) is not None:
        out.append(["session_size", "MEMORY USAGE / len(doc) B",
                    f"{s['memory_usage_bytes']} / {s['doc_bytes']}", "<= 2048",
                    "PASS" if set(s["results"].values()) == {"PASS"} else "FAIL"])  # fmt: skip
    if (z := results.get("fuzz")) is not None:
        out.append(["fuzz", f"bad responses in {z['cases']} cases", z["failures"], "0",
                    z["targets"]["no_5xx_and_valid_twiml"]])  # fmt: skip
        out.append(["fuzz", "exceptions answered with apology", z["errors_logged"], "0",
                    z["targets"]["no_unexpected_exceptions"]])  # fmt: skip
    if (k := results.get("soak")) is not None:
        rss = k["worker_rss_kib"]
        out += [
            ["soak", f"errors ({k['calls']} calls, {k['webhooks']} webhooks)", k["errors"], "0",
             k["targets"]["errors"]],
            ["soak", "sessions not as expected", k["redis_audit"]["mismatches"], "0",
             k["targets"]["sessions_accounted_for"]],
            ["soak", "worker RSS start -> end KiB", f"{rss['start_total']} -> {rss['end_total']}",
             "report", "-"],
        ]  # fmt: skip
    if (c := results.get("slow_clients")) is not None:
        for name, model in c["models"].items():
            target = c["targets"].get(f"{name}_p99_slow_over_none")
            out.append([
                "slow_clients", f"{name} ({model['gunicorn']}): p99 with {c['settings']['slow']} "
                "slow clients / none",
                f"{model['p99_slow_over_none']} ({model['slow']['p99_ms']} / "
                f"{model['none']['p99_ms']} ms, {model['slow']['errors']} errors)",
                target["target"] if target else "report", target["result"] if target else "-",
            ])  # fmt: skip
    if (p := results.get("screen_pop")) is not None:
        pop, targets = p["screen_pop"], p["targets"]
        consoles = p["settings"]["consoles"]
        out += [
            ["screen_pop", f"transfer webhook to each of {consoles} consoles, p99",
             f"{pop['p99_ms']} ms ({pop['samples']} deliveries, {pop['missed']} missed)",
             targets["screen_pop_p99"]["target"], targets["screen_pop_p99"]["result"]],
            ["screen_pop", f"req/s with {consoles} consoles / none",
             f"{p['throughput_consoles_over_none']}",
             targets["throughput_with_consoles"]["target"],
             targets["throughput_with_consoles"]["result"]],
        ]  # fmt: skip
    if (h := results.get("history")) is not None:
        ratios, targets, lag = h["ratios"], h["targets"], h["writer_lag"]["rounds"]
        audit = h["completeness"]
        out += [
            ["history", "on / off req/s",
             f"{ratios['throughput_on_over_off']} ({h['on']['req_per_s']} / "
             f"{h['off']['req_per_s']})", targets["throughput"]["target"],
             targets["throughput"]["result"]],
            ["history", "on / off p99",
             f"{ratios['p99_on_over_off']} ({h['on']['p99_ms']} / {h['off']['p99_ms']} ms)",
             targets["p99"]["target"], targets["p99"]["result"]],
            ["history", f"writer lag p99 at {h['event_rate_on_rounds_per_s']} events/s",
             f"{lag['upper_p99_ms']} ms", targets["writer_lag_p99"]["target"],
             targets["writer_lag_p99"]["result"]],
            ["history", "events in SQL / stream (missing, duplicates)",
             f"{audit['event_rows']} / {audit['stream_entries']} ({audit['missing_from_sql']}, "
             f"{audit['duplicate_rows']})", targets["every_event_once"]["target"],
             targets["every_event_once"]["result"]],
        ]  # fmt: skip
    if (g := results.get("page_submit")) is not None:
        target = g["targets"]["redirect_p99"]
        out.append(["page_submit", f"page submit -> redirect issued, p99 ({g['samples']} samples)",
                    f"{round(g['redirect_ms']['p99'], 1)} ms", f"< {target['target']:g} ms",
                    report.verdict(target["passed"])])  # fmt: skip
    if (m := results.get("messages")) is not None:
        target = m["targets"]["webhook_p99_with_send_sms"]
        median = m["p99_median_of_rounds_ms"]
        out.append([
            "messages", "webhook p99 with send_sms / without (Twilio 2 s)",
            f"{m['p99_texting_over_plain']} ({median['texting']} / {median['plain']} ms)",
            target["target"], target["result"],
        ])  # fmt: skip
    if (p := results.get("profile")) is not None:
        hot = [r for r in p["inclusive"] if any(f"({pkg}/" in r["frame"] for pkg in APP_PACKAGES)]
        top = ", ".join(f"{r['frame'].split(' ')[0]} {r['pct']}%" for r in hot[:3])
        out.append(["profile", "hottest app frames (inclusive)", top, "report", "-"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the summary, write ``bench/results/summary.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="each script's full defaults")
    parser.add_argument("--only", nargs="*", choices=list(SHORT), help="run only these")
    args = parser.parse_args(argv)
    plan = FULL if args.full else SHORT
    names = args.only or list(plan)
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "profile" and not has_py_spy():
            print("\n=== bench.profile skipped: py-spy is not installed", flush=True)
            continue
        runs[name] = run_one(name, plan[name])
    results = {name: load(name) for name in runs}
    table_rows = rows(results)
    print("\n" + report.table(["benchmark", "measure", "value", "target", "result"], table_rows))
    summary = {
        "mode": "full" if args.full else "short",
        "runs": runs,
        "rows": [dict(zip(["benchmark", "measure", "value", "target", "result"], r, strict=True))
                 for r in table_rows],
    }  # fmt: skip
    print(f"\nwritten: {report.write('summary', summary)}")
    crashed = [name for name, run in runs.items() if run["exit"] not in (0, 1)]
    if crashed:
        print(f"crashed: {crashed}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
