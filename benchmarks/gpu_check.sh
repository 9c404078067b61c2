#!/usr/bin/env bash
# The accelerator checks in one run (a few minutes on one GPU): the framework overhead beside a
# 50 ms black box, the training step's numerics against the CPU, and the anonymizer's throughput
# against the PyTorch replica. Each log goes to ${LOGS:-.}/<name>.log; one failing check does not
# stop the others, and the exit status counts the failures.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, with anonymax importable
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU in the throughput check: allocate on demand.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
logs="${LOGS:-.}"
python="${PYTHON:-python3}"
failures=0

check() {  # check NAME SECONDS ARGS...: one benchmark under a time limit, logged
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*"
  timeout "$limit" "$python" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  grep -v -e '^WARNING' -e '^I0000' -e '^W0000' "$logs/$name.log" | tail -n 12
  [ $rc -eq 0 ] || { echo "=== $name FAILED (exit $rc)"; failures=$((failures + 1)); }
}

"$python" - <<'EOF'
import jax, flax, optax, orbax.checkpoint as ocp
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "orbax", ocp.__version__, "devices", jax.devices())
EOF
check overhead_smoke 150 benchmarks/overhead.py --steps 30
check overhead_default 200 benchmarks/overhead.py --variant "" --steps 20
check agreement_default 150 benchmarks/backend_agreement.py --steps 3
check agreement_highest 150 benchmarks/backend_agreement.py --steps 3 --precision highest
check throughput_synthetic 150 benchmarks/anonymizer_throughput.py --iters 50
check throughput_realdata 200 benchmarks/anonymizer_throughput.py \
  --features 64,128,256,512,512 --groups 8 --image-size 224 --batch 16 --iters 20
exit $failures
