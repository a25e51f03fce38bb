"""Frame sources: a video file, a MOTChallenge sequence folder, or a folder of images.

Every source yields RGB uint8 frames in order and knows its frame rate, frame count and frame
size. A MOTChallenge folder (``img1/`` and/or ``seqinfo.ini``) also provides its ground truth
(``gt/gt.txt``) and its ``seqinfo.ini``. Frames of a folder are taken in sorted file-name order
and numbered 1, 2, ... by position (as JDE and the MPEG framework number them).

Video files are decoded by the ffmpeg binary of ``imageio-ffmpeg`` to rgb24; the colour
conversion is ffmpeg's, so a video gives pixels that may differ slightly from PNG frames extracted
with another tool.
"""

from __future__ import annotations

import collections
import configparser
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from fcm_common.core.errors import FcmError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class SourceError(FcmError, ValueError):
    """An input that cannot be read as frames."""


class _Pace:
    """Capture times. A file paced at its frame rate (``realtime``): frame i is due i / fps seconds
    after frame 0 (waited for). A live source: the time a frame arrives, but never less than one frame
    interval after the last frame's (waited for): a producer faster than its frame rate (a file behind
    a URL, ffmpeg without -re on stdin) is read at that rate, as a camera would deliver it. A file read
    as fast as it can be: the time it is read."""

    def __init__(self, fps: float | None, live: bool = False):
        self.fps, self.live, self.start = fps, live, None

    def stamp(self, index: int) -> float:
        now = time.time()
        if self.fps is None:
            return now
        if self.start is None:
            self.start = now
            return now
        due = self.start + index / self.fps
        if self.live and due < now:  # late (or slower than its rate): the schedule restarts at this frame
            self.start = now - index / self.fps
            return now
        if due > now:
            time.sleep(due - now)
        return due


@dataclass
class TimedFrame:
    """A frame of :meth:`FrameSource.timed_frames`: its 0-based position in the source (from its first
    frame on), when it was captured (seconds since the epoch), its pixels, or the image file to read."""

    index: int
    capture_time: float
    pixels: np.ndarray | None = None
    path: Path | None = None
    size: tuple[int, int] | None = None  # (width, height) every image must have

    def load(self) -> np.ndarray:
        if self.pixels is None:
            image = read_image(self.path)
            if self.size is not None and image.shape[:2] != (self.size[1], self.size[0]):
                raise SourceError(
                    f"{self.path}: the image is {image.shape[1]}x{image.shape[0]}, the sequence's first is "
                    f"{self.size[0]}x{self.size[1]} (all frames of a sequence must have one size)"
                )
            self.pixels = image
        return self.pixels


