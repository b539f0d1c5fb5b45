"""Train a WaveNet: python train.py +exp=demo (see README.md for recipes; torchrun for several GPUs)."""

import logging
import signal
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from wavenet.config import register_configs
from wavenet.distributed import broadcast_from_main, init_distributed, shutdown
from wavenet.errors import UserError
from wavenet.tracking import make_tracker
from wavenet.training import Trainer

log = logging.getLogger("train")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train, and return the best validation NLL (bits per sample) so that sweepers can minimise it."""
    hydra_cfg = HydraConfig.get()
    dist = init_distributed("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one voice in the console and train.log: rank 0's
    # Every rank composed its own run directory from the clock; rank 0's is the one they all use.
    run_dir = Path(broadcast_from_main(hydra_cfg.runtime.output_dir, dist))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = Path(hydra_cfg.sweep.dir).name
        run_name = f"{cfg.name}-{hydra_cfg.job.num}"
    else:
        group, run_name = None, cfg.name
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        trainer = Trainer(cfg, run_dir, run_name, group, dist)
        result = trainer.fit(lambda run_id: make_tracker(cfg.logger, config, run_dir, run_name, group, run_id))
    except UserError as err:
        log.error(str(err))
        sys.exit(2)
    finally:
        shutdown(dist)
        torch._dynamo.reset()  # a multirun runs every job in this process: start each one clean
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if result.stopped_by:
        if dist.is_main:
            log.warning(
                f"{signal.Signals(result.stopped_by).name}: stopped at step {result.steps} of {cfg.train.max_steps}, "
                f"saved in {run_dir / 'checkpoints'}; continue with train.resume=auto"
            )
        sys.exit(128 + result.stopped_by)  # as a process ended by that signal
    log.info(
        f"done: best val/nll_bits {result.best_val_bits:.3f} (order-0 baseline {result.unigram_bits:.3f}); "
        f"checkpoints in {run_dir / 'checkpoints'}"
    )
    return result.best_val_bits


if __name__ == "__main__":
    main()
