"""Music quality at equal compute: the project's training recipe beside a plain WaveNet, on real music.

    python bench/quality.py --corpus data/game_music                        # CPU: tiny, 10 minutes each
    python bench/quality.py --corpus data/game_music --scale gpu            # one GPU: base, 7 minutes each
    python bench/quality.py --corpus ... --variants baseline recipe "recipe:optim.lr=1e-3"   # ablations
    python bench/quality.py --report A/results.json B/results.json     # one table from runs of one variant each

Variants:
- `baseline`: the textbook WaveNet, written here in a few lines: one-hot input, the same layer sizes, Adam at a
  constant 1e-3, nothing else.
- `recipe`: wavenet.training.Trainer with the experiment config of the scale (`+exp=demo` on CPU, `+exp=lofi_base`
  on a GPU), its schedule stretched to the budget; `recipe:A=1,B=2` adds Hydra overrides (an ablation;
  a list keeps its commas: `recipe:optim.betas=[0.9,0.95]`).

Every variant trains in turns of --slice seconds, one after another in this process, so that a slow minute of the
machine slows all of them alike; each keeps its own clock of training time, and scoring is not counted in it.
Every --eval-every seconds of its training time a variant is scored by one evaluator on the same validation
windows: bits per sample, beside the order-0 (unigram) entropy of those windows. Prints the curves and a table;
--out gets a JSON of every figure and, per variant, a clip of its music with its spectrogram, to listen to.
On one GPU two variants of 7 minutes do not fit in one 10-minute device call: run one variant per call and join
them with --report (the same corpus and scale give the same validation windows: checked by their order-0 figure).
"""

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from wavenet.audio import mu_law_decode, write_spectrogram_png, write_wav
from wavenet.config import register_configs
from wavenet.data import build_shards, list_tracks, train_batch, unigram_bits, validation_windows
from wavenet.generation import generate
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.training import Trainer, autocast, mean_nll_bits, nll_bits, warmup_cosine

CONF = Path(__file__).resolve().parents[1] / "conf"
SCALES = {  # experiment, default minutes per variant, device
    "cpu": ("demo", 10.0, "cpu"),
    "gpu": ("lofi_base", 7.0, "cuda"),
}


class PlainWaveNet(nn.Module):
    """The textbook WaveNet: one-hot codes, dilated causal convs with gated units, residual and skip paths."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        r, g, s = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels
        self.dilations = cfg.dilations
        self.inp = nn.Conv1d(cfg.classes, r, 1)
        self.dilated = nn.ModuleList(nn.Conv1d(r, 2 * g, 2, dilation=d) for d in self.dilations)
        self.res = nn.ModuleList(nn.Conv1d(g, r, 1) for _ in self.dilations)
        self.skip = nn.ModuleList(nn.Conv1d(g, s, 1) for _ in self.dilations)
        self.out1, self.out2 = nn.Conv1d(s, s, 1), nn.Conv1d(s, cfg.classes, 1)

    def forward(self, codes: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """Logits of every position; `last` keeps only the last ones (the evaluator's interface)."""
        x = self.inp(F.one_hot(codes, 256).float().transpose(1, 2))
        skips = 0
        for d, dil, res, skip in zip(self.dilations, self.dilated, self.res, self.skip, strict=True):
            filt, gate = dil(F.pad(x, (d, 0))).chunk(2, dim=1)
            z = torch.tanh(filt) * torch.sigmoid(gate)
            x, skips = x + res(z), skips + skip(z)
        logits = self.out2(F.relu(self.out1(F.relu(skips))))
        return logits if last is None else logits[:, :, logits.shape[2] - last :]


@torch.no_grad()
def as_wavenet(plain: PlainWaveNet, cfg: WaveNetConfig) -> WaveNet:
    """The same function as the project's module, so that its clip renders through the fast engine: a 1x1 conv
    over one-hot codes is an embedding (a weight column plus the bias), and residual and skip are one conv's halves."""
    model = WaveNet(cfg).to(plain.inp.weight.device)
    model.embed.weight.copy_(plain.inp.weight[:, :, 0].T + plain.inp.bias)
    for layer, dilated, res, skip in zip(model.layers, plain.dilated, plain.res, plain.skip, strict=True):
        layer.dilated.load_state_dict(dilated.state_dict())
        layer.out.weight.copy_(torch.cat([res.weight, skip.weight]))
        layer.out.bias.copy_(torch.cat([res.bias, skip.bias]))
    model.head[1].load_state_dict(plain.out1.state_dict())
    model.head[3].load_state_dict(plain.out2.state_dict())
    return model.eval()


@dataclass
class Variant:
    name: str
    model: nn.Module
    step: callable  # one optimisation step
    samples_per_step: int  # predicted samples per step (batch x target length)
    steps: int = 0
    train_s: float = 0.0
    curve: list[tuple[float, float]] = field(default_factory=list)  # (training minutes, val bits per sample)


def compose_config(experiment: str, corpus: Path, cache: Path, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                f"+exp={experiment}",
                f"data.source={corpus}",
                f"data.cache_dir={cache}",
                "logger=none",
                "train.progress=false",
                *overrides,
            ],
        )


