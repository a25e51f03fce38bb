"""Common-test-condition datasets (``cfg/ctc/*.toml``): sequences, classes and rate points."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fcm_common.core.errors import FcmError
from fcm_common.core.resources import cfg_file, read_toml
from fcm_common.evaluation.mot_metrics import MODE_CHOICES
from fcm_common.model.splits import get_split
from fcm_common.msfc.qact import load_qact

BUILTIN = ("tvd", "hieve", "fcm-val", "mot17-mini")


class CTCConfigError(FcmError, ValueError):
    """A dataset definition that cannot be used."""


@dataclass(frozen=True)
class SequenceDef:
    name: str
    folder: str  # relative to the data root
    cls: str
    frames: int
    fps: float
    width: int
    height: int


@dataclass
class DatasetDef:
    name: str
    eval_mode: str
    intra_period: int
    anchor_split: str
    anchor_range: str
    sequences: list[SequenceDef]
    rate_points: dict
    source: Path

    @property
    def classes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in self.sequences:
            out.setdefault(s.cls, []).append(s.name)
        return out

    def qps(self, method: str, split: str, sequence: str, qact_path=None) -> list[int]:
        """Rate points of a sequence: ``method/split`` entry, else ``method``; "qact" = the QACT table's QPs."""
        entry = self.rate_points.get(f"{method}/{split}", self.rate_points.get(method))
        if entry is None:
            raise CTCConfigError(f"{self.source}: no rate points for {method}/{split} (add them under [rate_points])")
        if entry == "qact":
            return sorted(load_qact(split, qact_path).qps)
        if isinstance(entry, dict):
            entry = entry.get(sequence, entry.get("default"))
            if entry is None:
                raise CTCConfigError(f"{self.source}: no rate points for {sequence} ({method}/{split}) and no default")
        if not isinstance(entry, list) or not entry or not all(isinstance(q, int) for q in entry):
            raise CTCConfigError(f"{self.source}: rate points for {method}/{split} must be a list of integer QPs")
        return sorted(entry)


def load_dataset(name_or_path: str | Path) -> DatasetDef:
    """A built-in dataset (``tvd``, ``hieve``) or a TOML file in the same format."""
    text = str(name_or_path)
    path = cfg_file(f"ctc/{text}.toml") if text in BUILTIN else Path(text)
    if not Path(path).is_file():
        raise CTCConfigError(f"dataset definition not found: {path} (built-in: {', '.join(BUILTIN)})")
    data = read_toml(path, "dataset definition", CTCConfigError)
    try:
        sequences = [
            SequenceDef(s["name"], s["folder"], s["class"], int(s["frames"]), float(s["fps"]), int(s["width"]), int(s["height"]))
            for s in data["sequences"]
        ]
        dataset = DatasetDef(
            name=str(data["name"]),
            eval_mode=str(data.get("eval_mode", "auto")),
            intra_period=int(data["intra_period"]),
            anchor_split=get_split(data.get("anchor_split", "dn53")).name,
            anchor_range=str(data.get("anchor_range", "frame")),
            sequences=sequences,
            rate_points=dict(data.get("rate_points", {})),
            source=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CTCConfigError(f"{path}: invalid dataset definition ({exc})") from None
    if dataset.eval_mode not in MODE_CHOICES:
        raise CTCConfigError(f"{path}: eval_mode must be one of {', '.join(MODE_CHOICES)}")
    names = [s.name for s in sequences]
    if not names or len(set(names)) != len(names):
        raise CTCConfigError(f"{path}: sequence names must be present and unique")
    return dataset
