#!/usr/bin/python3
"""The peer: the same nets, batch sizes and threads in PyTorch (Debian's python3-torch), for side-by-side
throughput against `alexnet bench`. Not part of the tool or its build; `alexnet bench peer` runs it
interleaved with our own runs and prints the ratios (docs/performance.md).

The nets match src/AlexNet.Core/Model/Variants.cs layer for layer:
  paper       §3.5: two towers as grouped convolutions (conv2/4/5 groups=2), LRN after conv1/conv2, 3/2 pools
  paper-1gpu  §3.2's one-tower baseline with half the kernels in conv1-conv4
  owt         torchvision.models.alexnet (Krizhevsky 2014, "one weird trick")
  small       the quick start's 8-layer net for 28-32 px images (32-64-96-96-64, fc 512)
LRN: the paper's α = 1e-4 is α·n = 5e-4 in PyTorch's convention (it divides by n inside the sum). In `paper`
and `small` each tower's maps are normalised among themselves (§3.3 ran on each GPU's half: LrnParams.Towers = 2
in Variants.cs), so conv1's 96 maps are two sums over 48; `paper-1gpu` has one tower.
Training step: SGD with momentum 0.9 and weight decay 5e-4 on softmax cross-entropy, as ours.

Debian's torch links the reference BLAS unless another is selected; the driver points LD_LIBRARY_PATH
at libopenblas0-pthread's folder for this process only, its best setting on this machine.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class TowerLRN(nn.Module):
    """§3.3 within each tower: the maps split into `towers` equal parts, each normalised across its own maps."""

    def __init__(self, towers):
        super().__init__()
        self.towers = towers
        self.lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, x):
        if self.towers == 1:
            return self.lrn(x)
        return torch.cat([self.lrn(part) for part in x.chunk(self.towers, 1)], 1)


def conv_stage(cin, cout, k, stride, pad, groups, lrn, pool):
    """lrn: 0 = none, else the number of towers whose maps are normalised apart."""
    layers = [nn.Conv2d(cin, cout, k, stride, pad, groups=groups), nn.ReLU(inplace=True)]
    if lrn:
        layers.append(TowerLRN(lrn))
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    return layers


class Net(nn.Module):
    """The 8-layer design of §3.5 with any widths: five conv stages, fc6/fc7 with dropout, fc8."""

    def __init__(self, convs, fc, classes, channels, pool6):
        super().__init__()
        layers, cin = [], channels
        for cout, k, stride, pad, groups, lrn, pool in convs:
            layers += conv_stage(cin, cout, k, stride, pad, groups, lrn, pool)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool6) if pool6 else nn.Identity()
        self.classifier = nn.Sequential(
            nn.Linear(fc[0], fc[1]), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc[1], fc[1]), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc[1], classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build(name, classes, channels):
    if name == "paper":
        convs = [(96, 11, 4, 2, 1, 2, True), (256, 5, 1, 2, 2, 2, True), (384, 3, 1, 1, 1, 0, False),
                 (384, 3, 1, 1, 2, 0, False), (256, 3, 1, 1, 2, 0, True)]
        return Net(convs, (256 * 6 * 6, 4096), classes, channels, (6, 6)), 224
    if name == "paper-1gpu":
        convs = [(48, 11, 4, 2, 1, 1, True), (128, 5, 1, 2, 1, 1, True), (192, 3, 1, 1, 1, 0, False),
                 (192, 3, 1, 1, 1, 0, False), (256, 3, 1, 1, 1, 0, True)]
        return Net(convs, (256 * 6 * 6, 4096), classes, channels, (6, 6)), 224
    if name == "owt":
        import torchvision
        net = torchvision.models.alexnet(num_classes=classes)
        if channels != 3:
            net.features[0] = nn.Conv2d(channels, 64, 11, 4, 2)
        return net, 224
    if name == "small":
        convs = [(32, 5, 1, 2, 1, 2, True), (64, 5, 1, 2, 2, 2, True), (96, 3, 1, 1, 1, 0, False),
                 (96, 3, 1, 1, 2, 0, False), (64, 3, 1, 1, 2, 0, True)]
        return Net(convs, (64 * 2 * 2, 512), classes, channels, None), 28
    raise SystemExit(f"peer.py: unknown model '{name}' (paper, paper-1gpu, owt, small)")


def loaded_blas():
    """The BLAS library this process actually mapped (Debian selects it at load time)."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line}
    return ", ".join(sorted(paths)) or "none"


def median_ms(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="paper")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--input", type=int, default=0, help="input side (default: the net's)")
    p.add_argument("--channels-last", action="store_true", help="NHWC layout for the net and its input")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net, side = build(a.model, a.classes, a.channels)
    side = a.input or side
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.randn(a.batch, a.channels, side, side).contiguous(memory_format=fmt)
    y = torch.randint(0, a.classes, (a.batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)

    def train_step():
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def infer():
        with torch.no_grad():
            net(x)

    net.train()
    train = median_ms(train_step, a.warmup, a.steps)
    net.eval()
    inference = median_ms(infer, a.warmup, a.steps)
    json.dump({
        "peer": f"pytorch {torch.__version__}",
        "blas": loaded_blas(),
        "model": a.model, "batch": a.batch, "threads": a.threads, "channels_last": a.channels_last,
        "train_step_ms": train, "train_images_per_second": a.batch / train * 1000,
        "infer_ms": inference, "infer_images_per_second": a.batch / inference * 1000,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
