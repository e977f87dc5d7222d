"""What a build-dataset run reports: ``index.csv``, ``skips.csv``, ``failures.csv``,
``report.json`` and the summary printed at its end, all made from the done-markers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from omgclip.dataset import format as fmt
from omgclip.dataset import state as st
from omgclip.fsutil import atomic_write_json, atomic_write_text, to_jsonable
from omgclip.labels import EMOTIONS


@dataclass
class BuildReport:
    out: str
    blocks: int
    counts: dict
    skips_by_reason: dict
    failures: list
    manifest_skips: int
    task_seconds: dict = field(default_factory=dict)  #: source -> seconds of its task in this run

    def summary(self) -> str:
        lines = [f"{self.blocks} blocks in {self.out}"]
        for split, per_class in self.counts.items():
            shown = ", ".join(f"{k} {v}" for k, v in per_class.items() if v)
            lines.append(f"  {split}: {shown or 'none'}")
        if self.skips_by_reason:
            lines.append("skipped: " + ", ".join(f"{r} {n}" for r, n in self.skips_by_reason.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} source(s) failed: see {fmt.FAILURES_FILE} "
                         f"(--retry-failed requests failed URLs again)")
        return "\n".join(lines)


def collect(utterances, out: Path, splits: Mapping[str, str], fingerprints: Mapping[str, str]):
    """Rows and skips of the utterances whose marker matches what the manifest says now."""
    rows, skips = [], []
    for utt in utterances:
        state = st.read_state(out, utt)
        if state is None or state.get("fingerprint") != fingerprints[f"{utt.split}/{utt.key}"]:
            continue
        final = splits[f"{utt.split}/{utt.key}"]
        rows.extend({**r, "split": final} for r in state["rows"])
        skips.extend(state["skips"])
    rows.sort(key=lambda r: r["block_id"])
    return rows, skips


def write_tables(out: Path, rows, skips, failures) -> None:
    """``skips``: the manifests' skipped rows (``file:line``) and the skipped blocks."""
    import pandas as pd

    index = pd.DataFrame(rows, columns=list(fmt.INDEX_COLUMNS))
    atomic_write_text(out / fmt.INDEX_FILE, index.to_csv(index=False))
    atomic_write_text(out / fmt.SKIPS_FILE,
                      pd.DataFrame(skips, columns=["where", "source", "reason"]).fillna("").to_csv(index=False))
    atomic_write_text(out / fmt.FAILURES_FILE,
                      pd.DataFrame(failures, columns=["source", "reason"]).to_csv(index=False))


def write_report(cfg, out: Path, rows, skips, failures, manifest_skips, strides) -> BuildReport:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        per = counts.setdefault(r["split"], {name: 0 for name in (*EMOTIONS, "unlabeled")})
        per[r["label_name"] or "unlabeled"] += 1
    by_reason = Counter(reason_kind(s["reason"]) for s in [*manifest_skips, *skips])
    by_reason.update("task failed" if f["reason"].startswith("task failed") else "download failed"
                     for f in failures)
    report = BuildReport(str(out), len(rows), counts, dict(by_reason.most_common()), failures,
                         len(manifest_skips))
    atomic_write_json(out / fmt.REPORT_FILE, {
        "blocks": len(rows), "counts": counts, "skips_by_reason": report.skips_by_reason,
        "manifest_skips": manifest_skips, "failures": failures,
        "strides": {EMOTIONS[k]: v for k, v in sorted(strides.items())},
        "config": to_jsonable(cfg),
    })
    return report


def reason_kind(reason: str) -> str:
    """Group reasons for the report ('unreadable video: x.mp4: ...' -> 'unreadable video')."""
    head = reason.split(":", 1)[0]
    if head.startswith("shorter than one block"):
        return "shorter than one block"
    if head.startswith("starts at"):
        return "starts after the video's end"
    if head.startswith("unknown label"):
        return "unknown label"
    return head


def top_reasons(by_reason: Mapping[str, int], n: int = 3) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in list(by_reason.items())[:n])
