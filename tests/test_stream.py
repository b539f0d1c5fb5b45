"""stream.py into a real ingest (nginx with the RTMP module on loopback), pulled back with ffmpeg and ffprobe."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, wait_for
from wavenet.generation import generate
from wavenet.stream.backlog import Backlog
from wavenet.stream.render import TrackRenderer
from wavenet.stream.rtmp_server import LocalRtmp, free_port

STREAM_KEY = "abcd-1234-efgh-5678-ijkl"
SMALL_STREAM = [
    "batch_size=4",
    "track_seconds=3",
    "crossfade_seconds=0.5",
    "device=cpu",
    "encoder.preset=ultrafast",
    "supervisor.status_interval_s=5",
    "gate.enabled=false",  # a 4-step model makes hiss, which the gate keeps off the air (tested on its own below)
]


@pytest.fixture
def ingest(tmp_path):
    with LocalRtmp(tmp_path / "nginx") as server:
        yield server


def start_stream(
    checkpoint: Path, workdir: Path, *overrides: str, log_file: Path | None = None, **secrets: str
) -> subprocess.Popen:
    """stream.py as a user starts it; keyword arguments go into its environment (YOUTUBE_STREAM_KEY=...). What it
    prints comes back through the pipe, or goes to `log_file` for a stream that runs longer than one test."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **secrets}
    cmd = [
        sys.executable,
        str(ROOT / "stream.py"),
        f"checkpoint={checkpoint}",
        f"workdir={workdir}",
        *SMALL_STREAM,
        *overrides,
    ]
    if log_file is None:
        return subprocess.Popen(
            cmd, cwd=workdir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    with open(log_file, "w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen(cmd, cwd=workdir.parent, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def status(workdir: Path) -> dict:
    path = workdir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def pull(url: str, seconds: float, out: Path, timeout: float = 120) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-rw_timeout",
            "30000000",
            "-i",
            url,
            "-t",
            str(seconds),
            "-c",
            "copy",
            "-y",
            str(out),
        ],
        check=True,
        timeout=timeout,
    )
    return out


def probe_streams(path: Path) -> dict[str, dict]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,r_frame_rate,sample_rate,channels",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def keyframe_times(path: Path) -> list[float]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(line.strip().strip(",")) for line in out.splitlines() if line.strip()]


def silences(path: Path, min_seconds: float) -> list[str]:
    err = subprocess.run(
        ["ffmpeg", "-i", str(path), "-af", f"silencedetect=noise=-50dB:d={min_seconds}", "-f", "null", "-"],
        capture_output=True,
        text=True,
    ).stderr
    return re.findall(r"silence_start: [\d.]+", err)


def mean_volume(path: Path) -> float:
    err = subprocess.run(
        ["ffmpeg", "-i", str(path), "-af", "volumedetect", "-f", "null", "-"], capture_output=True, text=True
    ).stderr
    return float(re.search(r"mean_volume: (-?[\d.]+) dB", err).group(1))


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM (as a service manager would) and what the stream printed; safe to call twice."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out or ""


def run_to_the_end(trained_run: Path, workdir: Path, *overrides: str) -> tuple[str, dict]:
    """A stream into a recording that ends by itself (duration_seconds); returns what it printed and its last status."""
    proc = start_stream(trained_run / "checkpoints" / "best.pt", workdir, "sink=file", *overrides)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, output
    return output, status(workdir)


@pytest.mark.slow
def test_youtube_sink_pulled_back_meets_the_ingest_spec_and_is_never_silent(trained_run, ingest, tmp_path):
    workdir = tmp_path / "stream"
    proc = start_stream(
        trained_run / "checkpoints" / "best.pt",
        workdir,
        "sink=youtube",
        f"sink.url=rtmp://127.0.0.1:{ingest.port}/live2",
        YOUTUBE_STREAM_KEY=STREAM_KEY,
    )
    try:
        wait_for(
            lambda: status(workdir).get("audio_sent_s", 0) > 0 or proc.poll() is not None, 120, "the stream to go live"
        )
        pulled = pull(ingest.url("live2", STREAM_KEY), 60, tmp_path / "pulled.flv", timeout=240)
    except (AssertionError, subprocess.SubprocessError) as failed:
        raise AssertionError(f"{failed}\nwhat the stream printed:\n{stop(proc)}") from failed
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    streams = probe_streams(pulled)
    assert (streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]) == (
        "h264",
        1280,
        720,
    )
    assert streams["video"]["r_frame_rate"] == "30/1"
    assert (streams["audio"]["codec_name"], streams["audio"]["sample_rate"], streams["audio"]["channels"]) == (
        "aac",
        "44100",
        2,
    )
    keys = keyframe_times(pulled)
    assert len(keys) >= 25 and max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= 2.05
    assert silences(pulled, 0.25) == [], "no gap in the audio"
    assert mean_volume(pulled) > -40, "and it is not silent"

    # the key stays out of everything we write or print
    files = [p for p in workdir.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".log", ".txt")]
    assert any(p.name == "config.yaml" for p in files) and any(p.name == "status.json" for p in files)
    for path in files:
        assert STREAM_KEY not in path.read_text(errors="replace"), f"the stream key leaked into {path}"
    assert STREAM_KEY not in output
    assert "live2/<YOUTUBE_STREAM_KEY>" in output


