"""What the audience sees besides the visualiser: a default background drawn by our code, and now-playing text."""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wavenet.files import write_text_atomic

WIDTH, HEIGHT = 1280, 720


def draw_default_background(path: Path) -> Path:
    """A dusk sky over a city skyline with lit windows: a lo-fi stream's usual view, drawn once, 1280x720."""
    rng = np.random.default_rng(7)
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    top, bottom = np.array([28, 20, 64]), np.array([232, 128, 96])
    sky = (top * (1 - y) + bottom * y).repeat(WIDTH, axis=1).astype(np.uint8)
    image = Image.fromarray(sky)
    draw = ImageDraw.Draw(image)
    for _ in range(120):  # stars in the upper sky
        sx, sy = rng.integers(0, WIDTH), rng.integers(0, HEIGHT // 3)
        draw.point((int(sx), int(sy)), fill=(255, 240, 220))
    x = 0
    while x < WIDTH:  # the skyline, with warm windows
        w, h = int(rng.integers(60, 140)), int(rng.integers(120, 360))
        draw.rectangle([x, HEIGHT - h, x + w, HEIGHT], fill=(24, 18, 40))
        for wx in range(x + 8, x + w - 12, 18):
            for wy in range(HEIGHT - h + 12, HEIGHT - 20, 24):
                if rng.random() < 0.3:
                    draw.rectangle([wx, wy, wx + 8, wy + 12], fill=(255, 200, 120))
        x += w + int(rng.integers(0, 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def write_now_playing(path: Path, text: str) -> None:
    """Replace the text file that ffmpeg's drawtext re-reads every frame (atomically: it never sees half a line)."""
    write_text_atomic(path, text)
