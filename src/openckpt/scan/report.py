"""Rendering a :class:`ScanReport`: a rich table, JSON, or SARIF 2.1.0 for code-scanning dashboards."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openckpt.scan.verdict import Completeness, ScanReport, Severity, Verdict

__all__ = ["print_table", "to_json", "to_sarif"]

_COLORS = {
    Verdict.CLEAN: "green",
    Verdict.OPAQUE: "green",
    Verdict.NEEDS_CODE: "cyan",
    Verdict.INCONCLUSIVE: "magenta",
    Verdict.SUSPICIOUS: "yellow",
    Verdict.MALICIOUS: "bold red",
}
_SARIF_LEVEL = {
    Severity.INFO: "note",
    Severity.OPAQUE: "note",
    Severity.NEEDS_CODE: "note",
    Severity.SUSPICIOUS: "warning",
    Severity.MALICIOUS: "error",
}
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def to_json(report: ScanReport) -> dict[str, Any]:
    """The report as plain JSON data."""
    return report.to_dict()


def print_table(report: ScanReport, console: Console, *, verbose: bool = False) -> None:
    """One row per file, then its findings (info-level ones only with ``verbose``)."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("file", "format", "verdict", "findings"):
        table.add_column(column, overflow="fold")
    for result in report.results:
        verdict = f"[{_COLORS[result.verdict]}]{result.verdict.value}[/]"
        if result.completeness is Completeness.INCONCLUSIVE and result.verdict is not Verdict.INCONCLUSIVE:
            verdict += " [magenta](inconclusive)[/]"
        shown = [f for f in result.findings if verbose or f.severity > Severity.OPAQUE or f.inconclusive]
        lines = [f"needs packages: {escape(', '.join(result.packages))}"] if result.packages else []
        for f in shown:
            where = f.member or ""
            where += f"@{f.offset}" if f.offset is not None else ""
            count = f" (x{f.count})" if f.count > 1 else ""
            lines.append(
                f"{f.severity.name.lower()}: {escape(f.reason)}{count}" + (f" [dim]{escape(where)}[/]" if where else "")
            )
        table.add_row(escape(result.path), result.format, verdict, "\n".join(lines) or "-")
    console.print(table)
    summary = f"{len(report.results)} file(s): [{_COLORS[report.verdict]}]{report.verdict.value}[/]"
    if report.packages:
        summary += f"; loading needs {escape(', '.join(report.packages))}"
    if report.completeness is Completeness.INCONCLUSIVE and report.verdict is not Verdict.INCONCLUSIVE:
        summary += ", [magenta]inconclusive[/] (not everything could be inspected)"
    console.print(summary)


def to_sarif(report: ScanReport, *, version: str = "0.1.0") -> dict[str, Any]:
    """The findings (info-level ones too) as a SARIF 2.1.0 log with one run."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for finding in report.findings:
        rules.setdefault(finding.rule, {"id": finding.rule, "name": finding.rule.replace("-", " ")})
        location: dict[str, Any] = {"artifactLocation": {"uri": finding.file}}
        if finding.offset is not None:
            location["region"] = {"byteOffset": finding.offset}
        properties: dict[str, Any] = {"severity": finding.severity.name.lower(), "inconclusive": finding.inconclusive}
        if finding.member:
            properties["member"] = finding.member
        if finding.callable:
            properties["callable"] = finding.callable
        if finding.count > 1:
            properties["count"] = finding.count
        results.append(
            {
                "ruleId": finding.rule,
                "level": _SARIF_LEVEL[finding.severity],
                "message": {"text": finding.reason},
                "locations": [{"physicalLocation": location}],
                "properties": properties,
            }
        )
    tool = {"driver": {"name": "openckpt-scan", "version": version, "rules": list(rules.values())}}
    files = [{"location": {"uri": r.path}, "length": r.size} for r in report.results]
    run = {
        "tool": tool,
        "artifacts": files,
        "results": results,
        "properties": {"verdict": report.verdict.value, "completeness": report.completeness.value},
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
