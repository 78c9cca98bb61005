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
#                                     one, print timings; then the forward section;
#                                     CSVs and the log to OUTDIR
#   scripts/gpu_check.sh forward [OUTDIR]   the forward pass only (about 4 minutes on an
#                                     H200 with 16 cores): CUDA vs CPU logits on a
#                                     512-token prompt (top-1 %, max |dlogit|) and rows
#                                     of two layers (max |dp|), 32 greedy tokens on both,
#                                     record and decode speed, and the speed of a
#                                     7B-shaped random llama; log to OUTDIR/forward.txt
#                                     (OUTDIR: bench/results/gpu_forward by default)
#
# Models: $KV_MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf) and
# $KV_GEMMA_MODEL (models/gemma-3-270m-q4_k_m.gguf); the parts that need one say
# "skipped" when it is absent.  The 7B-shaped model is written there (3.8 GB, /tmp).
# Without a device each section says so and stops.
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
    mkdir -p "$bundle/fixtures" "$bundle/bench"
    cp tests/fixtures/tiny_*.gguf "$bundle/fixtures/"
    cp bench/bench_prompt.txt "$bundle/bench/"
    # every shared library but the C library itself and CUDA's (cuBLAS alone is 600 MB),
    # which the device machine has: the binaries find CUDA's through their rpath
    ldd "$bundle/bin/kvsim" "$bundle/build/tests" | awk '/=> \//{print $3}' | sort -u |
        grep -v -E '/lib(c|m|dl|pthread|rt)\.so|ld-linux|/libcu(blas|blasLt|dart)\.so' |
        xargs -I{} cp -L {} "$bundle/lib/"
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

# Is there a CUDA device for this build?  (`kvtrace devices` says why not.)
have_device() {
    local line
    line=$("$1"/bin/kvtrace devices 2>&1 | grep '^cuda:')
    echo "$line"
    case "$line" in "cuda: 0 devices"*) return 1 ;; esac
}

# "prompt: N tokens, X tokens/s; generated: M tokens, Y tokens/s" of `kvtrace run`, with
# the share of a roofline: prefill FLOP/s of 2 x params per token against the fp16
# tensor-core peak, decode bytes/s of the fp16 weights per token against HBM bandwidth
# (H200: 989 TFLOP/s dense, 4.8 TB/s).
speeds() {
    local err=$1 params=$2
    grep '^prompt:' "$err"
    awk -v p="$params" '/^prompt:/ {
        gsub(/[,;]/, ""); pre = $4; dec = $9
        printf "  prefill %.0f tok/s = %.1f%% of 989 TFLOP/s; decode %.1f tok/s = %.1f%% of 4.8 TB/s\n",
               pre, 100 * pre * 2 * p / 989e12, dec, 100 * dec * 2 * p / 4.8e12 }' "$err"
}

forward() {
    local out repo box=/tmp/kv-gpu-check M G c
    repo=$(pwd)
    out=$(readlink -f "$1")
    M=$(readlink -f "${KV_MODEL:-$repo/models/SmolLM2-135M-Instruct.Q4_1.gguf}" 2>/dev/null)
    G=$(readlink -f "${KV_GEMMA_MODEL:-$repo/models/gemma-3-270m-q4_k_m.gguf}" 2>/dev/null)
    [ -d "$box/bin" ] || { mkdir -p "$box" && tar -xJf "$repo/.devlib/bundle.tar.xz" -C "$box"; }
    mkdir -p "$out" "$box/csv" && c=$box/csv
    cd "$box" || return 1
    export LD_LIBRARY_PATH=$box/lib
    echo "== forward pass: CUDA vs CPU ($(date -u +%FT%TZ))"
    if ! have_device "$box"; then
        echo "no CUDA device: the forward section is skipped (nothing was measured)"
        return 0
    fi
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
    [ -f "$M" ] || { echo "SmolLM2 ($M) is absent: its figures are skipped"; M=; }
    [ -f "$G" ] || { echo "Gemma 3 ($G) is absent: its figures are skipped"; G=; }
    echo "-- unit: shared rules on the CPU; logits (top-1, max |dlogit|) and rows of two layers"
    KV_ROOT=$box KV_FIXTURES=$box/fixtures KV_BIN=$box/bin ${M:+KV_MODEL=$M} ${G:+KV_GEMMA_MODEL=$G} \
        ./build/tests --filter 'gpu_forward/*' --verbose --jobs 1 2>&1 |
        grep -E '^\[(PASS|FAIL|SKIP)|FORWARD|Assert|Synthesis|^\[----\] +[^ ]'
    if [ -n "$M" ]; then
        echo "-- SmolLM2: 32 greedy tokens after 512 prompt tokens, CPU then CUDA"
        head -c 2300 bench/bench_prompt.txt > "$c/p512.txt"
        for d in cpu cuda; do
            ./bin/kvtrace run "$M" --prompt-file "$c/p512.txt" --max-new-tokens 32 --device $d \
                > "$c/gen_$d.txt" 2> "$c/gen_$d.err"
            echo "$d: $(tr '\n' ' ' < "$c/gen_$d.txt" | head -c 200)"
            speeds "$c/gen_$d.err" 1.35e8
        done
        cmp -s "$c/gen_cpu.txt" "$c/gen_cuda.txt" && echo "32 GREEDY TOKENS: IDENTICAL" ||
            echo "32 greedy tokens: the texts differ (see above)"
        echo "-- SmolLM2: record bench_prompt.txt row-free (~2048 tokens), CPU then CUDA; decode at 2048"
        for d in cpu cuda; do
            timed ./bin/kvtrace record "$M" --prompt-file bench/bench_prompt.txt \
                --max-new-tokens 32 --device $d --force -o "$c/rec_$d.h5"
            ./bin/kvtrace info "$c/rec_$d.h5" 2>&1 | head -1
            ./bin/kvtrace run "$M" --prompt-file bench/bench_prompt.txt --max-new-tokens 64 \
                --device $d > /dev/null 2> "$c/run_$d.err"
            speeds "$c/run_$d.err" 1.35e8
        done
    fi
    echo "-- 7B-shaped random llama (LLaMA-2-7B shapes, Q4_0): speed only"
    timed env KV_SYNTH_GGUF=/tmp/kv-s7b.gguf ./build/tests --filter 'gpu_forward/write_the_7b*' --jobs 1
    head -c 2000 bench/bench_prompt.txt > "$c/p2k.txt"
    timed ./bin/kvtrace run /tmp/kv-s7b.gguf --prompt-file "$c/p2k.txt" --max-new-tokens 64 \
        --device cuda 2> "$c/s7b.err"
    speeds "$c/s7b.err" 6.74e9
    rm -f /tmp/kv-s7b.gguf
}

case "${1:-}" in
pack) pack ;;
run) mkdir -p "${2:?OUTDIR}" && { (run "$2"); (forward "$2"); } 2>&1 | tee "$2/log.txt" ;;
forward)
    out=${2:-bench/results/gpu_forward}
    mkdir -p "$out" && forward "$out" 2>&1 | tee "$out/forward.txt" ;;
*) echo "usage: $0 pack | run OUTDIR | forward [OUTDIR]" >&2; exit 2 ;;
esac
