#!/usr/bin/env bash
# Runs the CUDA backend's op tests (tests/test_kernels_cuda.c) on the CPU: each .cu file is
# turned into C++ (transform.py rewrites kernel launches), compiled with g++ against a
# small emulation of the CUDA runtime, warp intrinsics and cublasGemmEx (emu.cpp,
# fake/*.h: one fiber per CUDA thread), with AddressSanitizer and UBSan. It catches
# indexing, masking, reduction and barrier mistakes; it cannot catch races, timing, or
# the exact rounding of real cuBLAS and expf. A developer tool for machines without a
# GPU (slow: minutes), not part of ctest.
#   tests/cuda_emu/run.sh [test_kernels_cuda.c|test_cuda_model.c] [criterion args...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
test="${1:-test_kernels_cuda.c}"
shift || true
out="${EMU_OUT:-/tmp/ibex-cuda-emu}"
mkdir -p "$out/src" "$out/obj" "$out/gen"
echo '#define IBEX_GIT_COMMIT "emu"
#define IBEX_BUILD_TYPE "emu"' >"$out/gen/ibex_build.h"
for f in "$repo"/kernels/cuda/*.cu; do python3 "$here/transform.py" "$f" "$out/src/$(basename "$f" .cu).cpp"; done
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
CXXF="-std=c++17 -O1 -g $SAN -ffp-contract=off -w -DIBEX_CUDA_EMU=1 -I$here/fake -I$repo"
CF="-std=c11 -D_GNU_SOURCE -O1 -g $SAN -fopenmp -w -I$repo -I$out/gen -DIBEX_HAVE_CUDA=1"
rm -f "$out"/obj/*.o
g++ $CXXF -c "$here/emu.cpp" -o "$out/obj/emu.o"
for f in "$out"/src/*.cpp; do g++ $CXXF -c "$f" -o "$out/obj/$(basename "$f" .cpp).o"; done
for f in "$repo"/kernels/*.c "$repo"/kernels/cpu/*.c; do gcc $CF -c "$f" -o "$out/obj/k_$(basename "$f" .c).o"; done
if [ "$test" != "test_kernels_cuda.c" ]; then
  for f in "$repo"/engine/*.c; do gcc $CF -c "$f" -o "$out/obj/e_$(basename "$f" .c).o"; done
fi
gcc $CF -c "$repo/tests/$test" -o "$out/obj/test.o"
g++ $SAN -fopenmp "$out"/obj/*.o -o "$out/test_emu" -lcriterion -lm -lpthread
exec "$out/test_emu" --jobs 1 "$@"
