#!/usr/bin/env bash
# Builds the C kernels with AddressSanitizer and UndefinedBehaviorSanitizer and runs
# csrc/selftest.c (every cell, variant, dtype and flag on exactly sized heap buffers, one and two
# threads) once per instruction-set path, then once more built with ThreadSanitizer (the thread
# team's waits and barriers). Exits non-zero on any sanitizer report or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-gcc}
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

# -O0: the instruction-set files take ten times longer to build with -O1 under sanitizers
FLAGS=(-O0 -g -std=c11 -ffp-contract=fast -fno-omit-frame-pointer
       -fsanitize=address,undefined -fno-sanitize-recover=all -pthread)

SOURCES=(status.c workspace.c validate.c cpu.c threads.c rnn.c lstm.c gru.c
         isa_generic.c isa_avx2.c isa_avx512.c selftest.c)
# build_selftest NAME FLAGS...: compiles every source in parallel and links $BUILD/NAME
build_selftest() {
    local name=$1; shift
    mkdir -p "$BUILD/$name.o"
    local pids=()
    for src in "${SOURCES[@]}"; do
        "$CC" "$@" -Icsrc -c "csrc/$src" -o "$BUILD/$name.o/${src%.c}.o" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    "$CC" "$@" "$BUILD/$name.o"/*.o -lm -o "$BUILD/$name"
}
build_selftest selftest "${FLAGS[@]}"

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
case "$("$BUILD/selftest" --isa)" in
    avx512) paths=("" "avx512" "avx512,avx2") ;;
    avx2) paths=("" "avx2") ;;
    *) paths=("") ;;
esac
for disable in "${paths[@]}"; do
    PYRNN_DISABLE_CPU_FEATURES="$disable" "$BUILD/selftest"
done
build_selftest selftest_tsan -O1 -g -std=c11 -ffp-contract=fast -fsanitize=thread -pthread
TSAN_OPTIONS=halt_on_error=1 "$BUILD/selftest_tsan"
echo "sanitize: clean"
