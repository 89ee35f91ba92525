#!/usr/bin/python3
"""Writes the PyTorch fixtures of the import tests once (Debian's python3-torch 1.13; no test runs Python):

  small.pth          a seeded state_dict of the `small` net (Variants.cs: 1×32×32 input, 10 classes) in the layout
                     bench/peer.py defines for the paper's nets (features.N / classifier.N), torch.save's zip format
  small.safetensors  the same tensors as a .safetensors file (written by hand: the format is a JSON header + raw bytes)
  small.input.f32    two seeded 1×32×32 inputs, float32 little-endian
  small.logits.json  the net's logits for them in eval mode, the golden values an imported net must reproduce
  legacy.pth         conv1's weight in torch.save's legacy (pre-1.6, non-zip) format: must be refused
  malicious.pth      a zip-format state_dict whose pickle calls os.system when Python unpickles it: must be refused, nothing run

Run from this folder: /usr/bin/python3 make_fixtures.py
"""
import json
import os
import struct

import torch
import torch.nn as nn


class TowerLrn(nn.Module):
    """§3.3's LRN as §3.2's towers run it: each tower (half of the maps) normalised on its own GPU (LrnParams.Towers)."""

    def __init__(self, towers=2):
        super().__init__()
        self.towers, self.lrn = towers, nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)   # the paper's α = 1e-4 is α·n here

    def forward(self, x):
        return torch.cat([self.lrn(t) for t in x.chunk(self.towers, 1)], 1)


def small_net():
    # conv: (out, kernel, stride, pad, groups, lrn, pool), as Variants.SmallNet
    convs = [(32, 5, 1, 0, 1, True, True), (64, 5, 1, 2, 2, True, True), (96, 3, 1, 1, 1, False, False),
             (96, 3, 1, 1, 2, False, False), (64, 3, 1, 1, 2, False, True)]
    layers, cin = [], 1
    for cout, k, s, p, g, lrn, pool in convs:
        layers += [nn.Conv2d(cin, cout, k, s, p, groups=g), nn.ReLU(inplace=True)]
        if lrn:
            layers.append(TowerLrn())
        if pool:
            layers.append(nn.MaxPool2d(3, 2))
        cin = cout
    features = nn.Sequential(*layers)
    classifier = nn.Sequential(nn.Linear(256, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
                               nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, 10))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.classifier = features, classifier

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return Net()


def write_safetensors(path, state):
    header, blobs, offset = {}, [], 0
    for key, t in state.items():
        data = t.contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/alexnet-fixture-was-executed",))


def main():
    torch.manual_seed(2012)
    net = small_net().eval()
    state = net.state_dict()
    torch.save(state, "small.pth")
    write_safetensors("small.safetensors", state)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(7)) * 40
    x.numpy().astype("<f4").tofile("small.input.f32")
    with torch.no_grad():
        logits = net(x)
    with open("small.logits.json", "w") as f:
        json.dump({"torch": torch.__version__, "shape": list(logits.shape), "logits": [float(v) for v in logits.flatten()]}, f, indent=1)
    first = {"features.0.weight": state["features.0.weight"]}
    torch.save(first, "legacy.pth", _use_new_zipfile_serialization=False)
    evil = {"features.0.bias": state["features.0.bias"], "features.0.weight": Evil()}
    torch.save(evil, "malicious.pth")


if __name__ == "__main__":
    main()