@dataclass
class FrameSource:
    """A sequence of frames and what is known about it."""

    path: Path
    kind: str  # "video", "mot" or "images"
    name: str
    fps: float
    num_frames: int
    width: int
    height: int
    image_files: list[Path] = field(default_factory=list)
    gt_path: Path | None = None
    seqinfo_path: Path | None = None
    limit: int | None = None
    first: int = 1  # 1-based number of the first frame yielded (a training range FIRST-LAST)
    realtime: bool = False  # pace the frames at the frame rate (a stand-in camera)
    # when each frame yielded was captured (seconds since the epoch), oldest first; readers pop them
    capture_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    live: bool = False  # a camera, a URL or stdin: frames come as they are made, their number is unknown

    @property
    def length(self) -> int | None:
        """Frames that :meth:`frames` yields (from ``first`` on, at most ``limit``); None for a live
        source without a limit (its frames come until it ends)."""
        if self.live:
            return self.limit
        available = self.num_frames - self.first + 1
        return available if self.limit is None else min(available, self.limit)

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames, in order; each frame's capture time is appended to ``capture_times`` as it
        is yielded (with ``realtime``, frame i is not yielded before i / fps seconds after the first; a
        live source's frames come at most at its frame rate: :class:`_Pace`)."""
        clock = self._clock()
        for index, frame in enumerate(self._frames()):
            self.capture_times.append(clock.stamp(index))
            yield frame

    def _clock(self) -> _Pace:
        return _Pace(self.fps if self.realtime or self.live else None, live=self.live and not self.realtime)

    def timed_frames(self) -> Iterator[TimedFrame]:
        """Each frame as it becomes available (with ``realtime``, frame i at i / fps seconds after the
        first; a live source as it delivers them, at most at its frame rate): its 0-based position, its capture time and how to
        get its pixels. The images of a folder are read only when :meth:`TimedFrame.load` is called, so
        that a frame a live encoder skips costs nothing; a video or live source is decoded as it comes
        (it has to be read to get past it). ``capture_times`` is not used."""
        clock = self._clock()
        if self.live or self.kind == "video":
            for index, frame in enumerate(self._frames()):
                yield TimedFrame(index, clock.stamp(index), frame)
            return
        files = self.image_files[self.first - 1:self.first - 1 + self.length]
        for index, path in enumerate(files):
            yield TimedFrame(index, clock.stamp(index), None, path, (self.width, self.height))

    def _frames(self) -> Iterator[np.ndarray]:
        if self.live:
            yield from self._live_frames()
            return
        if self.kind == "video":
            yield from self._video_frames()
            return
        for path in self.image_files[self.first - 1:self.first - 1 + self.length]:
            image = read_image(path)
            if image.shape[:2] != (self.height, self.width):
                raise SourceError(
                    f"{path}: the image is {image.shape[1]}x{image.shape[0]}, the sequence's first is "
                    f"{self.width}x{self.height} (all frames of a sequence must have one size)"
                )
            yield image

    def _video_frames(self) -> Iterator[np.ndarray]:
        reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        count = skipped = 0
        try:
            for raw in reader:
                if skipped < self.first - 1:
                    skipped += 1
                    continue
                if count >= self.length:
                    break
                yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                count += 1
        finally:
            reader.close()
        if count < self.length:
            raise SourceError(f"{self.path}: video ended after {count} of {self.length} frames")


    def _live_frames(self) -> Iterator[np.ndarray]:
        count = 0
        reader = self._reader
        try:
            while self.limit is None or count < self.limit:
                if reader is None:  # raw frames on stdin
                    frame = _read_raw_frame(self.width, self.height, count)
                else:
                    frame = next(reader, None)
                    if frame is not None:
                        frame = np.frombuffer(frame, np.uint8).reshape(self.height, self.width, 3)
                if frame is None:
                    return
                yield frame
                count += 1
        finally:
            if reader is not None:
                reader.close()

    _reader: Iterator | None = None


def _read_raw_frame(width: int, height: int, index: int) -> np.ndarray | None:
    """One rgb24 frame from stdin; None at the end; a frame cut short is an error."""
    size = width * height * 3
    data = bytearray()
    stream = sys.stdin.buffer
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    if not data:
        return None
    if len(data) < size:
        raise SourceError(f"standard input ended inside frame {index + 1} ({len(data)} of {size} bytes of a "
                          f"{width}x{height} rgb24 frame)")
    return np.frombuffer(bytes(data), np.uint8).reshape(height, width, 3)


LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://", "tcp://")


def is_live_input(path: str | Path) -> bool:
    """``-`` (raw frames on stdin), a camera device or a stream URL."""
    text = str(path)
    return text == "-" or text.startswith("/dev/video") or text.startswith(LIVE_SCHEMES)


def open_live_source(spec: str, size: tuple[int, int] | None = None, fps: float | None = None,
                     max_frames: int | None = None) -> FrameSource:
    """A live source: ``-`` (rgb24 frames on stdin: ``size`` and ``fps`` required), a camera
    (``/dev/videoN``, through ffmpeg's v4l2 input) or a URL (rtsp, http, udp, ...: through ffmpeg)."""
    text = str(spec)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise SourceError(f"the frame rate must be a positive number, got {fps}")
    if text == "-":
        if size is None or fps is None:
            raise SourceError("raw frames on standard input need --size WxH and --fps F")
        return FrameSource(path=Path("-"), kind="live", name="stdin", fps=fps, num_frames=0, width=size[0],
                           height=size[1], limit=max_frames, live=True)
    params = []
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise SourceError(f"camera not found: {text}")
        params = ["-f", "v4l2"]
        if size is not None:
            params += ["-video_size", f"{size[0]}x{size[1]}"]
        if fps is not None:
            params += ["-framerate", f"{fps:g}"]
    elif text.startswith("rtsp"):
        params = ["-rtsp_transport", "tcp"]
    try:
        reader = imageio_ffmpeg.read_frames(text, pix_fmt="rgb24", input_params=params)
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"cannot open {text} ({first})") from None
    width, height = meta["size"]
    rate = fps or float(meta.get("fps") or 0)
    if not rate:
        reader.close()
        raise SourceError(f"{text}: the stream does not say its frame rate; pass --fps")
    name = Path(text).name if text.startswith("/dev/") else re.sub(r"[^A-Za-z0-9_.-]+", "_", text.split("://", 1)[1])[:40]
    source = FrameSource(path=Path(text), kind="live", name=name or "stream", fps=rate, num_frames=0, width=width,
                         height=height, limit=max_frames, live=True)
    source._reader = reader
    return source


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_seqinfo(path: Path) -> dict[str, str]:
    """The ``[Sequence]`` section of a MOTChallenge ``seqinfo.ini`` (keys in lower case), validated.

    The fields fcm uses must be well formed: ``frameRate`` a positive number, ``seqLength``,
    ``imWidth`` and ``imHeight`` positive integers; a bad one is refused with the file, its line and
    the field named.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        text = Path(path).read_text(encoding="utf-8")
        parser.read_string(text, source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read seqinfo.ini ({exc.__class__.__name__})") from None
    except configparser.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SourceError(f"{path}: not a valid seqinfo.ini ({first})") from None
    if "Sequence" not in parser:
        raise SourceError(f"{path}: no [Sequence] section")
    info = dict(parser["Sequence"])
    for key, check in SEQINFO_FIELDS.items():
        if key in info:
            check(info[key], path, text, key)
    return info


def _seqinfo_line(text: str, key: str) -> int | None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        name, sep, _ = line.partition("=")
        if not sep:
            name, sep, _ = line.partition(":")
        if sep and name.strip().lower() == key:
            return lineno
    return None


def _bad_seqinfo(path: Path, text: str, key: str, value: str, what: str) -> SourceError:
    lineno = _seqinfo_line(text, key)
    where = f"{path}:{lineno}" if lineno else str(path)
    return SourceError(f"{where}: {SEQINFO_NAMES[key]}={value!s} is not {what}")


def _positive_number(value: str, path: Path, text: str, key: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise _bad_seqinfo(path, text, key, value, "a positive number")
    return number


def _positive_integer(value: str, path: Path, text: str, key: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise _bad_seqinfo(path, text, key, value, "a positive integer") from None
    if number < 1:
        raise _bad_seqinfo(path, text, key, value, "a positive integer")
    return number


SEQINFO_NAMES = {"framerate": "frameRate", "seqlength": "seqLength", "imwidth": "imWidth", "imheight": "imHeight"}
SEQINFO_FIELDS = {
    "framerate": _positive_number,
    "seqlength": _positive_integer,
    "imwidth": _positive_integer,
    "imheight": _positive_integer,
}


def seqinfo_length(path: Path) -> int | None:
    """``seqLength`` of a ``seqinfo.ini`` (validated), or None when it has none."""
    value = read_seqinfo(path).get("seqlength")
    return None if value is None else int(value.strip())


def _images_in(folder: Path, ext: str | None = None) -> list[Path]:
    exts = (ext.lower(),) if ext else IMAGE_EXTENSIONS
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _image_source(path: Path, kind: str, files: list[Path], name: str, fps: float, **extra) -> FrameSource:
    if not files:
        raise SourceError(f"{path}: no image files found")
    first = read_image(files[0])
    return FrameSource(
        path=path, kind=kind, name=name, fps=fps, num_frames=len(files),
        width=first.shape[1], height=first.shape[0], image_files=files, **extra,
    )


def open_source(path: str | Path, fps: float | None = None, max_frames: int | None = None) -> FrameSource:
    """Open a video, a MOTChallenge sequence folder or an image folder.

    ``fps`` overrides the frame rate (needed for image folders without ``seqinfo.ini``, default
    30); ``max_frames`` limits how many frames are read.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"input not found: {path}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise SourceError(f"the frame rate must be a positive number, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise SourceError(f"the frame limit must be at least 1, got {max_frames}")
    if path.is_dir():
        seqinfo = path / "seqinfo.ini"
        if seqinfo.is_file() or (path / "img1").is_dir():
            info = read_seqinfo(seqinfo) if seqinfo.is_file() else {}
            img_dir = path / info.get("imdir", "img1")
            if not img_dir.is_dir():
                raise SourceError(f"{path}: image folder {img_dir.name}/ not found")
            files = _images_in(img_dir, info.get("imext"))
            rate = fps or float(info.get("framerate", 30))  # validated by read_seqinfo
            gt = path / "gt" / "gt.txt"
            source = _image_source(
                path, "mot", files, info.get("name", path.name), rate,
                gt_path=gt if gt.is_file() else None,
                seqinfo_path=seqinfo if seqinfo.is_file() else None,
                limit=max_frames,
            )
            declared = info.get("seqlength")
            if declared is not None and int(declared.strip()) != len(files):
                raise SourceError(f"{path}: seqinfo.ini says {declared} frames, {img_dir.name}/ has {len(files)}")
            return source
        return _image_source(path, "images", _images_in(path), path.name, fps or 30.0, limit=max_frames)
    return _open_video(path, fps, max_frames)


