"""CUDA kernels compiled for the CPU with tests/cuda_on_cpu.h: one OS thread per block, one coroutine per CUDA
thread. A `CpuKernel` launches like nvrtc.CudaKernel, on tensors in host memory, so an engine's host code and its
kernel run together in CI, which has no GPU; the `gpu` tests run the same kernel on the GPU.

With CUDA_ON_CPU_SANITIZE=thread in the environment, kernels are built with ThreadSanitizer, whose runtime the
process must have loaded first: `sanitized` runs a command so (tests/test_cuda_on_cpu.py). Importing torch takes
5 s under the sanitizer, so this module and tests/test_cuda_on_cpu.py do without it."""

import ctypes
import functools
import hashlib
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = Path(__file__).with_name("cuda_on_cpu.h")
ROOT = HEADER.parents[1]  # the repository (conftest.ROOT, which imports torch)
HEADERS = ROOT / "wavenet" / "generation"  # nvrtc.HEADERS, not imported (it imports torch)
DYNAMIC_SHARED = re.compile(r"extern __shared__ (?:__align__\(\d+\) )?unsigned char (\w+)\[\];")


class CpuKernel:
    """A kernel of a library built by `compile_on_cpu`, with nvrtc.CudaKernel's `launch` and occupancy."""

    def __init__(self, library: Path, name: str, threads: int, shared_bytes: int):
        self.entry = getattr(ctypes.CDLL(str(library)), f"{name}_on_cpu")
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [
            ctypes.c_uint,  # blocks
            ctypes.c_uint,  # threads
            ctypes.c_size_t,  # dynamic shared bytes
            ctypes.c_void_p,  # the params struct
            ctypes.c_char_p,  # error message buffer
            ctypes.c_size_t,  # and its size
        ]
        self.threads, self.shared_bytes = threads, shared_bytes

    def resident_blocks_per_sm(self) -> int:
        return 1

    def launch(self, blocks: int, params: ctypes.Structure, cooperative: bool = True) -> None:
        """Run every block to its end (all at once, as a cooperative launch); raise if one could not finish."""
        error = ctypes.create_string_buffer(512)
        failed = self.entry(blocks, self.threads, self.shared_bytes, ctypes.addressof(params), error, len(error))
        if failed:
            raise RuntimeError(f"the kernel on the CPU: {error.value.decode()}")


def compile_on_cpu(
    source: Path, kernel: str, params: str, defines: tuple[tuple[str, int], ...], build_dir: Path
) -> Path:
    """Build `source` (its kernel `kernel` taking one `params` struct) with -D defines into a shared library in
    `build_dir`; the same source and defines reuse the library already built."""
    text, found = DYNAMIC_SHARED.subn(r"unsigned char* \1 = cuda_on_cpu::dynamic_shared();", source.read_text())
    assert found <= 1, f"{source.name}: expected at most one extern __shared__ byte array"
    text = f'#line 1 "{source}"\n{text}\nCUDA_ON_CPU_ENTRY({kernel}, {params})\n'  # errors name the source's lines
    options = [f"-D{key}={value}" for key, value in defines]
    if os.environ.get("CUDA_ON_CPU_SANITIZE") == "thread":
        options += ["-fsanitize=thread", "-g"]
    headers = "".join(h.read_text() for h in [HEADER, *sorted(HEADERS.glob("*.cuh"))])  # flags.cuh and the like
    digest = hashlib.sha256((text + headers + " ".join(options)).encode()).hexdigest()[:16]
    library = build_dir / f"{source.stem}-{digest}.so"
    if not library.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        unit = build_dir / f"{source.stem}-{digest}.cpp"
        unit.write_text(text)
        command = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas"]
        command += ["-include", str(HEADER), f"-I{HEADERS}", *options, str(unit), "-o", f"{library}.tmp"]
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"{source.name} did not build for the CPU:\n{built.stderr}")
        Path(f"{library}.tmp").rename(library)
    return library


def sanitized(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository's root, its kernels built with ThreadSanitizer and its runtime loaded: exit
    status 66 and a report on stderr at the first data race (or any other error the sanitizer finds). Skips the
    calling test where the sanitizer cannot start at all."""
    env, starter = _sanitizer()
    command = [*starter, sys.executable, *args]  # ROOT: where `tests.` imports resolve
    return subprocess.run(command, cwd=ROOT, env=os.environ | env, capture_output=True, text=True, timeout=timeout)


@functools.cache
def _sanitizer() -> tuple[dict[str, str], tuple[str, ...]]:
    """The environment of a sanitized Python, and what starts one here: nothing, or `setarch -R` (address
    randomisation off) where the kernel randomises memory maps more widely than GCC 12's ThreadSanitizer allows for
    its shadow memory. Found once a session."""
    runtime = subprocess.run(["g++", "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    assert os.path.isabs(runtime), "g++ has no ThreadSanitizer runtime (libtsan.so): install Debian's g++"
    env = {
        "CUDA_ON_CPU_SANITIZE": "thread",
        "OMP_NUM_THREADS": "1",  # OpenMP's own synchronisation is invisible to the sanitizer: no pool in torch
        "LD_PRELOAD": runtime,
        "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0",
    }
    for starter in [(), ("setarch", platform.machine(), "-R")]:
        probe = subprocess.run([*starter, sys.executable, "-c", "pass"], env=os.environ | env, capture_output=True)
        if probe.returncode == 0:
            return env, starter
    pytest.skip(f"ThreadSanitizer cannot start a process on this machine: {probe.stderr.decode().strip()[-500:]}")
