import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_prep.demo_corpus import make_corpus
from tests.s3_server import s3_env, s3_server  # noqa: F401 (fixtures for every test module)
from wavenet.model import WaveNet, WaveNetConfig

ROOT = Path(__file__).resolve().parents[1]

# Without a GPU the Triton generation kernel runs in Triton's interpreter (read when the kernel module is imported).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Small enough for CPU tests, deep enough that the receptive field (1 + 2 * 15 = 31) spans several dilations.
SMALL = WaveNetConfig(stacks=2, layers_per_stack=4, residual_channels=8, gate_channels=8, skip_channels=16)

# A tiny model on short windows: train.py runs in seconds with these.
FAST_TRAIN = [
    "model.stacks=1",
    "model.layers_per_stack=5",
    "model.residual_channels=8",
    "model.gate_channels=8",
    "model.skip_channels=16",
    "data.target_length=128",
    "data.batch_size=2",
    "data.val_windows=4",
    "train.device=cpu",
    "train.progress=false",
    "train.sample_seconds=0.05",
    "optim.warmup_steps=2",
]


def fast_training(corpus: Path, cache: Path, **train) -> list[str]:
    """FAST_TRAIN on `corpus`, its shards cached in `cache`, and train.KEY=VALUE for each keyword."""
    return [
        *FAST_TRAIN,
        f"data.source={corpus}",
        f"data.cache_dir={cache}",
        *(f"train.{k}={v}" for k, v in train.items()),
    ]


@pytest.fixture(scope="session", autouse=True)
def child_tmpdir(tmp_path_factory):
    """The processes the tests start keep their temporary files under pytest's folder rather than in /tmp: one that a
    test kills on purpose cannot clean up after itself (wandb's media and artifact folders, for one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmpdir")))
        yield


@pytest.fixture
def small_model() -> WaveNet:
    torch.manual_seed(0)
    return WaveNet(SMALL).eval()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Six demo tracks (five train, one validation), made once per test session."""
    folder = tmp_path_factory.mktemp("corpus")
    make_corpus(folder, tracks=6, seed=0, log=lambda *_: None)
    return folder


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll a condition that another process makes true (it has no way to tell us), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def run_script(script: str, *overrides: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a root script as a user would, in `cwd`, and return what it printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained_run(corpus, tmp_path_factory) -> Path:
    """A finished 4-step training run on the corpus; returns its run directory."""
    work = tmp_path_factory.mktemp("work")
    run_script(
        "train.py",
        *FAST_TRAIN,
        f"data.source={corpus}",
        "name=fixture",
        "train.max_steps=4",
        "train.val_interval=2",
        f"data.cache_dir={work / 'cache'}",
        cwd=work,
    )
    return work / "runs" / "fixture"


GPU_MODELS = {"20 layers": WaveNetConfig(stacks=2), "30 layers": WaveNetConfig()}  # the benchmark's models


@pytest.fixture(scope="module", params=list(GPU_MODELS))
def gpu_model(request) -> WaveNet:
    """For the `gpu` tests: each benchmark model, randomly initialised, on the device."""
    torch.manual_seed(0)
    return WaveNet(GPU_MODELS[request.param]).cuda().eval()
