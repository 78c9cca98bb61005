#!/bin/bash
# gpu_check.sh — check `kvsim --device cuda` against the CPU on a machine with a GPU
# that cannot build the project (no HDF5 or Criterion there), and time both.
#
#   scripts/gpu_check.sh pack         here: build portable binaries (x86-64-v3) in a
#                                     scratch worktree, bundle them with their shared
#                                     libraries and the test trace into
#                                     .devlib/bundle.tar.xz (git-ignored, ~25 MB)
#   scripts/gpu_check.sh run OUTDIR   there, from the repository root: unpack, run the
#                                     GPU-vs-CPU unit test, compare sweeps bit for bit
#                                     on the real test trace and a synthetic 2048-step
#                                     one, print timings; CSVs and the log to OUTDIR
#
# bench/results/h200_gpu_replay_check.txt is one run's log.
set -uo pipefail

pack() {
    set -e
    local repo scratch bundle
    repo=$(pwd)
    scratch=$(mktemp -d)
    bundle=$(mktemp -d)
    git worktree add --detach "$scratch/src" HEAD > /dev/null
    ln -s "$repo/models" "$scratch/src/models"
    make -C "$scratch/src" -j2 OPT="-O2 -march=x86-64-v3" all build/tests > /dev/null
    make build/test_trace.h5 > /dev/null
    mkdir -p "$bundle/lib" "$bundle/bin" "$bundle/build" .devlib
    cp "$scratch/src/bin/kvsim" "$scratch/src/bin/kvtrace" "$bundle/bin/"
    cp "$scratch/src/build/tests" build/test_trace.h5 "$bundle/build/"
    # every shared library but the C library itself, which the device machine has
    ldd "$bundle/bin/kvsim" "$bundle/build/tests" | awk '/=> \//{print $3}' | sort -u |
        grep -v -E '/lib(c|m|dl|pthread|rt)\.so|ld-linux' | xargs -I{} cp -L {} "$bundle/lib/"
    tar -cJf .devlib/bundle.tar.xz -C "$bundle" .
    grep -qx '/.devlib/' .git/info/exclude || echo '/.devlib/' >> .git/info/exclude
    git worktree remove --force "$scratch/src"
    rm -rf "$scratch" "$bundle"
    ls -la .devlib/bundle.tar.xz
}

# Seconds a command took, then the command.
timed() {
    local start=$EPOCHREALTIME
    "$@" > /dev/null
    awk -v a="$start" -v b="$EPOCHREALTIME" -v c="${*:2}" \
        'BEGIN { printf "%.2f s: %s\n", b - a, c }'
}

run() {
    local out=$1 repo box=/tmp/kv-gpu-check
    repo=$(pwd)
    rm -rf "$box" && mkdir -p "$box/csv" "$out" && tar -xJf "$repo/.devlib/bundle.tar.xz" -C "$box"
    cd "$box" || return 1
    export LD_LIBRARY_PATH=$box/lib
    nvidia-smi -L; ldd --version | head -1; nproc; grep -m1 'model name' /proc/cpuinfo
    ./bin/kvtrace devices 2>&1 | head -5
    echo "== unit: gpu_rules"
    ./build/tests --filter 'gpu_rules/*' --verbose 2>&1 | grep -E 'gpu_rules|Synthesis|Assert'
    echo "== real trace: CPU vs GPU"
    local K=./bin/kvsim T=build/test_trace.h5 c=$box/csv
    local A="--policies h2o,mas,roco,tova,streaming,recency,full --budgets 0.2,0.5,16 --strides 1,4"
    $K sweep $T $A --metrics mass,overlap,output_error -o "$out/cpu.csv" &&
        $K sweep $T $A --metrics mass,overlap,output_error --device cuda -o "$out/gpu.csv" &&
        cmp "$out/cpu.csv" "$out/gpu.csv" && echo "REAL TRACE: IDENTICAL"
    A="--policies scored --score mas --scope sinks+window --sinks 2 --window 0.3 --gqa max"
    $K sweep $T $A --budgets 20,50 --strides 1,8 --metrics mass,overlap -o $c/cpu2.csv &&
        $K sweep $T $A --budgets 20,50 --strides 1,8 --metrics mass,overlap --device cuda \
            -o $c/gpu2.csv && cmp $c/cpu2.csv $c/gpu2.csv && echo "REAL TRACE 2: IDENTICAL"
    echo "== timing: synthetic 2048 steps x 30 layers x 9 heads"
    local S=synth:T=2048,layers=30,heads=9,kv=3,dim=64,seed=1
    local M="--metrics mass,overlap,output_error"
    timed $K replay $S --policy h2o --budget 0.2 $M --threads 1 -o $c/one1.csv
    timed $K replay $S --policy h2o --budget 0.2 $M --threads 16 -o $c/one.csv
    timed $K replay $S --policy h2o --budget 0.2 $M --device cuda -o $c/oneg.csv
    cmp $c/one.csv $c/oneg.csv && echo "SYNTH ONE: IDENTICAL"
    local W="--policies h2o,mas,roco,tova --budgets 0.01:0.5:0.01 --metrics mass,overlap"
    timed $K sweep $S $W --threads 16 -o $c/sweep.csv
    timed $K sweep $S $W --device cuda -o $c/sweepg.csv
    cmp $c/sweep.csv $c/sweepg.csv && echo "SWEEP 200: IDENTICAL"
    cp $c/sweepg.csv "$out/"
}

case "${1:-}" in
pack) pack ;;
run) mkdir -p "${2:?OUTDIR}" && run "$2" 2>&1 | tee "$2/log.txt" ;;
*) echo "usage: $0 pack | run OUTDIR" >&2; exit 2 ;;
esac
