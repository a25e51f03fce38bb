#!/usr/bin/env python3
"""Cut frames FIRST..LAST of a MOTChallenge sequence into a new sequence folder, renumbered from 1.

Image files are copied byte for byte (no re-encoding), ground-truth rows of those frames are kept
with their frame numbers shifted, and seqinfo.ini gets the new length. Used to make the sample
shipped in ``samples/`` (PETS09-S2L1 frames 551..650, the validation frames of the bundled JDE):

    python tools/make_excerpt.py ../shared/data/PETS09-S2L1 551 650 samples/PETS09-S2L1-551-650
"""

from __future__ import annotations

import argparse
import configparser
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("first", type=int)
    ap.add_argument("last", type=int)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    info = configparser.ConfigParser()
    info.optionxform = str  # keep the keys' case (imDir, frameRate, ...)
    info.read(args.source / "seqinfo.ini")
    seq = info["Sequence"]
    ext = seq.get("imExt", ".jpg")
    img_dir = args.source / seq.get("imDir", "img1")
    if args.dest.exists():
        raise SystemExit(f"error: {args.dest} exists")
    (args.dest / "img1").mkdir(parents=True)
    (args.dest / "gt").mkdir()
    for new, old in enumerate(range(args.first, args.last + 1), start=1):
        shutil.copyfile(img_dir / f"{old:06d}{ext}", args.dest / "img1" / f"{new:06d}{ext}")
    rows = []
    for line in (args.source / "gt" / "gt.txt").read_text().splitlines():
        fields = line.split(",")
        frame = int(float(fields[0]))
        if args.first <= frame <= args.last:
            rows.append(",".join([str(frame - args.first + 1), *fields[1:]]))
    (args.dest / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    seq["name"] = args.dest.name
    seq["seqLength"] = str(args.last - args.first + 1)
    seq["imDir"] = "img1"
    with open(args.dest / "seqinfo.ini", "w") as fh:
        info.write(fh, space_around_delimiters=False)


if __name__ == "__main__":
    main()