def make_recipe(name: str, cfg, run_dir: Path, budget_s: float) -> Variant:
    """The project's Trainer, with its warmup and cosine decay ending with the budget: the decay follows the share
    of the budget used, so that the schedule fits whatever pace the machine keeps."""
    trainer = Trainer(cfg, run_dir, name)
    trainer.model.train()

    def step() -> None:
        trainer.train_step()
        trainer.step += 1

    # scored and heard: the weights train.py validates and ships (the moving average, with optim.ema_decay)
    variant = Variant(name, trainer.listened, step, cfg.data.batch_size * cfg.data.target_length)
    o = cfg.optim

    def lr_factor(step: int) -> float:
        used = variant.train_s / budget_s
        total = round(step / used) if used > 0 else sys.maxsize  # the steps the budget holds at this pace
        return warmup_cosine(step, o.warmup_steps, max(step, total), o.min_lr / o.lr)

    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lr_factor)
    return variant


def make_baseline(cfg, shards, device: torch.device) -> Variant:
    torch.manual_seed(cfg.train.seed)
    model_cfg = WaveNetConfig(**cfg.model)
    model = PlainWaveNet(model_cfg).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    window, rf = model_cfg.receptive_field + cfg.data.target_length, model_cfg.receptive_field
    variant = Variant("baseline", model, lambda: None, cfg.data.batch_size * cfg.data.target_length)

    def step() -> None:
        batch = train_batch(
            shards["train"], cfg.train.seed, 0, variant.steps, cfg.data.batch_size, window
        )  # the recipe's batches
        batch = batch.to(device)
        with autocast(device):
            loss = nll_bits(model, batch, rf)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    variant.step = step
    return variant


def train_for(variant: Variant, seconds: float, device: torch.device) -> None:
    """Train until `seconds` more of training time have passed (whole steps)."""
    end = variant.train_s + seconds
    while variant.train_s < end:
        start = time.perf_counter()
        variant.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        variant.train_s += time.perf_counter() - start
        variant.steps += 1


def score(model: nn.Module, windows: torch.Tensor, rf: int, device: torch.device) -> float:
    """Mean bits per sample over the validation windows (the same for every variant)."""
    model.eval()
    bits = mean_nll_bits(model, windows, rf, device)
    model.train()
    return bits


def listen(variant: Variant, model_cfg: WaveNetConfig, out: Path, seconds: float) -> None:
    """A clip of the variant's music and its spectrogram, rendered by the project's generation engine."""
    model = variant.model.eval()
    if isinstance(model, PlainWaveNet):
        model = as_wavenet(model, model_cfg)
    codes = generate(model, int(seconds * model_cfg.sample_rate), seed=0)[0]
    audio = mu_law_decode(codes).cpu()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", variant.name)  # recipe:optim.lr=1e-3 -> recipe_optim.lr_1e-3
    write_wav(out / f"{stem}.wav", audio, model_cfg.sample_rate)
    write_spectrogram_png(out / f"{stem}.png", audio, model_cfg.sample_rate)


def print_table(rows: list[dict], floor: float) -> None:
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    print(f"\n{'variant':<40} {'bits/sample':>11} {'vs baseline':>12} {'steps':>7} {'samples/s':>10}")
    print("-" * 84)
    for r in rows:
        delta = f"{r['bits'] - base['bits']:+.3f}" if base else ""
        print(f"{r['variant']:<40} {r['bits']:>11.3f} {delta:>12} {r['steps']:>7} {r['samples_per_s']:>10,.0f}")
    print(f"{'order-0 (unigram)':<40} {floor:>11.3f}")


