"""Scanner benchmark: openckpt against picklescan, modelscan and ModelAudit, on speed, the shared corpus and real files.

Speed, three files made here: (a) a 1 GB torch zip with 100 tensors, (b) a torch zip with 20,000 tensors,
(c) a 200 MB raw pickle of numpy arrays. Each tool is timed in-process (its scan function, best of 3) and as a
command (wall time of one CLI run, start-up included). Accuracy: every sample of shared/corpus/pickle-public with
its label; detection = malicious samples reported malicious, blocked = not reported clean, false positives =
benign samples not reported clean. Real files: the corpus of tests/scan/realfiles.py (files the field's libraries
write, and a malicious twin of each code path), each entry (a file or a directory) scanned by every tool: false
negatives = malicious entries not reported malicious, false positives = benign entries reported malicious (refused),
flagged = benign entries reported anything but clean (openckpt: inconclusive or suspicious; its ``needs_code`` and
``opaque`` verdicts are answers, not alarms).

The baselines live in their own venv (``~/.cache/openckpt-bench/scan-baselines``, or ``$OPENCKPT_BENCH_BASELINES``;
created on first run) so they never enter the project's dependencies (modelaudit would downgrade botocore and rich).
Run: ``python bench/scan.py`` (``--markdown`` for docs/benchmarks.md, ``--only real-files`` for one table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openckpt-bench"
BASELINES = Path(os.environ.get("OPENCKPT_BENCH_BASELINES", CACHE / "scan-baselines"))
DATA = CACHE / "scan-data"
CORPUS = ROOT.parent / "shared" / "corpus" / "pickle-public"
PINS = ["picklescan==1.0.5", "modelscan==0.8.8", "modelaudit==0.2.54"]
TOOLS = ("openckpt", "picklescan", "modelscan", "modelaudit")

# Runs inside the baselines' venv: scans the given paths with one tool, prints one JSON line per path.
DRIVER = r"""
import json, os, sys, time
tool, repeat, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.environ.setdefault("PROMPTFOO_DISABLE_TELEMETRY", "1")

def picklescan(path):
    from picklescan.scanner import scan_directory_path, scan_file_path
    r = scan_directory_path(path) if os.path.isdir(path) else scan_file_path(path)
    if r.scan_err:
        return "error"
    if r.infected_files or r.issues_count:
        return "malicious"
    return "suspicious" if getattr(r, "suspicious_count", 0) else "clean"

def modelscan(path):
    from modelscan.modelscan import ModelScan
    r = ModelScan().scan(path)
    s = r["summary"]
    if s["total_issues"]:
        sev = s["total_issues_by_severity"]
        return "malicious" if sev.get("CRITICAL") or sev.get("HIGH") else "suspicious"
    if r.get("errors"):
        return "error"
    return "skipped" if s["skipped"]["total_skipped"] and not s["scanned"]["total_scanned"] else "clean"

def modelaudit(path):
    import logging
    logging.disable(logging.CRITICAL)
    from modelaudit.core import scan_model_directory_or_file
    r = scan_model_directory_or_file(path).model_dump()
    levels = {str(i.get("severity")).lower() for i in r["issues"]}
    if "critical" in levels:
        return "malicious"
    if "warning" in levels:
        return "suspicious"
    return "error" if r.get("has_errors") else "clean"

