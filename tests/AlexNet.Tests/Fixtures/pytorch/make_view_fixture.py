#!/usr/bin/python3
"""Writes small-views.pth once from small.pth (no torch needed; no test runs Python): the same state_dict, but as
torch.save writes tensors that are views, which torch.load reads as they are:

  features.0.bias     a view with a storage offset: its 32 values at offset 8 of a 40-value storage
                      (what `torch.save({'b': big[8:40]})` writes)
  classifier.0.weight fc6 stored transposed: a 256×512 storage read with stride (1, 512), a non-contiguous 512×256
                      (what saving `w_t.t()` writes)

The tensors' values are small.pth's, so the imported net must reproduce small.logits.json.

Run from this folder: /usr/bin/python3 make_view_fixture.py
"""
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict


class Storage:
    """A storage as torch.save pickles it: by persistent id ('storage', FloatStorage, key, 'cpu', numel)."""

    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Rebuilt:
    """torch._utils._rebuild_tensor_v2's arguments, kept to be written back."""

    def __init__(self, storage, offset, shape, stride, requires_grad, hooks):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def __reduce__(self):
        return (rebuild, (self.storage, self.offset, self.shape, self.stride, False, OrderedDict()))


# A stand-in `torch` module, so pickle can name torch._utils._rebuild_tensor_v2 and torch.FloatStorage.
torch = types.ModuleType("torch")
torch._utils = types.ModuleType("torch._utils")
FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
torch.FloatStorage = FloatStorage
rebuild = Rebuilt
rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
torch._utils._rebuild_tensor_v2 = rebuild
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch._utils


class Reader(pickle.Unpickler):
    def find_class(self, module, name):
        return {("collections", "OrderedDict"): OrderedDict, ("torch._utils", "_rebuild_tensor_v2"): Rebuilt,
                ("torch", "FloatStorage"): FloatStorage}[(module, name)]

    def persistent_load(self, pid):
        return Storage(pid[2], pid[4])


class Writer(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, Storage) else None


def main():
    src = zipfile.ZipFile("small.pth")
    prefix = src.namelist()[0].split("/")[0]
    state = Reader(src.open(f"{prefix}/data.pkl")).load()
    blobs = {n.split("/")[-1]: src.read(n) for n in src.namelist() if "/data/" in n}

    bias = state["features.0.bias"]
    blobs[bias.storage.key] = struct.pack("<8f", *[99.0] * 8) + blobs[bias.storage.key]   # 8 values before the view
    state["features.0.bias"] = Rebuilt(Storage(bias.storage.key, 40), 8, (32,), (1,), False, None)

    fc6 = state["classifier.0.weight"]
    rows, cols = fc6.shape
    w = struct.unpack(f"<{rows * cols}f", blobs[fc6.storage.key])
    transposed = [w[r * cols + c] for c in range(cols) for r in range(rows)]
    blobs[fc6.storage.key] = struct.pack(f"<{rows * cols}f", *transposed)
    state["classifier.0.weight"] = Rebuilt(Storage(fc6.storage.key, rows * cols), 0, (rows, cols), (1, rows), False, None)

    with zipfile.ZipFile("small-views.pth", "w") as out:
        data = bytearray()
        Writer(_Sink(data), protocol=2).dump(state)
        out.writestr("small-views/data.pkl", bytes(data))
        for key, blob in blobs.items():
            out.writestr(f"small-views/data/{key}", blob)
        out.writestr("small-views/version", "3\n")


class _Sink:
    def __init__(self, buffer):
        self.buffer = buffer

    def write(self, b):
        self.buffer.extend(b)


if __name__ == "__main__":
    main()
