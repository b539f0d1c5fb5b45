"""The real-music corpus script, end to end with the smallest named package (needs Debian's package index)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.network
def test_one_soundtrack_is_fetched_prepared_and_its_licence_kept(tmp_path):
    out, work = tmp_path / "corpus", tmp_path / "work"
    cmd = [sys.executable, "-m", "data_prep.game_music", "--packages", "fb-music-high", "--out", str(out)]
    subprocess.run([*cmd, "--work", str(work)], cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert "GPL" in (out / "LICENSES" / "fb-music-high.copyright").read_text()
    report = json.loads((out / "report.json").read_text())
    outcomes = {e["source"]: e["outcome"] for e in report["entries"]}
    assert all(source.split("/")[0] == "fb-music-high" for source in outcomes)
    assert outcomes["fb-music-high/usr/share/games/frozen-bubble/snd/frozen-mainzik-2p.xm"] == "prepared"  # a module
    assert outcomes["fb-music-high/usr/share/doc/fb-music-high/copyright"] == "ignored"
    assert report["hours"] > 0.05
