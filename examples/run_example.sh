#!/usr/bin/env bash
# The main job on the bundled example: enrol four people from one photo each, then
# recognise them in a group photo and in a video clip, as `facestream run` does live.
# Everything is written under artifacts/example/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
FS=.venv/bin/facestream
OUT=artifacts/example
mkdir -p "$OUT"
GALLERY="sqlite:///$PWD/$OUT/gallery.db"

echo "== 1. detect faces in a group photo"
$FS detect examples/photos/obama_and_biden.jpg --out "$OUT/detected.jpg"

echo "== 2. compare two photos (1:1 verification)"
$FS compare examples/people/Barack_Obama/obama.jpg examples/photos/obama2.jpg
$FS compare examples/people/Barack_Obama/obama.jpg examples/people/Joe_Biden/biden.jpg

echo "== 3. enrol one photo per person (folder of folders)"
$FS enroll examples/people --gallery "$GALLERY"

echo "== 4. identify everyone in the group photo"
$FS identify examples/photos/obama_and_biden.jpg --gallery "$GALLERY" --out "$OUT/identified.jpg"

echo "== 5. recognise people in a video, as the live runtime does (results in $OUT/hamilton.jsonl)"
$FS run examples/short_hamilton_clip.mp4 --gallery "$GALLERY" --port 0 \
    --jsonl "$OUT/hamilton.jsonl" --record "$OUT/hamilton_annotated.mp4"
.venv/bin/python - "$OUT/hamilton.jsonl" <<'PY'
import collections, json, sys
names = collections.Counter()
frames = 0
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("type") != "frame":
        continue
    frames += 1
    names.update(f.get("name", "unknown") for f in msg["faces"])
print(f"{frames} frames; faces labelled: " + ", ".join(f"{n} x{c}" for n, c in names.most_common()))
PY
echo "done: see $OUT/ (detected.jpg, identified.jpg, hamilton_annotated.mp4)"
