#!/usr/bin/env bash
# Everything this project still has to measure on a GPU, in the order that pays when GPU time is
# short: the CUDA tests (half a minute; tests/test_cuda_parity.py names the stage where CUDA and
# the CPU part), packed prompts against one pass per task on SmolLM2 (bench/letter_packing.py,
# a few minutes), the Lang1 shapes (2-3 minutes on an H200; the 1B shape at batch 32 for the 30 %
# MFU goal), then the decoder's full transfer protocol without Ray (about 12 minutes on an H200
# with one pass per task; packed prompts should shorten it). Each step has its own time limit and
# writes its log to OUT (default runs/gpu-checks); the benches also write bench/results/.
#
#     bash bench/gpu_checks.sh [OUT]
#     STEPS="tests shapes" bash bench/gpu_checks.sh     # a subset
set -u
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-checks}
mkdir -p "$out"
steps=${STEPS:-tests packing shapes transfer}
export PYTHONUNBUFFERED=1
started=$(date +%s)
step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $? at $(( $(date +%s) - started )) s (log $out/$name.log)"
}
for s in $steps; do  # every name checked before any step runs
    case $s in tests|packing|shapes|transfer) ;; *)
        echo "unknown step $s; expected tests, packing, shapes or transfer" >&2; exit 2 ;; esac
done
for s in $steps; do
    case $s in
        tests) step tests 300 python -m pytest -q -p no:cacheprovider -rs -m gpu ;;
        packing) step packing 600 python bench/letter_packing.py --device cuda --batch 16 \
                     --steps 5 --results letter_packing_gpu ;;
        shapes) step shapes 600 python bench/lang1_shapes.py --shapes lang1-100m lang1-1b lang1-7b \
                    --batch 8 --length 512
                step shapes32 300 python bench/lang1_shapes.py --shapes lang1-1b --batch 32 \
                    --length 512 --arms non-dp --results lang1_shapes_batch32 ;;
        transfer) step transfer 1800 python bench/transfer.py --in-process --profile decoder \
                      --regimes federated,pooled --results transfer_decoder_gpu ;;
    esac
done
