"""The real-music corpus script, end to end with the smallest named package (needs Debian's package index)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_one_soundtrack_is_fetched_prepared_and_its_licence_kept(tmp_path):
    out, work = tmp_path / "corpus", tmp_path / "work"
    cmd = [sys.executable, "-m", "data_prep.game_music", "--packages", "fb-music-high", "--out", str(out)]
    subprocess.run([*cmd, "--work", str(work)], cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert "GPL" in (out / "LICENSES" / "fb-music-high.copyright").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["tracks"] >= 3 and report["hours"] > 0.05
    assert all(e["source"].startswith("fb-music-high/") for e in report["entries"])
    assert all(e["outcome"] != "prepared" or "/music/" in e["source"] for e in report["entries"])
