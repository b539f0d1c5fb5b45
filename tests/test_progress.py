"""Progress as people and programs see it: a bar on a terminal, plain lines without carriage returns elsewhere."""

import fcntl
import io
import os
import struct
import termios

from tests.conftest import FAST_TRAIN, run_script
from wavenet.progress import Progress


def test_plain_lines_in_a_log_say_count_percent_rate_and_fields():
    log = io.StringIO()
    with Progress(4, "prepare", unit="files", stream=log, interval_s=0) as progress:
        progress.set_postfix(loss="1.25")
        progress.update(1)
        progress.update(3)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("prepare: 1/4 files (25%), ") and "left" in lines[0] and lines[0].endswith("loss=1.25")
    assert lines[-1].startswith("prepare: 4/4 files (100%)")


def test_plain_lines_come_at_most_once_per_interval():
    log = io.StringIO()
    with Progress(1000, "train", stream=log, interval_s=3600) as progress:
        for _ in range(1000):
            progress.update(1)
    assert log.getvalue().count("\n") == 1, "one line at the end, not one per update"


def test_a_terminal_gets_a_bar():
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(follower, "w") as terminal:
        with Progress(10, "generate", unit="samples", stream=terminal) as progress:
            progress.update(10)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other end is closed and all was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    shown = shown.decode()
    assert "\r" in shown and "10/10" in shown and "generate" in shown


def test_train_py_in_a_pipe_logs_plain_progress_lines(corpus, tmp_path):
    overrides = [o for o in FAST_TRAIN if o != "train.progress=false"]
    proc = run_script(
        "train.py",
        *overrides,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.max_steps=3",
        "train.val_interval=3",
        cwd=tmp_path,
    )
    assert "\r" not in proc.stderr + proc.stdout
    assert "train: 3/3 steps (100%)" in proc.stderr