fn = {"picklescan": picklescan, "modelscan": modelscan, "modelaudit": modelaudit}[tool]
for path in paths:
    best, outcome = None, None
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            outcome = fn(path)
        except Exception as e:
            outcome = f"error"
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    print(json.dumps({"path": path, "outcome": outcome, "seconds": best}), flush=True)
"""


def ensure_baselines() -> Path:
    python = BASELINES / "bin" / "python"
    if not python.exists():
        print(f"creating {BASELINES} with {' '.join(PINS)}", file=sys.stderr)
        venv.create(BASELINES, with_pip=True)
    if not all((BASELINES / "bin" / pin.split("==")[0]).exists() for pin in PINS):
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS], check=True)
    return python


def ensure_data() -> dict[str, Path]:
    import numpy as np
    import torch

    DATA.mkdir(parents=True, exist_ok=True)
    files = {"a": DATA / "a_1gb_100_tensors.pt", "b": DATA / "b_20k_tensors.pt", "c": DATA / "c_200mb_numpy.pkl"}
    gen = torch.Generator().manual_seed(0)
    if not files["a"].exists():
        torch.save({f"w{i}": torch.randn(2_684_355, generator=gen) for i in range(100)}, files["a"])
    if not files["b"].exists():
        torch.save({f"layers.{i}.weight": torch.randn(4, generator=gen) for i in range(20_000)}, files["b"])
    if not files["c"].exists():
        import pickle

        rng = np.random.default_rng(0)
        arrays = {f"a{i}": rng.standard_normal(262_144) for i in range(100)}
        files["c"].write_bytes(pickle.dumps(arrays, protocol=4))
    return files


def run_baseline(python: Path, tool: str, paths: list[Path], repeat: int) -> list[dict[str, object]]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(DRIVER)
    try:
        out = subprocess.run(
            [python, f.name, tool, str(repeat), *map(str, paths)], capture_output=True, text=True, check=False
        )
    finally:
        os.unlink(f.name)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(paths):
        print(f"{tool} driver failed: {out.stderr[-2000:]}", file=sys.stderr)
    return rows


def run_openckpt(paths: list[Path], repeat: int) -> list[dict[str, object]]:
    """The worst verdict of each path (a file, or a directory scanned as one checkpoint)."""
    from openckpt.scan.api import scan

    rows = []
    for path in paths:
        best, cpu, outcome = float("inf"), float("inf"), ""
        for _ in range(repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            report = scan(path)
            best = min(best, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
            outcome = max((r.verdict for r in report.results), key=lambda v: v.rank).value
        rows.append({"path": str(path), "outcome": outcome, "seconds": best, "cpu": cpu})
    return rows


def cli_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - start


def speed(python: Path) -> list[tuple[str, int, dict[str, float], dict[str, float], float]]:
    files = ensure_data()
    bin_dir = python.parent
    rows = []
    for key, path in files.items():
        size = path.stat().st_size
        ours = run_openckpt([path], 3)[0]
        inproc = {
            "openckpt": float(ours["seconds"]),  # type: ignore[arg-type]
            "picklescan": float(run_baseline(python, "picklescan", [path], 3)[0]["seconds"]),  # type: ignore[arg-type]
            "modelscan": float(run_baseline(python, "modelscan", [path], 3)[0]["seconds"]),  # type: ignore[arg-type]
        }
        cli = {
            "openckpt": cli_seconds([sys.executable, "-m", "openckpt.cli.app", "scan", "--json", str(path)]),
            "picklescan": cli_seconds([str(bin_dir / "picklescan"), "--path", str(path)]),
            "modelscan": cli_seconds([str(bin_dir / "modelscan"), "-p", str(path)]),
        }
        rows.append((f"({key}) {path.name}", size, inproc, cli, float(ours["cpu"])))  # type: ignore[arg-type]
    return rows


def accuracy(python: Path) -> dict[str, dict[str, tuple[int, int, int]]]:
    """Per tool, per label: (samples, reported malicious, not reported clean)."""
    labels = [line.split("\t") for line in (CORPUS / "labels.tsv").read_text().splitlines()[1:] if line.strip()]
    paths = [CORPUS / p for p, _ in labels]
    results = {
        "openckpt": run_openckpt(paths, 1),
        "picklescan": run_baseline(python, "picklescan", paths, 1),
        "modelscan": run_baseline(python, "modelscan", paths, 1),
    }
    table: dict[str, dict[str, tuple[int, int, int]]] = {}
    for tool, rows in results.items():
        counts: dict[str, list[int]] = {}
        for (_, label), row in zip(labels, rows, strict=True):
            outcome = str(row["outcome"])
            c = counts.setdefault(label, [0, 0, 0])
            c[0] += 1
            c[1] += outcome.startswith("malicious")
            c[2] += outcome != "clean"
        table[tool] = {label: (n, m, b) for label, (n, m, b) in counts.items()}
    return table


_FLAGGED_OPENCKPT = {"inconclusive", "suspicious", "malicious"}


def real_files(python: Path) -> list[str]:
    """The real-files table: per tool, false negatives and false positives on tests/scan/realfiles.py's corpus."""
    sys.path.insert(0, str(ROOT))
    from tests.scan.realfiles import build_corpus

    with tempfile.TemporaryDirectory(prefix="openckpt-realfiles-") as tmp:
        start = time.perf_counter()
        corpus = build_corpus(Path(tmp))
        built = time.perf_counter() - start
        paths = [entry.path for entry in corpus]
        results = {"openckpt": run_openckpt(paths, 1)}
        for tool in TOOLS[1:]:
            results[tool] = run_baseline(python, tool, paths, 1)
    malicious = [i for i, e in enumerate(corpus) if e.malicious]
    benign = [i for i, e in enumerate(corpus) if not e.malicious]
    lines = [
        f"{len(corpus)} entries ({len(malicious)} malicious twins, {len(benign)} benign files or directories) "
        f"built in {built:.0f} s by the libraries themselves.",
        "",
        "| tool | false negatives (malicious not reported malicious) | of which passed as clean "
        "| false positives (benign reported malicious) | benign flagged | scan time |",
        "|---|---|---|---|---|---|",
    ]
    misses: dict[str, list[str]] = {}
    for tool in TOOLS:
        rows = results[tool]
        if len(rows) != len(corpus):
            lines.append(f"| {tool} | driver failed | | | | |")
            continue
        out = [str(r["outcome"]) for r in rows]
        fn = [i for i in malicious if out[i] != "malicious"]
        passed = [i for i in fn if out[i] == "clean"]
        fp = [i for i in benign if out[i] == "malicious"]
        alarms = _FLAGGED_OPENCKPT if tool == "openckpt" else None
        flagged = [i for i in benign if (out[i] in alarms if alarms else out[i] != "clean")]
        seconds = sum(float(r["seconds"]) for r in rows)  # type: ignore[arg-type]
        lines.append(
            f"| {tool} | {len(fn)}/{len(malicious)} | {len(passed)} | {len(fp)}/{len(benign)} "
            f"| {len(flagged)}/{len(benign)} | {seconds:.1f} s |"
        )
        misses[tool] = [corpus[i].name for i in fn] + [f"{corpus[i].name} (FP)" for i in fp]
    lines.append("")
    lines += [f"- {tool} misses: {', '.join(names) or 'none'}" for tool, names in misses.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs/benchmarks.md section")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--only", choices=["speed", "corpus", "real-files"], help="run one table")
    args = parser.parse_args()
    python = ensure_baselines()
    lines = []
    if args.only == "real-files":
        print("\n".join(real_files(python)))
        return
    if not args.skip_speed:
        lines += ["| file | size | openckpt | picklescan | modelscan | openckpt CLI | picklescan CLI | modelscan CLI |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for name, size, inproc, cli, cpu in speed(python):
            cells = [f"{inproc[t]:.3f} s" for t in ("openckpt", "picklescan", "modelscan")]
            cells += [f"{cli[t]:.2f} s" for t in ("openckpt", "picklescan", "modelscan")]
            lines.append(f"| {name} | {size / 1e6:,.0f} MB | " + " | ".join(cells) + " |")
            rate = size / inproc["openckpt"] / 1e9
            ratio = inproc["picklescan"] / inproc["openckpt"]
            lines.append(
                f"|  | openckpt: {rate:,.1f} GB/s, {cpu:.3f} s CPU, {ratio:,.1f}x picklescan in-process | | | | | | |"
            )
        lines.append("")
    if args.only == "speed":
        print("\n".join(lines))
        return
    table = accuracy(python)
    lines += [
        "| tool | malicious → malicious | malicious → not clean | benign → not clean (FP) | invalid → not clean "
        "| inconclusive → not clean |",
        "|---|---|---|---|---|---|",
    ]
    for tool, per in table.items():
        n, m, b = per.get("malicious", (0, 0, 0))
        bn, _, bb = per.get("benign", (0, 0, 0))
        inv, _, invb = per.get("invalid", (0, 0, 0))
        inc, _, incb = per.get("inconclusive", (0, 0, 0))
        lines.append(
            f"| {tool} | {m}/{n} ({100 * m / n:.1f}%) | {b}/{n} ({100 * b / n:.1f}%) | {bb}/{bn} "
            f"({100 * bb / bn:.1f}%) | {invb}/{inv} | {incb}/{inc} |"
        )
    if args.only is None:
        lines += ["", *real_files(python)]
    print("\n".join(lines))
    if not args.markdown:
        print(f"\nbaselines: {BASELINES}; data: {DATA}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
