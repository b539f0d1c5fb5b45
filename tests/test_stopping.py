"""StopSignals: the first SIGINT or SIGTERM is a request to stop, a second one acts as before, an ignored one stays
ignored (train.py's SIGTERM stop, end to end: tests/test_train_cli.py)."""

import signal

import pytest

from wavenet.stopping import StopSignals


def test_the_first_signal_is_a_request_and_the_second_acts_as_before():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        assert signals.received == 0
        signal.raise_signal(signal.SIGINT)
        assert signals.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before and signal.getsignal(signal.SIGTERM) is not None


def test_handlers_are_restored_on_leaving_and_an_ignored_signal_stays_ignored():
    before = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as signals:
            signal.raise_signal(signal.SIGINT)
            assert signals.received == 0
            assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGINT, previous)
