#!/usr/bin/env bash
# Build the VVC reference software (VTM) for fcm's `vtm` codec.
#
#   tools/vtm_build.sh [--tag VTM-12.0] [--prefix DIR] [--jobs N] [--repo URL]
#
# Clones the official VTM repository at a tag (default VTM-12.0, the version of the FCM common
# test conditions; VTM-23.3 is the MPEG framework's Docker version) and builds EncoderApp,
# DecoderApp and parcat in Release mode. Needs git, cmake, make and a C++ compiler, and network
# access to the repository; a source tree already at PREFIX/TAG (a checkout, or an unpacked
# release archive) is built as it is. Afterwards:  export FCM_VTM_DIR=<prefix>/<tag>
set -euo pipefail

TAG="VTM-12.0"
PREFIX="${PWD}/vtm"
JOBS="$(nproc 2>/dev/null || echo 2)"
REPO="https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM.git"

die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="${2:?}"; shift 2 ;;
    --prefix) PREFIX="${2:?}"; shift 2 ;;
    --jobs) JOBS="${2:?}"; shift 2 ;;
    --repo) REPO="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

case "$TAG" in VTM-[0-9]*) ;; *) die "--tag must name a VTM release tag such as VTM-12.0 or VTM-23.3, got '$TAG'" ;; esac
SRC="${PREFIX}/${TAG}"
if [ -e "${SRC}" ] && [ ! -d "${SRC}/.git" ] && [ ! -f "${SRC}/CMakeLists.txt" ] && [ -n "$(ls -A "${SRC}" 2>/dev/null)" ]; then
  die "${SRC} exists and is not a VTM source tree: move it away or pass another --prefix"
fi
for tool in git cmake make c++; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

if [ -d "${SRC}/.git" ] || [ -f "${SRC}/CMakeLists.txt" ]; then
  echo "using the existing source tree ${SRC}"
else
  mkdir -p "${PREFIX}"
  if ! git clone --quiet --depth 1 --branch "${TAG}" "${REPO}" "${SRC}" 2>"${PREFIX}/clone.log"; then
    rm -rf "${SRC}"
    die "cannot clone ${TAG} from ${REPO} ($(tail -n 1 "${PREFIX}/clone.log")); check the network or pass --repo"
  fi
fi

# VTM-12.0 treats warnings as errors, which gcc >= 12 trips over: build with warnings off.
cmake -S "${SRC}" -B "${SRC}/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-w >"${SRC}/cmake.log" 2>&1 \
  || die "cmake failed (see ${SRC}/cmake.log)"
cmake --build "${SRC}/build" --parallel "${JOBS}" --target EncoderApp DecoderApp parcat >"${SRC}/build.log" 2>&1 \
  || die "the build failed (see ${SRC}/build.log)"

for app in EncoderApp DecoderApp parcat; do
  ls "${SRC}/bin/${app}"* >/dev/null 2>&1 || die "${app} was not produced in ${SRC}/bin"
done
echo "built ${TAG} in ${SRC}/bin"
echo "export FCM_VTM_DIR=${SRC}"
