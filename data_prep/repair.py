"""Mending decoded audio before it is normalised: a handful of non-finite samples, and DC offset."""

import numpy as np
from scipy.signal import butter, sosfiltfilt

from data_prep.decode import BadInput

MAX_BAD_FRACTION = 1e-4  # at most 1 sample in 10,000 ...
MAX_BAD_RUN = 4  # ... in runs of at most 4 samples: more than that is a broken file, not a few glitches
DC_CUTOFF_HZ = 20.0


def repair_non_finite(audio: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace isolated NaN/infinite samples by interpolating their neighbours; returns (audio, number repaired).

    BadInput when there are more than a handful: a float WAV full of NaN or infinity is broken, not silent.
    """
    bad = ~np.isfinite(audio)
    count = int(bad.sum())
    if count == 0:
        return audio, 0
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    longest = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
    if count > MAX_BAD_FRACTION * audio.size or longest > MAX_BAD_RUN:
        raise BadInput(
            f"non-finite samples: {count:,} of {audio.size:,} are NaN or infinite (longest run {longest}); "
            f"too many to repair (at most 1 in {round(1 / MAX_BAD_FRACTION):,}, in runs of {MAX_BAD_RUN}): re-export it"
        )
    good = np.flatnonzero(~bad)
    repaired = audio.copy()
    repaired[bad] = np.interp(np.flatnonzero(bad), good, audio[good])
    return repaired, count


def remove_dc(audio: np.ndarray, rate: int) -> np.ndarray:
    """A gentle zero-phase high-pass (2nd-order Butterworth at 20 Hz, run forwards and backwards)."""
    sos = butter(2, DC_CUTOFF_HZ, btype="highpass", fs=rate, output="sos")
    return sosfiltfilt(sos, audio.astype(np.float64)).astype(np.float32)
