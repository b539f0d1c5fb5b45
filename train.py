"""Train a WaveNet: python train.py +exp=demo (see README.md for recipes)."""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wavenet.config import register_configs
from wavenet.errors import UserError
from wavenet.training import Trainer

log = logging.getLogger("train")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train, and return the best validation NLL (bits per sample) so that sweepers can minimise it."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = Trainer(cfg, run_dir).fit()
    except UserError as err:
        log.error(str(err))
        sys.exit(2)
    log.info(
        f"done: best val/nll_bits {result.best_val_bits:.3f} (order-0 baseline {result.unigram_bits:.3f}); "
        f"checkpoints in {run_dir / 'checkpoints'}"
    )
    return result.best_val_bits


if __name__ == "__main__":
    main()
