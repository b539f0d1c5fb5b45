"""CUDA C++ compiled at run time: NVRTC turns a source into a CUBIN for one GPU architecture (no GPU needed, so the
tests check the kernel's registers, spills and shared memory on CPU), and the CUDA driver API loads and launches it
on the stream PyTorch is using. Both come from cuda-bindings and the NVRTC library that PyTorch's CUDA wheels carry.
"""

import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wavenet.errors import UserError

HEADERS = Path(__file__).parent  # the sources' #include "flags.cuh" and the like


@dataclass(frozen=True)
class Compiled:
    cubin: bytes
    registers: int  # per thread
    stack_bytes: int  # local memory per thread: stack frame and spills
    spilled_bytes: int  # spill stores per thread
    static_shared_bytes: int
    log: str


def _check(result: tuple, what: str):
    """cuda-bindings calls return (status, *values): raise on a failed status, else return the values."""
    status, *values = result
    if int(status) != 0:
        raise RuntimeError(f"{what} failed: {status!r}")
    return values[0] if len(values) == 1 else values


def compile_cuda(source: str, name: str, defines: tuple[tuple[str, int], ...], capability: int) -> Compiled:
    """Compile `source` for sm_<capability> with -D defines (its #includes found beside this module); the resource
    figures come from ptxas's own report."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as err:
        raise UserError(f"compiling CUDA kernels needs cuda-bindings (PyTorch's CUDA wheels bring it): {err}") from err
    program = _check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    options = [f"--gpu-architecture=sm_{capability}", "--std=c++17", "--ptxas-options=-v", f"--include-path={HEADERS}"]
    options += [f"-D{key}={value}" for key, value in defines]
    try:
        status, *_ = nvrtc.nvrtcCompileProgram(program, len(options), [o.encode() for o in options])
        size = _check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
        log = b" " * size
        _check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
        log = log.rstrip(b"\x00 ").decode(errors="replace")
        if int(status) != 0:
            raise RuntimeError(f"{name} did not compile for sm_{capability}:\n{log}")
        size = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
    finally:
        nvrtc.nvrtcDestroyProgram(program)

    def figure(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    return Compiled(
        cubin=cubin,
        registers=figure(r"Used (\d+) registers"),
        stack_bytes=figure(r"(\d+) bytes stack frame"),
        spilled_bytes=figure(r"(\d+) bytes spill stores"),
        static_shared_bytes=figure(r"(\d+) bytes smem"),
        log=log,
    )


class CudaKernel:
    """One kernel of a CUBIN, loaded into PyTorch's context on `device`, launched cooperatively by default (every
    block resident at once, or the launch fails: the persistent kernel's blocks wait on one another)."""

    def __init__(self, compiled: Compiled, name: str, threads: int, shared_bytes: int, device: torch.device):
        from cuda.bindings import driver

        self.driver, self.threads, self.shared_bytes = driver, threads, shared_bytes
        torch.cuda.init()
        _check(driver.cuInit(0), "cuInit")
        handle = _check(driver.cuDeviceGet(device.index or 0), "cuDeviceGet")
        self.context = _check(driver.cuDevicePrimaryCtxRetain(handle), "cuDevicePrimaryCtxRetain")
        self._current()
        image = np.frombuffer(compiled.cubin, dtype=np.uint8)
        self.module = _check(driver.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData")
        self.function = _check(driver.cuModuleGetFunction(self.module, name.encode()), "cuModuleGetFunction")
        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check(driver.cuFuncSetAttribute(self.function, attribute, shared_bytes), "cuFuncSetAttribute")

    def _current(self) -> None:
        """PyTorch's (primary) context, current on this thread too: the stream renders from worker threads."""
        _check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def resident_blocks_per_sm(self) -> int:
        self._current()
        occupancy = self.driver.cuOccupancyMaxActiveBlocksPerMultiprocessor
        return _check(
            occupancy(self.function, self.threads, self.shared_bytes), "cuOccupancyMaxActiveBlocksPerMultiprocessor"
        )

    def launch(self, blocks: int, params: ctypes.Structure, cooperative: bool = True) -> None:
        """Launch on PyTorch's current stream with one argument, the `params` struct (passed by value); a plain
        launch with `cooperative=False` (a kernel with compile-time cluster dimensions needs one)."""
        self._current()
        arguments = (ctypes.c_void_p * 1)(ctypes.addressof(params))
        stream = self.driver.CUstream(torch.cuda.current_stream().cuda_stream)
        sizes = (
            self.function,
            blocks,
            1,
            1,
            self.threads,
            1,
            1,
            self.shared_bytes,
            stream,
            ctypes.addressof(arguments),
        )
        if cooperative:
            _check(self.driver.cuLaunchCooperativeKernel(*sizes), "cuLaunchCooperativeKernel")
        else:
            _check(self.driver.cuLaunchKernel(*sizes, 0), "cuLaunchKernel")
