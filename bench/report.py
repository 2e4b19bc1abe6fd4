"""Printing and storing benchmark results: percentiles, plain-text tables, PASS/FAIL, JSON files.

Results go to ``bench/results/<name>.json``, written to a ``.tmp`` file first and renamed, so an
interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.servers import REPO, RESULTS


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``samples`` (nearest rank); NaN when there are none."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def verdict(passed: bool) -> str:
    """``PASS`` or ``FAIL``."""
    return "PASS" if passed else "FAIL"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table; floats get up to 3 significant decimals."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(str(header))
        for i, header in enumerate(headers)
    ]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def environment() -> dict[str, Any]:
    """Where the numbers were measured: machine, Python and the commit of the code under test."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
            check=False, timeout=5,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
            capture_output=True, text=True, check=False, timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", ""
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "commit": commit + ("+local-changes" if dirty else ""),
    }


def write(name: str, data: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Store ``data`` (plus :func:`environment`) as ``<directory>/<name>.json``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.json"
    scratch = directory / f"{name}.json.tmp"
    document = {"benchmark": name, "environment": environment(), **data}
    scratch.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    scratch.replace(target)
    return target
