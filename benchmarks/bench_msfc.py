"""advMSFC MSFF / MSFR cost per frame for each split point (``make bench-msfc``).

Parameters, multiply-accumulates (torch's FLOP counter / 2) and the median time per frame at the
1088x608 feature sizes, with the architectures of cfg/advmsfc.toml and random weights.
"""

from __future__ import annotations

import argparse

import torch
from timing import median_time
from torch.utils.flop_counter import FlopCounterMode

from fcm_common.cli.support import print_table
from fcm_common.core.device import resolve_device
from fcm_common.model.splits import SPLITS
from fcm_common.msfc.networks import AdvMSFC, arch_for_split, count_parameters, scale_order


def _macs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    for split, sp in SPLITS.items():
        model = AdvMSFC(arch_for_split(split), scale_order(split)).to(device).eval()
        feats = [torch.randn(args.batch, *s, device=device) for s in sp.shapes_1088x608]
        with torch.inference_mode():
            code = model.encode(feats)
            msff = lambda: model.encode(feats)  # noqa: E731
            msfr = lambda: model.decode(code)  # noqa: E731
            t_ff = median_time(msff, device, args.repeats) / args.batch
            t_fr = median_time(msfr, device, args.repeats) / args.batch
            m_ff, m_fr = _macs(msff) / args.batch, _macs(msfr) / args.batch
        rows.append([split, f"{sp.fused_channels}x19x34", count_parameters(model.msff) / 1e6, m_ff / 1e9, t_ff * 1e3,
                     count_parameters(model.msfr) / 1e6, m_fr / 1e9, t_fr * 1e3])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print_table(
        f"advMSFC per frame at 1088x608, batch {args.batch}, fp32, {name}",
        ["split", "code", "MSFF Mparams", "MSFF GMAC", "MSFF ms", "MSFR Mparams", "MSFR GMAC", "MSFR ms"],
        rows,
    )


if __name__ == "__main__":
    main()
