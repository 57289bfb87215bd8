#!/usr/bin/env bash
# The main job on the shared data, from a fresh checkout: install, ingest the LPD-5 songs, summarise.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${MIDIVAE_DATA:-$(cd .. && pwd)/shared/data}"
CACHE="${MIDIVAE_CACHE:-cache}"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --disable-pip-version-check -e .
midivae ingest "$DATA/lpd5/lpd_5_cleansed" --out "$CACHE/lpd5-store"
midivae info "$CACHE/lpd5-store"
