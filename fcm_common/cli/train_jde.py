"""``fcm-train-jde``: train a JDE-family network on labelled sequences and teacher-labelled footage."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import click
import torch

from fcm_common.cli.support import FcmCommand, device_option, option, print_table, progress, stderr_console
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.core.resources import BUNDLED_JDE_CFG, cfg_file
from fcm_common.data.sources import open_source
from fcm_common.data.yolo_labels import is_yolo_folder, read_yolo_folder
from fcm_common.evaluation.detection_ap import APResult, average_precision
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.jde_training.augment import Jitter
from fcm_common.jde_training.data import TeacherSettings, gather_training_data
from fcm_common.jde_training.prepared import save_prepared
from fcm_common.jde_training.samples import SequenceSpec
from fcm_common.jde_training.trainer import (
    JDETrainer,
    JDETrainSettings,
    StepLog,
    export_for_inference,
    load_training_checkpoint,
)
from fcm_common.model.bundled import bundled_weights
from fcm_common.model.darknet_cfg import parse_cfg_text
from fcm_common.model.jde import JDE, load_state, read_checkpoint, weights_digest
from fcm_common.tracking.detections import CONF_THRESHOLD
from fcm_common.tracking.sequence import detect_picture, track_source

AP_MIN_SCORE = 0.01  # detections kept for the precision / recall curve of AP50


def detection_ap(model: JDE, folder: Path, device: torch.device, min_score: float = AP_MIN_SCORE,
                 iou_threshold: float = 0.5) -> APResult:
    """Detection AP (AP50 by default) of the network on a YOLO-format folder of labelled pictures:
    each picture letterboxed as tracking does, JDE's NMS, detections scored from ``min_score`` on."""
    detections, truth = [], []
    for _, _, image, boxes in read_yolo_folder(folder):
        dets = detect_picture(model, image, device, min_score)
        detections.append((dets.tlbr, dets.scores))
        truth.append(boxes)
    return average_precision(detections, truth, iou_threshold)


def validate(model: JDE, folders: list[Path], device: torch.device) -> dict[str, float]:
    """MOTA / IDF1 of the network with the fcm tracker on validation sequences (pooled), and the
    detection AP50 (with precision and recall at the tracker's score threshold) on YOLO-format folders."""
    eval_model = JDE(model.cfg).to(device)
    load_state(eval_model, {k: v for k, v in model.state_dict().items()})
    eval_model.eval().requires_grad_(False)
    items, out = [], {}
    pictures = [f for f in folders if is_yolo_folder(f)]
    for folder in folders:
        if folder in pictures:
            continue
        source = open_source(folder)
        seq = track_source(eval_model, source, device)
        items.append(SequenceResult(source.name, source.gt_path, seq.rows, source.seqinfo_path))
    if items:
        summary = evaluate(items)  # MOTChallenge devkit rules for MOTChallenge folders
        row = summary.loc["OVERALL"] if "OVERALL" in summary.index else summary.iloc[0]
        out.update({k: float(row[k]) for k in ("MOTA", "IDF1", "FP", "FN", "IDs")})
    for folder in pictures:
        result = detection_ap(eval_model, folder, device)
        precision, recall = result.at_score(CONF_THRESHOLD)
        tag = "" if len(pictures) == 1 else f" {folder.parent.name}/{folder.name}"
        out.update({f"AP50{tag}": result.ap, f"P@{CONF_THRESHOLD}{tag}": precision, f"R@{CONF_THRESHOLD}{tag}": recall})
    return out


@click.command(name="fcm-train-jde", cls=FcmCommand)
@click.argument("sequences", metavar="SEQ[:FIRST-LAST]...", nargs=-1)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Checkpoint to write (and --resume).")
@click.option("--prepare", "prepare_dir", type=click.Path(path_type=Path),
              help="Gather the data (label the footage), write it to this new folder as prepared training data "
                   "(a SEQ for later runs, e.g. on another machine) and stop.")
@click.option("--prepare-max-side", type=click.IntRange(min=64), default=None,
              help="With --prepare: scale larger pictures down to this longer side.")
