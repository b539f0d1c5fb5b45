"""The station's own site (stream.py sink=web), as listeners and visitors meet it: HLS pulled with ffprobe, the page
in Debian's headless Chromium driven by Playwright, uploads good and bad, and 50 listeners at once."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import wait_for
from tests.test_stream import probe_streams, pull, start_stream, status, stop
from wavenet.stream.rtmp_server import LocalRtmp, free_port
from wavenet.web.settings import WebSettings
from wavenet.web.site import SitePaths, make_app

CHROMIUM = "/usr/bin/chromium"
SEGMENT_SECONDS = 2.0
UPLOAD_MAX_MB = 1  # small, so that "too large" is quick to send


@dataclass
class Station:
    url: str
    workdir: Path
    uploads: Path  # the site's temporary folders live under here (its TMPDIR)
    log: Path
    proc: subprocess.Popen

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def status(self) -> dict:
        return self.get("/api/status").json()

    def carry(self, body: bytes, name: str = "clip.wav", **params) -> httpx.Response:
        params = {"seconds": 1, "temperature": 1.0, "name": name, **params}
        return httpx.post(self.url + "/api/carry", params=params, content=body, timeout=60)


@pytest.fixture(scope="module")
def station(trained_run, tmp_path_factory):
    """One station with its site for the whole module: starting it costs a model load and a first batch."""
    root = tmp_path_factory.mktemp("site")
    workdir, uploads, log = root / "stream", root / "tmp", root / "stream.log"
    uploads.mkdir()
    port = free_port()
    proc = start_stream(
        trained_run / "checkpoints" / "best.pt",
        workdir,
        "sink=web",
        f"web.port={port}",
        f"web.segment_seconds={SEGMENT_SECONDS}",
        f"web.upload_max_mb={UPLOAD_MAX_MB}",
        "web.queue_size=2",
        log_file=log,
        TMPDIR=str(uploads),
    )
    station = Station(f"http://127.0.0.1:{port}", workdir, uploads, log, proc)
    try:
        wait_for(lambda: ready(station), 180, "the station's site to be live with HLS")
        yield station
    finally:
        stop(proc)
    print(log.read_text()[-3000:])


def ready(station: Station) -> bool:
    if station.proc.poll() is not None:
        raise AssertionError(f"stream.py ended:\n{station.log.read_text()}")
    try:
        s = station.status()
    except httpx.HTTPError:
        return False
    return s["state"] == "live" and s["hls_ready"] and len(playlist_segments(station)) >= 3


def playlist_segments(station: Station) -> list[tuple[float, str]]:
    """(duration, name) of each segment the live playlist lists."""
    return segments_in(station.get("/hls/live.m3u8").text)


def segments_in(playlist: str) -> list[tuple[float, str]]:
    segments, duration = [], None
    for line in playlist.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line.split(":")[1].rstrip(","))
        elif line and not line.startswith("#"):
            segments.append((duration, line))
    return segments


def media_sequence(station: Station) -> int:
    text = station.get("/hls/live.m3u8").text
    return int(next(l for l in text.splitlines() if l.startswith("#EXT-X-MEDIA-SEQUENCE")).split(":")[1])


def ffprobe_json(target: str, *entries: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", *entries, "-of", "json", target], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def tone(path: Path, seconds: float, codec: list[str]) -> Path:
    """A 330 Hz sine, written by ffmpeg in the format the path and codec options choose."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={seconds}"]
        + codec
        + [str(path)],
        check=True,
    )
    return path


# -- HLS ----------------------------------------------------------------------------------------------------------
def test_hls_has_segments_of_the_configured_length_in_aac_stereo_with_no_gaps(station, tmp_path):
    wait_for(lambda: len(playlist_segments(station)) >= 5, 60, "five segments in the live playlist")
    segments = playlist_segments(station)
    assert all(abs(d - SEGMENT_SECONDS) < 0.05 for d, _ in segments), segments

    streams = {s["codec_type"]: s for s in ffprobe_json(station.url + "/hls/live.m3u8", "-show_streams")["streams"]}
    assert streams["audio"]["codec_name"] == "aac"
    assert (int(streams["audio"]["sample_rate"]), streams["audio"]["channels"]) == (44100, 2)
    assert streams["video"]["codec_name"] == "h264"

    spans = []  # (first audio packet time, end of the last one) of consecutive segments
    for _, name in segments[-4:]:
        path = tmp_path / name
        path.write_bytes(station.get(f"/hls/{name}").content)
        packets = ffprobe_json(str(path), "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time")
        times = [(float(p["pts_time"]), float(p["duration_time"])) for p in packets["packets"]]
        spans.append((times[0][0], times[-1][0] + times[-1][1]))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert abs(start - end) < 0.03, f"a gap of {start - end:.3f} s between segments: {spans}"


