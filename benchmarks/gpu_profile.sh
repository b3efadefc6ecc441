#!/usr/bin/env bash
# Profile one model per family on the CUDA device at 224, 512 and 1024 px, in bf16 and fp32, with the
# math (materialised scores), flash and sdpa (torch's pick: flash, or memory-efficient where a model
# adds a bias or mask to the scores, which flash cannot take) attention kernels. Writes
#   reports/gpu/profile_<dtype>_<attn>.json and .csv   one row per model x resolution
#   reports/gpu/environment.txt                        GPU, driver, CUDA and torch versions
# Every row also records the device name, torch version, dtype, batch and the SDPA kernel that ran.
# Configurations that cannot fit are skipped with the memory they need; runs whose roofline time
# exceeds MAX_SECONDS per forward are skipped as too slow (pixel attention at 224 px and up).
#
#   bash benchmarks/gpu_profile.sh            # run from anywhere, after `pip install -e '.[torch]'`
#
# Knobs (environment): BATCH (1), REPEATS (10), WARMUP (3), MAX_SECONDS (5), OUT (reports/gpu),
# MODELS, RES, DTYPES, ATTNS, DEVICE (cuda; cpu only for a smoke run of this script).
set -euo pipefail
cd "$(dirname "$0")/.."

BATCH=${BATCH:-1}
REPEATS=${REPEATS:-10}
WARMUP=${WARMUP:-3}
MAX_SECONDS=${MAX_SECONDS:-5}
OUT=${OUT:-reports/gpu}
MODELS=${MODELS:-"igpt_s vit_b16 swin_t mvitv2_t mixer_b16"}
RES=${RES:-"224 512 1024"}
DTYPES=${DTYPES:-"bf16 fp32"}
ATTNS=${ATTNS:-"math flash sdpa"}
DEVICE=${DEVICE:-cuda}

if [ "$DEVICE" = cuda ]; then
    python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_profile.sh: torch sees no CUDA device')"
fi
mkdir -p "$OUT"
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    python -c "import torch, platform; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN',
torch.backends.cudnn.version(), '| python', platform.python_version());
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    fi
    git rev-parse HEAD 2>/dev/null | sed 's/^/vitcost commit /' || true
} > "$OUT/environment.txt"

for dtype in $DTYPES; do
    for attn in $ATTNS; do
        base="$OUT/profile_${dtype}_${attn}"
        echo "== $dtype, $attn -> $base.json" >&2
        # shellcheck disable=SC2086  # MODELS and RES are word lists
        vitcost profile -m $MODELS -r $RES --device "$DEVICE" --dtype "$dtype" --attn "$attn" --batch "$BATCH" \
            --repeats "$REPEATS" --warmup "$WARMUP" --max-seconds "$MAX_SECONDS" -f json -o "$base.json"
        python - "$base.json" "$base.csv" <<'PY'
import json
import sys

from vitcost.cli.app import write_atomic
from vitcost.report.formats import to_csv

with open(sys.argv[1], encoding="utf-8") as f:
    write_atomic(sys.argv[2], to_csv(json.load(f)).encode())
PY
    done
done
echo "wrote $OUT/profile_*.json and .csv" >&2