def _open_video(path: Path, fps: float | None, max_frames: int | None) -> FrameSource:
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        reader.close()
    except (RuntimeError, OSError, StopIteration) as exc:
        raise SourceError(f"cannot read {path} as a video ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    width, height = meta["size"]
    rate = fps or float(meta.get("fps") or 0)
    if not rate:
        raise SourceError(f"{path}: the video has no frame rate; pass one")
    try:
        num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError) as exc:
        raise SourceError(f"cannot count the frames of {path} ({exc})") from None
    if num_frames < 1:
        raise SourceError(f"{path}: the video has no frames")
    return FrameSource(
        path=path, kind="video", name=path.stem, fps=rate, num_frames=num_frames,
        width=width, height=height, limit=max_frames,
    )


def open_range(spec: str | Path, fps: float | None = None) -> FrameSource:
    """``PATH`` or ``PATH:FIRST-LAST`` (1-based frames, both included): training commands name the
    frames they may learn from this way, so that validation frames of the same sequence stay unseen."""
    text = str(spec)
    match = re.fullmatch(r"(.+):(\d+)-(\d+)", text)
    if match is None or Path(text).exists():
        return open_source(text, fps=fps)
    first, last = int(match.group(2)), int(match.group(3))
    if not 1 <= first <= last:
        raise SourceError(f"{text}: invalid frame range {first}-{last}")
    source = open_source(match.group(1), fps=fps)
    if last > source.num_frames:
        raise SourceError(f"{text}: the source has {source.num_frames} frames")
    source.first, source.limit = first, last - first + 1
    return source
