"""`bench data`: how fast the embedded benchmark renders, on one core."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.data.artifacts import apply_artifact, artifact_names
from backend.data.embedded import generate_split
from backend.options import option


@dataclass(frozen=True, kw_only=True)
class DataBench(BenchOptions):
    """SynthDerm rendering speed on one core"""

    images: int = option(1000, help="images to render")
    size: int = option(64, help="image size in pixels")


@dataclass(frozen=True)
class DataResult(BenchResult):
    images: int
    size: int
    seconds: float
    ms_per_image: float
    artifact_ms_per_image: dict[str, float]  # rounded to the microsecond as measured
    cores: int = 1
    json_digits: ClassVar[dict[str, int]] = {"seconds": 3, "ms_per_image": 3}

    def lines(self) -> list[str]:
        return [
            f"rendered {self.images} SynthDerm images of {self.size} px in {self.seconds:.2f} s on one core "
            f"({round(self.ms_per_image, 3):.2f} ms each)",
            *(f"  {name:12s} {ms:7.3f} ms per image" for name, ms in self.artifact_ms_per_image.items()),
        ]


@register_bench("data", DataBench)
def bench_data(opts: DataBench) -> DataResult:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the figure promises
    start = time.perf_counter()
    images, _ = generate_split(seed=12345, split="test", n=opts.images, size=opts.size)
    seconds = time.perf_counter() - start
    artifact_ms = {}
    for name in artifact_names():
        t0 = time.perf_counter()
        for i in range(50):
            apply_artifact(name, images[i % len(images)], np.random.default_rng(i))
        artifact_ms[name] = round((time.perf_counter() - t0) / 50 * 1000, 3)
    return DataResult(opts.images, opts.size, seconds, seconds / opts.images * 1000, artifact_ms)
