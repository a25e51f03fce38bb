"""fcm's JDE forward against the public JDE code's, same network, same machine (issue: JDE forward
no slower than the public code).

The public code is not part of fcm: pass a checkout of https://github.com/Zhongdao/Towards-Realtime-MOT
with ``--reference-dir`` (its ``models.py``, ``utils/`` and ``cfg/yolov3_1088x608.cfg`` are used; its
optional SyncBN extension is not needed). Both networks get random weights (time does not depend on
the values) and run the whole network in eval mode on the same input batch, fp32; fcm's is also
timed with bf16 autocast and channels_last, which the public code does not offer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from timing import median_time

from fcm_common.cli.support import print_table
from fcm_common.core.device import resolve_device
from fcm_common.model.jde import load_jde


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", type=Path, required=True, help="checkout of Towards-Realtime-MOT")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    device = resolve_device(args.device)
    sys.path.insert(0, str(args.reference_dir))
    from models import Darknet  # noqa: PLC0415 - the user's checkout, found only at run time

    reference = Darknet(str(args.reference_dir / "cfg" / "yolov3_1088x608.cfg"), nID=14455).to(device).eval()
    ours = load_jde(None, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.rand(batch, 3, 608, 1088, device=device)
        with torch.inference_mode():
            ref = median_time(lambda: reference(x), device, args.repeats, args.warmup) / batch
            fp32 = median_time(lambda: ours(x), device, args.repeats, args.warmup) / batch
            rows.append([batch, "public JDE code, fp32", ref * 1e3, 1 / ref, 1.0])
            rows.append([batch, "fcm, fp32", fp32 * 1e3, 1 / fp32, ref / fp32])
            if device.type == "cuda":
                ours.to(memory_format=torch.channels_last)
                xc = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    bf = median_time(lambda: ours(xc), device, args.repeats, args.warmup) / batch
                ours.to(memory_format=torch.contiguous_format)
                rows.append([batch, "fcm, bf16 + channels_last", bf * 1e3, 1 / bf, ref / bf])
    print_table(f"JDE-1088x608 full forward, random weights ({name})",
                ["batch", "code", "ms per frame", "frames/s", "speed-up vs public"], rows)


if __name__ == "__main__":
    main()
