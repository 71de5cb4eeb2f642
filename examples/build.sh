#!/usr/bin/env bash
# Build every committed WASI workload from source, byte-reproducibly.
#
#   examples/build.sh                 rebuild the committed .wasm files in place
#                                     (and the native sha256sum under build/native/)
#   examples/build.sh --check         rebuild into a temporary directory and compare
#                                     with examples/SHA256SUMS; also check that the
#                                     committed files match it; exit 1 on any mismatch
#   examples/build.sh --update-sums   rebuild in place, then rewrite examples/SHA256SUMS
#   examples/build.sh --out DIR       build into DIR, laid out like the repository
#                                     (DIR/examples/hello/hello.wasm, ...)
#
# Toolchain (Debian 12 packages, installed by scripts/bootstrap): clang-14, lld-14,
# wasi-libc, libclang-rt-14-dev-wasm32, rustc 1.63 and libstd-rust-dev-wasm32.
# Debian's rustc is called by its full path, because a rustup toolchain earlier
# on PATH usually has no wasm32-wasi standard library.  The digests in
# SHA256SUMS hold for exactly these package versions; another compiler or
# wasi-libc gives other bytes, and --check says so.
#
# What makes the bytes reproducible:
#   * every compiler runs from the repository root with relative source paths,
#     and the root is remapped to "." (-ffile-prefix-map, --remap-path-prefix),
#     so the checkout location never reaches the binary (Rust embeds source
#     paths in panic messages);
#   * symbols are stripped, and the output path is never embedded;
#   * __DATE__/__TIME__ are refused (-Werror=date-time), so no build time enters;
#     neither compiler reads SOURCE_DATE_EPOCH for these outputs, but it is set
#     to 0 for any tool that might;
#   * the locale and timezone are fixed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SUMS=examples/SHA256SUMS

CC_WASM=${CC_WASM:-clang-14}
RUSTC_WASM=${RUSTC_WASM:-/usr/bin/rustc}
export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=0

C_FLAGS=(--target=wasm32-wasi -O2 -Wl,--strip-all
    "-ffile-prefix-map=$ROOT=." -Werror=date-time -Wall -Wextra)
RUST_FLAGS=(--edition 2021 --target wasm32-wasi -C opt-level=2 -C strip=symbols
    "--remap-path-prefix=$ROOT=.")
NATIVE_FLAGS=(-O2 "-ffile-prefix-map=$ROOT=." -Werror=date-time -Wall -Wextra)

# C workloads: "source output [extra link flags]".  None needs libm today; a
# workload that does adds -lm as its third word.
C_TARGETS=(
    "examples/hello/hello.c examples/hello/hello.wasm"
    "examples/sha256sum/sha256sum.c examples/sha256sum/sha256sum.wasm"
    "tests/workloads/alloc.c tests/workloads/alloc.wasm"
    "tests/workloads/bigout.c tests/workloads/bigout.wasm"
    "tests/workloads/catstdin.c tests/workloads/catstdin.wasm"
    "tests/workloads/env.c tests/workloads/env.wasm"
    "tests/workloads/exitcode.c tests/workloads/exitcode.wasm"
    "tests/workloads/readfile.c tests/workloads/readfile.wasm"
    "tests/workloads/slow.c tests/workloads/slow.wasm"
    "tests/workloads/spin.c tests/workloads/spin.wasm"
    "tests/workloads/trap.c tests/workloads/trap.wasm"
)
# Rust workloads: "crate-name main-source output".
RUST_TARGETS=(
    "news2 examples/news2/src/main.rs examples/news2/news2.wasm"
)

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

require_toolchain() {
    if ! command -v "$CC_WASM" >/dev/null; then
        echo "build.sh: $CC_WASM not found (apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)" >&2
        exit 3
    fi
    if [ ! -x "$RUSTC_WASM" ] || [ ! -d "$("$RUSTC_WASM" --print sysroot)/lib/rustlib/wasm32-wasi" ]; then
        echo "build.sh: $RUSTC_WASM with the wasm32-wasi target not found (apt-get install rustc libstd-rust-dev-wasm32)" >&2
        exit 3
    fi
}

