#!/usr/bin/env bash
# Retrain the bundled model (models/world) from nothing on one GPU within a time budget, then
# bundle, evaluate and document it (models/world/MODEL.md).
#
#   scripts/train_world_model.sh            # every stage: vae, dit, captioner, bundle
#   scripts/train_world_model.sh dit        # one stage; run it again to resume it for another budget
#   scripts/train_world_model.sh vae dit bundle   # keep the committed captioner (models/captioner-world)
#
# models/captioner-world was trained 20,000 steps (about 2.5 hours on one CPU thread; figures in
# benchmarks/RESULTS.md "captioner"); a few minutes of the captioner stage train a weaker one.
# The bundle takes $CAPTIONER if set, else this run's captioner if it has one, else that one.
#
# Budgets in minutes per invocation (the trainer stops at the end of the step that spends it,
# checkpoints and exports; the same command resumes): VAE_MINUTES=7 DIT_MINUTES=14
# CAPTIONER_MINUTES=3. Bundle settings: N=10 clips per suite, DEVICE=cuda (evaluation; the timed
# main command always runs on the CPU), OUT=models/world, NOTE="how it was trained".
# SMOKE=1 runs the same stages on the CPU with the tiny configs and seconds-long budgets into
# runs/smoke/ (a check of the script itself, about two minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # works from a checkout without an install
KINETOSCOPE=(python -m kinetoscope.cli)
STAGES=("${@:-all}")
[[ "${STAGES[0]}" == all ]] && STAGES=(vae dit captioner bundle)

if [[ "${SMOKE:-0}" == 1 ]]; then
  RUNS=runs/smoke
  VAE_CONFIG=configs/vae-tiny.yaml; DIT_CONFIG=configs/dit-tiny.yaml; CAPTIONER_CONFIG=configs/captioner-tiny.yaml
  VAE_MINUTES=${VAE_MINUTES:-0.15}; DIT_MINUTES=${DIT_MINUTES:-0.15}; CAPTIONER_MINUTES=${CAPTIONER_MINUTES:-0.1}
  EXTRA=(--set sample_every=0)
  BUNDLE_OPTIONS=(--n "${N:-1}" --size 32x32 --frames 9 --timing-size 32x32 --timing-seconds 1 --device cpu)
  OUT=${OUT:-$RUNS/world}
  NOTE=${NOTE:-"A smoke test of scripts/train_world_model.sh: tiny configs trained for seconds on a CPU."}
else
  RUNS=runs
  VAE_CONFIG=configs/vae-world.yaml; DIT_CONFIG=configs/dit-world.yaml; CAPTIONER_CONFIG=configs/captioner-world.yaml
  VAE_MINUTES=${VAE_MINUTES:-7}; DIT_MINUTES=${DIT_MINUTES:-14}; CAPTIONER_MINUTES=${CAPTIONER_MINUTES:-3}
  EXTRA=()
  BUNDLE_OPTIONS=(--n "${N:-10}" --size 128x128 --frames 32 --device "${DEVICE:-cuda}")
  OUT=${OUT:-models/world}
  NOTE=${NOTE:-"Trained from nothing on one GPU by scripts/train_world_model.sh within a time budget (VAE ${VAE_MINUTES} min, DiT ${DIT_MINUTES} min, captioner ${CAPTIONER_MINUTES} min per invocation): far fewer steps than the paper's DiT-S, so expect its physics to be rough."}
fi
# Budgeted runs hold the learning rate after warm-up: a cosine schedule follows `steps`, and a
# run the clock ends early would stop in the middle of its decay.
CONSTANT=(--set schedule.kind=constant)

for stage in "${STAGES[@]}"; do
  echo "== $stage ($(date +%H:%M:%S))"
  case "$stage" in
    vae)
      "${KINETOSCOPE[@]}" train vae --config "$VAE_CONFIG" --set run_dir=$RUNS/vae-world \
        --set time_limit_minutes="$VAE_MINUTES" "${CONSTANT[@]}" "${EXTRA[@]}" ;;
    dit)
      "${KINETOSCOPE[@]}" train dit --config "$DIT_CONFIG" --set run_dir=$RUNS/dit-world \
        --set task.vae=$RUNS/vae-world/final --set time_limit_minutes="$DIT_MINUTES" "${CONSTANT[@]}" "${EXTRA[@]}" ;;
    captioner)
      "${KINETOSCOPE[@]}" train captioner --config "$CAPTIONER_CONFIG" --set run_dir=$RUNS/captioner-world \
        --set time_limit_minutes="$CAPTIONER_MINUTES" "${CONSTANT[@]}" "${EXTRA[@]}" ;;
    bundle)
      # The captioner this run trained, if it ran that stage; otherwise the committed one.
      captioner=${CAPTIONER:-$RUNS/captioner-world/final}
      [[ -d "$captioner" || -n "${CAPTIONER:-}" ]] || captioner=models/captioner-world
      "${KINETOSCOPE[@]}" bundle --model $RUNS/dit-world/final --captioner "$captioner" \
        --out "$OUT" --note "$NOTE" "${BUNDLE_OPTIONS[@]}" ;;
    *) echo "unknown stage $stage: use vae, dit, captioner, bundle or all" >&2; exit 2 ;;
  esac
done
