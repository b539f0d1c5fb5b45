"""The training loop: random windows, AdamW with warmup and cosine decay, validation in bits per sample,
generated audio at intervals, atomic checkpoints and exact resume."""

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from wavenet.audio import mu_law_decode, write_wav
from wavenet.checkpoint import CheckpointDir, load_checkpoint
from wavenet.data import build_shards, list_tracks, train_batch, unigram_bits, validation_windows
from wavenet.device import resolve_device
from wavenet.errors import UserError
from wavenet.generation import generate
from wavenet.model import WaveNet, WaveNetConfig

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
    logits = model(windows[:, :-1])[:, :, receptive_field - 1 :]
    return F.cross_entropy(logits.float(), windows[:, receptive_field:]) / LN2


@dataclass
class TrainResult:
    best_val_bits: float
    unigram_bits: float
    steps: int


class MetricsFile:
    """runs/<name>/metrics.jsonl, one JSON object per logged step; on resume, lines after the checkpoint go."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = resolve_device(cfg.train.device)
        self.checkpoints = CheckpointDir(run_dir / "checkpoints", cfg.train.keep_checkpoints)
        self.metrics = MetricsFile(run_dir / "metrics.jsonl")
        self.resume_from = self.resume_path()  # before the slow set-up: a wrong resume fails at once
        torch.manual_seed(cfg.train.seed)
        self.model_cfg = WaveNetConfig(**OmegaConf.to_container(cfg.model))
        self.rf = self.model_cfg.receptive_field
        self.window = self.rf + cfg.data.target_length

        tracks = list_tracks(cfg.data.path, cfg.data.val_fraction)
        self.shards = build_shards(tracks, self.model_cfg.sample_rate, cfg.data.cache_dir, log=log.info)
        self.val_windows = validation_windows(self.shards["val"], cfg.data.val_windows, self.window)
        self.unigram_bits = unigram_bits(self.shards["train"], self.val_windows[:, self.rf :])

        self.model = WaveNet(self.model_cfg).to(self.device)
        self.forward_model = (
            torch.compile(self.model) if cfg.train.compile and self.device.type == "cuda" else self.model
        )
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
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

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model_config": self.model_cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "best_val_bits": self.best_val,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

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
        if ckpt["model_config"] != self.model_cfg.to_dict():
            raise UserError(
                f"{path} holds a model {ckpt['model_config']}, but this run asks for {self.model_cfg.to_dict()}; resume with the same model config."
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.samples_seen, self.best_val = ckpt["step"], ckpt["samples_seen"], ckpt["best_val_bits"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        self.metrics.truncate_after(self.step)
        log.info(f"resumed from {path} at step {self.step}")

    # -- evaluation --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        self.model.eval()
        total = 0.0
        for chunk in self.val_windows.split(self.cfg.data.batch_size):
            with self.autocast():
                total += nll_bits(self.forward_model, chunk.to(self.device), self.rf).item() * len(chunk)
        self.model.train()
        return total / len(self.val_windows)

    def write_sample(self) -> Path:
        """A few seconds of audio from the current model, in fp32 with the cached engine."""
        self.model.eval()
        num = int(self.cfg.train.sample_seconds * self.model_cfg.sample_rate)
        codes = generate(
            self.model, num, batch_size=1, temperature=self.cfg.train.sample_temperature, seed=self.cfg.train.seed
        )
        self.model.train()
        return write_wav(
            self.run_dir / "samples" / f"step_{self.step:08d}.wav", mu_law_decode(codes[0]), self.model_cfg.sample_rate
        )

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.cfg.train
        if self.resume_from is not None:
            self.restore(self.resume_from)
        log.info(
            f"model: {self.model.num_parameters():,} parameters, receptive field {self.rf} samples "
            f"({1000 * self.rf / self.model_cfg.sample_rate:.0f} ms); order-0 baseline on validation: {self.unigram_bits:.3f} bits/sample"
        )
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress, dynamic_ncols=True, desc="train")
        loss_sum, loss_count, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
        while self.step < cfg.max_steps:
            batch = train_batch(self.shards["train"], cfg.seed, 0, self.step, self.cfg.data.batch_size, self.window)
            batch = batch.to(self.device, non_blocking=True)
            with self.autocast():
                loss = nll_bits(self.forward_model, batch, self.rf)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.samples_seen += batch.shape[0] * self.cfg.data.target_length
            loss_sum += loss.detach()
            loss_count += 1
            bar.update(1)

            if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                elapsed = time.perf_counter() - t0
                metrics = {
                    "train/loss": (loss_sum / loss_count).item(),
                    "train/grad_norm": grad_norm.item(),
                    "train/samples_per_s": loss_count * batch.shape[0] * self.cfg.data.target_length / elapsed,
                    "lr": self.scheduler.get_last_lr()[0],
                }
                self.metrics.write(self.step, metrics)
                bar.set_postfix(
                    loss=f"{metrics['train/loss']:.3f}", samples_per_s=f"{metrics['train/samples_per_s']:,.0f}"
                )
                loss_sum.zero_()
                loss_count, t0 = 0, time.perf_counter()

            if self.step % cfg.val_interval == 0 or self.step == cfg.max_steps:
                val = self.validate()
                is_best = val < self.best_val
                self.best_val = min(self.best_val, val)
                self.metrics.write(self.step, {"val/nll_bits": val})
                saved = self.checkpoints.save(self.state(), self.step, is_best)
                tqdm.write(
                    f"step {self.step}: val/nll_bits {val:.3f} (order-0 baseline {self.unigram_bits:.3f}); saved {saved}"
                )

            if self.step % cfg.sample_interval == 0 or self.step == cfg.max_steps:
                tqdm.write(f"step {self.step}: wrote {self.write_sample()}")
        bar.close()
        return TrainResult(self.best_val, self.unigram_bits, self.step)