# build_all OUT: build every workload into OUT (absolute), mirroring the repository layout.
build_all() {
    local out=$1 spec src dst extra crate
    cd "$ROOT"
    for spec in "${C_TARGETS[@]}"; do
        read -r src dst extra <<<"$spec"
        mkdir -p "$out/$(dirname "$dst")"
        # shellcheck disable=SC2086  # extra holds zero or more link flags
        "$CC_WASM" "${C_FLAGS[@]}" -o "$out/$dst" "$src" $extra
    done
    for spec in "${RUST_TARGETS[@]}"; do
        read -r crate src dst <<<"$spec"
        mkdir -p "$out/$(dirname "$dst")"
        "$RUSTC_WASM" "${RUST_FLAGS[@]}" --crate-name "$crate" --crate-type bin -o "$out/$dst" "$src"
    done
    build_native "$out"
}

# The native sha256sum is for comparing Keep overhead against the host CPU;
# it is never committed (build/ is ignored), and its absence is not an error.
build_native() {
    local out=$1 cc
    for cc in "${NATIVE_CC:-}" gcc clang-14 cc; do
        if [ -n "$cc" ] && command -v "$cc" >/dev/null; then
            mkdir -p "$out/build/native"
            "$cc" "${NATIVE_FLAGS[@]}" -o "$out/build/native/sha256sum" examples/sha256sum/sha256sum.c
            return 0
        fi
    done
    echo "build.sh: no native C compiler found; skipped build/native/sha256sum" >&2
}

wasm_outputs() {
    local spec a b c
    for spec in "${C_TARGETS[@]}"; do
        read -r a b _ <<<"$spec"
        echo "$b"
    done
    for spec in "${RUST_TARGETS[@]}"; do
        read -r a b c <<<"$spec"
        echo "$c"
    done
}

write_sums() {
    cd "$ROOT"
    # shellcheck disable=SC2046  # one path per line, none with spaces
    sha256sum $(wasm_outputs | sort) >"$SUMS"
    echo "build.sh: wrote $SUMS" >&2
}

# check_tree DIR: compare DIR's .wasm files with SHA256SUMS; print mismatches.
check_tree() {
    local dir=$1 what=$2 bad=0 want path got
    while read -r want path; do
        if [ ! -f "$dir/$path" ]; then
            echo "MISSING  $path ($what)"
            bad=1
            continue
        fi
        got=$(sha256sum "$dir/$path" | cut -d' ' -f1)
        if [ "$got" != "$want" ]; then
            echo "DIFFERS  $path ($what): expected $want, got $got"
            bad=1
        fi
    done <"$ROOT/$SUMS"
    return $bad
}

toolchain_versions() {
    "$CC_WASM" --version | head -n1
    "$RUSTC_WASM" --version
    if command -v dpkg-query >/dev/null; then
        dpkg-query -W -f='${Package} ${Version}\n' wasi-libc libclang-rt-14-dev-wasm32 \
            lld-14 libstd-rust-dev-wasm32 2>/dev/null || true
    fi
}

mode=inplace
out=
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --update-sums) mode=update ;;
    --out)
        [ $# -eq 2 ] || usage
        mode=out
        mkdir -p "$2"
        out=$(cd "$2" && pwd -P)
        ;;
    *) usage ;;
esac
[ $# -le 1 ] || [ "$mode" = out ] || usage

require_toolchain
case "$mode" in
    inplace)
        build_all "$ROOT"
        ;;
    update)
        build_all "$ROOT"
        write_sums
        ;;
    out)
        build_all "$out"
        ;;
    check)
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        build_all "$tmp"
        status=0
        check_tree "$ROOT" committed || status=1
        check_tree "$tmp" rebuilt || status=1
        if [ "$status" -ne 0 ]; then
            echo "build.sh: the workloads do not match $SUMS. Toolchain used:" >&2
            toolchain_versions >&2
            exit 1
        fi
        echo "build.sh: all $(wc -l <"$ROOT/$SUMS") workloads rebuilt byte-identical to $SUMS"
        ;;
esac
