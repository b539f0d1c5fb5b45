"""A real-music development corpus: free game soundtracks that Debian ships, fetched, unpacked and prepared.

    python -m data_prep.game_music [--out data/game_music] [--packages asc-music ...] [--workers N]

Each package is fetched with `apt-get download` (no root needed, nothing installed), unpacked with `dpkg-deb -x`
into .cache/game_music/, and its licence (Debian's copyright file) is copied to OUT/LICENSES/. Game archives
(.pk3, zip) are opened, and songs shipped as stems (Fret's on Fire: backing, guitar, rhythm) are mixed into one
track, so that a song is one track on one side of the train/validation split. The unpacked trees then go
through data_prep.prepare as they are: it finds the music by content and reports everything else (images,
text, MIDI) as ignored. Clips shorter than --min-seconds (sound effects, jingles) are left out. Only the
packages below are for development; other music packages are kept for an independent check of the recipe.
"""

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from data_prep.prepare import PrepSettings, prepare_folder, print_report

STEMS = ("song.ogg", "guitar.ogg", "rhythm.ogg")  # a Fret's on Fire song; "song.ogg" is the backing track
FULL_MIX = "full mix.ogg"
PACKAGES = (
    "asc-music",
    "drascula-music",
    "fb-music-high",
    "nexuiz-music",
    "planetblupi-music-ogg",
    "pushover-data",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
)


def fetch_and_unpack(package: str, work: Path) -> Path:
    """The package's files under work/unpacked/PACKAGE (downloaded once, unpacked once)."""
    debs, unpacked = work / "debs", work / "unpacked" / package
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(
                f"error: apt-get download {package} failed: {proc.stderr.strip()[-300:]}\n"
                "Is Debian's package index reachable, and up to date (apt-get update)?"
            )
    if not unpacked.is_dir():
        [deb] = sorted(debs.glob(f"{package}_*.deb"))[-1:]
        partial = unpacked.with_name(f".{package}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        for archive in partial.rglob("*.pk3"):
            zipfile.ZipFile(archive).extractall(archive.with_name(f"{archive.name}.d"))
        for backing in partial.rglob(STEMS[0]):
            mix_stems(backing.parent)
        os.replace(partial, unpacked)  # a half-unpacked package never counts as unpacked
    return unpacked


def mix_stems(folder: Path) -> None:
    """The stems of one song in `folder`, mixed into FULL_MIX (as loud as they play together in the game)."""
    stems = [folder / name for name in STEMS if (folder / name).is_file()]
    if len(stems) < 2:
        return
    inputs = [arg for stem in stems for arg in ("-i", str(stem))]
    mix = f"amix=inputs={len(stems)}:normalize=0:duration=longest"
    command = ["ffmpeg", "-v", "error", "-nostdin", "-y", *inputs, "-filter_complex", mix, "-q:a", "6"]
    subprocess.run([*command, str(folder / FULL_MIX)], check=True)


def stems_mixed(tree: Path) -> list[Path]:
    """The stem files that a full mix replaces: set aside (listed as ignored, with the reason)."""
    stems = []
    for mix in tree.rglob(FULL_MIX):
        stems += [mix.parent / name for name in STEMS if (mix.parent / name).is_file()]
    return stems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/game_music"), help="the corpus folder to write")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), choices=PACKAGES, metavar="PACKAGE")
    parser.add_argument("--work", type=Path, default=Path(".cache/game_music"), help="downloads and unpacked files")
    parser.add_argument("--min-seconds", type=float, default=20.0, help="leave out shorter clips (default 20)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    licences = args.out / "LICENSES"
    licences.mkdir(parents=True, exist_ok=True)
    for package in args.packages:
        print(f"{package}: fetching and unpacking", flush=True)
        tree = fetch_and_unpack(package, args.work)
        copyright_file = tree / "usr/share/doc" / package / "copyright"
        if copyright_file.is_file():
            shutil.copyfile(copyright_file, licences / f"{package}.copyright")
        else:
            print(f"  warning: {package} ships no copyright file; check its licence before using it", file=sys.stderr)
    settings = PrepSettings(val_fraction=0.1, min_seconds=args.min_seconds)
    source = args.work / "unpacked"
    keep = [source / p for p in args.packages]
    exclude = {p: None for p in source.iterdir() if p not in keep}  # unpacked earlier, not asked for now
    exclude |= {stem: f"a stem of {FULL_MIX}, which holds the whole song" for t in keep for stem in stems_mixed(t)}
    report = prepare_folder(source, args.out, settings, args.workers, exclude=exclude)
    print_report(report, args.out)
    print(f"Licences: {licences}. Train on it: python train.py data=folder data.source={args.out}")


if __name__ == "__main__":
    main()
