"""Make .gpu/wheels: what a bare GPU machine lacks to run bench/gpu_check.sh, downloaded here where PyPI answers.

    python bench/gpu_carry.py       # then, on the device: bash bench/gpu_check.sh 1 (carry .gpu/wheels*)

The GPU machines start with PyTorch, Triton, numpy, scipy, pillow and tqdm only. This fetches the rest, at this
virtual environment's versions, for that machine's Python (3.12, as ../.library/device/KINDS.md reads it; --python
for another), in two folders: .gpu/wheels for what training, generation and the benches import (Hydra and
OmegaConf, soundfile), and .gpu/wheels-tests for the tests (pytest, boto3 for the S3 fixtures: 18 MiB, mostly botocore).
A device call carries 64 MiB in all: the music runs carry .gpu/wheels and the packed corpus (data_prep.pack)
without the tests' wheels. pip skips what that machine already holds. ffmpeg, nginx, W&B and the data_prep extras stay behind.
"""

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

GPU = Path(__file__).resolve().parents[1] / ".gpu"
RUNTIME = [  # pure Python, or one wheel for every Python (soundfile bundles libsndfile)
    "hydra-core",
    "omegaconf",
    "packaging",
    "soundfile",
    "pycparser",
    "ffmpeg-python",
    "future",
]
TESTS = [
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
    "pygments",
]
PER_PYTHON = ["PyYAML", "cffi"]  # compiled for one Python version each
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pip(folder: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--no-deps", "-d", str(folder)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", nargs="+", default=["3.12"], help="the device's Python version(s)")
    args = parser.parse_args()
    wheels, tests = GPU / "wheels", GPU / "wheels-tests"
    for folder in (wheels, tests):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    # antlr4-python3-runtime (OmegaConf's parser) is published as a source archive only: build its wheel here.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels)]
        + [f"antlr4-python3-runtime=={version('antlr4-python3-runtime')}"],
        check=True,
    )
    pip(wheels, "download", *[f"{name}=={version(name)}" for name in RUNTIME])
    pip(tests, "download", *[f"{name}=={version(name)}" for name in TESTS])
    for python in args.python:
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        pinned = [f"{name}=={version(name).split('+')[0]}" for name in PER_PYTHON]
        pip(wheels, "download", "--only-binary=:all:", "--python-version", python, *platforms, *pinned)
    for folder in (wheels, tests):
        files = sorted(folder.iterdir())
        size = sum(p.stat().st_size for p in files) / 2**20
        print(f"{len(files)} wheels, {size:.1f} MiB in {folder}")
    print("a device call carries 64 MiB in all")


if __name__ == "__main__":
    main()
