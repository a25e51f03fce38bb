"""Common-test-condition runs: every (sequence, QP) pair encoded, decoded and evaluated, on Dask.

Each pair runs as one Dask task (a local cluster by default, or an existing scheduler) and leaves
in ``<run>/<sequence>/qp<QP>/`` its bitstream, its tracks and, last and atomically, ``result.json``.
A pair with a ``result.json`` is finished: a re-run skips it, so an interrupted run resumes where it
stopped. A failing pair writes ``error.txt`` and is reported; the others go on (and a re-run tries
it again).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from fcm_common.coding.codecs import make_codec
from fcm_common.coding.methods import METHODS, prepare_method
from fcm_common.core.atomic import write_text_atomic
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.model.jde import load_jde
from fcm_common.model.splits import SPLITS
from fcm_ctc.config import DatasetDef, SequenceDef
from fcm_ctc.experiment import code_and_track, evaluate_point
from fcm_encoder.encoder import EncodeSettings

RESULT = "result.json"
ERROR = "error.txt"


@dataclass(frozen=True)
class RunSpec:
    """Settings of a run (sent to the workers; recorded in ``run.json``)."""

    dataset: str
    dataset_file: str
    eval_mode: str
    intra_period: int
    method: str
    split: str
    codec: str
    preset: str
    gop: str
    range_text: str | None
    weights: str | None
    jde_cfg: str | None
    device: str
    max_frames: int | None
    data_root: str
    run_dir: str
    torch_threads: int
    qps: tuple[int, ...] | None = None  # one QP list for every sequence, instead of the dataset's
    # the method's options (--model, --qact) and the codec's (--vtm-dir, ...), paths as text
    method_options: dict = field(default_factory=dict, hash=False)
    codec_options: dict = field(default_factory=dict, hash=False)

    def comparable(self) -> dict:
        """The settings that must agree for results to be mixed in one run folder: not where things
        run (nor where and how the codec runs: its options)."""
        d = asdict(self)
        d.update(d.pop("method_options"))
        d.pop("codec_options")
        for volatile in ("device", "torch_threads", "run_dir", "data_root", "dataset_file"):
            d.pop(volatile)
        return json.loads(json.dumps(d))  # as it reads back from run.json (tuples become lists)

    @classmethod
    def from_record(cls, recorded: dict) -> RunSpec:
        """The spec of a ``run.json`` (one written before options were grouped has them as fields)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in recorded.items() if k in known}
        method_names = {o.name for c in METHODS for o in c.options}
        for key in recorded.keys() - known:
            group = "method_options" if key in method_names else "codec_options"
            values.setdefault(group, {})[key] = recorded[key]
        if values.get("qps"):
            values["qps"] = tuple(values["qps"])
        return cls(**values)


@dataclass(frozen=True)
class Pair:
    sequence: SequenceDef
    qp: int
    rate_index: int

    @property
    def key(self) -> str:
        return f"{self.sequence.name}-qp{self.qp}"


def pair_dir(spec: RunSpec, pair: Pair) -> Path:
    return Path(spec.run_dir) / pair.sequence.name / f"qp{pair.qp}"


def plan(dataset: DatasetDef, spec: RunSpec) -> list[Pair]:
    pairs = []
    for seq in dataset.sequences:
        qps = sorted(spec.qps) if spec.qps else dataset.qps(spec.method, spec.split, seq.name, spec.method_options.get("qact_path"))
        pairs += [Pair(seq, qp, i) for i, qp in enumerate(qps)]
    return pairs


def finished(spec: RunSpec, pair: Pair) -> dict | None:
    path = pair_dir(spec, pair) / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------ worker side
_CACHE: dict = {}


def _jde(spec: RunSpec):
    key = ("jde", spec.weights, spec.jde_cfg, spec.device)
    if key not in _CACHE:
        device = resolve_device(spec.device)
        _CACHE[key] = (load_jde(None if spec.weights == "random" else spec.weights, device=device, cfg=spec.jde_cfg), device)
    return _CACHE[key]


