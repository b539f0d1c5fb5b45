"""A polite stop: the first SIGTERM or SIGINT asks a loop to stop at its next step; a second one acts as before.

SLURM before a time limit or a preemption, a device call's time limit, `kill` and Ctrl-C all send one of these.
"""

import signal
import threading


class StopSignals:
    """While entered, `received` is the number of the first stop signal that came (0: none yet)."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.received = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python sets handlers only there
            for sig in self.signals:
                if signal.getsignal(sig) is signal.SIG_IGN:  # as a background job's SIGINT: it stays ignored
                    continue
                previous = signal.signal(sig, self._handle)
                self._previous[sig] = signal.SIG_DFL if previous is None else previous  # None: set outside Python
        return self

    def _handle(self, signum: int, _frame) -> None:
        self.received = self.received or signum
        signal.signal(signum, self._previous[signum])  # a second one ends the process as it would have

    def __exit__(self, *_exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
