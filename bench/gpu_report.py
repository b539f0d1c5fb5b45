"""What a bench/gpu_check.sh call brought back, as one record for docs/perf and as Markdown tables for the docs.

    python bench/gpu_report.py RESULTS [RESULTS ...] --out docs/perf/2026-12-05-h200.json

RESULTS: the folders a device call returned ($OUT). Every bench's JSON record (date, device, versions, command,
figures), each part's steps (exit status, seconds, skipped) and each pytest junit XML (counts and the failed tests)
go into one record under --out; the tables go to standard output: every list of rows as a table of its plain
fields, every dict of figures as two columns, and bench/generation.py's rows with their ratio to the plain
reference of the same run and model and batch (plain-graph on a GPU, else plain).
"""

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from wavenet.files import write_text_atomic

REFERENCES = ("plain-graph", "plain")  # bench/generation.py's plain PyTorch steps, the first one present


def collect(folders: list[Path]) -> dict:
    """Every record, step and test count under the folders, keyed by the file's path in its folder (and the
    folder's name before it where two folders hold the same file)."""
    benches, steps, tests = {}, {}, {}

    def key(found: dict, folder: Path, path: Path) -> str:
        name = str(path.relative_to(folder).with_suffix(""))
        return f"{folder.name}/{name}" if name in found else name

    for folder in folders:
        for path in sorted(folder.rglob("*.json")):
            record = json.loads(path.read_text())
            if isinstance(record, dict) and "command" in record:  # a bench's record, not results of another kind
                benches[key(benches, folder, path)] = record
        for path in sorted(folder.glob("steps-*.jsonl")):
            lines = path.read_text().splitlines()
            steps[key(steps, folder, path)] = [json.loads(line) for line in lines if line.strip()]
        for path in sorted(folder.glob("*.xml")):
            tests[key(tests, folder, path)] = junit_summary(path)
    first = next(iter(benches.values()), {})
    return {
        "date": first.get("date"),
        "device": first.get("device"),
        "versions": first.get("versions"),
        "benches": benches,
        "steps": steps,
        "tests": tests,
    }


def junit_summary(path: Path) -> dict:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}.{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {**counts, "failed": failed}


def with_ratios(rows: list[dict]) -> list[dict]:
    """bench/generation.py's rows, each with its aggregate rate over the plain reference's at its model and batch."""
    rates = {(r["model"], r["batch"], r["backend"]): r["aggregate_samples_per_s"] for r in rows if "error" not in r}
    out = []
    for row in rows:
        reference = next((b for b in REFERENCES if (row["model"], row["batch"], b) in rates), None)
        if reference and "error" not in row:
            ratio = row["aggregate_samples_per_s"] / rates[(row["model"], row["batch"], reference)]
            row = {**row, f"vs {reference}": round(ratio, 2)}
        out.append(row)
    return out


def markdown(rows: list[dict]) -> str:
    """A table of the rows' plain fields (numbers, text), in the order they first appear."""
    columns = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (dict, list))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(k, "")) for k in columns) + " |")
    return "\n".join(lines)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value).replace("|", "/")


def tables(report: dict) -> str:
    parts = [f"{report['device']}, {report['date']}, {json.dumps(report['versions'])}"]
    for name, record in report["benches"].items():
        parts.append(f"\n### {name}\n\n`{record['command']}`\n")
        for key, value in record.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                parts.append(markdown(with_ratios(value) if "aggregate_samples_per_s" in value[0] else value))
            elif isinstance(value, dict) and key != "versions":
                parts.append(markdown([{"figure": k, "value": v} for k, v in value.items()]))
    for name, counts in report["tests"].items():
        parts.append(f"\n### {name}\n\n" + markdown([{k: v for k, v in counts.items() if k != "failed"}]))
        parts += [f"- failed: {test}" for test in counts["failed"]]
    for name, steps in report["steps"].items():
        parts.append(f"\n### {name}\n\n" + markdown(steps))
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="folders a gpu_check call returned")
    parser.add_argument("--out", type=Path, help="write the joined record here (docs/perf/<date>-<device>.json)")
    args = parser.parse_args()
    missing = [str(f) for f in args.results if not f.is_dir()]
    if missing:
        sys.exit(f"error: not a folder: {', '.join(missing)} (give the folders a device call returned)")
    report = collect(args.results)
    if not report["benches"] and not report["tests"]:
        sys.exit(f"error: no bench record or junit XML in {', '.join(map(str, args.results))}")
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(tables(report), end="")


if __name__ == "__main__":
    main()
