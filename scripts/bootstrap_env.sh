#!/usr/bin/env bash
# Create or reuse the project virtual environment in .venv.
#
# Idempotent: a stamp file records the hash of this script and setup.py, so a second call costs
# a few milliseconds.  Debian libraries are installed only when running as root (CI, fresh
# machines); non-root users are told what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.dyn_fusion_env_stamp
want=$(cat scripts/bootstrap_env.sh setup.py requirements.txt 2>/dev/null | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

# Debian packages: Open3D's runtime libraries and colcon for the packaging check.
DEB_PKGS="libusb-1.0-0 libgomp1 colcon python3-colcon-ros"
missing=""
for p in $DEB_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[env] apt-get install:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[env] warning: missing Debian packages:$missing (run as root or install them; open3d needs libusb-1.0-0 and libgomp1)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# pip warns once per package about the machine's local index folders it cannot use; drop those
# lines and keep every other message.
pip_install() {
  "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip setuptools wheel
# torch first and pinned exactly: anything wider pulls the CUDA build.
pip_install "torch==2.13.0"
pip_install -r requirements.txt
pip_install --no-deps -e .
echo "$want" > "$STAMP"
echo "[env] ready: $VENV"
