"""Generate audio from a checkpoint: python generate.py checkpoint=runs/NAME/checkpoints/best.pt num_clips=4 seconds=5"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wavenet.config import register_configs
from wavenet.errors import UserError
from wavenet.synthesis import generate_clips

log = logging.getLogger("generate")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
    try:
        paths = generate_clips(cfg, out_dir)
    except UserError as err:
        log.error(str(err))
        sys.exit(2)
    for path in paths:
        log.info(f"wrote {path}")


if __name__ == "__main__":
    main()
