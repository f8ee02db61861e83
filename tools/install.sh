#!/usr/bin/env bash
# Install detret and everything it needs into a virtual environment.
#
#   bash tools/install.sh            # venv at $DETRET_VENV (default: .venv beside this repo)
#
# Idempotent: a stamp file in the venv records a hash of the inputs of this
# script (itself, pyproject.toml); when it matches and `detret` imports, the
# script returns in about a second.
#
# Switches (environment variables):
#   DETRET_VENV=PATH            where the venv lives (created when missing).
#   DETRET_PYTHON=python3.11    interpreter used to create the venv.
#   DETRET_DETECTRON2=wheel     (default) Detectron2 from the PyPI republication
#                               `sal-detectron2==0.7.2`: its only wheel is tagged
#                               cp310 and ships a cp310 `_C` extension, so we drop
#                               `_C`, retag it `py3-none-any` and install it with
#                               the dependencies it really uses. Detectron2's Python
#                               code runs without `_C` (Mask R-CNN FPN uses
#                               torchvision's ROIAlign and NMS; COCOEvaluator falls
#                               back to pycocotools).
#   DETRET_DETECTRON2=source    build the official source instead (needs network
#                               access to GitHub and a compiler; CUDA ops are built
#                               when nvcc is present). Preferred wherever it works.
#   DETRET_DETECTRON2=skip      assume Detectron2 is already installed.
#   DETRET_TORCH_SPEC           default "torch==2.14.1 torchvision==0.29.1".
#   DETRET_FAISS_SPEC           default "faiss-gpu==1.15.1" (runs its CPU indexes
#                               where there is no GPU).
#   DETRET_BROWSER=apt          (default) install Debian's Chromium with apt-get when it
#                               is missing and this runs as root: the report's test
#                               opens the page in headless Chromium (through Playwright,
#                               which never downloads a browser of its own here).
#   DETRET_BROWSER=skip         leave the system alone (then install chromium yourself,
#                               or point $DETRET_CHROMIUM at a Chromium/Chrome binary).
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DETRET_VENV:-$repo_dir/.venv}"
python_bin="${DETRET_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
d2_mode="${DETRET_DETECTRON2:-wheel}"
torch_spec="${DETRET_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
faiss_spec="${DETRET_FAISS_SPEC:-faiss-gpu==1.15.1}"
d2_wheel_version="0.7.2"

log() { printf '[detret install] %s\n' "$*" >&2; }

stamp_inputs() {
  cat "$repo_dir/tools/install.sh" "$repo_dir/pyproject.toml"
  printf '%s|%s|%s\n' "$d2_mode" "$torch_spec" "$faiss_spec"
}
ensure_chromium() {
  if [[ -n "${DETRET_CHROMIUM:-}" ]] || command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  if [[ "${DETRET_BROWSER:-apt}" == "apt" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium (for the report's browser test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "warning: no chromium found; the report's browser test will fail (apt-get install chromium)"
  fi
}
ensure_chromium

stamp_value="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
stamp_file="$venv/.detret-install-stamp"

if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]] \
   && "$venv/bin/python" -c "import detret, detectron2, faiss, torch, pymilvus, milvus_lite, open_clip, transformers" 2>/dev/null; then
  log "up to date ($venv)"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating venv at $venv with $("$python_bin" --version)"
  "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check)

# setuptools<81: detectron2.model_zoo imports pkg_resources, removed in setuptools 81.
log "installing torch ($torch_spec)"
# shellcheck disable=SC2086
"${pip[@]}" $torch_spec "setuptools<81" wheel

install_detectron2_wheel() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "downloading sal-detectron2==$d2_wheel_version (cp310 wheel)"
  "$py" -m pip download --disable-pip-version-check --no-deps --python-version 3.10 \
    --only-binary=:all: "sal-detectron2==$d2_wheel_version" -d "$work/dl" >/dev/null
  local whl
  whl="$(ls "$work"/dl/sal_detectron2-*.whl)"
  "$py" -m wheel unpack "$whl" -d "$work/unpacked" >/dev/null
  local root
  root="$(ls -d "$work"/unpacked/sal_detectron2-*)"
  # The compiled extension is for CPython 3.10; without it detectron2 falls back
  # to torchvision ops (see detectron2/layers/*). Drop it and mark the wheel pure.
  rm -f "$root"/detectron2/_C*.so
  local wheel_meta="$root/sal_detectron2-$d2_wheel_version.dist-info/WHEEL"
  sed -i -e 's/^Tag: .*/Tag: py3-none-any/' -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: true/' "$wheel_meta"
  # `wheel pack` rewrites RECORD from the files present, so the dropped .so leaves no stale line.
  mkdir -p "$work/packed"
  "$py" -m wheel pack "$root" -d "$work/packed" >/dev/null
  log "installing $(basename "$(ls "$work"/packed/*.whl)")"
  "${pip[@]}" --no-deps --force-reinstall "$work"/packed/*.whl
  # The dependencies detectron2 really imports (its metadata also asks for
  # numpy<2, black and tensorboard, which it does not need to run).
  "${pip[@]}" fvcore iopath yacs "omegaconf>=2.1,<2.4" "hydra-core>=1.1" cloudpickle \
    termcolor tabulate "pycocotools>=2.0.2" matplotlib Pillow tqdm packaging
}

case "$d2_mode" in
  wheel)  install_detectron2_wheel ;;
  source) log "building detectron2 from the official source"
          "${pip[@]}" --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git" ;;
  skip)   log "DETRET_DETECTRON2=skip: using the detectron2 already installed" ;;
  *)      log "unknown DETRET_DETECTRON2=$d2_mode (wheel, source or skip)"; exit 2 ;;
esac

log "installing faiss ($faiss_spec) and detret"
# shellcheck disable=SC2086
"${pip[@]}" $faiss_spec
"${pip[@]}" -e "$repo_dir[test,foundation]"
# The Milvus extra (pymilvus, milvus-lite), for the catalogue's Milvus backend and its tests. milvus-lite asks for
# faiss-cpu, which would overwrite faiss-gpu's files in site-packages/faiss: its other dependencies are installed
# and it is installed without them (its code imports `faiss`, which faiss-gpu provides).
log "installing the Milvus extra (pymilvus, milvus-lite)"
"${pip[@]}" "pymilvus==3.0.2" "grpcio>=1.50" "pyarrow>=15.0"
"${pip[@]}" --no-deps "milvus-lite==3.2.2"

log "checking that detectron2 imports and builds a Mask R-CNN"
"$py" "$repo_dir/tools/check_install.py"

echo "$stamp_value" > "$stamp_file"
log "done: activate with 'source $venv/bin/activate'"
