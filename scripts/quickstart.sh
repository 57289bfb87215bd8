#!/usr/bin/env bash
# The main job on the shared data, from a fresh checkout: install, ingest the LPD-5 songs, index
# them with the shipped model, and search the index by MIDI file.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${MIDIVAE_DATA:-$(cd .. && pwd)/shared/data}"
CACHE="${MIDIVAE_CACHE:-cache}"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --disable-pip-version-check -e .
midivae ingest "$DATA/lpd5/lpd_5_cleansed" --out "$CACHE/lpd5-store"
midivae info "$CACHE/lpd5-store"
# (Re)build the index when there is none, it holds another model's vectors (after an update), or it
# keeps no notes for the exact verify (built before session 17).
want=$(python -c "import midivae; m = midivae.load_model(); print(m.checkpoint_id, m.search_id, True)")
have=$(midivae index info "$CACHE/lpd5-index" --json 2>/dev/null \
       | python -c "import json, sys; d = json.load(sys.stdin); print(d['checkpoint_id'], d['search_id'], d.get('phrase_notes', False))" 2>/dev/null || true)
[ "$want" = "$have" ] || midivae index build --data "$CACHE/lpd5-store" --out "$CACHE/lpd5-index" --force
midivae index info "$CACHE/lpd5-index"
# A song of the collection, as a MIDI rendering: its own entry comes first, then its neighbours.
midivae search "$DATA/midi/lpd5_rendered/TRVYAIF128F427DA24.mid" --index "$CACHE/lpd5-index" -k 5
# A pop song from outside the collection: the LPD-5 songs that sound most like it, in any key.
midivae search "$DATA/midi/multitrack_pop/10880.mid" --index "$CACHE/lpd5-index" -k 10 --any-key
