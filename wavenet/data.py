"""Training data: a corpus folder -> cached mu-law uint8 shards -> random windows, chosen by (seed, rank, step).

Windows are a pure function of the step, so a resumed run sees exactly the batches it would have seen.
"""

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wavenet.audio import mu_law_decode, mu_law_encode, read_wav
from wavenet.errors import UserError
from wavenet.storage import S3Settings, download_prefix, is_s3

SPLITS = ("train", "val")


@dataclass
class Track:
    id: str
    path: Path
    split: str


def stable_split(key: str, val_fraction: float) -> str:
    """Train or val from a hash of the key: stable under re-runs and additions."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "val" if bucket < val_fraction else "train"


def corpus_folder(source: str, cache_dir: str | Path, s3: S3Settings, log=print) -> Path:
    """The local folder of a corpus: the folder itself, or for s3://bucket/prefix its verified mirror in the cache."""
    if not is_s3(source):
        return Path(source)
    log(f"fetching {source} into {cache_dir}")
    folder, report = download_prefix(source, Path(cache_dir), s3)
    log(f"{source}: {len(report.transferred)} objects fetched, {len(report.unchanged)} already cached")
    return folder


def list_tracks(folder: str | Path, val_fraction: float = 0.1) -> list[Track]:
    """Tracks from manifest.jsonl (as data_prep writes it), or else every *.wav in the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"data.source={folder} is not a folder. Make the demo corpus with `python -m data_prep.demo_corpus --out {folder}` or point data.source at a folder of WAVs or at s3://bucket/prefix."
        )
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        tracks = []
        for n, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                tracks.append(Track(entry["id"], folder / entry["path"], entry["split"]))
            except (json.JSONDecodeError, KeyError) as err:
                raise UserError(
                    f"{manifest} line {n} is not a manifest entry with id, path and split ({err})."
                ) from err
    else:
        wavs = sorted(folder.rglob("*.wav"))
        tracks = [Track(p.stem, p, stable_split(str(p.relative_to(folder)), val_fraction)) for p in wavs]
    if not tracks:
        raise UserError(
            f"data.source={folder} has no manifest.jsonl and no .wav files. Make the demo corpus with `python -m data_prep.demo_corpus --out {folder}`."
        )
    for split in SPLITS:
        if not any(t.split == split for t in tracks):
            raise UserError(
                f"data.source={folder} has no '{split}' tracks; add more tracks or raise data.val_fraction."
            )
    return tracks


class CodeShard:
    """All tracks of one split as one uint8 array of mu-law codes, with each track's start and length."""

    def __init__(self, codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
        self.codes, self.starts, self.lengths = codes, starts, lengths

    @classmethod
    def load(cls, prefix: Path) -> "CodeShard":
        index = json.loads(prefix.with_suffix(".json").read_text())
        codes = np.memmap(prefix.with_suffix(".u8"), dtype=np.uint8, mode="r")
        return cls(codes, np.array(index["starts"], dtype=np.int64), np.array(index["lengths"], dtype=np.int64))

    def windows(self, rng: np.random.Generator, count: int, length: int) -> torch.Tensor:
        """`count` random windows of `length` codes, never crossing a track boundary; (count, length) int64."""
        room = self.lengths - length + 1
        usable = np.flatnonzero(room > 0)
        if len(usable) == 0:
            raise UserError(
                f"every track is shorter than a training window of {length} samples; lower data.target_length or use a smaller model."
            )
        weights = room[usable] / room[usable].sum()
        tracks = rng.choice(usable, size=count, p=weights)
        offsets = self.starts[tracks] + (rng.random(count) * room[tracks]).astype(np.int64)
        return torch.from_numpy(np.stack([self.codes[o : o + length] for o in offsets]).astype(np.int64))


def corpus_key(tracks: list[Track], sample_rate: int) -> str:
    """Changes when any track, its split, its size or its time stamp changes."""
    h = hashlib.sha256(str(sample_rate).encode())
    for t in tracks:
        st = t.path.stat() if t.path.exists() else None
        h.update(f"{t.id}|{t.path}|{t.split}|{st and st.st_size}|{st and st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def build_shards(tracks: list[Track], sample_rate: int, cache_dir: str | Path, log=print) -> dict[str, CodeShard]:
    """Encode the tracks to mu-law once and cache them; later runs open the cache in milliseconds."""
    folder = Path(cache_dir) / "shards" / corpus_key(tracks, sample_rate)
    if not all((folder / f"{s}.json").is_file() for s in SPLITS):
        log(f"encoding {len(tracks)} tracks to mu-law shards in {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            _write_shard([t for t in tracks if t.split == split], sample_rate, folder / split)
    return {s: CodeShard.load(folder / s) for s in SPLITS}


def _write_shard(tracks: list[Track], sample_rate: int, prefix: Path) -> None:
    starts, lengths, pos = [], [], 0
    tmp_codes = prefix.with_name(f".{prefix.name}.u8.tmp")
    with open(tmp_codes, "wb") as f:
        for t in tracks:
            if not t.path.is_file():
                raise UserError(f"track {t.id}: {t.path} is missing. Re-run data_prep or fix manifest.jsonl.")
            audio, rate = read_wav(t.path)
            if rate != sample_rate:
                raise UserError(
                    f"{t.path} is {rate} Hz but model.sample_rate={sample_rate}. Resample it with data_prep."
                )
            codes = mu_law_encode(audio).numpy().astype(np.uint8)
            f.write(codes.tobytes())
            starts.append(pos)
            lengths.append(len(codes))
            pos += len(codes)
    os.replace(tmp_codes, prefix.with_suffix(".u8"))
    tmp_index = prefix.with_name(f".{prefix.name}.json.tmp")
    tmp_index.write_text(json.dumps({"starts": starts, "lengths": lengths, "ids": [t.id for t in tracks]}))
    os.replace(tmp_index, prefix.with_suffix(".json"))


def train_batch(
    shard: CodeShard, seed: int, rank: int, step: int, batch_size: int, length: int, speed_jitter: float = 0.0
) -> torch.Tensor:
    """The training batch for this step and rank: a pure function of its arguments. With speed_jitter each window
    plays at a speed drawn from 1 +- speed_jitter (its pitch moves with it): more music from the same tracks."""
    rng = np.random.default_rng([seed, rank, step])
    if not speed_jitter:
        return shard.windows(rng, batch_size, length)
    if not 0.0 < speed_jitter < 0.5:
        raise UserError(f"data.speed_jitter={speed_jitter}: use a fraction between 0 and 0.5 (0.03 is 3%), or 0.")
    speeds = 1.0 + speed_jitter * rng.uniform(-1.0, 1.0, batch_size)
    source = shard.windows(rng, batch_size, math.ceil((length - 1) * (1.0 + speed_jitter)) + 2)
    return played_at(source, speeds, length)


def played_at(codes: torch.Tensor, speeds: np.ndarray, length: int) -> torch.Tensor:
    """Each row of mu-law codes played `speeds[row]` times as fast (linear interpolation), its first `length` codes."""
    position = torch.arange(length, dtype=torch.float64)[None] * torch.from_numpy(speeds)[:, None]
    left = position.long()
    audio = mu_law_decode(codes)
    mixed = torch.lerp(audio.gather(1, left), audio.gather(1, left + 1), (position - left).float())
    return mu_law_encode(mixed)


def validation_windows(shard: CodeShard, count: int, length: int) -> torch.Tensor:
    """The same validation windows every time."""
    return shard.windows(np.random.default_rng([12345]), count, length)


def unigram_bits(train: CodeShard, targets: torch.Tensor) -> float:
    """Order-0 baseline: bits per sample of the targets under the training set's code histogram (add-one)."""
    counts = np.bincount(np.asarray(train.codes), minlength=256).astype(np.float64) + 1.0
    log2p = np.log2(counts / counts.sum())
    return float(-log2p[targets.numpy().ravel()].mean())
