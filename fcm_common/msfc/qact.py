"""QP-adaptive channel truncation (QACT): the QP -> kept-channels table of each split point.

The table lives in ``cfg/qact.toml`` (or a file written by ``fcm-calibrate``); a QP that is not
listed takes the entry of the nearest listed QP, the lower QP on a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fcm_common.core.atomic import write_text_atomic
from fcm_common.core.errors import FcmError
from fcm_common.core.resources import cfg_file, read_toml
from fcm_common.model.splits import get_split

QACT_FILE = "qact.toml"


class QACTError(FcmError, ValueError):
    """An unusable QACT table."""


@dataclass(frozen=True)
class QACTTable:
    qps: tuple[int, ...]
    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.qps or len(self.qps) != len(self.channels):
            raise QACTError("a QACT table needs as many channel counts as QPs, at least one")
        if len(set(self.qps)) != len(self.qps):
            raise QACTError(f"duplicate QPs in the QACT table: {list(self.qps)}")
        if any(k < 1 for k in self.channels):
            raise QACTError(f"channel counts must be positive: {list(self.channels)}")

    def channels_for(self, qp: int) -> int:
        """Kept channels at ``qp``: the nearest listed QP's entry (lower QP on a tie)."""
        best = min(range(len(self.qps)), key=lambda i: (abs(self.qps[i] - qp), self.qps[i]))
        return self.channels[best]

    def to_dict(self) -> dict:
        return {"qps": list(self.qps), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> QACTTable:
        try:
            return cls(tuple(int(q) for q in d["qps"]), tuple(int(k) for k in d["channels"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise QACTError(f"invalid QACT table ({exc})") from None


def load_qact(split: str, path: str | Path | None = None, fused_channels: int | None = None) -> QACTTable:
    """The table of a split from ``cfg/qact.toml`` or ``path``, for a code of ``fused_channels``
    (default: JDE-1088x608's). A split may list several tables (``[[backbone]]``), one per code
    width: the one whose largest channel count is the code's is taken."""
    sp = get_split(split)
    fused = fused_channels or sp.fused_channels
    source = Path(path) if path else cfg_file(QACT_FILE)
    data = read_toml(source, "QACT table", QACTError)
    if sp.name not in data:
        raise QACTError(f"{source} has no [{sp.name}] table")
    entries = data[sp.name] if isinstance(data[sp.name], list) else [data[sp.name]]
    tables = [QACTTable.from_dict(e) for e in entries]
    for table in tables:
        if max(table.channels) == fused:
            return table
    if len(tables) == 1 and max(tables[0].channels) < fused:
        return tables[0]  # a calibrated table need not keep every channel at its lowest QP
    raise QACTError(f"{source}: no [{sp.name}] table for a {fused}-channel code (largest counts: "
                    f"{', '.join(str(max(t.channels)) for t in tables)})")


def write_qact(path: str | Path, tables: dict[str, QACTTable], comment: str = "") -> None:
    """Write tables (by split name) in the ``cfg/qact.toml`` format."""
    lines = [f"# {line}" for line in comment.splitlines()] + ([""] if comment else [])
    for split, table in tables.items():
        lines += [f"[{split}]", f"qps = {list(table.qps)}", f"channels = {list(table.channels)}", ""]
    write_text_atomic(path, "\n".join(lines))
