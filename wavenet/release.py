"""A model to ship in the repository: a checkpoint's weights alone, in bf16 by default (half the bytes), with its
config, step and validation figure, and the training data's licences in a folder beside it.

    python -m wavenet.release runs/ship/checkpoints/best.pt models/lofi-base.pt \
        --licences data/game_music/LICENSES [--corpus data/game_music] [--dtype bf16|fp32]

--corpus scores the weights before and after rounding on that corpus's validation windows (the ones training
scored), so that the cost of bf16 is a measured figure. A released model loads wherever a checkpoint does
(generate.py, stream.py, the site); it holds no optimiser state, so training cannot resume from it.
"""

import argparse
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint, save_atomic
from wavenet.data import build_shards, list_tracks, validation_windows
from wavenet.errors import UserError
from wavenet.model import WaveNetConfig
from wavenet.training import mean_nll_bits

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def released(ckpt: dict, dtype: torch.dtype, name: str) -> dict:
    """The checkpoint as shipped: weights in `dtype`, and what the stream and generate.py read; nothing to resume."""
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return {
        "model_config": ckpt["model_config"],
        "model": weights,
        "step": ckpt["step"],
        "best_val_bits": ckpt.get("best_val_bits"),
        "config": ckpt.get("config"),  # redacted when it was saved
        "release": {"name": name, "dtype": str(dtype).removeprefix("torch."), "date": date.today().isoformat()},
    }


def validation_set(ckpt: dict, corpus: Path, cache_dir: Path) -> torch.Tensor:
    """The corpus's validation windows, chosen as the checkpoint's training chose them."""
    cfg = WaveNetConfig(**ckpt["model_config"])
    data = (ckpt.get("config") or {}).get("data", {})
    tracks = list_tracks(corpus, data.get("val_fraction", 0.1))
    shards = build_shards(tracks, cfg.sample_rate, cache_dir, log=lambda *_: None)
    length = cfg.receptive_field + data.get("target_length", 4096)
    return validation_windows(shards["val"], data.get("val_windows", 64), length)


def release(
    source: Path, out: Path, licences: Path | None, dtype: str = "bf16", corpus: Path | None = None
) -> dict[str, float]:
    """Write the released model to `out` and the licences to OUT_STEM.licences/; returns the figures it printed."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}.")
    if licences is not None and not (licences.is_dir() and any(licences.iterdir())):
        raise UserError(f"--licences {licences}: not a folder of licence files (data_prep.game_music writes one).")
    ckpt = load_checkpoint(source)
    payload = released(ckpt, DTYPES[dtype], out.stem)
    figures = {}
    if corpus is not None:
        with tempfile.TemporaryDirectory() as cache:
            try:
                windows = validation_set(ckpt, corpus, Path(cache))
            except UserError as err:  # it speaks of data.source, as training would
                raise UserError(f"--corpus {corpus}: {err}") from err
        for label, weights in (("fp32", ckpt), (dtype, payload)):  # each scored in fp32 arithmetic
            model = model_from_checkpoint(weights)
            figures[f"val_bits_{label}"] = mean_nll_bits(model, windows, model.cfg.receptive_field)
    save_atomic(payload, out)
    if licences is not None:
        folder = out.with_name(f"{out.stem}.licences")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(licences, folder)
    figures["mb"] = out.stat().st_size / 1e6
    figures["source_mb"] = source.stat().st_size / 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a .pt written by train.py")
    parser.add_argument("out", type=Path, help="where the released model goes (models/NAME.pt)")
    parser.add_argument("--licences", type=Path, default=None, help="the training data's licences, copied beside it")
    parser.add_argument("--dtype", default="bf16", help="the weights' type: bf16 (default) or fp32")
    parser.add_argument("--corpus", type=Path, default=None, help="score before and after rounding on this corpus")
    args = parser.parse_args()
    try:
        figures = release(args.checkpoint, args.out, args.licences, args.dtype, args.corpus)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{args.out}: {figures['mb']:.2f} MB ({args.dtype} weights; {args.checkpoint} is {figures['source_mb']:.2f} MB)"
    )
    if args.corpus is not None:
        rounded = figures[f"val_bits_{args.dtype}"]
        print(
            f"validation on {args.corpus}: {figures['val_bits_fp32']:.4f} bits/sample as trained, {rounded:.4f} with "
            f"{args.dtype} weights ({rounded - figures['val_bits_fp32']:+.4f})"
        )


if __name__ == "__main__":
    main()