@click.option("--init", "init_path", type=click.Path(path_type=Path),
              help="Start from these JDE weights (an fcm-train-jde checkpoint or export of the same cfg; 'bundled' "
                   "= the shipped JDE-576x320-fcm) instead of random ones: fine-tuning.")
@option("--jde-cfg", "cfg_path", aliases=("--cfg",), type=click.Path(path_type=Path), help="Darknet cfg (default: the bundled JDE-576x320 cfg).")
@click.option("--teacher-video", "footage", multiple=True,
              help="Unlabelled footage to label with the teachers (repeatable): PATH, or PATH:FIRST-LAST for "
                   "those frames only, with an optional @W sampling weight as for SEQ.")
@click.option("--teacher-detector", type=click.Path(path_type=Path), help="YOLOX ONNX person detector.")
@click.option("--teacher-embedder", type=click.Path(path_type=Path), help="OSNet ONNX person embedder (distilled into the embedding).")
@click.option("--teacher-score", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Teacher box score threshold.")
@click.option("--teacher-step", type=click.IntRange(min=1), default=5, show_default=True, help="Label every N-th frame of the footage.")
@click.option("--teacher-uncertain", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Teacher boxes scored from this up to --teacher-score are ignored in training (neither person nor background).")
@click.option("--label-cache", type=click.Path(path_type=Path), help="Folder for teacher labels (default: OUTPUT.labels/).")
@click.option("--val", "val_folders", multiple=True, type=click.Path(path_type=Path),
              help="MOTChallenge sequence with gt to report MOTA on at checkpoints, or a YOLO-format folder "
                   "(images/, labels/) to report detection AP50 on (repeatable; never trained on).")
@click.option("--val-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Steps between validation runs (and at the last step).")
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True, help="Total optimisation steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Pictures per step.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="AdamW, or SGD with momentum 0.9 (JDE's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Peak learning rate (warm-up, then cosine decay).")
@click.option("--warmup", type=click.IntRange(min=0), default=300, show_default=True, help="Warm-up steps.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=5e-4, show_default=True,
              help="Weight decay of conv and linear weights.")
@click.option("--distill-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the OSNet appearance-distillation term (needs --teacher-embedder).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=250, show_default=True,
              help="Steps between checkpoints (--resume continues from the last one).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (data order, augmentation, initial weights).")
@click.option("--jitter", type=click.Choice(["wide", "mild", "jde", "none"]), default="wide", show_default=True,
              help="Augmentation: wide = every person size 16..320 px, perspective, blur, night, grey; jde = JDE's own; "
                   "mild = JDE's scales mostly, wide's zoom and scene changes more rarely (fine-tuning).")
@click.option("--balance", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Draw a picture of a source of n pictures with probability ~ n^-BALANCE: 0 = every picture as "
                   "often, 1 = every source as often (a source: a sequence, a video, a folder of pictures).")
@click.option("--every-box", is_flag=True,
              help="A person box that no anchor overlaps by more than 0.5 (seated or half-hidden people are wider than "
                   "JDE's pedestrian anchors) makes the anchor of the best shape at its centre foreground (YOLOv3's "
                   "rule) instead of being only background.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes preparing batches (default: 0 on a CPU, up to 12 with a GPU).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto = bf16 autocast on a GPU, fp32 on a CPU.")
@click.option("--time-budget", type=click.FloatRange(min=1), default=None,
              help="Seconds of training: after 40 timed steps, --steps is lowered so that the run ends in time "
                   "(the learning-rate schedule then ends with it). Recorded in the checkpoint.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads for torch (0: torch's default).")
@click.option("--resume", is_flag=True, help="Continue OUTPUT from its last checkpoint.")
@click.option("--export", "export_path", type=click.Path(path_type=Path),
              help="When training is done, also write the inference-only weights (float16, with the cfg) here.")
@device_option
def main(sequences, output, prepare_dir, prepare_max_side, init_path, cfg_path, footage, teacher_detector, teacher_embedder, teacher_score,
         teacher_step, teacher_uncertain, label_cache, val_folders, val_every, steps, batch_size, optimizer, lr, warmup,
         weight_decay, distill_weight, checkpoint_every, seed, jitter, balance, every_box, workers, precision, time_budget, threads, resume,
         export_path, device):
    """Train JDE from scratch on MOTChallenge SEQuences (frames FIRST..LAST only, if given) and footage.

    A SEQ is a MOTChallenge folder with gt/gt.txt (PATH:FIRST-LAST for those frames only), a folder
    prepared with --prepare, or a YOLO-format folder of labelled pictures (images/ and labels/ with
    `class cx cy w h` rows, every class a person, no identities: detection and, with
    --teacher-embedder, appearance distillation). PATH...@W draws its pictures W times as often."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if output is None and prepare_dir is None:
        raise FcmError("give -o CHECKPOINT to train (or --prepare DIR to only gather the data)")
    if prepare_dir is not None and (prepare_dir.exists() and any(prepare_dir.iterdir())):
        raise FcmError(f"{prepare_dir} exists and is not empty: --prepare needs a new folder")
    if output is not None and output.exists() and not resume:
        raise FcmError(f"{output} exists: pass --resume to continue it, or another -o")
    if resume and not output.is_file():
        raise FcmError(f"cannot resume: {output} not found")
    for folder in val_folders:
        if not is_yolo_folder(folder) and open_source(folder).gt_path is None:
            raise FcmError(f"validation sequence {folder} has no gt/gt.txt")
    cfg_text = (cfg_path or cfg_file(BUNDLED_JDE_CFG)).read_text()
    teacher = (TeacherSettings(teacher_detector, teacher_embedder, teacher_score, teacher_step, teacher_uncertain)
               if teacher_detector or teacher_embedder else None)
    dev = resolve_device(device)
    specs = [SequenceSpec.parse(s) for s in sequences]
    footage_specs = [SequenceSpec.parse(s) for s in footage]
    with progress() as bar:
        task = bar.add_task("labelling footage" if footage else "loading", total=None)
        cache = label_cache or (output.with_suffix(".labels") if output is not None else prepare_dir / "labels-cache")
        data = gather_training_data(specs, footage_specs, teacher, cache, lambda n: bar.advance(task, n))
    print_table("training data", ["source", "pictures", "boxes"], data.summary)
    if prepare_dir is not None:
        with progress() as bar:
            task = bar.add_task(f"writing {prepare_dir}", total=len(data.images))
            size = save_prepared(data.images, data.num_ids, data.summary, prepare_dir, lambda n: bar.advance(task, n),
                                 prepare_max_side)
        stderr_console.print(f"prepared training data: {prepare_dir} ({len(data.images)} pictures, {size / 2**20:.1f} MiB)")
        return
    if workers is None:
        workers = min(12, max(1, (os.cpu_count() or 2) - 2)) if dev.type == "cuda" else 0
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    jitters = {"wide": Jitter.wide(), "mild": Jitter.mild(), "jde": Jitter.jde(), "none": Jitter.none()}
    settings = JDETrainSettings(steps=steps, batch_size=batch_size, optimizer=optimizer, lr=lr, warmup=warmup,
                                weight_decay=weight_decay, distill_weight=distill_weight, seed=seed,
                                checkpoint_every=checkpoint_every, jitter=asdict(jitters[jitter]), balance=balance,
                                every_box=every_box, workers=workers,
                                precision=precision)
    init_state = None
    if init_path is not None and not resume:
        if str(init_path) == "bundled":
            init_path = bundled_weights()
        init_state, init_cfg = read_checkpoint(init_path)
        if init_cfg is not None and init_cfg != cfg_text:
            raise FcmError(f"--init {init_path} was trained with another cfg than this run's")
        probe = JDE(parse_cfg_text(cfg_text))
        load_state(probe, {k: v.float() if v.is_floating_point() else v for k, v in init_state.items()}, str(init_path))
        settings.init = f"{init_path} ({weights_digest(probe)[:16]})"
    trainer = JDETrainer(cfg_text, data.images, data.num_ids, settings, dev, init_state)
    if resume:
        ckpt = load_training_checkpoint(output)
        recorded = (ckpt.get("fcm") or {}).get("settings", {})
        if recorded.get("time_budget_steps"):  # a budget fixed the schedule's length: keep it
            settings.steps = min(steps, int(recorded["time_budget_steps"]))
        trainer.restore(ckpt)
        if trainer.step >= steps and export_path is None:
            raise FcmError(f"{output} has already done {trainer.step} steps; ask for more with --steps")
        stderr_console.print(f"resuming {output} at step {trainer.step}")
    log_path = output.with_suffix(".log.jsonl")
    params = sum(p.numel() for p in trainer.model.parameters())
    stderr_console.print(f"{params / 1e6:.2f} M parameters, {len(data.images)} pictures, {data.num_ids} identities; log: {log_path}")

    recent: list[StepLog] = []
    results: list[dict] = []

    budget_from = trainer.step + 10  # the first steps start workers and compile kernels: not timed

    def on_step(log: StepLog) -> None:
        if time_budget is not None and log.step == budget_from:
            on_step.began = time.perf_counter()
        if time_budget is not None and log.step == budget_from + 40:
            per_step = (time.perf_counter() - on_step.began) / 40
            fitted = int(log.step + (time_budget - (time.perf_counter() - began)) / per_step)
            settings.steps = max(log.step + 1, min(settings.steps, fitted))
            settings.time_budget_steps = settings.steps
            bar.update(task, total=settings.steps)
            stderr_console.print(f"time budget {time_budget:.0f} s at {per_step:.3f} s/step: {settings.steps} steps")
        recent.append(log)
        del recent[:-settings.log_every]
        mean = {k: sum(getattr(r, k) for r in recent) / len(recent) for k in ("loss", "box", "conf", "ident", "distill")}
        bar.update(task, completed=log.step, description=(
            f"training loss {mean['loss']:.3f} box {mean['box']:.4f} conf {mean['conf']:.4f} "
            f"id {mean['ident']:.3f} distill {mean['distill']:.3f}"))
        if log.step % settings.log_every == 0:
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": log.step, "lr": log.lr, **mean,
                                     "s_per_step": sum(r.seconds for r in recent) / len(recent)}) + "\n")

    def on_checkpoint(step: int) -> None:
        if val_folders and (step % val_every == 0 or step == steps):
            trainer.model.eval()
            scores = validate(trainer.model, list(val_folders), dev)
            trainer.model.train()
            results.append({"step": step, **scores})
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": step, "validation": scores}) + "\n")
            stderr_console.print(f"step {step}: validation " + " ".join(
                f"{k} {v:.4f}" for k, v in scores.items() if k in ("MOTA", "IDF1") or k.startswith("AP50")))

    began = time.perf_counter()
    try:
        with progress() as bar:
            task = bar.add_task("training", total=steps, completed=trainer.step)
            trainer.run(output, on_step, on_checkpoint)
    except KeyboardInterrupt:
        trainer.save(output)
        raise FcmError(f"interrupted at step {trainer.step}; saved {output}, continue with --resume") from None
    trainer.model.eval()
    print_table(f"fcm-train-jde: {trainer.step} steps in {time.perf_counter() - began:.0f} s -> {output}",
                ["parameters", "identities", "weights id"],
                [[params, data.num_ids, weights_digest(trainer.model)[:16]]])
    print_table("foreground anchors seen (per head, per anchor: every anchor should learn)",
                ["head (stride)", "anchors (w x h px)", "positives"],
                [[f"{y} ({trainer.model.layer_strides[h]})",
                  " ".join(f"{a[0] * trainer.model.layer_strides[h]:.0f}x{a[1] * trainer.model.layer_strides[h]:.0f}"
                           for a in anchors.tolist()),
                  " ".join(str(int(v)) for v in pos)]
                 for y, h, anchors, pos in zip(trainer.model.yolo_layers, trainer.head_layers, trainer.anchors,
                                               trainer.positives)])
    if export_path is not None:
        size = export_for_inference(load_training_checkpoint(output), export_path)
        stderr_console.print(f"inference weights: {export_path} ({size / 2**20:.1f} MiB)")
    if results:
        keys = [k for k in results[0] if k != "step"]
        print_table("validation (fcm tracker: MOTA ...; detection: AP50, precision and recall at the tracker's threshold)",
                    ["step", *keys], [[r["step"], *(int(r[k]) if k in ("FP", "FN", "IDs") else r[k] for k in keys)]
                                      for r in results])