def report(paths: list[Path]) -> None:
    """One table from the results.json of separate runs on the same validation windows."""
    results = [json.loads(path.read_text()) for path in paths]
    for path, result in zip(paths[1:], results[1:], strict=True):
        if abs(result["unigram_bits"] - results[0]["unigram_bits"]) > 1e-9:
            raise SystemExit(f"error: {path} was scored on other windows than {paths[0]} (another corpus or scale)")
    print_table([row for result in results for row in result["variants"]], results[0]["unigram_bits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a prepared corpus folder (manifest.jsonl)")
    parser.add_argument("--report", type=Path, nargs="+", help="results.json files to join into one table")
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--minutes", type=float, default=None, help="training minutes per variant")
    parser.add_argument("--variants", nargs="+", default=["baseline", "recipe"])
    parser.add_argument("--slice", type=float, default=20.0, help="seconds per turn")
    parser.add_argument("--eval-every", type=float, default=60.0, help="seconds of training time between scores")
    parser.add_argument("--val-windows", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--listen-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and the clips")
    args = parser.parse_args()
    if args.report:
        return report(args.report)
    if args.corpus is None:
        parser.error("--corpus is required (or --report)")
    torch.set_num_threads(args.threads)
    # A SIGTERM (a device call's time limit, a `kill`) leaves through the with-block, which removes the work folder.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="lofi-quality-") as work:  # shards and run folders, removed after
        run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> None:
    experiment, default_minutes, device_kind = SCALES[args.scale]
    budget_s = 60 * (args.minutes or default_minutes)
    device = torch.device(device_kind)
    base_cfg = compose_config(experiment, args.corpus.resolve(), work / "cache", [f"train.device={device_kind}"])
    model_cfg = WaveNetConfig(**base_cfg.model)
    rf = model_cfg.receptive_field
    shards = build_shards(list_tracks(args.corpus), model_cfg.sample_rate, work / "cache", log=lambda *_: None)
    windows = validation_windows(shards["val"], args.val_windows, rf + base_cfg.data.target_length)
    floor = unigram_bits(shards["train"], windows[:, rf:])

    variants = []
    for spec in args.variants:
        if spec == "baseline":
            variants.append(make_baseline(base_cfg, shards, device))
            continue
        name, _, extra = spec.partition(":")
        if name != "recipe":
            raise SystemExit(f"error: unknown variant {spec!r}: use baseline, recipe or recipe:KEY=VALUE,...")
        overrides = [o for o in re.split(r",(?![^\[]*\])", extra) if o]  # a comma inside [..] is a list's
        cfg = compose_config(experiment, args.corpus.resolve(), work / "cache", overrides)
        variants.append(make_recipe(spec, cfg, work / f"run-{len(variants)}", budget_s))
    for v in variants:  # warm-up (compilation, autotuning) outside every clock: one step each
        v.step()
        v.steps += 1

    print(f"order-0 baseline of the validation windows: {floor:.3f} bits/sample; {len(windows)} windows", flush=True)
    for v in variants:
        v.curve.append((0.0, score(v.model, windows, rf, device)))
    next_eval = {v.name: args.eval_every for v in variants}
    while any(v.train_s < budget_s for v in variants):
        for v in variants:
            if v.train_s >= budget_s:
                continue
            train_for(v, min(args.slice, budget_s - v.train_s), device)
            if v.train_s >= next_eval[v.name] or v.train_s >= budget_s:
                next_eval[v.name] += args.eval_every
                v.curve.append((v.train_s / 60, score(v.model, windows, rf, device)))
                print(
                    f"{v.name:<40} {v.train_s / 60:6.2f} min {v.steps:6d} steps {v.curve[-1][1]:.3f} bits", flush=True
                )

    rows = [
        {
            "variant": v.name,
            "bits": v.curve[-1][1],
            "steps": v.steps,
            "samples_per_s": v.steps * v.samples_per_step / v.train_s,
            "curve": v.curve,
        }
        for v in variants
    ]
    print_table(rows, floor)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for v in variants:
            listen(v, model_cfg, args.out, args.listen_seconds)
        result = {
            "date": date.today().isoformat(),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {os.cpu_count()} cores",
            "threads": args.threads,
            "torch": torch.__version__,
            "command": "python bench/quality.py " + " ".join(sys.argv[1:]),
            "corpus": str(args.corpus),
            "minutes_per_variant": budget_s / 60,
            "unigram_bits": floor,
            "variants": rows,
        }
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"clips, spectrograms and results.json in {args.out}")


if __name__ == "__main__":
    main()
