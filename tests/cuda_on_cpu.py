"""CUDA kernels compiled for the CPU with tests/cuda_on_cpu.h: one OS thread per block, one coroutine per CUDA
thread. A `CpuKernel` launches like nvrtc.CudaKernel, on tensors in host memory, so an engine's host code and its
kernel run together in CI, which has no GPU; the `gpu` tests run the same kernel on the GPU."""

import ctypes
import hashlib
import re
import subprocess
from pathlib import Path

from wavenet.generation.nvrtc import HEADERS

HEADER = Path(__file__).with_name("cuda_on_cpu.h")
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
    assert found == 1, f"{source.name}: expected one extern __shared__ byte array"
    text += f"\nCUDA_ON_CPU_ENTRY({kernel}, {params})\n"
    options = [f"-D{key}={value}" for key, value in defines]
    digest = hashlib.sha256((text + HEADER.read_text() + " ".join(options)).encode()).hexdigest()[:16]
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
