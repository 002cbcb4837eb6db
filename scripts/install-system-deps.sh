#!/usr/bin/env bash
# System packages the project needs (Debian/Ubuntu): a C++ compiler (g++) for the fused CPU loops that
# lightning_implicit builds on first use (lightning_implicit/implicit/csrc; without it the slower Python loops run,
# with a warning); for the slow tests headless Chromium + chromedriver (+ a font for readable screenshots,
# tests/test_browser.py) and PostgreSQL (multi-worker sweep storage). Idempotent: installs only what is missing.
# Runs apt-get as root (or through sudo when available).
#
#   scripts/install-system-deps.sh            # install what is missing
#   scripts/install-system-deps.sh --check    # only report; exit 1 if something is missing
set -euo pipefail

check_only=0
[[ "${1:-}" == "--check" ]] && check_only=1

# package -> a file that proves it is installed
declare -A probe=(
  [g++]=/usr/bin/g++
  [chromium]=/usr/bin/chromium
  [chromium-driver]=/usr/bin/chromedriver
  [postgresql]="$(compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | head -n1 || true)"
  [fonts-liberation]=/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf
)

missing=()
for pkg in "${!probe[@]}"; do
  if { [[ -z "${probe[$pkg]}" ]] || [[ ! -e "${probe[$pkg]}" ]]; } && ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# the Python headers of the interpreter the virtualenv is made from (the fused loops include Python.h)
py="${PYTHON:-python3}"
if command -v "$py" >/dev/null 2>&1 && ! "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=("python3-dev")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system deps: all present (${!probe[*]})"
  exit 0
fi
echo "system deps: missing ${missing[*]}"
if [[ $check_only -eq 1 ]]; then
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install ${missing[*]} with your system's package manager" >&2
  exit 1
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "system deps: installed ${missing[*]}"