def requests_while_ffmpeg_churns(tmp_path: Path, churn, path: str, count: int = 300) -> tuple[list, list[str]]:
    """`count` GETs of `path` from a real site (uvicorn on loopback) while `churn(hls_folder)` runs over and over in
    a thread, as ffmpeg rewrites the HLS folder; the responses, and the requests that broke off."""
    import uvicorn

    paths = SitePaths(*(tmp_path / name for name in ("status.json", "hls", "b", "bg.png", "thumbs", "uploads")))
    paths.hls.mkdir()
    churn(paths.hls)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(paths, WebSettings(), None, 16000), "127.0.0.1", port, log_level="critical")
    )
    serving = threading.Thread(target=server.run)
    serving.start()
    done = threading.Event()

    def again_and_again() -> None:
        while not done.is_set():
            churn(paths.hls)

    churning = threading.Thread(target=again_and_again)
    responses, failures = [], []
    try:
        wait_for(lambda: server.started, 30, "the site to listen")
        churning.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(count):
                try:
                    responses.append(client.get(path))
                except httpx.HTTPError as err:
                    failures.append(repr(err))
    finally:
        done.set()
        server.should_exit = True
        serving.join()
        if churning.is_alive():
            churning.join()
    return responses, failures


PLAYLISTS = [b"#EXTM3U\n" + b"".join(b"#EXTINF:2.0,\nsegment_%06d.ts\n" % i for i in range(n)) for n in (2, 9)]


def replace_the_playlist(hls: Path) -> None:
    """What ffmpeg does every segment: a new live.m3u8 renamed over the old one."""
    for version in PLAYLISTS:
        (hls / "live.m3u8.tmp").write_bytes(version)
        os.replace(hls / "live.m3u8.tmp", hls / "live.m3u8")


SEGMENT = bytes(range(256)) * 1500  # 384 kB, about a 2 s segment


def write_and_delete_a_segment(hls: Path) -> None:
    """What ffmpeg does to each segment: written under a temporary name, renamed, deleted once out of the playlist."""
    (hls / "segment_000001.ts.tmp").write_bytes(SEGMENT)
    os.replace(hls / "segment_000001.ts.tmp", hls / "segment_000001.ts")
    (hls / "segment_000001.ts").unlink()


def test_the_playlist_comes_whole_while_ffmpeg_keeps_replacing_it(tmp_path):
    responses, failures = requests_while_ffmpeg_churns(tmp_path, replace_the_playlist, "/hls/live.m3u8")
    assert not failures, f"{len(failures)} of 300 playlist requests broke off, first: {failures[0]}"
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in responses} <= set(PLAYLISTS) and len(responses) == 300


def test_a_segment_deleted_as_it_is_asked_for_is_whole_or_not_found(tmp_path):
    responses, failures = requests_while_ffmpeg_churns(tmp_path, write_and_delete_a_segment, "/hls/segment_000001.ts")
    assert not failures, f"{len(failures)} of 300 segment requests broke off, first: {failures[0]}"
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 404}, f"{sum(c not in (200, 404) for c in codes)} of 300 answered {set(codes)}"
    assert 200 in codes, "no request found the segment, so none showed whether it comes whole"
    assert all(r.content == SEGMENT for r in responses if r.status_code == 200)


