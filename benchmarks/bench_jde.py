"""JDE part 1 / part 2 time per frame for each split point (``make bench``).

Networks: the bundled JDE-576x320-fcm (its trained weights) and JDE-1088x608 (random weights:
time does not depend on the values). Reports the median over repeats after
warm-up, per frame, for each batch size and precision asked for. On a GPU, try
``--dtypes fp32,bf16,fp16 --channels-last --batches 1,8``.
"""

from __future__ import annotations

import argparse

import torch
from timing import median_time

from fcm_common.cli.support import print_table
from fcm_common.core.device import resolve_device
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.jde import load_jde
from fcm_common.model.splits import SPLITS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes")
    parser.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, fp16, bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--networks", default="bundled,jde1088", help="comma-separated: bundled, jde1088")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    for network in args.networks.split(","):
        if network == "bundled":
            model, title = load_network(choose_network(None), device), "JDE-576x320-fcm (bundled)"
        elif network == "jde1088":
            model, title = load_jde(None, device=device), "JDE-1088x608 (random weights)"
        else:
            parser.error(f"unknown network '{network}'")
        _bench(model, title, name, device, args)


def _bench(model, title: str, device_name: str, device, args) -> None:
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        net = model.to(dtype=dtype)
        if args.channels_last:
            net = net.to(memory_format=torch.channels_last)
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.rand(batch, 3, model.input_height, model.input_width, device=device, dtype=dtype)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                full = median_time(lambda: net(x), device, args.repeats, args.warmup) / batch
                rows.append([dtype_name, batch, "full", full * 1e3, None, full * 1e3])
                for split in args.splits.split(","):
                    feats = net.forward_part1(x, split)
                    p1 = median_time(lambda: net.forward_part1(x, split), device, args.repeats, args.warmup) / batch
                    p2 = median_time(lambda: net.forward_part2(feats, split), device, args.repeats, args.warmup) / batch
                    rows.append([dtype_name, batch, split, p1 * 1e3, p2 * 1e3, (p1 + p2) * 1e3])
    print_table(
        f"{title} time per frame, ms ({device_name}; channels_last={args.channels_last})",
        ["dtype", "batch", "split", "part 1", "part 2", "total", "frames/s"],
        [[r[0], r[1], r[2], r[3], "-" if r[4] is None else r[4], r[5], 1e3 / r[5]] for r in rows],
    )

if __name__ == "__main__":
    main()