def _method(spec: RunSpec, jde, device, qp: int):
    """The method at ``qp``; what it loads (an advMSFC model) is loaded once per worker."""
    key = ("method", spec.method, spec.split, json.dumps(spec.method_options, sort_keys=True), jde.weights_id, str(device))
    if key not in _CACHE:
        _CACHE[key] = prepare_method(spec.method, SPLITS[spec.split], jde.weights_id, device, **spec.method_options)
    return _CACHE[key].at_qp(qp)


def run_pair(spec: RunSpec, pair: Pair) -> dict:
    """Encode, decode, track and evaluate one pair; never raises (failures are reported)."""
    out = pair_dir(spec, pair)
    out.mkdir(parents=True, exist_ok=True)
    (out / ERROR).unlink(missing_ok=True)
    started = time.time()
    try:
        torch.set_num_threads(max(spec.torch_threads, 1))
        jde, device = _jde(spec)
        method = _method(spec, jde, device, pair.qp)
        folder = Path(spec.data_root) / pair.sequence.folder
        source = open_source(folder, max_frames=spec.max_frames)
        if source.gt_path is None:
            raise FcmError(f"{folder}: no gt/gt.txt")
        split = SPLITS[spec.split]
        settings = EncodeSettings(
            split=split, qp=pair.qp, codec=make_codec(spec.codec, **spec.codec_options), intra_period=spec.intra_period,
            preset=spec.preset, gop=spec.gop, range_spec=method.range_spec(spec.range_text, split, split.is_reference(jde.split_shapes(split.name))),
            threads=spec.torch_threads,
        )
        result = code_and_track(source, jde, method, settings, device,
                                stream_path=out / "stream.bin", tracks_path=out / "tracks.txt")
        metrics = evaluate_point(result, source.gt_path, spec.eval_mode, source.seqinfo_path,
                                 max_frame=spec.max_frames)
        row = {
            "status": "ok", "sequence": pair.sequence.name, "class": pair.sequence.cls, "qp": pair.qp,
            "rate_index": pair.rate_index, "channels": result.channels, "frames": result.frames, "fps": result.fps,
            "bytes": result.bytes, "kbps": result.kbps, "framework_kbps": result.framework_kbps, **metrics,
            **{f"{k}_s": v for k, v in result.seconds.items()}, "wall_s": time.time() - started,
        }
        write_text_atomic(out / RESULT, json.dumps(row, indent=1))
        return row
    except BaseException as exc:  # noqa: BLE001 - reported, the run goes on
        message = str(exc) or type(exc).__name__
        write_text_atomic(out / ERROR, f"{type(exc).__name__}: {message}\n\n{traceback.format_exc()}")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"status": "failed", "sequence": pair.sequence.name, "qp": pair.qp, "error": " ".join(message.split())}


# ------------------------------------------------------------------------------ driver side
def check_run_folder(spec: RunSpec) -> None:
    """Refuse to mix results of different settings in one folder; record the settings."""
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / "run.json"
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous.get("comparable") != spec.comparable():
            diff = sorted(k for k in spec.comparable() if previous.get("comparable", {}).get(k) != spec.comparable()[k])
            raise FcmError(f"{run_dir} holds a run with other settings ({', '.join(diff)}): use another --out")
    write_text_atomic(record, json.dumps({"comparable": spec.comparable(), "spec": asdict(spec)}, indent=1))


def execute(spec: RunSpec, pairs: list[Pair], scheduler: str | None, workers: int, on_result=None) -> list[dict]:
    """Run the unfinished pairs on Dask; returns the rows of the pairs run now (ok or failed)."""
    # dask.distributed takes seconds to import and only a run's driver needs it (not fcm-ctc report)
    from dask.distributed import Client, LocalCluster, as_completed

    todo = [p for p in pairs if finished(spec, p) is None]
    if not todo:
        return []
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
        client = Client(cluster)
    rows = []
    try:
        futures = [client.submit(run_pair, spec, p, pure=False, key=f"fcm-{p.key}-{os.getpid()}-{time.time_ns()}") for p in todo]
        by_future = dict(zip(futures, todo))
        for future in as_completed(futures):
            pair = by_future[future]
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory, ...)
                row = {"status": "failed", "sequence": pair.sequence.name, "qp": pair.qp,
                       "error": f"worker lost: {type(exc).__name__}: {exc}"}
            rows.append(row)
            if on_result:
                on_result(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows
