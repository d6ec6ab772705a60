#!/usr/bin/env bash
# One GPU task run of `para train` from two source trees, same seed: COPA, PARA r=12, seed 1, lr 3e-3
# (the committed COPA adapter's recipe), then both adapters scored on the whole dev split by the NEW tree's
# `para eval`, so only the training code differs. A few minutes on one H200.
#
#   git archive <old commit> parapeft | (mkdir -p before && tar -x -C before)   # the old tree, untracked
#   bash benchmarks/quality/before_after.sh before . runs/before-after
#
# Prints one line per side and writes OUT/<side>/{summary.json,dev_eval.json}; record the lines in
# benchmarks/quality/README.md ("Before and after").
set -euo pipefail
OLD_SRC=$(cd "${1:?old source tree (holding parapeft/)}" && pwd)
NEW_SRC=$(cd "${2:?new source tree}" && pwd)
OUT=${3:-runs/before-after}
PYTHON=${PYTHON:-python}
# The task data: $PARA_DATA, else shared/data beside or inside the new tree.
if [ -z "${PARA_DATA:-}" ]; then
  for candidate in "$NEW_SRC/../shared/data" "$NEW_SRC/shared/data"; do
    [ -d "$candidate" ] && PARA_DATA=$(cd "$candidate" && pwd) && break
  done
fi
export PARA_DATA=${PARA_DATA:?no task data: set PARA_DATA}
TRAIN_ARGS=(train --model smollm2-135m --task copa --method para --seed 1 --lr 3e-3 --rank 12 --pooler mean
            --epochs 3 --batch-size 16 --evals 3 --no-progress)
# A CPU smoke check of the script itself: SMOKE=1 trains 2 steps and scores 8 dev examples.
[ "${SMOKE:-0}" = 1 ] && TRAIN_ARGS+=(--max-steps 2 --train-limit 32 --eval-limit 8) && EVAL_LIMIT=(--limit 8) || EVAL_LIMIT=()

for side in old new; do
  src=$OLD_SRC; [ "$side" = new ] && src=$NEW_SRC
  rm -rf "$OUT/$side"
  start=$(date +%s)
  PYTHONPATH="$src" "$PYTHON" -m parapeft.cli.main "${TRAIN_ARGS[@]}" --out "$OUT/$side" > "$OUT.$side.train.log" 2>&1 \
    || { tail -20 "$OUT.$side.train.log"; exit 1; }
  PYTHONPATH="$NEW_SRC" "$PYTHON" -m parapeft.cli.main eval --task copa --split dev --adapter "$OUT/$side/best" \
    --model smollm2-135m --output "$OUT/$side/dev_eval.json" --no-progress "${EVAL_LIMIT[@]}" > "$OUT.$side.eval.log" 2>&1 \
    || { tail -20 "$OUT.$side.eval.log"; exit 1; }
  PYTHONPATH="$NEW_SRC" "$PYTHON" - "$OUT/$side" "$side" "$(( $(date +%s) - start ))" <<'EOF'
import json, sys
from pathlib import Path
run, side, wall = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
summary = json.loads((run / "summary.json").read_text())
dev = json.loads((run / "dev_eval.json").read_text())["metrics"]
print(f"{side}: best step {summary['best_step']}/{summary['steps']}, selection metric {summary['dev_metric']:.4f}, "
      f"dev accuracy {dev['accuracy']:.4f}, loglik accuracy {dev['loglik_accuracy']:.4f}, wall {wall} s")
EOF
done
