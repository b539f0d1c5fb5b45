"""data_prep.pack: a corpus carried to the GPU machine small and exact, and what that machine must install."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from wavenet.audio import mu_law_encode, read_wav
from wavenet.data import list_tracks
from wavenet.errors import UserError


def training_codes(folder) -> dict[str, tuple[str, bytes]]:
    """Each track's split and mu-law codes, as training encodes them."""
    return {t.id: (t.split, mu_law_encode(read_wav(t.path)[0]).numpy().tobytes()) for t in list_tracks(folder)}


def test_packed_corpus_unpacks_to_the_same_training_codes(corpus, tmp_path):
    from data_prep.pack import pack, unpack

    corpus = Path(shutil.copytree(corpus, tmp_path / "corpus"))  # the session's corpus stays as it is
    (corpus / "LICENSES").mkdir()
    (corpus / "LICENSES" / "demo.copyright").write_text("made by data_prep.demo_corpus\n")
    before = {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()}
    index = pack(corpus, tmp_path / "pack", max_mib=64, val_minutes=60, log=lambda *_: None)
    assert index["left_out"] == [] and {e["split"] for e in index["tracks"]} == {"train", "val"}
    packed = sum(p.stat().st_size for p in (tmp_path / "pack").glob("*.xz"))
    source = sum(e["samples"] for e in index["tracks"]) * 2  # as 16-bit WAV
    assert packed < source / 2
    unpack(tmp_path / "pack", tmp_path / "there", log=lambda *_: None)
    assert training_codes(tmp_path / "there") == training_codes(corpus)
    assert (tmp_path / "there" / "LICENSES" / "demo.copyright").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()} == before, "the source is never modified"


def test_pack_keeps_to_its_size_and_validation_minutes(corpus, tmp_path):
    from data_prep.pack import pack

    full = pack(corpus, tmp_path / "full", max_mib=64, val_minutes=60, log=lambda *_: None)
    val_seconds = min(e["samples"] for e in full["tracks"] if e["split"] == "val") / 16000 / 2
    smaller = pack(corpus, tmp_path / "full", max_mib=full["mib"] / 2, val_minutes=val_seconds / 60, log=print)
    assert smaller["mib"] <= full["mib"] / 2 and smaller["left_out"]
    assert sum(e["samples"] for e in smaller["tracks"] if e["split"] == "val") == int(val_seconds * 16000)
    assert set(smaller["left_out"]) == {e["id"] for e in full["tracks"]} - {e["id"] for e in smaller["tracks"]}
    packed = {p.stem for p in (tmp_path / "full").glob("*.xz")}
    assert packed == {e["id"] for e in smaller["tracks"]}, "a pack into the same folder leaves no stale tracks"


def test_parts_hold_other_training_tracks_and_the_same_validation_audio(corpus, tmp_path):
    from data_prep.pack import pack, unpack

    full = pack(corpus, tmp_path / "full", max_mib=64, val_minutes=1, log=lambda *_: None)
    train_mib = full["mib"] * sum(e["split"] == "train" for e in full["tracks"]) / len(full["tracks"])
    size = full["mib"] - train_mib * 2 / 3  # the validation audio and about a third of the training tracks
    parts = [pack(corpus, tmp_path / f"part{k}", size, 1, part=k, log=lambda *_: None) for k in (1, 2)]
    train = [{e["id"] for e in p["tracks"] if e["split"] == "train"} for p in parts]
    assert train[0] and train[1] and not train[0] & train[1]
    assert train[0] | train[1] < {e["id"] for e in full["tracks"] if e["split"] == "train"}
    val = []
    for k in (1, 2):
        there = unpack(tmp_path / f"part{k}", tmp_path / f"there{k}", log=lambda *_: None)
        val.append({i: codes for i, (split, codes) in training_codes(there).items() if split == "val"})
    assert val[0] == val[1] and len(val[0]) == sum(e["split"] == "val" for e in full["tracks"])
    with pytest.raises(UserError, match=r"--part 9: no training track is left for part \d; .* fills \d part"):
        pack(corpus, tmp_path / "part9", size, 1, part=9, log=lambda *_: None)


def test_unpack_names_what_is_missing_or_damaged(corpus, tmp_path):
    from data_prep.pack import pack, unpack

    with pytest.raises(UserError, match=r"holds no pack.json: make it with python -m data_prep.pack"):
        unpack(tmp_path, tmp_path / "out")
    index = pack(corpus, tmp_path / "pack", max_mib=64, val_minutes=1, log=lambda *_: None)
    damaged = tmp_path / "pack" / f"{index['tracks'][0]['id']}.xz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(UserError, match=rf"{damaged.name} cannot be read .*pack the corpus again"):
        unpack(tmp_path / "pack", tmp_path / "out", log=lambda *_: None)


def test_training_and_the_quality_bench_import_neither_s3_nor_wandb():
    """The GPU machine carries few wheels: training from a folder must not need boto3 (S3) or wandb."""
    code = (
        "import json, sys, train, bench.quality, data_prep.pack; "
        "print(json.dumps(sorted({'boto3', 'botocore', 'wandb'} & set(sys.modules))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
