"""A paced or live source as the encoder takes it: frames read as they come, whole frames skipped
when the encoder falls behind, so that its latency stays bounded (issue 29).

A thread reads the source as it delivers frames (a camera, a URL, stdin, or a file paced at its
frame rate with ``--realtime``) into a queue of waiting frames, each with its position in the source
and its capture time. The encoder takes the frames from that queue one by one; before it takes one,
frames may be skipped, always the oldest waiting and never the newest (a skipped frame is dropped
before NN part 1: it is never coded, so no coded picture depends on it):

- when the encoder is *behind*: its measured time per frame (NN part 1 to the codec, a running
  mean) is longer than the frame interval, and the oldest waiting frame is older than a quarter of
  ``max_latency``. A backlog then only grows and adds latency: the encoder takes the newest frame
  and skips the others, so that the latency stays near the quarter, not the bound. (A short burst,
  a few frames, goes through whole.)
- when the oldest waiting frame is *late*: its age plus the encoder's measured time per frame and
  the measured time from the codec's input to the picture unit sent (the codec and the picture it
  holds back until the next one comes) would exceed ``max_latency``. A backlog that builds up for a moment (an intra picture, a pause of the machine)
  is absorbed up to that bound, without a skip.

Skipped frames keep their numbers: the stream says how many frames were skipped before each coded
frame (docs/bitstream.md, the skips flag), the decoder's tracker lets that time pass and numbers
its rows as in the source. A source that is not paced (a file read as fast as it can be) never skips.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fcm_common.data.sources import FrameSource, TimedFrame

DEFAULT_MAX_LATENCY = 1.0  # seconds; fcm-encode --max-latency


@dataclass
class SkipPolicy:
    """When a waiting frame is skipped (see the module docstring). Times in seconds."""

    max_latency: float
    interval: float  # between two frames of the source (1 / fps)
    cost: float = 0.0  # the encoder's time per frame taken (running mean; 0: not measured yet)
    delay: float = 0.0  # from a frame given to the codec to its picture unit sent (running mean)
    weight: float = 0.1  # of the newest measurement in the running means

    def behind(self) -> bool:
        """The encoder takes longer per frame than the source gives them."""
        return self.cost > self.interval

    def late(self, age: float) -> bool:
        """A frame captured ``age`` seconds ago, taken now, would leave the encoder after max_latency."""
        return age + self.cost + self.delay > self.max_latency

    @property
    def patience(self) -> float:
        """How old the oldest waiting frame may be before a behind encoder skips."""
        return self.max_latency / 4

    def skip_oldest(self, age: float, waiting: int) -> bool:
        """Whether to skip the oldest of ``waiting`` frames, captured ``age`` seconds ago."""
        return waiting > 1 and ((self.behind() and age > self.patience) or self.late(age))

    def took(self, seconds: float) -> None:
        """The encoder spent ``seconds`` on a frame (from taking it to asking for the next)."""
        self.cost = self._mean(self.cost, seconds)

    def sent(self, seconds: float) -> None:
        """A frame's picture unit left ``seconds`` after the frame was given to the codec."""
        self.delay = self._mean(self.delay, seconds)

    def _mean(self, mean: float, seconds: float) -> float:
        """The running mean with ``seconds`` added (the first measurement: itself)."""
        return seconds if mean == 0 else mean + self.weight * (seconds - mean)


class LiveFrames:
    """The frames of a paced or live source for the encoder, with frames skipped by ``policy``.

    Iterating yields :class:`TimedFrame` s (their ``index`` tells the frames skipped before them);
    ``skipped`` counts the frames skipped so far, ``taken`` the frames yielded."""

    def __init__(self, source: FrameSource, policy: SkipPolicy):
        self.source, self.policy = source, policy
        self.waiting: collections.deque[TimedFrame] = collections.deque()
        self.cond = threading.Condition()
        self.ended = False
        self.error: BaseException | None = None
        self.stopping = False
        self.skipped = self.taken = 0

    def _read(self) -> None:
        try:
            for frame in self.source.timed_frames():
                with self.cond:
                    if self.stopping:
                        return
                    self.waiting.append(frame)
                    self._prune(time.time())
                    self.cond.notify()
        except BaseException as exc:  # noqa: BLE001 - raised in the encoder's thread
            self.error = exc
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify()

    def _prune(self, now: float) -> None:
        """Skip waiting frames as the policy says (the lock is held)."""
        while self.waiting and self.policy.skip_oldest(now - self.waiting[0].capture_time, len(self.waiting)):
            self.waiting.popleft()
            self.skipped += 1

    def __iter__(self) -> Iterator[TimedFrame]:
        thread = threading.Thread(target=self._read, daemon=True, name="fcm-live-source")
        thread.start()
        handed = None  # when the last frame was handed to the encoder
        try:
            while True:
                with self.cond:
                    if handed is not None:
                        self.policy.took(time.time() - handed)
                    self._prune(time.time())
                    while not self.waiting and not self.ended:
                        self.cond.wait(0.1)
                    if not self.waiting:
                        if self.error is not None:
                            raise self.error
                        return
                    frame = self.waiting.popleft()
                self.taken += 1
                handed = time.time()
                yield frame
        finally:
            with self.cond:
                self.stopping = True
                self.waiting.clear()
            thread.join(timeout=1)

