"""The training loop: random windows, AdamW with warmup and cosine decay, validation in bits per sample,
generated audio at intervals, atomic checkpoints and exact resume."""

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from wavenet.audio import mu_law_decode, write_spectrogram_png, write_wav
from wavenet.checkpoint import CheckpointDir, load_checkpoint
from wavenet.data import build_shards, corpus_folder, list_tracks, train_batch, unigram_bits, validation_windows
from wavenet.device import resolve_device
from wavenet.distributed import DistInfo, barrier, max_across_ranks, mean_across_ranks
from wavenet.errors import UserError
from wavenet.files import write_text_atomic
from wavenet.generation import generate
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.progress import Progress
from wavenet.secrets import redact
from wavenet.stopping import StopSignals
from wavenet.storage import S3Settings
from wavenet.tracking import Tracker

log = logging.getLogger(__name__)
LN2 = math.log(2.0)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to min_ratio at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def nll_bits(model: torch.nn.Module, windows: torch.Tensor, receptive_field: int) -> torch.Tensor:
    """Mean negative log-likelihood in bits per sample of each window's codes after its first receptive field.

    A window holds receptive_field + N codes; the model sees all but the last and predicts the last N,
    each with its full receptive field as context.
    """
    logits = model(windows[:, :-1], last=windows.shape[1] - receptive_field)
    return F.cross_entropy(logits.float(), windows[:, receptive_field:]) / LN2


