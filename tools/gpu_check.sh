#!/usr/bin/env bash
# The GPU check of issue 14: every CUDA path of panoptic_ocr, run once on a GPU machine, with
# one report file. See docs/gpu.md.
#
#   bash tools/gpu_check.sh [--report PATH]      # on a GPU (about 8 minutes at most)
#   bash tools/gpu_check.sh --cpu-dry-run        # the same steps on the CPU, tiny sizes
#   bash tools/gpu_check.sh --list               # the steps and their commands, nothing run
#
# Options:
#   --report PATH   the report (Markdown; default output/gpu_check/report.md); every step's
#                   full log goes to PATH's folder, logs/<step>.log
#   --skip-setup    do not run the set-up step (it is recorded as skipped)
#   --budget S      seconds for all steps together (default 465, so that the whole check
#                   ends within 8 minutes); each step runs under `timeout` with the smaller
#                   of its own limit and what is left; steps after that are "not run"
#
# Environment: as the Makefile. PANOPTIC_OCR_ENV=current uses the python on PATH ($PYTHON,
# default python3), otherwise ./.venv/bin/python; PY overrides both. Nothing is installed
# beyond the README set-up (`make setup`, i.e. tools/setup_env.sh, honouring TORCH_SPEC).
#
# Every step runs even when an earlier one failed. Exit status: 0 if every step passed,
# 1 otherwise, 2 for a bad command line.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE=gpu
REPORT="output/gpu_check/report.md"
SKIP_SETUP=0
LIST=0
BUDGET=465
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) MODE=cpu-dry-run ;;
    --report) REPORT="${2:?--report needs a path}"; shift ;;
    --report=*) REPORT="${1#--report=}" ;;
    --skip-setup) SKIP_SETUP=1 ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --list) LIST=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check.sh: --budget needs whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
  shift
done

if [ -z "${PY:-}" ]; then
  if [ "${PANOPTIC_OCR_ENV:-venv}" = "current" ]; then PY="$(command -v "${PYTHON:-python3}")"; else PY="$ROOT/.venv/bin/python"; fi
fi

QUICKSTART=configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml
HRNET=configs/cityscapes/semantic/ocr_HRNetV2W48_bs8_crop769_poly_40k.yaml
R101=configs/cityscapes/semantic/ocr_R101_os8_bs8_crop769_poly_40k.yaml
REPORT_DIR="$(dirname "$REPORT")"
TRAIN_DIR="$REPORT_DIR/amp_toy_training"

# ---------------------------------------------------------------------------------------------
# The steps: name | timeout (s) | command. GPU and CPU dry run have the same steps; the dry run
# has tiny sizes, --device cpu, and no AMP.
# ---------------------------------------------------------------------------------------------
STEP_NAMES=()
STEP_TIMEOUTS=()
STEP_COMMANDS=()
step() { STEP_NAMES+=("$1"); STEP_TIMEOUTS+=("$2"); STEP_COMMANDS+=("$3"); }

if [ "$SKIP_SETUP" = 1 ]; then
  step setup 5 "echo 'skipped (--skip-setup)'"
else
  step setup 120 "make setup"
fi
step environment 30 "\"$PY\" -c 'import torch, detectron2, platform; print(\"python\", platform.python_version(), \"torch\", torch.__version__, \"cuda build\", torch.version.cuda, \"detectron2\", detectron2.__version__); print(\"cuda available\", torch.cuda.is_available(), \"devices\", torch.cuda.device_count(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], \"cudnn\", torch.backends.cudnn.version())'; command -v nvidia-smi >/dev/null && nvidia-smi || echo 'nvidia-smi: not found'"
step cuda-tests 170 "\"$PY\" -m pytest -m cuda -ra -q -p no:cacheprovider tests/test_cuda.py"
FPS_CONFIGS="--configs $HRNET $R101 --names HRNetV2-W48+OCR R101+OCR"
if [ "$MODE" = gpu ]; then
  step heads-float32 50 "\"$PY\" tools/benchmark_heads.py --device cuda --dtype float32 --runs 20 --warmup 5"
  step heads-float16 50 "\"$PY\" tools/benchmark_heads.py --device cuda --dtype float16 --runs 20 --warmup 5"
  # float16 rows, plus float32 and bfloat16 of the same weights (--compare-dtype: speed-up, agreement).
  step fps 120 "\"$PY\" tools/benchmark_fps.py $FPS_CONFIGS --size 1024,2048 --device cuda --dtype float16 --compare-dtype bfloat16 --runs 10 --warmup 3"
  step amp-training 150 "\"$PY\" train_net.py --config-file $QUICKSTART SOLVER.AMP.ENABLED True SOLVER.MAX_ITER 200 MODEL.DEVICE cuda OUTPUT_DIR $TRAIN_DIR"