@pytest.mark.slow
def test_an_ingest_and_the_site_from_one_encode_and_the_site_stays_live_while_the_ingest_is_down(trained_run, tmp_path):
    workdir = tmp_path / "odd: dir" / "stream"  # a colon, which ffmpeg must not take for a protocol
    workdir.parent.mkdir()
    port, log = free_port(), tmp_path / "stream.log"
    with LocalRtmp(tmp_path / "nginx") as ingest:
        proc = start_stream(
            trained_run / "checkpoints" / "best.pt",
            workdir,
            "sink=rtmp",
            f"sink.url=rtmp://127.0.0.1:{ingest.port}/live",
            "web.enabled=true",
            f"web.port={port}",
            "supervisor.backoff_max_s=2",
            log_file=log,
            RTMP_STREAM_KEY="both-key",
        )
        try:
            wait_for(lambda: status(workdir).get("audio_sent_s", 0) > 2, 120, "the stream to go live")
            pulled = pull(ingest.url("live", "both-key"), 4, tmp_path / "pulled.flv")
            wait_for(lambda: newest_segment(workdir) >= 2, 60, "HLS segments beside the ingest")
            ffmpegs = [command_line(pid) for pid, name in children(proc.pid) if name == "ffmpeg"]

            ingest.kill()
            wait_for(lambda: status(workdir).get("reconnects", 0) >= 2, 60, "the relay to retry the ingest")
            down = newest_segment(workdir)
            wait_for(
                lambda: newest_segment(workdir) >= down + 3, 60, "the site's HLS to go on while the ingest is down"
            )
            during = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=30).json()

            with LocalRtmp(ingest.folder, port=ingest.port):
                after = pull(ingest.url("live", "both-key"), 2, tmp_path / "after.flv", timeout=60)
                wait_for(lambda: status(workdir).get("ingest") == "live", 30, "the relay to say it is live again")
        finally:
            stop(proc)
    encoders = [c for c in ffmpegs if "libx264" in c]
    relays = [c for c in ffmpegs if "copy" in c]
    assert len(ffmpegs) == 2 and len(encoders) == 1 and len(relays) == 1, f"one encode and one copy: {ffmpegs}"
    assert during["sink"].endswith("/live/<redacted>") and during["hls_ready"] and during["state"] == "live"
    assert during["encoder_restarts"] == 0, "the ingest's outage never touched the site's encoder"
    assert during["ingest"] in ("connecting", "reconnecting"), "no media reaches a dead ingest, so it is not live"
    for path in (pulled, after, workdir / "hls" / f"segment_{newest_segment(workdir):06d}.ts"):
        streams = probe_streams(path)
        assert (streams["audio"]["codec_name"], streams["video"]["codec_name"]) == ("aac", "h264"), path
    text = log.read_text()
    assert "the site stays live" in text and "both-key" not in text


def newest_segment(workdir: Path) -> int:
    """The number of the newest segment in the site's playlist (-1 before there is one)."""
    playlist = workdir / "hls" / "live.m3u8"
    segments = segments_in(playlist.read_text()) if playlist.exists() else []
    return int(segments[-1][1].removeprefix("segment_").removesuffix(".ts")) if segments else -1


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of a process's children, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1].split()[1]) == pid:
            found.append((int(stat.parent.name), fields[0].split("(", 1)[1]))
    return found


def site_pid(station: Station) -> int | None:
    for pid, _ in children(station.proc.pid):
        try:
            if b"wavenet.web.serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


def test_a_port_in_use_stops_the_stream_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_stream(tmp_path / "never-loaded.pt", tmp_path / "stream", "sink=web", f"web.port={port}")
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert f"web.host=127.0.0.1 web.port={port} is in use: choose another with web.port=" in out


# -- the page in a real browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: install Debian's chromium (make system does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*args, "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, station):
    context = browser.new_context()
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(station.url + "/")
    yield page
    context.close()


def test_the_page_plays_the_live_audio_and_follows_the_tracks(page):
    page.wait_for_selector("#listen:enabled", timeout=30_000)
    page.click("#listen")  # a listener's click: browsers play sound only after one
    page.wait_for_function("document.getElementById('player').currentTime > 4", timeout=60_000)
    page.wait_for_function("Number(document.getElementById('level').dataset.level) > 0.01", timeout=30_000)
    first = page.text_content("#now-playing")
    assert first.startswith("track "), first
    assert "seed 0" in page.text_content("#details") and "temperature 1.0" in page.text_content("#details")
    page.wait_for_function(
        f"document.getElementById('now-playing').textContent !== {json.dumps(first)}", timeout=30_000
    )
    assert page.locator("#history li img").count() >= 2
    assert page.text_content("#rtf").endswith("x real time")
    assert page.console_errors == []