@torch.no_grad()
def mean_nll_bits(model: torch.nn.Module, windows: torch.Tensor, receptive_field: int, device="cpu") -> float:
    """nll_bits over all the windows, eight at a time on `device`: one figure for a model on a fixed set."""
    total = sum(nll_bits(model, chunk.to(device), receptive_field).item() * len(chunk) for chunk in windows.split(8))
    return total / len(windows)


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast on CUDA (no GradScaler needed); plain fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def optimization_step(
    net: torch.nn.Module,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    receptive_field: int,
    grad_clip: float,
    bf16: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward, backward, clip and update; returns (loss, grad norm) as device tensors, with no host sync."""
    with autocast(batch.device, bf16):
        loss = nll_bits(net, batch, receptive_field)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.detach(), grad_norm


class WeightAverage:
    """An exponential moving average of a model's weights, in a model of its own (what a listener hears)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise UserError(f"optim.ema_decay={decay}: use a decay between 0 and 1 (0.999 is usual), or 0 for none.")
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Fold in the weights after `step` updates; early on the decay is lower, so the start is soon forgotten."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for average, weight in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(weight, 1.0 - decay)


@dataclass
class TrainResult:
    best_val_bits: float
    unigram_bits: float
    steps: int
    stopped_by: int = 0  # the signal that stopped the run before its last step, with a checkpoint there


def _step_of(line: str) -> float:
    """The step of a metrics line; a line torn by a crash counts as after every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def changed_settings(before: dict, after: dict, prefix: str = "") -> list[str]:
    """The leaves that differ between two plain config trees, as "key: old -> new" lines with dotted keys."""
    changes = []
    for key in sorted(set(before) | set(after), key=str):
        old, new, name = before.get(key), after.get(key), f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_settings(old, new, f"{name}.")
        elif old != new:
            changes.append(f"{name}: {old!r} -> {new!r}")
    return changes


class MetricsFile:
    """runs/<name>/metrics.jsonl, one JSON object per logged step; on resume, lines after the checkpoint go."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, step: int, metrics: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


class Trainer:
    """One training run. Under torchrun every rank builds one; rank 0 alone writes files and tracks."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, run_name: str, group: str | None = None, dist: DistInfo | None = None
    ):
        self.cfg = cfg
        self.run_dir = run_dir
        self.run_name, self.group = run_name, group
        self.dist = dist or DistInfo()
        self.device = resolve_device(cfg.train.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.checkpoints = CheckpointDir(run_dir / "checkpoints", cfg.train.keep_checkpoints)
        self.metrics = MetricsFile(run_dir / "metrics.jsonl")
        self.resume_from = self.resume_path()  # before the slow set-up: a wrong resume fails at once
        torch.manual_seed(cfg.train.seed)
        self.model_cfg = WaveNetConfig(**OmegaConf.to_container(cfg.model))
        self.rf = self.model_cfg.receptive_field
        self.window = self.rf + cfg.data.target_length

        if not self.dist.is_main:
            barrier(self.dist)  # rank 0 fills the caches (s3:// mirror, shards) first; the others then open them
        s3 = S3Settings(**OmegaConf.to_container(cfg.data.s3))
        tracks = list_tracks(corpus_folder(cfg.data.source, cfg.data.cache_dir, s3, log.info), cfg.data.val_fraction)
        self.shards = build_shards(tracks, self.model_cfg.sample_rate, cfg.data.cache_dir, log=log.info)
        if self.dist.is_main:
            barrier(self.dist)
        self.val_windows = validation_windows(self.shards["val"], cfg.data.val_windows, self.window)
        self.unigram_bits = unigram_bits(self.shards["train"], self.val_windows[:, self.rf :])

        self.model = WaveNet(self.model_cfg).to(self.device)
        net = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.net = torch.compile(net) if cfg.train.compile and self.device.type == "cuda" else net
        o = cfg.optim
        self.average = WeightAverage(self.model, o.ema_decay) if o.ema_decay else None
        self.listened = self.average.model if self.average else self.model  # validated, sampled, shipped
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=o.lr,
            betas=tuple(o.betas),
            weight_decay=o.weight_decay,
            fused=self.device.type == "cuda",
        )
        total = cfg.train.max_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, o.warmup_steps, total, o.min_lr / o.lr)
        )
        self.step = 0
        self.samples_seen = 0
        self.best_val = math.inf
        self.tracker_run_id: str | None = None
        self.tracker = Tracker()

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model_config": self.model_cfg.to_dict(),
            "model": self.listened.state_dict(),  # the bare module (no DDP or compile prefixes); the average if any
            **({"trained_model": self.model.state_dict()} if self.average else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "best_val_bits": self.best_val,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "config": self.saved_config(),
            "wandb_run_id": self.tracker.run_id,
        }

    def saved_config(self) -> dict:
        """This run's config as checkpoints keep it: resolved, secrets redacted."""
        return redact(OmegaConf.to_container(self.cfg, resolve=True))

    def resume_path(self) -> Path | None:
        resume = self.cfg.train.resume
        if resume is None:
            if self.checkpoints.last.exists():
                raise UserError(
                    f"{self.run_dir} already holds a run ({self.checkpoints.last}). Continue it with train.resume=auto, "
                    "or start a new one with another name=..."
                )
            return None
        if resume == "auto":
            return self.checkpoints.last if self.checkpoints.last.exists() else None
        return Path(resume)

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, self.device)
        if "optimizer" not in ckpt:
            raise UserError(
                f"{path} is a released model (weights only, from python -m wavenet.release): training cannot resume "
                "from it. Resume from the run's own runs/<name>/checkpoints/last.pt."
            )
        if ckpt["model_config"] != self.model_cfg.to_dict():
            raise UserError(
                f"{path} holds a model {ckpt['model_config']}, but this run asks for {self.model_cfg.to_dict()}; "
                "resume with the same model config."
            )
        self.model.load_state_dict(ckpt.get("trained_model", ckpt["model"]))  # the average is "model" if any
        if self.average:
            self.average.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.take_optim_settings()
        self.step, self.samples_seen, self.best_val = ckpt["step"], ckpt["samples_seen"], ckpt["best_val_bits"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        self.tracker_run_id = ckpt.get("wandb_run_id")
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)
        log.info(f"resumed from {path} at step {self.step}")
        self.warn_of_changed_settings(path, ckpt.get("config", {}))

    def take_optim_settings(self) -> None:
        """After a restore: this run's peak rate, betas and weight decay, not the checkpoint's (the same if unchanged)."""
        o = self.cfg.optim
        self.scheduler.base_lrs = [o.lr] * len(self.optimizer.param_groups)
        rate = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group.update(initial_lr=o.lr, lr=o.lr * rate, betas=tuple(o.betas), weight_decay=o.weight_decay)

    def warn_of_changed_settings(self, path: Path, saved: dict) -> None:
        """Resuming with other settings is allowed (a longer run, a smaller batch) but said, so it is never a surprise."""
        current = self.saved_config()
        of_this_call = ("train.resume:", "train.stop_at:")  # how this call starts and stops, not the run's recipe
        changes = [c for c in changed_settings(saved, current) if not c.startswith(of_this_call)]
        if changes:
            log.warning(
                f"{path} was written with other settings; the run continues from step {self.step} with this run's: "
                + "; ".join(changes)
            )

    def save(self, is_best: bool) -> Path:
        path = self.checkpoints.save(self.state(), self.step, is_best)
        self.tracker.log_checkpoint(path, ["latest", "best"] if is_best else ["latest"])
        return path

    # -- evaluation --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Mean bits per sample over the fixed validation windows (split across ranks under DDP)."""
        self.listened.eval()
        total = torch.zeros(2, device=self.device)  # sum of window means, window count
        for chunk in self.val_windows[self.dist.rank :: self.dist.world_size].split(self.cfg.data.batch_size):
            with autocast(self.device):
                total[0] += nll_bits(self.listened, chunk.to(self.device), self.rf) * len(chunk)
            total[1] += len(chunk)
        total = mean_across_ranks(total, self.dist)  # the ratio is what counts: the mean is fine
        self.model.train()
        return (total[0] / total[1]).item()

    def write_sample(self) -> tuple[Path, Path]:
        """A few seconds of audio from the current model (fp32, the backend `auto` picks), and its spectrogram."""
        self.listened.eval()
        num = int(self.cfg.train.sample_seconds * self.model_cfg.sample_rate)
        codes = generate(self.listened, num, temperature=self.cfg.train.sample_temperature, seed=self.cfg.train.seed)
        self.model.train()
        audio = mu_law_decode(codes[0]).cpu()
        stem = self.run_dir / "samples" / f"step_{self.step:08d}"
        wav = write_wav(stem.with_suffix(".wav"), audio, self.model_cfg.sample_rate)
        return wav, write_spectrogram_png(stem.with_suffix(".png"), audio, self.model_cfg.sample_rate)

    def out_of_memory(self, err: Exception) -> UserError:
        d = self.cfg.data
        return UserError(
            f"out of GPU memory with model {self.model_cfg.to_dict()}, data.batch_size={d.batch_size} and "
            f"data.target_length={d.target_length} ({err.__class__.__name__}). Lower data.batch_size or "
            "data.target_length, or pick a smaller model (model=tiny or fewer model.residual_channels)."
        )

    # -- the loop ----------------------------------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        d = cfg.data
        batch = train_batch(
            self.shards["train"], cfg.train.seed, self.dist.rank, self.step, d.batch_size, self.window, d.speed_jitter
        )
        batch = batch.to(self.device, non_blocking=True)
        loss, grad_norm = optimization_step(self.net, self.params, self.optimizer, batch, self.rf, cfg.optim.grad_clip)
        self.scheduler.step()
        if self.average:
            self.average.update(self.model, self.step)
        return loss, grad_norm

    def fit(self, make_tracker=None) -> TrainResult:
        """Train to train.max_steps (or train.stop_at, or a SIGTERM or SIGINT, which stop after the step in flight
        with a checkpoint); make_tracker(run_id) builds rank 0's tracker."""
        cfg = self.cfg.train
        if self.resume_from is not None:
            self.restore(self.resume_from)
        if self.dist.is_main and make_tracker is not None:
            self.tracker = make_tracker(self.tracker_run_id)
        try:
            with StopSignals() as signals:
                return self._loop(cfg, signals)
        finally:
            self.tracker.finish()

    def _loop(self, cfg, signals: StopSignals) -> TrainResult:
        main = self.dist.is_main
        log.info(
            f"model: {self.model.num_parameters():,} parameters, receptive field {self.rf} samples "
            f"({1000 * self.rf / self.model_cfg.sample_rate:.0f} ms); order-0 baseline on validation: "
            f"{self.unigram_bits:.3f} bits/sample; {self.dist.world_size} process(es) on {self.device}"
        )
        last_step = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
        samples_per_step = self.cfg.data.batch_size * self.cfg.data.target_length * self.dist.world_size
        self.model.train()
        bar = Progress(cfg.max_steps, "train", unit="steps", initial=self.step, enabled=cfg.progress and main)
        loss_sum, loss_count, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
        stopped_by = 0
        while self.step < last_step and not stopped_by:
            try:
                loss, grad_norm = self.train_step()
            except torch.cuda.OutOfMemoryError as err:
                raise self.out_of_memory(err) from err
            self.step += 1
            self.samples_seen += samples_per_step
            loss_sum += loss
            loss_count += 1
            bar.update(1)

            if self.step % cfg.log_interval == 0 or self.step == last_step:
                mean_loss = mean_across_ranks(loss_sum / loss_count, self.dist).item()
                metrics = {
                    "train/loss": mean_loss,
                    "train/grad_norm": grad_norm.item(),
                    "train/samples_per_s": loss_count * samples_per_step / (time.perf_counter() - t0),
                    "lr": self.scheduler.get_last_lr()[0],
                }
                if main:
                    self.metrics.write(self.step, metrics)
                    self.tracker.log(metrics, self.step)
                bar.set_postfix(loss=f"{mean_loss:.3f}", samples_per_s=f"{metrics['train/samples_per_s']:,.0f}")
                loss_sum.zero_()
                loss_count, t0 = 0, time.perf_counter()

            if self.step % cfg.val_interval == 0 or self.step == last_step:
                val = self.validate()
                is_best = val < self.best_val
                self.best_val = min(self.best_val, val)
                if main:
                    self.metrics.write(self.step, {"val/nll_bits": val})
                    self.tracker.log({"val/nll_bits": val, "val/unigram_bits": self.unigram_bits}, self.step)
                    saved = self.save(is_best)
                    bar.write(
                        f"step {self.step}: val/nll_bits {val:.3f} (order-0 baseline {self.unigram_bits:.3f}); saved {saved}"
                    )

            if main and (self.step % cfg.sample_interval == 0 or self.step == cfg.max_steps):
                wav, image = self.write_sample()
                self.tracker.log_sample(wav, image, self.step)
                bar.write(f"step {self.step}: wrote {wav}")

            # ranks agree at each log interval, so that all of them stop at one step
            if not self.dist.enabled or self.step % cfg.log_interval == 0:
                stopped_by = max_across_ranks(signals.received, self.dist, self.device)
            if stopped_by and self.step < last_step and main and self.step % cfg.val_interval:
                self.save(is_best=False)  # unless validation has just saved this step
        bar.close()
        barrier(self.dist)
        return TrainResult(self.best_val, self.unigram_bits, self.step, stopped_by if self.step < last_step else 0)