def test_ingest_killed_and_restarted_the_stream_comes_back_with_the_backlog_intact(trained_run, ingest, tmp_path):
    workdir = tmp_path / "stream"
    url = ingest.url("live", "preview")
    proc = start_stream(
        trained_run / "checkpoints" / "best.pt",
        workdir,
        "sink=rtmp",
        f"sink.url=rtmp://127.0.0.1:{ingest.port}/live",
        RTMP_STREAM_KEY="preview",
    )
    try:
        wait_for(lambda: status(workdir).get("audio_sent_s", 0) > 5, 120, "the stream to go live")
        pull(url, 2, tmp_path / "before.flv")
        backlog_before = {p.name for p in (workdir / "backlog").glob("track_*.wav")}
        ingest.kill()
        wait_for(lambda: status(workdir).get("reconnects", 0) >= 1, 60, "the supervisor to notice the drop")
        with LocalRtmp(ingest.folder, port=ingest.port):
            restarted = time.monotonic()
            pull(url, 2, tmp_path / "after.flv", timeout=30)
            back_after = time.monotonic() - restarted
            output = stop(proc)
    finally:
        stop(proc)
    assert back_after < 10 + 2, f"the stream came back {back_after:.1f} s after the ingest did (2 s of it is the pull)"
    assert probe_streams(tmp_path / "after.flv").keys() == {"video", "audio"}
    assert backlog_before <= {p.name for p in (workdir / "backlog").glob("track_*.wav")}, "the backlog is intact"
    assert "reconnecting" in output


@pytest.mark.slow
def test_a_generator_slower_than_real_time_falls_back_and_says_so(trained_run, tmp_path):
    workdir = tmp_path / "stream"
    output, final = run_to_the_end(
        trained_run, workdir, "batch_size=2", "track_seconds=1.5", "render_rate_limit=3000", "duration_seconds=25"
    )
    assert final["real_time_factor"] < 1.0
    assert final["fallback_seconds"] > 3
    recording = workdir / "preview.flv"
    assert silences(recording, 0.25) == [], "the fallback keeps the audio going"
    assert "renderer behind: replaying" in output


@pytest.mark.slow
def test_a_cold_start_airs_short_tracks_first_and_they_grow_to_full_length_without_a_gap(trained_run, tmp_path):
    workdir = tmp_path / "stream"
    small = [o for o in SMALL_STREAM if not o.startswith("track_seconds=")]
    output, final = run_to_the_end(
        trained_run, workdir, *small, "track_seconds=12", "min_track_seconds=1", "duration_seconds=30"
    )
    lengths = [sf.info(p).duration for p in sorted((workdir / "backlog").glob("track_*.wav"))]
    assert 1 <= lengths[0] < 12, f"the first batch is cut short so the stream goes live sooner: {lengths}"
    assert max(lengths) > 2 * lengths[0], f"later batches are longer: {lengths}"
    assert "shortened, the backlog was low" in output
    assert "WARNING" not in output, "a clean start: ffmpeg is told the PCM's channel layout, nothing to warn of"
    assert final["fallback_seconds"] == 0, "nothing is replayed while the tracks grow"
    assert silences(workdir / "preview.flv", 0.25) == []


