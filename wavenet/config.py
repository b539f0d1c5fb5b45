"""Config schemas (dataclasses) registered in Hydra's ConfigStore, so a typo or a bad type fails at the command line."""

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from wavenet.model import WaveNetConfig
from wavenet.storage import S3Settings
from wavenet.stream.encoder import EncoderSettings
from wavenet.stream.gate import GateSettings
from wavenet.stream.sink import SinkConfig
from wavenet.stream.supervisor import SupervisorSettings
from wavenet.web.settings import WebSettings


@dataclass
class DataConfig:
    source: str = "data/demo"  # a folder of WAVs (with manifest.jsonl from data_prep) or s3://bucket/prefix
    cache_dir: str = ".cache/lofi-wavenet"  # s3:// corpora and the mu-law shards are cached here
    s3: S3Settings = field(default_factory=S3Settings)
    target_length: int = 4096  # predicted samples per window; each window adds the receptive field as context
    batch_size: int = 8
    val_windows: int = 64  # fixed validation windows, the same every evaluation
    val_fraction: float = 0.1  # used only when the folder has no manifest.jsonl
    speed_jitter: float = 0.0  # > 0: each training window plays up to this fraction faster or slower (speed and pitch)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr: float = 1e-5  # the cosine decay ends here at train.max_steps
    warmup_steps: int = 200
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # > 0: validation, samples and the checkpoints' model use this moving average of weights


@dataclass
class TrainLoopConfig:
    max_steps: int = 2000
    log_interval: int = 10
    val_interval: int = 250  # validate and checkpoint every this many steps (and at the end)
    sample_interval: int = 1000  # write generated audio every this many steps (and at the end)
    sample_seconds: float = 2.0
    sample_temperature: float = 1.0
    keep_checkpoints: int = 3  # step checkpoints kept besides last.pt and best.pt
    resume: str | None = None  # null, "auto" (continue this run directory if it has last.pt) or a checkpoint path
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    compile: bool = False  # torch.compile the model (CUDA only)
    seed: int = 0
    progress: bool = True  # the tqdm progress bar
    stop_at: int | None = None  # stop (with a checkpoint) at this step without changing the schedule; resume later


@dataclass
class LoggerConfig:
    kind: str = "wandb"  # wandb or none
    project: str = "lofi-wavenet"
    entity: str | None = None
    group: str | None = None  # default: the sweep's folder name in a -m multirun
    tags: list[str] = field(default_factory=list)
    mode: str = "auto"  # auto (online with WANDB_API_KEY set, else offline), online, offline, disabled
    log_checkpoints: bool = True  # checkpoints as `model` artifacts, aliases latest and best


@dataclass
class TrainConfig:
    name: str = "default"
    model: WaveNetConfig = field(default_factory=WaveNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


@dataclass
class GenerationConfig:
    backend: str = "auto"  # auto, naive, cached, graph, triton, triton-bf16 (wavenet/generation/backends.py)


@dataclass
class GenerateConfig:
    checkpoint: str = "???"  # a .pt written by train.py: a path or s3://bucket/key
    out_dir: str | None = None  # default: the Hydra run directory
    num_clips: int = 1
    seconds: float = 4.0
    temperature: float = 1.0
    seed: int = 0
    prime: str | None = None  # any audio ffmpeg decodes (a path or s3://...): the clips continue it, start with it
    prime_seconds: float = 1.0  # how much of the prime's start is used
    batch_size: int = 8  # clips generated together
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    device: str = "auto"
    cache_dir: str = ".cache/lofi-wavenet"  # where s3:// checkpoints and primes are fetched
    s3: S3Settings = field(default_factory=S3Settings)


@dataclass
class StreamConfig:
    checkpoint: str = "???"  # a .pt written by train.py: a path or s3://bucket/key
    sink: SinkConfig = field(default_factory=SinkConfig)
    mode: str = "parallel"  # parallel: batches of tracks into a backlog; direct: one stream generated live
    batch_size: int = 32  # tracks rendered together (parallel mode)
    track_seconds: float = 20.0
    min_track_seconds: float = 0.75  # a batch ends early, tracks no shorter than this, when the backlog runs low
    crossfade_seconds: float = 1.5
    temperature: float = 1.0
    seed: int = 0  # track n is stream n of this seed: the same backlog every time
    max_backlog_minutes: float = 30.0  # render ahead until this much waits to be played
    keep_played: int = 50  # played tracks kept on disk for the fallback
    jitter_seconds: float = 1.0  # direct mode: live audio buffered before it plays
    render_threads: int = 2  # CPU threads for rendering (the cpu backend: a shard of the tracks each)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    render_rate_limit: float | None = None  # samples/s at most (share a device; or slow it on purpose to test)
    duration_seconds: float | None = None  # stop after this long (a preview); null: until SIGTERM
    background: str | None = None  # an image for the picture; null: the default one drawn by lofi-wavenet
    workdir: str = "runs/stream"  # backlog/, status.json, now_playing.txt
    device: str = "auto"
    cache_dir: str = ".cache/lofi-wavenet"
    s3: S3Settings = field(default_factory=S3Settings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    gate: GateSettings = field(default_factory=GateSettings)  # which rendered tracks may air
    web: WebSettings = field(default_factory=WebSettings)  # the station's own site (sink=web, or web.enabled=true)


MODEL_PRESETS = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_preset(name: str) -> WaveNetConfig:
    """A conf/model/NAME.yaml preset (tiny, base, large) as a WaveNetConfig, for scripts outside Hydra."""
    return WaveNetConfig(**OmegaConf.to_container(OmegaConf.load(MODEL_PRESETS / f"{name}.yaml")))


def register_configs() -> None:
    """Make the schemas known to Hydra as `train_schema` and `generate_schema`."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="generate_schema", node=GenerateConfig)
    cs.store(name="stream_schema", node=StreamConfig)
