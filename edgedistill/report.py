"""report.json and report.md of a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.fileio import write_json_atomic

REPORT_FILE = "report.json"


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def add_section(run_dir: str | Path, name: str, data: Any) -> Path:
    """Set ``report[name] = data`` in ``run_dir/report.json`` (atomically), keeping the rest.

    Later stages (firmware run, benchmarks on devices) use this to add their figures to
    the report of the run they belong to.
    """
    report = load_report(run_dir)
    report[name] = data
    return write_json_atomic(Path(run_dir) / REPORT_FILE, report)
