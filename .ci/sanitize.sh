#!/usr/bin/env bash
# Builds the C kernels with AddressSanitizer and UndefinedBehaviorSanitizer and runs
# csrc/selftest.c (every cell, variant, dtype and flag on exactly sized heap buffers, one and two
# threads) once per instruction-set path. Exits non-zero on any sanitizer report or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-gcc}
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

# -O0: the instruction-set files take ten times longer to build with -O1 under sanitizers
FLAGS=(-O0 -g -std=c11 -ffp-contract=fast -fno-omit-frame-pointer
       -fsanitize=address,undefined -fno-sanitize-recover=all)
if echo 'int main(void){return 0;}' | "$CC" -fopenmp -x c - -o "$BUILD/omp" 2>/dev/null; then
    FLAGS+=(-fopenmp)
fi

SOURCES=(status.c workspace.c validate.c cpu.c threads.c rnn.c lstm.c gru.c
         isa_generic.c isa_avx2.c isa_avx512.c selftest.c)
pids=()
for src in "${SOURCES[@]}"; do
    "$CC" "${FLAGS[@]}" -Icsrc -c "csrc/$src" -o "$BUILD/${src%.c}.o" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"$CC" "${FLAGS[@]}" "$BUILD"/*.o -lm -o "$BUILD/selftest"

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
case "$("$BUILD/selftest" --isa)" in
    avx512) paths=("" "avx512" "avx512,avx2") ;;
    avx2) paths=("" "avx2") ;;
    *) paths=("") ;;
esac
# the team's barrier measured under the sanitizers, and the thread decisions scaled by it (also
# by costs below the thresholds' 60 ns and past their 8x cap); then the decisions of a machine
# whose barrier costs what the thresholds assume, so the shapes meant for two threads get them
# however slow the instrumented barrier is
env -u PYRNN_BARRIER_NS "$BUILD/selftest" --barrier
PYRNN_BARRIER_NS=30 "$BUILD/selftest" --barrier
PYRNN_BARRIER_NS=2000 "$BUILD/selftest" --barrier
export PYRNN_BARRIER_NS=60
# a team that idled is left asleep by small sections (the runs below turn that rule off, so that
# the shapes meant for two threads get them however long the instrumented runs between take)
env -u PYRNN_TEAM_IDLE_NS "$BUILD/selftest" --idle
# a worker woken on its caller's CPU after idle moves itself off it
"$BUILD/selftest" --leave-cpu
for disable in "${paths[@]}"; do
    PYRNN_DISABLE_CPU_FEATURES="$disable" "$BUILD/selftest"
done
echo "sanitize: clean"