else
  step heads-float32 60 "\"$PY\" tools/benchmark_heads.py --device cpu --dtype float32 --input 1,32,9,11 --runs 1 --warmup 0 --threads 1"
  step heads-float16 60 "\"$PY\" tools/benchmark_heads.py --device cpu --dtype float16 --input 1,32,9,11 --runs 1 --warmup 0 --threads 1"
  step fps 120 "\"$PY\" tools/benchmark_fps.py $FPS_CONFIGS --size 32,64 --device cpu --dtype float16 --compare-dtype bfloat16 --runs 1 --warmup 0 --threads 1 --no-memory"
  step amp-training 120 "\"$PY\" train_net.py --config-file $QUICKSTART SOLVER.AMP.ENABLED False SOLVER.MAX_ITER 5 MODEL.DEVICE cpu SOLVER.IMS_PER_BATCH 2 INPUT.CROP.SIZE '(64, 64)' DATALOADER.NUM_WORKERS 0 VIS.NUM_IMAGES 0 MODEL.OCR.MID_CHANNELS 32 MODEL.OCR.KEY_CHANNELS 16 MODEL.SEM_SEG_HEAD.AUX_CHANNELS 32 INPUT.MIN_SIZE_TEST 64 INPUT.MAX_SIZE_TEST 64 OUTPUT_DIR $TRAIN_DIR"
fi
# The training's metrics.json: finite losses, the last 10 below the first 10, an mIoU.
step training-metrics 30 "\"$PY\" -c 'import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
loss = [r[\"total_loss\"] for r in rows if \"total_loss\" in r]
miou = [r[k] for r in rows for k in r if k.endswith(\"mIoU\")]
n = min(10, max(1, len(loss) // 2))
first, last = sum(loss[:n]) / n, sum(loss[-n:]) / n
print(\"iterations logged\", len(loss), \"mean loss first/last\", n, round(first, 4), round(last, 4), \"mIoU\", miou[-1:] or None)
ok = loss and all(math.isfinite(v) for v in loss) and miou
ok = ok and (last < first or sys.argv[2] == \"cpu-dry-run\")
sys.exit(0 if ok else 1)' $TRAIN_DIR/metrics.json $MODE"

if [ "$LIST" = 1 ]; then
  for i in "${!STEP_NAMES[@]}"; do
    printf '%s\t%s\t%s\n' "${STEP_NAMES[$i]}" "${STEP_TIMEOUTS[$i]}" "${STEP_COMMANDS[$i]}"
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Run every step; the report is rewritten after each one (a killed run keeps what it did).
# ---------------------------------------------------------------------------------------------
mkdir -p "$REPORT_DIR/logs"
rm -rf "$TRAIN_DIR"
BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT
STATUSES=()
SECONDS_TAKEN=()
START=$(date +%s)
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git status --porcelain 2>/dev/null | head -c1 | wc -c)"

write_report() {
  {
    echo "# GPU check report"
    echo
    echo "- mode: $MODE"
    echo "- started: $(date -u -d "@$START" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || date -u)"
    echo "- host: $(hostname), commit $COMMIT$([ "$DIRTY" != 0 ] && echo ' (working tree modified)')"
    echo "- python: $PY"
    echo "- budget: ${BUDGET}s for all steps; full logs in logs/"
    echo
    echo "| step | status | exit | seconds |"
    echo "|---|---|---:|---:|"
    for i in "${!STATUSES[@]}"; do
      echo "| ${STEP_NAMES[$i]} | ${STATUSES[$i]} | ${EXITS[$i]} | ${SECONDS_TAKEN[$i]} |"
    done
    echo
    cat "$BODY"
  } > "$REPORT.tmp" && mv "$REPORT.tmp" "$REPORT"
}

EXITS=()
FAILED=0
for i in "${!STEP_NAMES[@]}"; do
  name="${STEP_NAMES[$i]}"
  cmd="${STEP_COMMANDS[$i]}"
  log="$REPORT_DIR/logs/$name.log"
  left=$((BUDGET - ($(date +%s) - START)))
  limit="${STEP_TIMEOUTS[$i]}"
  [ "$left" -lt "$limit" ] && limit="$left"
  echo "[gpu_check] $name (timeout ${limit}s)" >&2
  t0=$(date +%s)
  if [ "$limit" -lt 1 ]; then
    rc=124
    echo "not run: the ${BUDGET}s budget is spent" > "$log"
    status="not run (budget spent)"
  else
    timeout --kill-after=10 "$limit" bash -c "$cmd" > "$log" 2>&1 < /dev/null
    rc=$?
    if [ "$rc" = 0 ]; then status=passed
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="timed out (${limit}s)"
    else status=failed; fi
  fi
  [ "$rc" = 0 ] || FAILED=1
  STATUSES+=("$status")
  EXITS+=("$rc")
  SECONDS_TAKEN+=("$(( $(date +%s) - t0 ))")
  {
    echo "## $name"
    echo
    echo "Command (timeout ${limit}s):"
    echo
    echo '```'
    echo "$cmd"
    echo '```'
    echo
    echo "Exit status: $rc ($status), ${SECONDS_TAKEN[$i]} s. Output (last 80 lines; all of it in logs/$name.log):"
    echo
    echo '```'
    tail -n 80 "$log"
    echo '```'
    echo
  } >> "$BODY"
  write_report
done

echo "[gpu_check] report: $REPORT ($([ "$FAILED" = 0 ] && echo 'every step passed' || echo 'some steps failed'))" >&2
exit "$FAILED"
