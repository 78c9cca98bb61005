#!/usr/bin/env bash
# build_llama_cpp.sh: builds llama.cpp (CPU only) into build/llama.cpp so that
# `make bench` can put a llama.cpp column beside our decode, prefill and memory
# figures (issue 20). The source is the llama.cpp tree that PyPI's
# llama-cpp-python source distribution bundles (vendor/llama.cpp), fetched with
# pip, so no git remote is needed. Never used by `make test`.
#
# Usage: scripts/build_llama_cpp.sh [VERSION]   (default: newest on PyPI)
# Result: build/llama.cpp/bin/llama-bench and build/llama.cpp/VERSION
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/build/llama.cpp"
work="$root/build/llama.cpp.src"
pip=${PIP:-pip}
spec="llama-cpp-python${1:+==$1}"

command -v cmake >/dev/null || {
    echo "build_llama_cpp.sh: cmake is missing (apt-get install -y cmake)" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
"$pip" download --no-binary :all: --no-deps -d "$work" "$spec"
tarball=$(ls "$work"/llama_cpp_python-*.tar.gz | head -n1)
tar -xzf "$tarball" -C "$work"
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp | head -n1)
version=$(basename "$(dirname "$(dirname "$src")")")

# CPU only, tuned for this machine (-DGGML_NATIVE=ON), no CUDA/Metal/curl; only the
# tool we time (about 25 minutes on 2 shared cores).
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF
cmake --build "$work/build" -j "${JOBS:-2}" --target llama-bench
mkdir -p "$dest/bin"
cp "$work/build/bin/llama-bench" "$dest/bin/"
echo "$version" > "$dest/VERSION"
echo "built $version into $dest/bin"
