"""W&B offline runs, sweeps and secrets, read back from the files a user (or `wandb sync`) would read."""

import os

import pytest

from tests.conftest import FAST_TRAIN, run_script
from tests.wandb_files import offline_runs

WANDB = [*[o for o in FAST_TRAIN if o != "logger=none"], "logger=wandb", "logger.mode=offline"]


@pytest.fixture
def offline_env(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_holds_metrics_audio_images_and_model_artifacts(corpus, tmp_path, offline_env):
    common = [
        *WANDB,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "name=tracked",
        "train.max_steps=4",
        "train.val_interval=2",
        "train.sample_interval=2",
        "train.log_interval=1",
    ]
    run_script("train.py", *common, "train.stop_at=2", cwd=tmp_path)
    run_script("train.py", *common, "train.resume=auto", cwd=tmp_path)

    first, resumed = offline_runs(tmp_path / "runs" / "tracked")
    assert first.run_id == resumed.run_id, "a resumed run continues the same W&B run"
    assert sorted(first.values("train/loss")) == [1, 2]
    assert sorted(resumed.values("train/loss")) == [3, 4], "and the same step axis"
    for run, step in ((first, 2), (resumed, 4)):
        assert step in run.values("val/nll_bits")
        assert run.values("sample/audio/_type")[step] == "audio-file"
        assert run.values("sample/spectrogram/_type")[step] == "image-file"
        assert (run.folder / "files" / run.values("sample/audio/path")[step]).is_file()
        assert (run.folder / "files" / run.values("sample/spectrogram/path")[step]).is_file()
        assert ("model-" + run.run_id, "model", ["best", "latest"]) in [(n, t, sorted(a)) for n, t, a in run.artifacts]
    assert first.config["model"]["residual_channels"] == 8
    assert first.config["train"]["max_steps"] == 4
    assert {"train/grad_norm", "train/samples_per_s", "lr"} <= set().union(*first.history)


def test_multirun_gives_each_job_its_own_run_directory_and_w_and_b_run(corpus, tmp_path, offline_env):
    proc = run_script(
        "train.py",
        "-m",
        *WANDB,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.max_steps=2",
        "train.val_interval=2",
        "optim.lr=1e-3,3e-3",
        cwd=tmp_path,
    )
    sweeps = list((tmp_path / "runs" / "multirun").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    runs = [offline_runs(job)[0] for job in jobs]
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].group == runs[1].group == sweeps[0].name
    assert [r.config["optim"]["lr"] for r in runs] == [1e-3, 3e-3]
    assert all((job / "checkpoints" / "last.pt").is_file() for job in jobs)
    assert "Traceback" not in proc.stderr


def test_no_secret_reaches_hydra_logs_wandb_or_checkpoints(corpus, tmp_path, monkeypatch):
    secrets = {
        "WANDB_API_KEY": "wandbsecret0123456789abcdef0123456789abcdef",
        "AWS_ACCESS_KEY_ID": "AKIASECRETSECRET1234",
        "AWS_SECRET_ACCESS_KEY": "awsSecretValue/With+Chars0123456789abcdefgh",
        "YOUTUBE_STREAM_KEY": "abcd-efgh-ijkl-mnop-qrst",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_SILENT", "true")
    # a config that pulls a secret from the environment must still not leak it
    run_script(
        "train.py",
        *WANDB,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "name=secret",
        "train.max_steps=2",
        "train.val_interval=2",
        "+logger.tags=[${oc.env:YOUTUBE_STREAM_KEY}]",
        cwd=tmp_path,
        check=False,
    )
    run_dir = tmp_path / "runs" / "secret"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pt" for p in files) and any(p.suffix == ".wandb" for p in files)
    for path in files:
        data = path.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in data, f"{name} leaked into {path.relative_to(tmp_path)}"
    assert os.environ["WANDB_API_KEY"] == secrets["WANDB_API_KEY"]
