"""`bench data`: how fast the embedded benchmark renders, on one core."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from backend.bench.registry import register_bench
from backend.data.artifacts import apply_artifact, artifact_names
from backend.data.embedded import generate_split


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=1000, help="images to render (default 1000)")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")


@register_bench("data", help="SynthDerm rendering speed on one core", add_arguments=_arguments)
def bench_data(args: argparse.Namespace) -> dict:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the figure promises
    start = time.perf_counter()
    images, _ = generate_split(seed=12345, split="test", n=args.images, size=args.size)
    seconds = time.perf_counter() - start
    artifact_ms = {}
    for name in artifact_names():
        t0 = time.perf_counter()
        for i in range(50):
            apply_artifact(name, images[i % len(images)], np.random.default_rng(i))
        artifact_ms[name] = round((time.perf_counter() - t0) / 50 * 1000, 3)
    result = {
        "images": args.images,
        "size": args.size,
        "seconds": round(seconds, 3),
        "ms_per_image": round(seconds / args.images * 1000, 3),
        "artifact_ms_per_image": artifact_ms,
        "cores": 1,
    }
    print(
        f"rendered {args.images} SynthDerm images of {args.size} px in {seconds:.2f} s on one core "
        f"({result['ms_per_image']:.2f} ms each)"
    )
    for name, ms in artifact_ms.items():
        print(f"  {name:12s} {ms:7.3f} ms per image")
    return result
