#!/bin/sh
# check_layers.sh ROOT LAYER... — every #include "x.h" in a layer's folder must name a
# header of that folder or of a layer before it in the list (bottom first).  Prints
# each include that points up, with the file and line, and exits 1 when there is one.
# `make check-layers` runs it over the tree with the Makefile's LAYERS.
set -eu
root=$1
shift
rank=0
order=""
for layer in "$@"; do
    rank=$((rank + 1))
    order="$order $layer:$rank"
done

rank_of() {   # rank_of FOLDER: its position in the list, 0 when not a layer
    for pair in $order; do
        [ "${pair%%:*}" = "$1" ] && { echo "${pair##*:}"; return; }
    done
    echo 0
}

home_of() {   # home_of HEADER: the layer folder holding it, empty when none does
    for pair in $order; do
        [ -f "$root/${pair%%:*}/$1" ] && { echo "${pair%%:*}"; return; }
    done
    echo ""
}

bad=0
for layer in "$@"; do
    mine=$(rank_of "$layer")
    for file in "$root/$layer"/*.c "$root/$layer"/*.h "$root/$layer"/*.cu; do
        [ -f "$file" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
        sed 's/^\([0-9]*\):.*"\(.*\)".*/\1 \2/' > "${TMPDIR:-/tmp}/check_layers.$$" || true
        while read -r line header; do
            home=$(home_of "$header")
            [ -n "$home" ] || continue
            theirs=$(rank_of "$home")
            if [ "$theirs" -gt "$mine" ]; then
                echo "${file#$root/}:$line: includes \"$header\" from $home/, which is above $layer/ in the layer order ($*)"
                bad=1
            fi
        done < "${TMPDIR:-/tmp}/check_layers.$$"
        rm -f "${TMPDIR:-/tmp}/check_layers.$$"
    done
done
[ "$bad" = 0 ] || exit 1
echo "check-layers: every include points down ($*)"