@pytest.mark.slow
def test_a_restart_resumes_from_the_backlog_at_once(trained_run, tmp_path):
    workdir = tmp_path / "stream"
    first = start_stream(trained_run / "checkpoints" / "best.pt", workdir, "sink=file", "duration_seconds=6")
    first_out = first.communicate(timeout=180)[0]
    assert "rendering the first" in first_out
    position = json.loads((workdir / "backlog" / "position.json").read_text())
    started = time.time()
    second = start_stream(trained_run / "checkpoints" / "best.pt", workdir, "sink=file", "duration_seconds=4")
    second_out = second.communicate(timeout=180)[0]
    assert second.returncode == 0, second_out
    assert "rendering the first" not in second_out, "it goes live from the backlog, without rendering first"
    assert json.loads((workdir / "backlog" / "position.json").read_text())["track"] >= position["track"]
    assert status(workdir)["reconnects"] == 0, "the second preview replaces the first recording"
    assert (workdir / "preview.flv").stat().st_mtime > started, "written by the second run"


def test_missing_key_and_unreachable_ingest_fail_before_the_model_loads(tmp_path):
    missing_checkpoint = tmp_path / "not-loaded.pt"
    env = {k: v for k, v in os.environ.items() if k != "YOUTUBE_STREAM_KEY"}
    cases = (
        ("sink=youtube", "YOUTUBE_STREAM_KEY"),
        (f"sink=rtmp sink.url=rtmp://127.0.0.1:{free_port()}/live/x", "cannot reach the ingest"),
        ("sink=file min_track_seconds=0", "min_track_seconds=0: must be above 0"),
    )
    for sink, message in cases:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "stream.py"),
                f"checkpoint={missing_checkpoint}",
                *sink.split(),
                f"workdir={tmp_path / 'w'}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert message in proc.stdout + proc.stderr
        assert "checkpoint" not in (proc.stdout + proc.stderr).lower(), "the sink is checked before the model is loaded"


@pytest.mark.slow
def test_direct_mode_streams_live_audio_behind_a_jitter_buffer(trained_run, tmp_path):
    workdir = tmp_path / "stream"
    output, final = run_to_the_end(trained_run, workdir, "mode=direct", "jitter_seconds=0.5", "duration_seconds=12")
    assert final["real_time_factor"] > 0, "the live renderer reports its own speed"
    assert "| live |" in output, "live audio reached the stream"
    assert silences(workdir / "preview.flv", 0.25) == []


def test_a_model_that_makes_hiss_never_goes_on_air(trained_run, tmp_path):
    workdir = tmp_path / "stream"
    proc = start_stream(trained_run / "checkpoints" / "best.pt", workdir, "sink=file", "gate.enabled=true")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "the quality gate has dropped all" in line:
            break
    output = "".join(seen) + stop(proc)
    assert proc.returncode == 0, output
    assert "hiss (spectral flatness" in output
    assert not list((workdir / "backlog").glob("track_*.wav")), "nothing to air"
    dropped = [json.loads(p.read_text()) for p in (workdir / "backlog").glob("track_*.dropped.json")]
    assert len(dropped) == 4 and all(d["flatness"] > 0.5 for d in dropped)
    assert not (workdir / "preview.flv").exists()


def test_the_rate_limit_counts_every_sample_an_engine_reports(small_model, tmp_path):
    """Graph and Triton engines report many samples per call; the limit must hold for them too."""
    renderer = TrackRenderer(small_model, Backlog(tmp_path, 16000), 2, 1.0, 1.0, 0, 1.0, threading.Event(), 2000)
    start = renderer.meter.window_start = time.perf_counter()
    renderer.after_step(500)
    renderer.after_step(500)  # 2 x 500 samples x 2 streams = 2000 samples at 2000 samples/s
    assert time.perf_counter() - start >= 1.0


def test_the_track_renderer_makes_one_engine_and_restarts_it_for_each_batch(small_model, tmp_path):
    """A graph backend captures its CUDA graphs once per engine: a new engine per batch would capture again for every
    batch of tracks. The second batch must still be tracks 2 and 3 of the seed, as generate() makes them."""
    renderer = TrackRenderer(small_model, Backlog(tmp_path, 16000), 2, 0.02, 1.0, 7, 1.0, threading.Event())
    renderer.generate_tracks(0, time.perf_counter())
    engine = renderer.engine
    second = renderer.generate_tracks(2, time.perf_counter())
    assert renderer.engine is engine
    assert torch.equal(second, generate(small_model, 320, 2, temperature=1.0, seed=7, first_stream=2))
