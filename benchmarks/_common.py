"""Shared by the benchmark scripts: repeats (median and spread), met/missed verdicts, and
the reference-results files the README tables are rendered from.

A reference file (``benchmarks/reference/<name>.json``) records what was measured, on
which machine, at which commit and how busy the machine was; ``render_readme.py`` turns
it into the README's table. A run on a busy machine is marked ``provisional``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = HERE / "results"
REFERENCE = HERE / "reference"
#: Above this 1-minute load average per core *before* a run the machine is busy (other work)
#: and its timings are provisional. The load after a run is recorded but not judged: it counts
#: the benchmark's own threads.
BUSY_LOAD_PER_CORE = 0.75


def spread(values: Sequence[float]) -> dict:
    """``{'median', 'min', 'max', 'runs'}`` of repeated measurements."""
    vals = [float(v) for v in values]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "runs": vals}


def fmt_spread(s: dict, digits: int = 1, unit: str = "") -> str:
    """``'12.3 (11.9-12.8)'``: the median and, in brackets, the range over the runs."""
    if len(s["runs"]) == 1:
        return f"{s['median']:.{digits}f}{unit}"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def repeat(fn: Callable[[], float], n: int) -> dict:
    """Call ``fn`` (returning one measurement) ``n`` times; :func:`spread` of the results."""
    return spread([fn() for _ in range(n)])


def verdict(name: str, value: float, target: float, higher_is_better: bool = True, unit: str = "") -> dict:
    """One target's verdict (printed as ``met``/``missed``)."""
    met = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    line = f"target {name} {sign} {target:g}{unit}: {'met' if met else 'MISSED'} ({value:.3g}{unit})"
    print(line)
    return {"target": name, "goal": f"{sign} {target:g}{unit}", "value": value, "met": bool(met)}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "omgclip"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_speed_s(repeat: int = 5) -> float:
    """Seconds of a fixed single-threaded pure-Python loop (best of ``repeat``): a yardstick
    for comparing timings taken on different hosts of the same nominal size (a shared
    2-core VM can be 1.5x slower one day than another; a larger value = a slower host)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - t0)
    return round(best, 4)


class Run:
    """Context of one benchmark run: machine, commit and load before and after."""

    def __init__(self, name: str):
        self.name = name
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.load_before = os.getloadavg()[0]
        self.commit = _commit()
        self.host_speed_s = host_speed_s()
        cores = os.cpu_count() or 1
        if self.load_before > BUSY_LOAD_PER_CORE * cores:
            print(f"warning: load average {self.load_before:.1f} on {cores} cores: other processes will slow "
                  f"these timings; the results are marked provisional")

    def record(self, results, targets: list[dict], **settings) -> dict:
        load_after = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        busy = self.load_before > BUSY_LOAD_PER_CORE * cores
        return {
            "benchmark": self.name, "date": self.started[:10], "started": self.started,
            "commit": self.commit,
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_model": _cpu_model(), "cpu_count": cores, "python": platform.python_version(),
                        "host_speed_s": self.host_speed_s},
            "load_average": {"before": round(self.load_before, 2), "after": round(load_after, 2)},
            "provisional": busy,
            "provisional_reason": (f"machine busy (load {self.load_before:.1f} on {cores} "
                                   f"cores): timings are slower than on an idle machine") if busy else "",
            "settings": settings, "targets": targets, "results": results,
        }


def write(record: dict, path: Path | None, reference: bool) -> Path:
    """Write ``record`` to ``path`` (default ``results/<name>.json``); with ``reference`` also
    to ``reference/<name>.json``, the file the README table is rendered from."""
    targets = [path or RESULTS / f"{record['benchmark']}.json"]
    if reference:
        targets.append(REFERENCE / f"{record['benchmark']}.json")
    for p in targets:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, p)
        print(f"wrote {p}")
    return targets[-1]
