"""lofi-wavenet: a raw-audio WaveNet that trains on lo-fi hip hop and generates it fast."""

from wavenet.model import WaveNet, WaveNetConfig

__all__ = ["WaveNet", "WaveNetConfig"]
