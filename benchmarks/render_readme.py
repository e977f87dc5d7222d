#!/usr/bin/env python3
"""Render the README's benchmark tables from the committed reference results.

Each ``benchmarks/reference/<name>.json`` (written by ``bench_*.py --reference`` or
``scripts/mutate.py --suite --json benchmarks/reference/mutation.json``) becomes the text
between ``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->`` in README.md, so the
README carries the benchmark's own numbers and cannot drift from them.

    python benchmarks/render_readme.py           # rewrite README.md
    python benchmarks/render_readme.py --check   # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
REFERENCE = HERE / "reference"


def _s(s: dict, digits: int = 1, unit: str = "") -> str:
    """Median and (min-max) of a spread dict."""
    if len(s["runs"]) == 1:
        return f"{s['median']:.{digits}f}{unit}"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _provenance(rec: dict, runs: str) -> str:
    m = rec["machine"]
    line = (f"Reference run: {rec['date']}, commit `{rec['commit']}`, {m['processor']} with {m['cpu_count']} "
            f"cores, load average {rec['load_average']['before']:.1f} before / "
            f"{rec['load_average']['after']:.1f} after; {runs}.")
    if rec.get("provisional"):
        line += f" **Provisional**: {rec['provisional_reason']}."
    return line


def _targets(rec: dict) -> str:
    return "\n".join(f"- {t['target']} {t['goal']}: **{'met' if t['met'] else 'missed'}** ({t['value']:.3g})"
                     for t in rec["targets"])


def render_bench_build(rec: dict) -> str:
    rows = ["| video | size | frames | omgclip frames/s | naive 640 frames/s | speed-up vs naive 640 "
            "| speed-up vs naive full-res | omgclip faces: detected / interpolated / carried | naive 640 faces "
            "| median IoU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rec["results"]:
        f = r["omgclip_faces"]
        full = "same as 640" if r["naive_full_is_naive640"] else _s(r["speedup_vs_naive_full"], unit="x")
        rows.append(f"| {r['video']} | {r['size']} | {r['frames']} | {_s(r['omgclip_fps'])} | "
                    f"{_s(r['naive640_fps'])} | **{_s(r['speedup_vs_naive640'], unit='x')}** | {full} | "
                    f"{f['detected']} / {f['interpolated']} / {f['carried']} | {r['naive640_faces']} | "
                    f"{r['median_iou_vs_naive640']:.2f} |")
    runs = f"median (range) of {rec['settings']['repeats']} runs, first {rec['settings']['max_frames']} frames"
    return "\n".join([_provenance(rec, runs), "", *rows, "", _targets(rec)])


def render_bench_predict(rec: dict) -> str:
    rows = ["| video | length | whole command: RTF | whole command: seconds | steady state: RTF "
            "| steady state: decode / faces / model |", "|---|---|---|---|---|---|"]
    for r in rec["results"]:
        st = r.get("steady")
        shares = " / ".join(f"{st['shares'][k]:.0%}" for k in ("decode", "faces", "model")) if st else "-"
        rows.append(f"| {r['size']} ({r['encoding']}) | {r['video_s']:.1f} s | **{_s(r['whole']['rtf'], unit='x')}** | "
                    f"{_s(r['whole']['wall_s'])} | {_s(st['rtf'], unit='x') if st else '-'} | {shares} |")
    runs = (f"median (range) of {rec['settings']['repeat']} runs, {rec['settings']['threads']} threads, "
            f"model: {rec['settings']['model']}")
    return "\n".join([_provenance(rec, runs), "", *rows, "", _targets(rec)])


def render_bench_train(rec: dict) -> str:
    res = rec["results"]
    rows = ["| model | model compute: train samples/s | model compute: inference samples/s | parameters | peak RSS |",
            "|---|---|---|---|---|"]
    for r in res["models"]:
        name = f"`{r['model']}`" + (" (default)" if r["model"] == rec["settings"]["default_model"] else "")
        rows.append(f"| {name} | {_s(r['train_samples_per_s'])} | {_s(r['infer_samples_per_s'])} | "
                    f"{r['params'] / 1000:.0f}k | {r['peak_rss_mb']:.0f} MB |")
    st = rec["settings"]
    runs = (f"batch {st['batch_size']}, {st['threads']} threads, median (range) of {st['rounds']} rounds")
    text = [_provenance(rec, runs), "", *rows, ""]
    real = res.get("omgclip_train")
    if real:
        text.append(f"Real `omgclip train` ({st['default_model']}, {real['train_blocks']} training blocks, batch "
                    f"{st['batch_size']}, with data loading, augmentation, validation and checkpoints): "
                    f"**{_s(real['epoch_samples_per_s'])} samples/s** per epoch after the first; "
                    f"{_s(real['command_samples_per_s'])} samples/s for the whole 3-epoch command "
                    f"({_s(real['wall_3_epochs_s'])} s, start-up included); median (range) of {real['repeats']} runs.")
        text.append("")
    text.append(_targets(rec))
    return "\n".join(text)


def render_bench_live(rec: dict) -> str:
    rows = ["| input | frames | dropped | processed frames/s | labels | latency median | p95 | max |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rec["results"]:
        rows.append(f"| {r['input']} | {r['frames']} | {_s(r['dropped_pct'], unit='%')} | "
                    f"{_s(r['processed_fps'])} | {r['labels']['median']:.0f} | "
                    f"**{_s(r['latency_p50_s'], 3, ' s')}** | {_s(r['latency_p95_s'], 3, ' s')} | "
                    f"{_s(r['latency_max_s'], 3, ' s')} |")
    st = rec["settings"]
    runs = (f"median (range) of {st['repeat']} runs, {st['size']}, OpenCV {st['opencv_threads']} / model "
            f"{st['torch_threads']} thread(s)")
    return "\n".join([_provenance(rec, runs), "", *rows, "", _targets(rec)])


def render_mutation(rec: dict) -> str:
    rows = ["| module | functions mutated | mutants | killed | kill rate |", "|---|---|---|---|---|"]
    for r in rec["results"]:
        only = ", ".join(f"`{o}`" for o in r["only"]) or "all"
        rows.append(f"| `{r['module']}` | {only} | {r['mutants']} | {r['killed']} | "
                    f"**{100 * r['kill_rate']:.0f}%** |")
    total = sum(r["mutants"] for r in rec["results"])
    killed = sum(r["killed"] for r in rec["results"])
    rows.append(f"| all | | {total} | {killed} | **{100 * killed / max(total, 1):.0f}%** |")
    head = (f"Run {rec['date']} at commit `{rec['commit']}` (`python scripts/mutate.py --suite`); "
            f"a mutant is killed when a test fails or hangs.")
    return "\n".join([head, "", *rows])


def render_predict_intro(rec: dict) -> str:
    """One sentence for the README intro: the whole command on the typical clip."""
    r = rec["results"][0]
    return (f"The whole command takes {r['whole']['wall_s']['median']:.1f} s for a {r['video_s']:.0f}-s "
            f"{r['size']} clip ({r['whole']['rtf']['median']:.1f}x real time, start-up and model load "
            f"included) on {rec['machine']['cpu_count']} CPU cores with the bundled model"
            + (" (provisional: measured while the machine was busy, see *Speed*)" if rec.get("provisional") else ""))


#: block name -> (reference file, renderer, inline). Table blocks sit on their own lines.
RENDERERS = {"bench_build": ("bench_build", render_bench_build, False),
             "bench_predict": ("bench_predict", render_bench_predict, False),
             "predict_intro": ("bench_predict", render_predict_intro, True),
             "bench_train": ("bench_train", render_bench_train, False),
             "bench_live": ("bench_live", render_bench_live, False),
             "mutation": ("mutation", render_mutation, False)}


def render(text: str) -> str:
    for name, (ref, fn, inline) in RENDERERS.items():
        path = REFERENCE / f"{ref}.json"
        if not path.is_file():
            continue
        body = fn(json.loads(path.read_text()))
        if not inline:
            body = f"\n{body}\n"
        pattern = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if README.md is out of date")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args(argv)
    old = args.readme.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            print(f"{args.readme} is out of date: run python benchmarks/render_readme.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.readme.write_text(new, encoding="utf-8")
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
