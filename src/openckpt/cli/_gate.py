"""The scan that ``convert`` and ``pull`` run on their inputs: anything that runs code when loaded is refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from openckpt.cli._output import err

__all__ = ["refuse_unclean"]


def refuse_unclean(files: Mapping[str, Path], *, what: str) -> None:
    """Scan ``files`` (name → path; links are followed); unless every one runs nothing (clean or opaque), print the
    findings on stderr and raise :class:`~openckpt.errors.UnsafeFileError` (exit 2, as for every refused unsafe
    input)."""
    from openckpt.errors import UnsafeFileError
    from openckpt.scan.api import scan_file
    from openckpt.scan.report import print_table
    from openckpt.scan.verdict import ScanReport, Verdict

    report = ScanReport()
    for name, path in files.items():
        result = scan_file(path.resolve())
        result.path = name
        report.results.append(result)
    if report.clean:
        return
    print_table(report, err())
    named = []
    for result in report.results:
        if not result.clean:
            worst = max(result.findings, key=lambda f: (f.severity, f.inconclusive))
            called = f" {worst.callable}:" if worst.callable else ""
            if result.verdict is Verdict.NEEDS_CODE:
                needs = ", ".join(result.imports + result.runs)
                named.append(f"{result.path} needs code from {', '.join(result.packages)}: loading runs {needs}")
                continue
            named.append(f"{result.path} is {result.verdict.value}:{called} {worst.reason}")
    raise UnsafeFileError(f"refusing to {what}: " + "; ".join(named) + " (loading could run code; see openckpt scan)")
