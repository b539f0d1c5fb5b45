"""Progress for long jobs: a tqdm bar on a terminal, a plain line every few seconds in a log file or a pipe.

tqdm writes carriage returns that flood a non-terminal log; `Progress` keeps the bar for people at a terminal and
prints `desc: 120/1000 files (12%), 3.2 files/s, 4m35s left` lines for logs, CI and other programs.
"""

import sys
import time
from typing import TextIO

from tqdm import tqdm

PLAIN_INTERVAL_S = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Count work done towards `total`; `update(n)`, `set_postfix(**fields)`, `write(line)`, `close()`."""

    def __init__(
        self,
        total: float,
        desc: str,
        unit: str = "it",
        initial: float = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
    ):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.enabled, self.interval_s = enabled, interval_s
        self.postfix: dict[str, str] = {}
        self.bar = None
        if enabled and self.stream.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream)
        self.start_n, self.start = initial, time.monotonic()
        self.last_line = self.start

    @property
    def on_terminal(self) -> bool:
        """True when a bar is shown (a terminal), False when plain lines are printed."""
        return self.bar is not None

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last_line >= self.interval_s:
            self._line()

    def set_postfix(self, **fields) -> None:
        self.postfix = {k: str(v) for k, v in fields.items()}
        if self.bar is not None:
            self.bar.set_postfix(self.postfix)

    def write(self, line: str) -> None:
        """A message on stdout that does not break the bar (printed whether or not progress is shown)."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n > self.start_n:
            self._line()
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> None:
        now = time.monotonic()
        self.last_line = now
        rate = (self.n - self.start_n) / max(now - self.start, 1e-9)
        parts = [f"{self.desc}: {self.n:,.0f}/{self.total:,.0f} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:,.1f} {self.unit}/s")
        if rate > 0 and self.total and self.n < self.total:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)
