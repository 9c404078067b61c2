#!/usr/bin/env bash
# The first run of the paper's protocols on a lent GPU, budgeted: a reduced row of Table 1
# (HMDB51-VISPR, judged on PA-HMDB51, local Video-LLaVA) and of Table 3 (OK-VQA with both privacy
# test sets, local LLaVA-1.5), each trained for STEPS steps and evaluated on NUM_TEST examples with
# judges of JUDGE_STEPS steps. It prints each run's seconds per step, the black box's seconds per
# step, peak GPU memory and the projected GPU hours of the full table (the formula:
# benchmarks/gpu_run_report.py). Without the weights or the data it names every missing path and
# exits 2 before starting anything.
#
#   LLAVA=/models/llava-1.5-7b-hf VIDEO_LLAVA=/models/Video-LLaVA-7B-hf \
#   DATA_DIR=/data/tensorflow_datasets bash benchmarks/gpu_run.sh [OUT]
#
# The datasets go in $DATA_DIR/downloads/manual as the README's table says. Settings (environment):
#   TABLES="1 3"   which reduced rows to run          STEPS=200       training steps of each
#   NUM_TEST=64    test examples of each evaluation   JUDGE_STEPS=300 steps of each judge
#   LIMIT_S=3000   seconds each launcher may take     DEVICE=cuda     where the MLLM runs
#   EXTRA_FLAGS    more training flags, space-separated  PYTHON=python3
# Workdirs, logs, the memory log and report.jsonl go to OUT (default gpu_run_out).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU: allocate on demand, so the memory log shows what is used.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python="${PYTHON:-python3}"
tables="${TABLES:-1 3}"
steps="${STEPS:-200}"
num_test="${NUM_TEST:-64}"
judge_steps="${JUDGE_STEPS:-300}"
limit="${LIMIT_S:-3000}"
device="${DEVICE:-cuda}"
out="${1:-gpu_run_out}"
read -r -a extra <<<"${EXTRA_FLAGS:-}"

# shellcheck disable=SC2086  # $tables is a list of table numbers
"$python" benchmarks/gpu_run_report.py check --tables $tables \
  --llava="${LLAVA:-}" --video-llava="${VIDEO_LLAVA:-}" --data-dir="${DATA_DIR:-}" || exit 2
mkdir -p "$out"

memory_log="$out/gpu_memory.csv"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 1000 >"$memory_log" &
  smi=$!
  trap 'kill $smi 2>/dev/null || true' EXIT
fi

runs=()
for table in $tables; do
  case $table in
    1) config="configs/hmdb51_vispr.py:model=$VIDEO_LLAVA" ;;
    3) config="configs/okvqa.py:oracle=hf,model=$LLAVA" ;;
  esac
  w="$out/table$table"
  if [ -e "$w" ]; then
    echo "$w exists: give another OUT, or remove it to run again" >&2
    exit 2
  fi
  flags=(
    "--config=$config" "--workdir=$w" "--config.data.data_dir=$DATA_DIR"
    "--config.oracle.hf.device=$device" "--config.total_steps=$steps"
    "--config.checkpoint_every=$steps" "--config.data.num_test=$num_test"
    "--config.eval.judges.resnet50.steps=$judge_steps" "${extra[@]}"
  )
  echo "=== table $table: train ($steps steps)"
  timeout "$limit" "$python" launch/train.py "${flags[@]}" >"$out/table$table.train.log" 2>&1 \
    || { tail -n 20 "$out/table$table.train.log"; echo "=== table $table: training failed"; exit 1; }
  echo "=== table $table: evaluate ($num_test test examples)"
  start=$SECONDS
  timeout "$limit" "$python" launch/eval.py "--workdir=$w" >"$out/table$table.eval.log" 2>&1 \
    || { tail -n 20 "$out/table$table.eval.log"; echo "=== table $table: evaluation failed"; exit 1; }
  echo $((SECONDS - start)) >"$w/eval_seconds"
  tail -n 1 "$out/table$table.eval.log"
  runs+=("--run" "$table=$w")
done

"$python" benchmarks/gpu_run_report.py report "${runs[@]}" --memory-log="$memory_log" \
  --data-dir="$DATA_DIR" | tee "$out/report.jsonl"
