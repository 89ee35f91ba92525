#!/usr/bin/env python3
"""The usual PIL way to prepare ImageNet (the peer of `alexnet prepare --folder`, never part of the tool).

Per image: PIL's draft mode (libjpeg decodes at the nearest DCT scale that keeps both sides >= 256),
convert to RGB, resize so the shorter side is 256 (Image.resize with the BICUBIC filter, which PIL
antialiases when shrinking), take the central 256x256, keep the planar bytes. Images are shared among
--processes worker processes (multiprocessing.Pool, chunks of 16), as the common scripts do.
Prints one JSON line: {"images": N, "seconds": S, "images_per_second": R, "processes": P}.

    python3 bench/prepare_peer.py ROOT [--processes 2] [--size 256]
"""
import argparse
import json
import os
import sys
import time
from multiprocessing import Pool

from PIL import Image

SIZE = 256


def prepare(path):
    with Image.open(path) as im:
        im.draft("RGB", (SIZE, SIZE))
        im = im.convert("RGB")
        w, h = im.size
        s = SIZE / min(w, h)
        im = im.resize((max(SIZE, round(w * s)), max(SIZE, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - SIZE) // 2, (h - SIZE) // 2
        im = im.crop((left, top, left + SIZE, top + SIZE))
        r, g, b = im.split()
        return len(r.tobytes() + g.tobytes() + b.tobytes())


def main():
    global SIZE
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args()
    SIZE = a.size
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.root) for f in fs
                   if f.lower().endswith((".jpeg", ".jpg", ".png")))
    if not files:
        sys.exit(f"no images under {a.root}")
    start = time.perf_counter()
    with Pool(a.processes) as pool:
        total = sum(pool.imap(prepare, files, chunksize=16))
    seconds = time.perf_counter() - start
    assert total == len(files) * 3 * SIZE * SIZE
    print(json.dumps({"images": len(files), "seconds": seconds, "images_per_second": len(files) / seconds, "processes": a.processes}))


if __name__ == "__main__":
    main()
