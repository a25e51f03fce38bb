"""Parser for Darknet-style network descriptions (the ``cfg/*.cfg`` files).

JDE is published as a Darknet cfg; keeping the network as data (not code) lets the layer indices
that MPEG uses for split points be read straight from the file, and lets the model be rebuilt with
module names that match the official checkpoint.

Rules (those of the Darknet/JDE parser): ``#`` starts a comment line, blank lines are skipped,
``[type]`` opens a section, ``key=value`` lines fill it (whitespace stripped), and a value starting
with ``$`` names a key of the ``[net]`` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fcm_common.core.errors import FcmError

KNOWN_TYPES = ("convolutional", "shortcut", "route", "upsample", "yolo")


class CfgError(FcmError, ValueError):
    """A cfg file that cannot describe a network."""


@dataclass
class LayerDef:
    """One section of the cfg after ``[net]``: its index, type and raw options."""

    index: int
    type: str
    options: dict[str, str] = field(default_factory=dict)

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise CfgError(f"layer {self.index} ({self.type}) has no '{key}'")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise CfgError(
                f"layer {self.index} ({self.type}): '{key}={self.options[key]}' is not an integer"
            ) from None

    def get_ints(self, key: str) -> list[int]:
        return self._get_list(key, int, "integers")

    def get_floats(self, key: str) -> list[float]:
        return self._get_list(key, float, "numbers")

    def _get_list(self, key: str, convert, kind: str) -> list:
        if key not in self.options:
            raise CfgError(f"layer {self.index} ({self.type}) has no '{key}'")
        try:
            return [convert(v) for v in self.options[key].split(",") if v.strip()]
        except ValueError:
            raise CfgError(
                f"layer {self.index} ({self.type}): '{key}={self.options[key]}' is not a list of {kind}"
            ) from None


@dataclass
class NetworkCfg:
    """A parsed cfg: the ``[net]`` options and the layer list."""

    net: dict[str, str]
    layers: list[LayerDef]
    path: Path | None = None

    @property
    def width(self) -> int:
        return int(self.net["width"])

    @property
    def height(self) -> int:
        return int(self.net["height"])

    @property
    def channels(self) -> int:
        return int(self.net.get("channels", 3))


def parse_cfg_text(text: str, path: Path | None = None) -> NetworkCfg:
    """Parse cfg text; raises :class:`CfgError` naming the line of the first problem."""
    where = str(path) if path else "<cfg>"
    sections: list[tuple[str, dict[str, str], int]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise CfgError(f"{where}:{lineno}: malformed section header '{line}'")
            sections.append((line[1:-1].strip().lower(), {}, lineno))
            continue
        if "=" not in line:
            raise CfgError(f"{where}:{lineno}: expected 'key=value', got '{line}'")
        if not sections:
            raise CfgError(f"{where}:{lineno}: 'key=value' before the first section")
        key, value = line.split("=", 1)
        sections[-1][1][key.strip()] = value.strip()

    if not sections or sections[0][0] != "net":
        raise CfgError(f"{where}: the first section must be [net]")
    net = sections[0][1]
    for key in ("width", "height"):
        if key not in net:
            raise CfgError(f"{where}: [net] has no '{key}'")

    layers: list[LayerDef] = []
    for index, (kind, options, lineno) in enumerate(sections[1:]):
        if kind not in KNOWN_TYPES:
            raise CfgError(f"{where}:{lineno}: layer {index}: unsupported section [{kind}]")
        resolved = {}
        for key, value in options.items():
            if value.startswith("$"):
                name = value[1:]
                if name not in net:
                    raise CfgError(f"{where}:{lineno}: layer {index}: '{key}={value}' names no [net] key")
                value = net[name]
            resolved[key] = value
        layers.append(LayerDef(index=index, type=kind, options=resolved))
    return NetworkCfg(net=net, layers=layers, path=path)


def parse_cfg(path: str | Path) -> NetworkCfg:
    """Read and parse a cfg file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CfgError(f"cfg file not found: {path}") from None
    except OSError as exc:
        raise CfgError(f"cannot read cfg file {path}: {exc.strerror}") from None
    return parse_cfg_text(text, path)
