#!/usr/bin/env bash
# Everything vitcost measures on a CUDA machine, in one run of about five minutes, in this order:
#   1. vitcost calibrate --device cuda              -> $OUT/<name>-calibrated.toml (a device profile)
#   2. timm's ViT-B/16, Swin-T, ConvNeXt-T and SAM-B, eager fp16 autocast, two batch sizes each, beside
#      vitcost's predicted time on the built-in profile and on the calibrated one
#                                                   -> $OUT/timm_on_device.txt and .json
#   3. benchmarks/gpu_profile.sh, trimmed (ViT-B/16 and Swin-T at 224 and 1024 px, bf16, math and flash)
#                                                   -> $OUT/profile_bf16_{math,flash}.{json,csv}
# and $OUT/environment.txt (GPU, driver, CUDA, torch, timm, the commit). Each step's log is kept; a step
# that fails does not stop the later ones, and the script exits non-zero if any failed.
#
#   bash benchmarks/gpu_session.sh                  # on the CUDA machine, from anywhere in the checkout
#
# Needs torch with CUDA and timm there, and vitcost's dependencies (typer, rich, sympy, pandas); vitcost
# itself runs from the checkout (PYTHONPATH). Knobs (environment): OUT (reports/gpu), PROFILE (the
# built-in profile of this card, h200), DEVICE (cuda; cpu runs a smoke check of the script), ARCHIVE (also
# pack $OUT into this .tgz, one file to copy off the machine).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-reports/gpu}
PROFILE=${PROFILE:-h200}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
failed=0

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember a failure
    local name=$1
    shift
    echo "== $name: $*" >&2
    local t0=$SECONDS
    if "$@" > >(tee "$OUT/$name.log") 2>&1; then
        echo "== $name done in $((SECONDS - t0)) s" >&2
    else
        echo "== $name FAILED after $((SECONDS - t0)) s (see $OUT/$name.log)" >&2
        failed=1
    fi
}

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    $PY -c "import torch, platform; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN',
torch.backends.cudnn.version(), '| python', platform.python_version());
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
    $PY -c "import timm; print('timm', timm.__version__)" 2>/dev/null || echo "timm: not installed"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    git rev-parse HEAD 2>/dev/null | sed 's/^/vitcost commit /'
} > "$OUT/environment.txt" 2>&1

calibrated="$OUT/$PROFILE-calibrated.toml"
if [ "$DEVICE" = cuda ]; then
    step calibrate $PY -m vitcost calibrate --device cuda --name "$PROFILE-calibrated" -o "$calibrated"
else
    step calibrate $PY -m vitcost calibrate --device cpu --threads 1 --quick --name "$PROFILE-calibrated" -o "$calibrated"
fi
profiles=("$PROFILE")
[ -f "$calibrated" ] && profiles+=("$calibrated")
smoke=()
[ "$DEVICE" = cpu ] && smoke=(--smoke --warmup 1 --repeats 2)
step timm_on_device $PY benchmarks/bench_timm_on_device.py --device "$DEVICE" --hardware "${profiles[@]}" \
    "${smoke[@]}" -o "$OUT/timm_on_device.json"
[ -f "$OUT/timm_on_device.log" ] && cp "$OUT/timm_on_device.log" "$OUT/timm_on_device.txt"

if [ "$DEVICE" = cuda ]; then
    # gpu_profile.sh calls `vitcost` and `python`: where vitcost is not installed, shims run the checkout's
    bin=$(mktemp -d)
    command -v vitcost >/dev/null || printf '#!/bin/sh\nexec %s -m vitcost "$@"\n' "$PY" > "$bin/vitcost"
    command -v python >/dev/null || ln -s "$(command -v "$PY")" "$bin/python"
    chmod +x "$bin"/* 2>/dev/null
    step gpu_profile env OUT="$OUT" MODELS="vit_b16 swin_t" RES="224 1024" DTYPES=bf16 ATTNS="math flash" \
        PATH="$bin:$PATH" bash benchmarks/gpu_profile.sh
fi
if [ -n "${ARCHIVE:-}" ]; then
    tar czf "$ARCHIVE" -C "$(dirname "$OUT")" "$(basename "$OUT")" || failed=1
fi
exit $failed
