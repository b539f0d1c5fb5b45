"""Experiment tracking: Weights & Biases (offline without a key, online with WANDB_API_KEY) or nothing.

Only rank 0 tracks. W&B gets the resolved config without secrets, metrics on our step axis, the generated audio and
its spectrogram, and checkpoints as `model` artifacts with the aliases `latest` and `best`.
"""

import logging
import os
from pathlib import Path

from wavenet.errors import UserError
from wavenet.secrets import redact

log = logging.getLogger(__name__)


class Tracker:
    """Tracks nothing (logger=none, and every rank but 0)."""

    run_id: str | None = None

    def log(self, metrics: dict, step: int) -> None:
        pass

    def log_sample(self, wav: Path, image: Path, step: int) -> None:
        pass

    def log_checkpoint(self, path: Path, aliases: list[str]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker(Tracker):
    def __init__(self, logger_cfg, config: dict, run_dir: Path, name: str, group: str | None, run_id: str | None):
        import wandb

        mode = logger_cfg.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        if mode not in ("online", "offline", "disabled"):
            raise UserError(f"logger.mode={mode!r}: use auto, online, offline or disabled.")
        self.wandb = wandb
        described = redact(  # everything W&B stores about the run, with any secret value taken out
            {
                "project": logger_cfg.project,
                "entity": logger_cfg.entity,
                "group": logger_cfg.group or group,
                "tags": list(logger_cfg.tags),
                "name": name,
                "config": config,
            }
        )
        self.run = wandb.init(**described, id=run_id, resume="allow", dir=str(run_dir), mode=mode)
        self.run_id = self.run.id
        self.log_checkpoints = logger_cfg.log_checkpoints
        log.info(f"W&B run {self.run.id} ({mode}) in {run_dir / 'wandb'}")

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def log_sample(self, wav: Path, image: Path, step: int) -> None:
        self.run.log(
            {
                "sample/audio": self.wandb.Audio(str(wav), caption=wav.name),
                "sample/spectrogram": self.wandb.Image(str(image)),
            },
            step=step,
        )

    def log_checkpoint(self, path: Path, aliases: list[str]) -> None:
        if not self.log_checkpoints:
            return
        artifact = self.wandb.Artifact(f"model-{self.run.id}", type="model")
        artifact.add_file(str(path), name="model.pt")
        self.run.log_artifact(artifact, aliases=aliases)

    def finish(self) -> None:
        self.run.finish()


def make_tracker(logger_cfg, config: dict, run_dir: Path, name: str, group: str | None, run_id: str | None) -> Tracker:
    if logger_cfg.kind == "none":
        return Tracker()
    if logger_cfg.kind == "wandb":
        return WandbTracker(logger_cfg, config, run_dir, name, group, run_id)
    raise UserError(f"logger.kind={logger_cfg.kind!r}: use wandb or none.")
