"""The CUDA-on-CPU emulation the persistent kernel's CPU tests run on (tests/cuda_on_cpu.h): a barrier that not
every thread reaches is reported, and under ThreadSanitizer a hand-off or a shared value that nothing orders is
reported as a data race (even when one thread returned before the other started), where the emulation's fixed
order of threads gives the right numbers anyway."""

import ctypes
from pathlib import Path

import pytest

from tests.cuda_on_cpu import CpuKernel, compile_on_cpu, sanitized

RACES = Path(__file__).with_name("races.cu")
RACE_MODES = {"ORDERED": 0, "FLAG_NOT_ACQUIRED": 1, "NO_BARRIER": 2, "SHUFFLE_ONLY": 3}  # races.cu's Mode
EXITS = """struct Params { float* data; };
extern "C" __global__ void exits(const Params p) {
    extern __shared__ unsigned char smem[];
    if (threadIdx.x == 0) p.data[0] = 1.f;  // on the CPU thread 0 has returned before thread 1 starts
    else p.data[threadIdx.x] = p.data[0];
}
"""


class Threads(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int)]


def test_a_barrier_that_not_every_thread_reaches_is_reported_not_hung_on(tmp_path):
    source = tmp_path / "diverge.cu"
    source.write_text(
        "struct Params { int threads; };\n"
        'extern "C" __global__ void diverge(const Params p) {\n'
        "    extern __shared__ unsigned char smem[];\n"
        "    if (threadIdx.x < p.threads) __syncthreads();\n"
        "}\n"
    )
    kernel = CpuKernel(compile_on_cpu(source, "diverge", "Params", (), tmp_path), "diverge", 64, 16)
    kernel.launch(2, Threads(64))  # every thread reaches it
    with pytest.raises(RuntimeError, match="block 0: its threads wait at barriers that cannot complete"):
        kernel.launch(2, Threads(32))


class RaceParams(ctypes.Structure):
    _fields_ = [("mode", ctypes.c_int)] + [(name, ctypes.c_void_p) for name in ("flag", "error", "data", "out")]


def run_races(mode: str, build_dir: str) -> None:
    """races.cu in `mode` on one warp: block 1 must end with block 0's floats plus 10 times the first."""
    threads = 32
    kernel = CpuKernel(compile_on_cpu(RACES, "races", "Params", (), Path(build_dir)), "races", threads, 16)
    flags, data, out = (ctypes.c_uint * 2)(), (ctypes.c_float * threads)(), (ctypes.c_float * threads)()
    pointers = [ctypes.addressof(flags), ctypes.addressof(flags) + 4, ctypes.addressof(data), ctypes.addressof(out)]
    kernel.launch(2, RaceParams(RACE_MODES[mode], *pointers))
    assert list(out) == [t + 1 + 10.0 for t in range(threads)], list(out)


class DataParams(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p)]


def run_exits(build_dir: str) -> None:
    """EXITS on one warp: every thread ends with thread 0's 1.0 on the CPU, where nothing orders it on a GPU."""
    source = Path(build_dir) / "exits.cu"
    source.write_text(EXITS)
    kernel = CpuKernel(compile_on_cpu(source, "exits", "Params", (), Path(build_dir)), "exits", 32, 16)
    data = (ctypes.c_float * 32)()
    kernel.launch(1, DataParams(ctypes.addressof(data)))
    assert list(data) == [1.0] * 32, list(data)


@pytest.fixture(scope="module")
def race_build_dir(tmp_path_factory) -> str:
    """One sanitized build of races.cu for every mode."""
    return str(tmp_path_factory.mktemp("races"))


@pytest.mark.parametrize("mode", list(RACE_MODES))
def test_under_threadsanitizer_only_what_orders_memory_on_a_gpu_orders_it(mode, race_build_dir):
    run = sanitized(
        ["-c", f"from tests.test_cuda_on_cpu import run_races; run_races({mode!r}, {race_build_dir!r})"], 120
    )
    if mode == "ORDERED":
        assert run.returncode == 0, run.stderr[-3000:]
    else:
        assert_race_reported(run, "races.cu")


def test_under_threadsanitizer_a_thread_that_has_returned_orders_nothing_for_the_next(race_build_dir):
    run = sanitized(["-c", f"from tests.test_cuda_on_cpu import run_exits; run_exits({race_build_dir!r})"], 120)
    assert_race_reported(run, "exits.cu")


def assert_race_reported(run, source: str) -> None:
    """The sanitized run stopped at a data race, and its first report names lines of `source`."""
    assert run.returncode == 66 and "WARNING: ThreadSanitizer: data race" in run.stderr, run.stderr[-3000:]
    report = run.stderr[run.stderr.index("WARNING: ThreadSanitizer") : run.stderr.index("SUMMARY:")]
    assert f"{source}:" in report, report
