"""bench/gpu_report.py on what real runs wrote here: a bench's record and a pytest junit XML, as a device call
returns them, joined into one record with each generation row's ratio to the plain step of the same run."""

import json
import subprocess
import sys

from bench.gpu_report import cell
from tests.conftest import ROOT


def test_the_report_joins_records_and_test_counts_and_rates_each_backend_against_plain(tmp_path):
    results = tmp_path / "out"
    results.mkdir()
    bench = ["bench/generation.py", "--device", "cpu", "--models", "tiny", "--batches", "1", "--seconds", "0.2"]
    subprocess.run(
        [sys.executable, *bench, "--backends", "plain", "cached", "--json", str(results / "generation.json")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (tmp_path / "test_two.py").write_text("def test_passes():\n    pass\n\n\ndef test_fails():\n    assert False\n")
    junit = f"--junitxml={results / 'gpu-tests.xml'}"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", junit, "test_two.py"], cwd=tmp_path)

    joined = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "bench/gpu_report.py", str(results), "--out", str(joined)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(joined.read_text())
    rows = {r["backend"]: r["aggregate_samples_per_s"] for r in report["benches"]["generation"]["rows"]}
    assert report["device"].startswith("cpu") and report["versions"]["torch"]
    assert report["tests"]["gpu-tests"]["tests"] == 2 and report["tests"]["gpu-tests"]["failures"] == 1
    assert report["tests"]["gpu-tests"]["failed"] == ["test_two.test_fails"]
    header = next(line for line in done.stdout.splitlines() if line.startswith("| model |"))
    assert header.endswith("| vs plain |")  # the generation table's ratio, its last column
    cached_line = next(line for line in done.stdout.splitlines() if "| cached |" in line)
    assert cached_line.endswith(f"| {cell(round(rows['cached'] / rows['plain'], 2))} |")
    assert "- failed: test_two.test_fails" in done.stdout


def test_the_report_says_what_is_missing(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/gpu_report.py", str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1 and "not a folder" in done.stderr and "nowhere" in done.stderr
    done = subprocess.run(
        [sys.executable, "bench/gpu_report.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1 and "no bench record or junit XML" in done.stderr
