#!/usr/bin/env bash
# One-time set-up on a fresh Debian 12 machine: the Debian packages that hold the real data, then the build.
#   dataset-fashion-mnist  the quick start's data set (IDX files)
#   darknet, opencv-doc    the 1000 ILSVRC-2012 WordNet ids and their names; a few real photos
#   openmpi-bin            mpirun, for data-parallel training (`mpirun -np N ./alexnet train …`) and its tests
#   mpich                  mpiexec.mpich, the other MPI the data-parallel tests run (Open MPI stays Debian's default mpirun)
#   libdnnl2               oneDNN: the float32 GEMM of the FC layers in training (Model/Kernels/FullyConnected.cs), and the inference engine, float32 and int8 (Model/Kernels/OneDnnNet.cs)
#   chromium               the headless browser the test of `alexnet serve`'s page drives (Playwright downloads none)
# Safe to run again: it installs only what is missing and the build is incremental.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for p in dataset-fashion-mnist darknet opencv-doc openmpi-bin mpich libdnnl2 chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi
dotnet build AlexNet.slnx -c Release -nologo -v quiet
