"""Make .gpu/wheels: what a bare GPU machine lacks to run bench/gpu_check.sh, downloaded here where PyPI answers.

    python bench/gpu_carry.py            # then, on the device: bash bench/gpu_check.sh 1 (carry .gpu)

The GPU machines start with PyTorch, Triton, numpy, scipy, pillow and tqdm only. This fetches the rest of what the
GPU path imports (Hydra and OmegaConf, soundfile, boto3 for the data module, torchaudio for spectrograms, pytest),
at this virtual environment's versions, as wheels for every Python that machine might have. ffmpeg, nginx, W&B and
the data_prep extras stay behind: the GPU check trains on the synthetic corpus and renders without an encoder.
"""

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

WHEELS = Path(__file__).resolve().parents[1] / ".gpu" / "wheels"
ANY_PYTHON = [  # pure Python, or one wheel for every Python (soundfile bundles libsndfile)
    "hydra-core",
    "omegaconf",
    "soundfile",
    "pycparser",
    "ffmpeg-python",
    "future",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
    "pytest",
    "iniconfig",
    "pluggy",
    "packaging",
    "pygments",
]
PER_PYTHON = ["PyYAML", "cffi", "torchaudio"]  # compiled for one Python version each
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--no-deps", "-d", str(WHEELS)], check=True)


def main() -> None:
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    # antlr4-python3-runtime (OmegaConf's parser) is published as a source archive only: build its wheel here.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELS)]
        + [f"antlr4-python3-runtime=={version('antlr4-python3-runtime')}"],
        check=True,
    )
    pip("download", *[f"{name}=={version(name)}" for name in ANY_PYTHON])
    for python in PYTHONS:
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        pinned = [f"{name}=={version(name).split('+')[0]}" for name in PER_PYTHON]
        pip("download", "--only-binary=:all:", "--python-version", python, *platforms, *pinned)
    wheels = sorted(WHEELS.iterdir())
    size = sum(p.stat().st_size for p in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:.1f} MiB in {WHEELS} (the device carries 64 MiB in all)")


if __name__ == "__main__":
    main()
