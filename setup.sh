#!/bin/sh
# setup.sh — installs, in one apt step, every Debian 12 package ibex's build, plots and
# tests use. Runs apt-get directly as root (minbase, containers) and through sudo
# otherwise. Options: --fuzz also installs clang and libFuzzer (for -DIBEX_FUZZ=ON);
# --print only prints the package list.
# The PyPI-only `gguf` package (for the gguf_compat test) is not installed here: ctest
# installs it into a virtual environment under build/ on first use (needs PyPI access).
set -eu
PKGS="build-essential cmake pkg-config git ca-certificates libyaml-dev libjansson-dev libcriterion-dev gnuplot-nox python3 python3-numpy python3-venv python3-pip"
for arg in "$@"; do
  case "$arg" in
    --fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
    --print) echo "$PKGS"; exit 0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (--fuzz, --print)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "setup.sh: not root and sudo is not installed: run this script as root (su -c ./setup.sh)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: apt-get not found: install these packages (Debian names) with your package manager:" >&2
  echo "  $PKGS" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PKGS
echo "setup.sh: installed: $PKGS"
