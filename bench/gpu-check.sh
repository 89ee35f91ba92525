#!/usr/bin/env bash
# For the day a machine with an NVIDIA GPU is at hand (not run in CI: this project's registry serves no CUDA
# libtorch, and its GPU machines reach no registry). Builds with TorchSharp's CUDA 12.8 libtorch, then checks
# the device paths: the summary, a few training steps on cuda against the same steps on cpu, §3.2's towers on GPUs, the paper net's
# throughput on cuda. Usage: bench/gpu-check.sh [cuda:N]
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cuda}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
dotnet build AlexNet.slnx -c Release -nologo -v quiet -p:TorchBackend=cuda
./alexnet summary -m paper | tail -3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./alexnet prepare --fashion-mnist --out "$work/fm"
for d in cpu "$device"; do
  ./alexnet train -d "$work/fm" -m small --input-scale 0.0125 --dropout 0 --max-steps 20 --log-every 10 \
    --device "$d" --out "$work/run-${d//:/-}"
done
# The same 20 steps on both devices: the losses should agree to float32 rounding (cuDNN's kernels are not ours).
grep -h '"step":20,' "$work"/run-*/metrics.jsonl
./alexnet eval -c "$work/run-${device//:/-}/last.ckpt" -d "$work/fm/val" --views centre --device cpu     # a cuda checkpoint on the cpu
./alexnet bench -m paper -b 128 --steps 10 --device "$device"
# §3.2: the two towers on GPUs (both on the one GPU when there is one), trained and timed against the grouped net.
second=$(nvidia-smi -L | wc -l | awk -v d="$device" '{ print ($1 > 1 ? "cuda:1" : d) }')
./alexnet train -d "$work/fm" -m small --input-scale 0.0125 --dropout 0 --max-steps 20 --log-every 10 \
  --towers "$device,$second" --out "$work/run-towers"
grep -h '"step":20,' "$work"/run-cpu/metrics.jsonl "$work"/run-towers/metrics.jsonl
./alexnet bench -m paper -b 128 --steps 10 --towers "$device,$second"
