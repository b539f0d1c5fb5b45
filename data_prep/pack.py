"""A prepared corpus packed small and exact, for a machine that cannot fetch or decode it (the GPU device).

    python -m data_prep.pack data/game_music --out .gpu/corpus [--max-mib 40] [--val-minutes 10]
    python -m data_prep.pack data/game_music --out .gpu/corpus-2 --part 2     # the next training tracks
    python -m data_prep.pack --unpack .gpu/corpus --out /tmp/game_music      # there: WAVs + manifest.jsonl

Training sees 8-bit mu-law codes, so the pack holds exactly those: per track, the differences of successive codes
(mod 256), xz-compressed; about 4.9 bits a sample on the game soundtracks instead of 16. Unpacked, each track is a
16-bit WAV that encodes back to the same codes, with a manifest of the same ids and splits, so train.py and
bench/quality.py read it like any prepared corpus. What does not fit in --max-mib is left out, listed in the
report: validation first (--val-minutes in all, an equal share from the middle of each validation track), then
whole training tracks in an order that mixes the sources. The licences folder goes along.

--part K packs the same validation audio with the training tracks that come after parts 1 to K-1 in that order, so
that a run resumed call after call on parts 1, 2, 3 sees that much more music, scored on the same windows.
"""

import argparse
import hashlib
import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from wavenet.audio import mu_law_decode, mu_law_encode, read_wav, write_wav
from wavenet.data import list_tracks
from wavenet.errors import UserError
from wavenet.files import write_bytes_atomic, write_jsonl_atomic, write_text_atomic

INDEX = "pack.json"
LICENSES = "LICENSES"


def packed_codes(codes: np.ndarray) -> bytes:
    """Mu-law codes (uint8) -> xz of their successive differences, mod 256 (the first code kept as it is)."""
    return lzma.compress(np.diff(codes, prepend=np.uint8(0)).tobytes())


def unpacked_codes(blob: bytes) -> np.ndarray:
    return np.cumsum(np.frombuffer(lzma.decompress(blob), dtype=np.uint8), dtype=np.uint8)


def pack(corpus: Path, out: Path, max_mib: float, val_minutes: float, part: int = 1, log=print) -> dict:
    """Pack what fits of the corpus into `out` (its `part`-th share of the training tracks); returns the index (also
    written as out/pack.json)."""
    if part < 1:
        raise UserError(f"--part {part}: parts count from 1.")
    tracks = list_tracks(corpus)
    if out.resolve() == corpus.resolve():
        raise UserError(f"--out {out} is the corpus itself; pack into another folder.")
    val = [t for t in tracks if t.split == "val"]
    val_share = val_minutes * 60 / len(val)  # seconds from each validation track
    train = sorted((t for t in tracks if t.split == "train"), key=lambda t: hashlib.sha256(t.id.encode()).digest())
    taken: set[str] = set()  # training tracks of the earlier parts
    for earlier in range(1, part + 1):
        chosen = fill(val + [t for t in train if t.id not in taken], max_mib * 2**20, val_share)
        if not any(track.split == "train" for track, *_ in chosen):
            raise UserError(
                f"--part {part}: no training track is left for part {earlier}; {corpus} fills {earlier - 1} "
                f"part(s) of --max-mib {max_mib:g}."
            )
        taken |= {track.id for track, *_ in chosen if track.split == "train"}
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for track, samples, rate, blob in chosen:
        write_bytes_atomic(out / f"{track.id}.xz", blob)
        entries.append({"id": track.id, "split": track.split, "samples": samples, "sample_rate": rate})
    if (corpus / LICENSES).is_dir():
        shutil.copytree(corpus / LICENSES, out / LICENSES, dirs_exist_ok=True)
    kept = {e["id"] for e in entries}
    used = sum(len(blob) for *_, blob in chosen)
    left_out = [t.id for t in tracks if t.id not in kept]
    index = {"source": str(corpus), "part": part, "tracks": entries, "left_out": left_out, "mib": used / 2**20}
    write_text_atomic(out / INDEX, json.dumps(index, indent=1) + "\n")
    for stale in out.glob("*.xz"):  # from an earlier pack into this folder: it would only add to the carry
        if stale.stem not in kept:
            stale.unlink()
    for split in ("train", "val"):
        hours = sum(e["samples"] / e["sample_rate"] for e in entries if e["split"] == split) / 3600
        log(f"{split}: {sum(e['split'] == split for e in entries)} tracks, {hours:.2f} hours")
    log(f"{used / 2**20:.1f} MiB in {out} (part {part}); left out {len(left_out)} of {len(tracks)} tracks")
    return index


def fill(tracks: list, budget: float, val_share: float) -> list[tuple]:
    """(track, samples, sample rate, packed codes) for the tracks that fit in `budget` bytes, in order, skipping one
    that does not fit; a validation track gives `val_share` seconds from its middle."""
    chosen, used = [], 0
    for track in tracks:
        if budget - used < budget / 100:  # full: the rest is left unread
            break
        audio, rate = read_wav(track.path)
        if track.split == "val" and len(audio) > val_share * rate:
            start = (len(audio) - int(val_share * rate)) // 2
            audio = audio[start : start + int(val_share * rate)]
        blob = packed_codes(mu_law_encode(audio).numpy().astype(np.uint8))
        if used + len(blob) <= budget:
            chosen.append((track, len(audio), rate, blob))
            used += len(blob)
    return chosen


def unpack(packed: Path, out: Path, log=print) -> Path:
    """Write the pack's tracks as WAVs with a manifest.jsonl into `out` (a corpus folder); returns `out`."""
    if not (packed / INDEX).is_file():
        raise UserError(f"{packed} holds no {INDEX}: make it with python -m data_prep.pack CORPUS --out {packed}.")
    index = json.loads((packed / INDEX).read_text())
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for entry in index["tracks"]:
        path = packed / f"{entry['id']}.xz"
        try:
            codes = unpacked_codes(path.read_bytes())
        except (OSError, lzma.LZMAError) as err:
            raise UserError(f"{path} cannot be read ({err}): pack the corpus again.") from err
        if len(codes) != entry["samples"]:
            raise UserError(f"{path} holds {len(codes)} samples, not {entry['samples']}: pack the corpus again.")
        write_wav(out / f"{entry['id']}.wav", mu_law_decode(torch.from_numpy(codes)), entry["sample_rate"])
        duration = entry["samples"] / entry["sample_rate"]
        lines.append({"id": entry["id"], "path": f"{entry['id']}.wav", "split": entry["split"], "duration": duration})
    if (packed / LICENSES).is_dir():
        shutil.copytree(packed / LICENSES, out / LICENSES, dirs_exist_ok=True)
    write_jsonl_atomic(out / "manifest.jsonl", lines)
    log(f"unpacked {len(lines)} tracks into {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, nargs="?", help="a prepared corpus folder (manifest.jsonl)")
    parser.add_argument("--unpack", type=Path, help="a pack to write out as a corpus folder instead")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-mib", type=float, default=40.0, help="the pack's size at most (MiB)")
    parser.add_argument("--val-minutes", type=float, default=10.0, help="validation audio kept at most")
    parser.add_argument("--part", type=int, default=1, help="the training tracks after parts 1 to PART-1 (default 1)")
    args = parser.parse_args()
    try:
        if args.unpack:
            unpack(args.unpack, args.out)
        elif args.corpus:
            pack(args.corpus, args.out, args.max_mib, args.val_minutes, args.part)
        else:
            parser.error("give a corpus folder to pack, or --unpack PACK")
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
