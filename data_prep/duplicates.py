"""The same audio under two names must not land in train and validation: keep one copy, say which were dropped.

Exact duplicates have the same decoded samples (a copy, a lossless re-encode). Near-duplicates are the same music
encoded differently (an MP3 of a WAV): the same average spectrum (its profile over 64 bands, within 2 dB on
average) and a spectrum that moves the same way over time (the pattern: log energy per band and 256 ms frame over
the first 30 s, with each frame's and each band's mean removed, correlated above 0.95). A steady sound has no
pattern and is never called a near-duplicate; two tracks must match in both to be one.
"""

import base64
from pathlib import Path

import numpy as np

FRAME = 4096  # samples per fingerprint frame (256 ms at 16 kHz)
BANDS = 64  # a semitone apart, about: a tune moved up a tone is another tune
MAX_FRAMES = 120  # about the first 30 s
MIN_FRAMES = 8  # shorter audio is too short to compare
MIN_PATTERN = 0.05  # RMS of the pattern, in decades of energy: below it the sound barely changes
SIMILAR = 0.95  # correlation of two patterns above which they are the same music
PROFILE_DB = 2.0  # ... and their average spectra differ by less than this, on average over the bands
EDGE_FRAMES = 2  # frames left out at each end, where resampling and trimming leave their marks
DURATION_TOLERANCE = 0.02  # near-duplicates last the same, within 2 %


def audio_fingerprint(audio: np.ndarray, rate: int) -> dict | None:
    """{"profile": dB per band, "pattern": base64 of int8 frames x bands}; None when too short or too steady."""
    count = min(len(audio) // FRAME, MAX_FRAMES + 2 * EDGE_FRAMES)
    if count < MIN_FRAMES + 2 * EDGE_FRAMES:
        return None
    frames = audio[: count * FRAME].reshape(count, FRAME)[EDGE_FRAMES:-EDGE_FRAMES] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = (np.geomspace(100, min(7000, rate / 2), BANDS + 1) * FRAME / rate).astype(int)
    bands = [power[:, a : max(b, a + 1)].sum(axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    pattern = np.log10(np.stack(bands, axis=1) + 1e-10)
    pattern -= pattern.mean(axis=1, keepdims=True)  # the loudness of each frame
    profile = pattern.mean(axis=0)  # the timbre: the average spectrum
    pattern -= profile
    spread = float(np.sqrt(np.mean(pattern**2)))
    if spread < MIN_PATTERN:
        return None
    quantised = np.round(np.clip(pattern / (4 * spread), -1, 1) * 127).astype(np.int8)
    return {"profile": [round(10 * float(v), 2) for v in profile], "pattern": base64.b64encode(quantised).decode()}


def similarity(a: dict, b: dict) -> float:
    """Correlation of two patterns over the frames they share (1: the same music); 0 when the profiles differ."""
    if np.mean(np.abs(np.subtract(a["profile"], b["profile"]))) > PROFILE_DB:
        return 0.0
    x, y = (
        np.frombuffer(base64.b64decode(f["pattern"]), np.int8).reshape(-1, BANDS).astype(np.float64) for f in (a, b)
    )
    n = min(len(x), len(y))
    x, y = x[:n].ravel(), y[:n].ravel()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def drop_duplicates(records: dict[str, dict], out: Path) -> list[dict]:
    """Among prepared records, keep one of each exact or near duplicate; returns the dropped ones.

    The keeper is a copy that was in the corpus already (so a re-run never swaps tracks), else the first by
    name. A dropped copy becomes `skipped` with `duplicate_of`, and its prepared WAVs are removed from `out`.
    """
    candidates = sorted(
        (r for r in records.values() if r["outcome"] == "prepared"), key=lambda r: (not r.get("unchanged"), r["source"])
    )
    by_audio: dict[str, str] = {}  # the sha256 of decoded audio -> the source kept with it
    kept: list[dict] = []
    dropped = []
    for record in candidates:
        found = _duplicate_of(record, by_audio, kept)
        if found is None:
            if record.get("audio_sha256"):
                by_audio[record["audio_sha256"]] = record["source"]
            kept.append(record)
            continue
        for entry in record.pop("entries", []):
            (out / entry["path"]).unlink(missing_ok=True)
        keeper, why = found
        record.update(outcome="skipped", reason=f"duplicate of {keeper} ({why})", duplicate_of=keeper)
        dropped.append(record)
    return dropped


def _duplicate_of(record: dict, by_audio: dict[str, str], kept: list[dict]) -> tuple[str, str] | None:
    """(the kept source it duplicates, how) or None: exactly by decoded audio, else nearly by fingerprint."""
    if record.get("audio_sha256") in by_audio:
        return by_audio[record["audio_sha256"]], "the same decoded audio"
    b = record.get("audio_fingerprint")
    if not isinstance(b, dict):
        return None
    for keeper in kept:
        a = keeper.get("audio_fingerprint")
        if (
            not isinstance(a, dict)
            or abs(keeper["duration"] - record["duration"]) > DURATION_TOLERANCE * keeper["duration"]
        ):
            continue
        score = similarity(a, b)
        if score > SIMILAR:
            return keeper["source"], f"the same music, encoded differently: similarity {score:.2f}"
    return None