def test_an_upload_round_trips_to_a_playable_continuation(page, station, tmp_path):
    clip = tone(tmp_path / "melody.ogg", 2.0, ["-c:a", "libvorbis"])  # not a WAV: anything ffmpeg decodes
    page.set_input_files("#carry-file", str(clip))
    page.eval_on_selector("#carry-seconds", "e => { e.value = '1'; }")
    page.click("#carry-submit")
    page.wait_for_selector("#carry-result:not([hidden])", timeout=120_000)
    assert abs(float(page.get_attribute("#carry-result", "data-seam")) - 2.0) < 0.05
    page.eval_on_selector("#carry-audio", "a => a.play()")
    page.wait_for_function("document.getElementById('carry-audio').currentTime > 0.5", timeout=30_000)
    assert abs(page.eval_on_selector("#carry-audio", "a => a.duration") - 3.0) < 0.05

    audio, rate = sf.read(_download(station, page, tmp_path), dtype="float32")
    prime = audio[: int(1.9 * rate)]
    sine = np.sin(2 * np.pi * 330 * np.arange(len(prime)) / rate)
    assert np.corrcoef(np.abs(np.fft.rfft(prime)), np.abs(np.fft.rfft(sine)))[0, 1] > 0.9, "it starts with the clip"
    assert np.abs(audio[int(2.05 * rate) :]).max() > 0, "then the model"
    assert page.console_errors == []


def _download(station: Station, page, tmp_path: Path) -> Path:
    path = tmp_path / "result.wav"
    path.write_bytes(station.get(page.get_attribute("#carry-download", "href")).content)
    return path


