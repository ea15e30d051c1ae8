#!/usr/bin/env bash
# Train the bundled model (models/world) on two CPU cores, in legs, and bundle it with its model card.
#
#   scripts/train_world_model.sh                 # every stage: vae, latents, dit, bundle
#   scripts/train_world_model.sh dit bundle      # one more leg of the transformer, then bundle it
#
# Stages (each resumes where its run directory stopped; run a stage again for another budget):
#   vae      the `cpu` VAE (configs/vae-cpu.yaml) for VAE_MINUTES (default 25); in a later leg (no
#            VAE run left, a committed models/world) its decoder alone trains on
#            (configs/vae-cpu-decoder.yaml), so the encoder and the latents it wrote stay valid
#   latents  N clips of the world (default 8000) encoded once by that VAE (runs/latents-world)
#   dit      the transformer and text encoder (configs/dit-cpu.yaml) for DIT_MINUTES (default 60);
#            with no run directory it starts from the committed models/world when that was trained
#            on the same latents' VAE, so every leg carries the last one forward
#   bundle   fp16 copy into OUT (default models/world), evaluated, timed, with MODEL.md; the
#            committed captioner (models/captioner-world) ships with it
# SMOKE=1 runs the same stages with the tiny configs and seconds-long budgets into runs/smoke/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # works from a checkout without an install
KINETOSCOPE=(python -m kinetoscope.cli)
STAGES=("${@:-all}")
[[ "${STAGES[0]}" == all ]] && STAGES=(vae latents dit bundle)

if [[ "${SMOKE:-0}" == 1 ]]; then
  RUNS=runs/smoke
  VAE_CONFIG=configs/vae-tiny.yaml; DIT_CONFIG=configs/dit-tiny.yaml; DECODER_CONFIG=
  VAE_MINUTES=${VAE_MINUTES:-0.15}; DIT_MINUTES=${DIT_MINUTES:-0.15}; N=${N:-16}
  WORLD=(--scenarios solo,uniform --sizes 32x32 --frames 1,9)
  DIT_EXTRA=(--set task.preset=tiny --set task.text_preset=tiny --set task.model={} --set task.text={} --set data.token_budget=96)
  BUNDLE_OPTIONS=(--n 1 --size 32x32 --frames 9 --timing-size 32x32 --timing-seconds 1 --device cpu)
  OUT=${OUT:-$RUNS/world}
  NOTE=${NOTE:-"A smoke test of scripts/train_world_model.sh: tiny configs trained for seconds on a CPU."}
else
  RUNS=runs
  VAE_CONFIG=configs/vae-cpu.yaml; DIT_CONFIG=configs/dit-cpu.yaml; DECODER_CONFIG=configs/vae-cpu-decoder.yaml
  VAE_MINUTES=${VAE_MINUTES:-25}; DIT_MINUTES=${DIT_MINUTES:-60}; N=${N:-8000}
  # Every in-distribution scenario; solo (one object, any colour, shape and direction) five
  # times as often, as the prompts users type first.
  WORLD=(--scenarios solo,solo,solo,solo,solo,uniform,collision,parabola,static,bounce,billiards,crossing,occlusion,pan,paint,agent
         --sizes 128x128,128x96,96x128 --frames 1,9,17,21)
  DIT_EXTRA=()
  BUNDLE_OPTIONS=(--n "${EVAL_N:-10}" --size 128x128 --frames 21 --device cpu)
  OUT=${OUT:-models/world}
  NOTE=${NOTE:-"Trained on two CPU cores by scripts/train_world_model.sh (VAE ${VAE_MINUTES} min, DiT ${DIT_MINUTES} min per leg)."}
fi

# The VAE to encode with and to ship: this leg's decoder run, else the VAE run, else the committed model's.
vae_dir() {
  for d in $RUNS/vae-decoder/final $RUNS/vae-world/final; do [[ -d $d ]] && { echo "$d"; return; }; done
  echo "$OUT/vae"
}

for stage in "${STAGES[@]}"; do
  echo "== $stage ($(date +%H:%M:%S))"
  case "$stage" in
    vae)
      if [[ -n $DECODER_CONFIG && ! -d $RUNS/vae-world && -f $OUT/vae/config.json ]]; then
        "${KINETOSCOPE[@]}" train vae --config "$DECODER_CONFIG" --set run_dir=$RUNS/vae-decoder \
          --set task.init_from="$OUT/vae" --set time_limit_minutes="$VAE_MINUTES"
      else
        "${KINETOSCOPE[@]}" train vae --config "$VAE_CONFIG" --set run_dir=$RUNS/vae-world \
          --set time_limit_minutes="$VAE_MINUTES"
      fi ;;
    latents)
      [[ -f $RUNS/latents-world/index.json ]] && { echo "$RUNS/latents-world exists; kept"; continue; }
      rm -rf $RUNS/latents-world   # an unfinished one (no index.json) is encoded again
      "${KINETOSCOPE[@]}" data encode world --vae "$(vae_dir)" --out $RUNS/latents-world \
        --n "$N" "${WORLD[@]}" ;;
    dit)
      init=()
      if [[ ! -d $RUNS/dit-world/checkpoints && -f $OUT/model_index.json && "${SMOKE:-0}" != 1 ]]; then
        init=(--set task.init_from="$OUT")   # carry the committed model forward
      fi
      "${KINETOSCOPE[@]}" train dit --config "$DIT_CONFIG" --set run_dir=$RUNS/dit-world \
        --set data.source=latents --set data.latents=$RUNS/latents-world --set task.vae="$(vae_dir)" \
        --set time_limit_minutes="$DIT_MINUTES" "${init[@]}" "${DIT_EXTRA[@]}" ;;
    bundle)
      "${KINETOSCOPE[@]}" bundle --model $RUNS/dit-world/final --vae "$(vae_dir)" --captioner "${CAPTIONER:-models/captioner-world}" \
        --out "$OUT" --note "$NOTE" "${BUNDLE_OPTIONS[@]}" ;;
    *) echo "unknown stage $stage: use vae, latents, dit, bundle or all" >&2; exit 2 ;;
  esac
done
