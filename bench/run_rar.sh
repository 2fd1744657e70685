#!/usr/bin/env bash
# Runs the two RaR configs (arXiv 2407.06023 Table 1) on the embedded model and copies each
# run's results.md here. Usage: bash bench/run_rar.sh [extra key=value overrides]
# Each run reuses finished stages in runs/<name>/; delete that folder for a cold run.
set -euo pipefail
cd "$(dirname "$0")/.."
for cfg in rar_last_letter rar_coin_flip; do
  start=$(date +%s)
  sys2distill run "configs/$cfg.yaml" "$@"
  echo "$cfg: $(( $(date +%s) - start )) s wall"
  cp "runs/$cfg/accuracy_vs_tokens.png" "bench/${cfg}_accuracy_vs_tokens.png"
  sed "s|(accuracy_vs_tokens.png)|(${cfg}_accuracy_vs_tokens.png)|" "runs/$cfg/results.md" > "bench/$cfg.md"
done