def test_a_bad_upload_shows_its_message(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a song\n" * 100)
    page.set_input_files("#carry-file", str(notes))
    page.click("#carry-submit")
    page.wait_for_selector("#carry-status.error", timeout=30_000)
    message = page.text_content("#carry-status")
    assert message.startswith("notes.txt: ") and "ffmpeg" in message, message


# -- bad input over HTTP ------------------------------------------------------------------------------------------
def test_bad_uploads_get_clear_answers(station, tmp_path):
    wav = tone(tmp_path / "ok.wav", 1.0, []).read_bytes()
    long = tone(tmp_path / "long.flac", 11.0, []).read_bytes()

    answer = station.carry(b"%PDF-1.4 not audio at all" * 50, name="scan.pdf")
    assert answer.status_code == 400 and answer.json()["error"].startswith("scan.pdf: ")
    answer = station.carry(long, name="long.flac")
    assert answer.status_code == 400 and "longer than 10 s" in answer.json()["error"]
    answer = station.carry(b"\0" * (UPLOAD_MAX_MB * 1024 * 1024 + 1), name="big.wav")
    assert answer.status_code == 413 and "larger than 1 MB" in answer.json()["error"]
    answer = station.carry(b"", name="empty.mp3")
    assert answer.status_code == 400 and answer.json()["error"] == "empty.mp3 is empty: choose a file with sound in it"
    answer = station.carry(wav, temperature=9)
    assert answer.status_code == 400 and answer.json()["error"].startswith("temperature=9: ")
    answer = station.carry(wav, seconds=600)
    assert answer.status_code == 400 and answer.json()["error"].startswith("seconds=600: ")

    hostile = "../../../etc/passwd\x00<img src=x onerror=alert(1)>.wav"
    answer = station.carry(b"junk" * 100, name=hostile)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("passwd<img src=x onerror=alert(1)>.wav: "), "only the last part, as text"
    assert not any(p.name.startswith("passwd") for p in station.workdir.parent.rglob("*"))
    assert leftover_uploads(station) == []


def leftover_uploads(station: Station) -> list[Path]:
    return [p for p in station.uploads.rglob("*") if p.suffix == ".upload"]


def test_a_visitor_who_leaves_mid_upload_leaves_nothing_behind(station):
    host, port = station.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(
            b"POST /api/carry?seconds=1&name=half.wav HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n"
            + b"RIFF" * 2000
        )
        wait_for(lambda: leftover_uploads(station) != [], 30, "the site to start receiving the upload")
    wait_for(lambda: leftover_uploads(station) == [], 30, "the partial upload to be deleted")
    assert station.status()["state"] == "live"


def test_a_flood_of_uploads_is_told_the_station_is_busy(station, tmp_path):
    wav = tone(tmp_path / "ok.wav", 1.0, []).read_bytes()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(station.carry(wav, seconds=3))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert 202 in codes and 503 in codes, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert "busy" in busy.json()["error"] and "Try again" in busy.json()["error"]
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    assert len(accepted) <= 3, "one rendering and web.queue_size=2 waiting"
    for job in accepted:  # the queue drains, and every accepted visitor gets a result
        wait_for(lambda job=job: station.get(f"/api/carry/{job}").json()["state"] == "done", 180, f"job {job}")


# -- load ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fifty_listeners_for_a_minute_leave_the_render_and_the_segments_on_time(station):
    before = station.status()
    stop_at = time.monotonic() + 60
    errors, slowest = [], [0.0]

    def listen() -> None:
        with httpx.Client(base_url=station.url, timeout=30) as client:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    client.get("/")
                    client.get("/api/status", params={"listener": threading.current_thread().name})
                    newest = client.get("/hls/live.m3u8").text.splitlines()[-1]
                    client.get(f"/hls/{newest}").raise_for_status()
                except httpx.HTTPError as err:
                    errors.append(repr(err))
                slowest[0] = max(slowest[0], time.monotonic() - started)
                time.sleep(SEGMENT_SECONDS)  # a player's polling interval, not synchronisation

    listeners = [threading.Thread(target=listen, name=f"listener-{i}") for i in range(50)]
    for t in listeners:
        t.start()
    segments = station.workdir / "hls"
    there = {p.name for p in segments.glob("segment_*.ts")}
    seen: dict[str, float] = {}  # when each new segment file appeared, watched at the source (not through the site)
    while time.monotonic() < stop_at:
        for path in segments.glob("segment_*.ts"):
            if path.name not in there:
                seen.setdefault(path.name, time.monotonic())
        time.sleep(0.1)  # sampling the encoder's cadence
    peak = station.status()["listeners"]
    for t in listeners:
        t.join()
    after = station.status()

    assert errors == [], errors[:3]
    assert peak >= 50 and slowest[0] < 10, f"{peak} listeners; the slowest round of requests took {slowest[0]:.1f} s"
    gaps = np.diff(sorted(seen.values()))
    assert 25 <= len(gaps) <= 32, f"{len(gaps)} segments of {SEGMENT_SECONDS} s in a minute"
    assert gaps.max() < 2 * SEGMENT_SECONDS, f"a segment came {gaps.max():.1f} s after the one before"
    assert after["reconnects"] == before["reconnects"] and after["state"] == "live"
    during = (after["render_audio_s"] - before["render_audio_s"]) / (after["render_busy_s"] - before["render_busy_s"])
    assert during >= 0.8 * before["real_time_factor"], f"render {during:.2f}x real time under load, {before}"


@pytest.mark.slow
def test_the_site_comes_back_when_its_process_dies_and_the_stream_plays_on(station, tmp_path):
    job = station.carry(tone(tmp_path / "ok.wav", 1.0, []).read_bytes()).json()["id"]
    wait_for(lambda: station.get(f"/api/carry/{job}").json()["state"] == "done", 180, "a visitor's result")
    results = list(station.uploads.rglob("*.wav"))
    sequence, pid = media_sequence(station), site_pid(station)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: site_pid(station) not in (None, pid), 30, "stream.py to start the site again")
    wait_for(lambda: answers(station), 60, "the new site to answer")
    assert station.status()["state"] == "live"
    assert media_sequence(station) > sequence, "the encoder went on writing segments meanwhile"
    assert "the station's site ended (exit -9); restarting it" in station.log.read_text()
    assert results and not any(path.exists() for path in results), "what the killed site kept of visitors is gone"
    assert len(list(station.uploads.glob("lofi-wavenet-site-*"))) == 1, "one folder for the site, whichever serves it"


def answers(station: Station) -> bool:
    try:
        return station.get("/api/status").status_code == 200
    except httpx.HTTPError:
        return False
