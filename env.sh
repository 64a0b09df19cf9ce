# Source this file for the lkd_perception environment: the venv with ROS 2 (Python wheels),
# the colcon-built interface overlay, and FastDDS as the middleware.
#   source env.sh
_lkd_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -x "$_lkd_root/.venv/bin/python" ]; then
  echo "lkd_perception: run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_lkd_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_lkd_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_lkd_root/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# shellcheck disable=SC1091
. "$_lkd_root/.overlay/install/local_setup.sh"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Fast DDS with a shared-memory segment that holds camera frames (see config/fastdds.xml); the
# sender's segment is what counts, so run your camera driver from this shell (or with this variable) too
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE-$_lkd_root/config/fastdds.xml}"
unset _lkd_root
