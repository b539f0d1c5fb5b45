"""Fixtures for a real S3 server (SeaweedFS) on loopback, started once per test session."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.local_s3 import LocalS3

ACCESS_KEY = "lofi-test-access"
SECRET_KEY = "lofi-test-secret-0123456789"
BUCKET = "lofi-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    with LocalS3(tmp_path_factory.mktemp("seaweedfs"), ACCESS_KEY, SECRET_KEY, buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The environment a user of our S3 server would have: endpoint and credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


def tone(seconds: float, rate: int, freq: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def write_wav(path: Path, audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, audio, rate, subtype=subtype)
    return path
