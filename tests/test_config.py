"""Every config composes, and typos fail at the command line."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from wavenet.config import register_configs
from wavenet.errors import UserError
from wavenet.model import WaveNetConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize("exp", sorted(p.stem for p in (CONF / "exp").glob("*.yaml")))
def test_every_experiment_composes(exp):
    cfg = compose_train(f"+exp={exp}")
    model = WaveNetConfig(**OmegaConf.to_container(cfg.model))
    assert model.receptive_field > 1
    assert cfg.train.max_steps > 0


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_every_model_composes(name):
    cfg = compose_train(f"model={name}")
    assert WaveNetConfig(**OmegaConf.to_container(cfg.model)).receptive_field > 1


def test_base_is_the_guide_default_and_demo_is_cpu_sized():
    assert WaveNetConfig(**OmegaConf.to_container(compose_train().model)) == WaveNetConfig()
    demo = compose_train("+exp=demo")
    assert WaveNetConfig(**OmegaConf.to_container(demo.model)).receptive_field < 1024


@pytest.mark.parametrize("override", ["model.chanels=3", "model.stacks=three", "optim.lrr=1", "train.max_steps=1.5"])
def test_typos_and_bad_types_fail(override):
    with pytest.raises(ConfigCompositionException):
        compose_train(override)


def test_a_dropout_outside_0_to_1_is_named():
    cfg = compose_train("model.dropout=1.5")
    with pytest.raises(UserError, match=r"model.dropout=1.5: use a fraction from 0"):
        WaveNetConfig(**OmegaConf.to_container(cfg.model))
