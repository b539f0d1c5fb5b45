"""The built-in demo corpus: lo-fi hip hop synthesised offline, deterministic from a seed.

Each track: swung drums (kick, snare, hats) at 70-90 BPM, a jazzy seventh-chord progression on an FM electric piano,
a bass line on the chord roots, vinyl crackle and hiss, and a soft low-pass over the mix.

    python -m data_prep.demo_corpus --out data/demo [--tracks 20] [--seed 0]
"""

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from wavenet.audio import write_wav
from wavenet.data import stable_split
from wavenet.files import write_jsonl_atomic

SAMPLE_RATE = 16000
VAL_FRACTION = 0.2

# Chord qualities as semitones above the root; progressions as (degree above the key, quality), one chord a bar.
QUALITIES = {
    "maj7": [0, 4, 7, 11],
    "m7": [0, 3, 7, 10],
    "7": [0, 4, 7, 10],
    "m9": [0, 3, 7, 10, 14],
    "maj9": [0, 4, 7, 11, 14],
}
PROGRESSIONS = [
    [(2, "m7"), (7, "7"), (0, "maj7"), (9, "m7")],  # ii V I vi
    [(0, "maj7"), (9, "m7"), (2, "m9"), (7, "7")],  # I vi ii V
    [(5, "maj7"), (4, "m7"), (2, "m7"), (0, "maj9")],  # IV iii ii I
    [(0, "m9"), (5, "m7"), (10, "7"), (3, "maj7")],  # i iv VII III
    [(9, "m7"), (2, "m9"), (7, "7"), (0, "maj7")],  # vi ii V I
]


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def envelope(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    return np.minimum(1.0, t / attack) * np.exp(-t / decay)


def electric_piano(note: float, seconds: float, velocity: float) -> np.ndarray:
    """FM tine voice: a sine carrier with a 1:1 modulator whose index decays, plus a faint high 'bark'."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = midi_hz(note)
    index = 1.2 * velocity * np.exp(-t / 0.35)
    bark = 0.15 * velocity * np.exp(-t / 0.05) * np.sin(2 * np.pi * 14 * f * t)
    tone = np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * f * t) + bark)
    return velocity * tone * envelope(n, 0.004, 1.2)


def bass(note: float, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = midi_hz(note)
    tone = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) * np.exp(-t / 0.1)
    return 0.8 * tone * envelope(n, 0.01, 0.6)


def kick(rng: np.random.Generator) -> np.ndarray:
    n = int(0.45 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    freq = 48 + 90 * np.exp(-t / 0.04)
    body = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t / 0.18)
    click = rng.standard_normal(n) * np.exp(-t / 0.004) * 0.3
    return body + click


def snare(rng: np.random.Generator) -> np.ndarray:
    n = int(0.3 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    noise = sosfilt(butter(2, [1200, 5000], btype="band", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
    return 0.9 * noise * np.exp(-t / 0.09) + 0.5 * tone


def hat(rng: np.random.Generator, open_: bool) -> np.ndarray:
    n = int((0.25 if open_ else 0.06) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    noise = sosfilt(butter(4, 6000, btype="high", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    return 0.35 * noise * np.exp(-t / (0.08 if open_ else 0.015))


def vinyl(rng: np.random.Generator, n: int) -> np.ndarray:
    """Crackle (sparse clicks of random size) over a low hiss."""
    clicks = np.zeros(n)
    count = rng.poisson(18 * n / SAMPLE_RATE)
    clicks[rng.integers(0, n, count)] = rng.standard_normal(count) * rng.exponential(0.25, count)
    clicks = sosfilt(butter(2, 2500, btype="high", fs=SAMPLE_RATE, output="sos"), clicks)
    hiss = sosfilt(butter(2, 3000, btype="low", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n)) * 0.01
    return clicks + hiss


def add(mix: np.ndarray, sound: np.ndarray, at: float, gain: float) -> None:
    start = int(at * SAMPLE_RATE)
    if start >= len(mix):
        return
    end = min(len(mix), start + len(sound))
    mix[start:end] += gain * sound[: end - start]


@dataclass
class TrackPlan:
    bpm: float
    swing: float  # 0.5 = straight; the off-beat 16th lands at this fraction of the 8th note
    key: int  # MIDI note of the key centre, around middle C
    progression: list
    seconds: float


def plan_track(rng: np.random.Generator) -> TrackPlan:
    return TrackPlan(
        bpm=float(rng.uniform(70, 90)),
        swing=float(rng.uniform(0.56, 0.66)),
        key=int(rng.integers(55, 67)),
        progression=PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))],
        seconds=float(rng.uniform(30, 60)),
    )


def render_track(plan: TrackPlan, rng: np.random.Generator) -> np.ndarray:
    n = int(plan.seconds * SAMPLE_RATE)
    mix = np.zeros(n)
    beat = 60.0 / plan.bpm
    bar = 4 * beat

    def sixteenth(bar_index: int, position: int) -> float:
        """Time of 16th note `position` (0..15) in a bar, with the off-beat 16ths swung late."""
        eighth, odd = divmod(position, 2)
        return bar_index * bar + eighth * beat / 2 + (plan.swing * beat / 2 if odd else 0.0)

    kick_pattern = [0, 7, 10] if rng.random() < 0.5 else [0, 6, 8, 11]
    comp_pattern = [0, 7] if rng.random() < 0.5 else [0, 3, 10]
    bars = int(plan.seconds / bar) + 1
    for b in range(bars):
        degree, quality = plan.progression[b % len(plan.progression)]
        root = plan.key + degree
        drums_on = 2 <= b < bars - 1  # an intro and an outro without drums
        for pos in comp_pattern:  # the electric piano comps the chord, voiced around middle C
            velocity = rng.uniform(0.5, 0.8)
            for interval in QUALITIES[quality]:
                note = root + interval
                note -= 12 * (note > 74)
                add(mix, electric_piano(note, 1.6, velocity), sixteenth(b, pos) + rng.uniform(0, 0.012), 0.16)
        bass_root = 36 + (root - 36) % 12
        for pos, offset in ((0, 0), (10, 7 if rng.random() < 0.5 else 12)):
            add(mix, bass(bass_root + offset, beat * 1.4), sixteenth(b, pos), 0.45)
        if not drums_on:
            continue
        for pos in kick_pattern:
            add(mix, kick(rng), sixteenth(b, pos), 0.8)
        for pos in (4, 12):
            add(mix, snare(rng), sixteenth(b, pos), 0.45)
        for pos in range(0, 16, 2 if rng.random() < 0.7 else 1):
            add(mix, hat(rng, open_=pos == 14 and rng.random() < 0.3), sixteenth(b, pos), rng.uniform(0.5, 1.0))

    mix = sosfilt(butter(2, rng.uniform(3500, 5000), btype="low", fs=SAMPLE_RATE, output="sos"), mix)
    mix += vinyl(rng, n)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (1.5 * SAMPLE_RATE))
    mix *= fade
    return (0.8 * mix / np.abs(mix).max()).astype(np.float32)


def make_corpus(out: Path, tracks: int = 20, seed: int = 0, log=print) -> Path:
    """Write `tracks` WAVs and manifest.jsonl into `out`; a complete corpus of the same recipe is left as is."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    recipe = f"demo-corpus seed={seed} tracks={tracks}"
    if manifest.exists() and all(
        json.loads(line)["source"].startswith(recipe) for line in manifest.read_text().splitlines()
    ):
        if len(manifest.read_text().splitlines()) == tracks:
            log(f"demo corpus already in {out}")
            return manifest
    entries = []
    for i in range(tracks):
        rng = np.random.default_rng([seed, i])
        audio = render_track(plan_track(rng), rng)
        track_id = f"demo_{seed:03d}_{i:03d}"
        path = write_wav(out / f"{track_id}.wav", audio, SAMPLE_RATE)
        entries.append(
            {
                "id": track_id,
                "path": path.name,
                "source": f"{recipe} track={i}",
                "duration": round(len(audio) / SAMPLE_RATE, 3),
                "sample_rate": SAMPLE_RATE,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "split": stable_split(track_id, VAL_FRACTION),
            }
        )
        log(f"  {path.name}: {entries[-1]['duration']:.1f} s, {entries[-1]['split']}")
    write_jsonl_atomic(manifest, entries)
    minutes = sum(e["duration"] for e in entries) / 60
    log(f"demo corpus: {tracks} tracks, {minutes:.1f} minutes, in {out}")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default data/demo)")
    parser.add_argument("--tracks", type=int, default=20, help="number of tracks (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same corpus")
    args = parser.parse_args()
    make_corpus(args.out, args.tracks, args.seed)


if __name__ == "__main__":
    main()
