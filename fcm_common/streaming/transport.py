"""Where a stream goes and where it comes from.

Outputs (``StreamSink``): a file (written to a temporary file and renamed at the end: a failed or
interrupted run leaves none), standard output (flushed unit by unit), a TCP connection
(``tcp://HOST:PORT``, the encoder connects to a listening decoder) or memory.

Live outputs (stdout, TCP) never hold up the encoder: units wait in a bounded queue (``QUEUE_UNITS``
units, at most ``QUEUE_BYTES``) that a writer thread empties. When a reader or a link is too slow and
the queue is full, the unit that does not fit and every later one up to the next segment start are
dropped (a segment without its beginning cannot be decoded anyway); sending resumes with a whole
segment once the queue has room. Drops are counted (frames, segments) and reported by the encoder.
A TCP output that loses its server drops in the same way while it reconnects (every
``RECONNECT_S``), then resumes at the next segment.

Inputs yield byte pieces; a TCP listener accepts one encoder connection after another and yields
:data:`BREAK` between them (a unit cut by a closed connection is lost, the next connection starts
at a segment); the decoder names a connection by its ``peer`` and closes one it refuses
(``drop_connection``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fcm_common.core.atomic import atomic_path
from fcm_common.core.errors import FcmError

QUEUE_UNITS = 256
QUEUE_BYTES = 64 << 20
RECONNECT_S = 0.5
READ_BYTES = 1 << 16
BREAK = object()  # from a TCP listener: the connection closed; the next piece comes from a new one


class TransportError(FcmError):
    """An output or input that cannot be opened or that fails."""


def parse_tcp(url: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port)."""
    rest = url[len("tcp://"):] if url.startswith("tcp://") else None
    host, sep, port = (rest or "").rpartition(":")
    if rest is None or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TransportError(f"'{url}' is not tcp://HOST:PORT")
    return host.strip("[]"), int(port)


def is_live_target(target: str | Path | None) -> bool:
    return str(target) == "-" or str(target).startswith("tcp://")


# ----------------------------------------------------------------------------------------- sinks
class StreamSink:
    """Where the encoder's units go. ``write`` takes one unit (``segment_start``: it begins a segment;
    ``frames``: the frames it carries)."""

    live = False
    dropped_frames = 0
    dropped_segments = 0

    def write(self, data: bytes, segment_start: bool = False, frames: int = 0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """All units written: deliver what waits (the file is renamed into place)."""

    def abort(self) -> None:
        """The encoder failed: deliver nothing more (a file output is removed)."""


class BytesSink(StreamSink):
    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes, segment_start: bool = False, frames: int = 0) -> None:
        self.parts.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class FileSink(StreamSink):
    """A file, complete or absent: written beside the target and renamed at :meth:`close`."""

    def __init__(self, path: Path):
        self._context = atomic_path(path)
        self._tmp = self._context.__enter__()
        self._fh = open(self._tmp, "wb")

    def write(self, data: bytes, segment_start: bool = False, frames: int = 0) -> None:
        self._fh.write(data)

    def close(self) -> None:
        self._fh.close()
        self._context.__exit__(None, None, None)

    def abort(self) -> None:
        self._fh.close()
        with contextlib.suppress(Exception):
            self._context.__exit__(FcmError, FcmError("aborted"), None)


class _QueuedSink(StreamSink):
    """A live output: a writer thread sends what a bounded queue holds; what does not fit is dropped
    up to the next segment start."""

    live = True

    def __init__(self, on_event: Callable[[str], None] | None = None):
        self.queue: queue.Queue = queue.Queue()
        self.queued_bytes = 0
        self.lock = threading.Lock()
        self.dropping = False
        self.dropped_frames = 0
        self.dropped_segments = 0
        self.error: BaseException | None = None
        self.on_event = on_event or (lambda message: None)
        self.thread = threading.Thread(target=self._run, daemon=True, name=type(self).__name__)
        self.thread.start()

    def write(self, data: bytes, segment_start: bool = False, frames: int = 0) -> None:
        if self.error is not None:
            raise self.error
        with self.lock:
            full = self.queue.qsize() >= QUEUE_UNITS or self.queued_bytes + len(data) > QUEUE_BYTES
            if self.dropping and segment_start and self.queue.qsize() < QUEUE_UNITS // 2:
                self.dropping = False
            if not self.dropping and full:
                self.dropping = True
                self.on_event("the output is too slow: dropping frames up to the next segment")
            if self.dropping or not self._accepting(segment_start):
                self.dropped_frames += frames
                self.dropped_segments += segment_start
                return
            self.queued_bytes += len(data)
        self.queue.put(data)

    def _accepting(self, segment_start: bool) -> bool:
        return True

    def _run(self) -> None:
        while True:
            data = self.queue.get()
            if data is None:
                return
            with self.lock:
                self.queued_bytes -= len(data)
            try:
                self._send(data)
            except BaseException as exc:  # noqa: BLE001 - raised in the encoder at its next write
                self.error = exc
                return

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=2)


class StdoutSink(_QueuedSink):
    """Standard output (a pipe to ``fcm-decode -``), flushed unit by unit."""

    def __init__(self, on_event=None, stream=None):
        self.out = stream or sys.stdout.buffer
        super().__init__(on_event)

    def _send(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            raise TransportError("the reader of standard output went away") from None


class TcpSink(_QueuedSink):
    """``tcp://HOST:PORT``: connects to a listening decoder; when the connection is lost (or not there
    yet), keeps trying every RECONNECT_S while the encoder goes on, and resumes at the next segment."""

    def __init__(self, url: str, on_event=None, connect_timeout: float = 10.0):
        self.host, self.port = parse_tcp(url)
        self.sock: socket.socket | None = None
        self.wait_segment = True  # nothing before a segment start: the decoder must be able to begin there
        self.was_connected = False
        self.next_try = 0.0
        super().__init__(on_event)
        deadline = time.monotonic() + connect_timeout  # the first connection: wait a little for the server
        while self.sock is None and time.monotonic() < deadline:
            self._connect()
            if self.sock is None:
                time.sleep(0.1)
        if self.sock is None:
            self.on_event(f"no server at tcp://{self.host}:{self.port} yet: coding on, connecting every "
                          f"{RECONNECT_S} s")

    def _connect(self) -> None:
        now = time.monotonic()
        if self.sock is not None or now < self.next_try:
            return
        self.next_try = now + RECONNECT_S
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.sock = sock
            self.wait_segment = True
        if self.was_connected:
            self.on_event(f"reconnected to tcp://{self.host}:{self.port}: resuming at the next segment")
        self.was_connected = True

    def _accepting(self, segment_start: bool) -> bool:
        # called under the lock, in the encoder's thread
        if self.sock is None:
            self._connect_async()
            return False
        if self.wait_segment:
            if not segment_start:
                return False
            self.wait_segment = False
        return True

    def _connect_async(self) -> None:
        if time.monotonic() >= self.next_try:
            threading.Thread(target=self._connect, daemon=True).start()
            self.next_try = time.monotonic() + RECONNECT_S

    def _send(self, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            return  # dropped while disconnected
        try:
            sock.sendall(data)
        except OSError:
            with self.lock:
                self.sock = None
                self.wait_segment = True
                # what is queued belongs to a broken segment
                while not self.queue.empty():
                    item = self.queue.get_nowait()
                    if item is None:
                        self.queue.put(None)
                        break
                    self.queued_bytes -= len(item)
            with contextlib.suppress(OSError):
                sock.close()
            self.on_event(f"lost the connection to tcp://{self.host}:{self.port}: coding on, reconnecting")

    def close(self) -> None:
        super().close()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(10)
                self.sock.recv(1)  # wait (a little) until the server has read everything and closed
            self.sock.close()

    def abort(self) -> None:
        super().abort()
        if self.sock is not None:
            self.sock.close()


def open_sink(target: str | Path, on_event=None) -> StreamSink:
    """``-`` (stdout), ``tcp://HOST:PORT`` or a file path."""
    text = str(target)
    if text == "-":
        return StdoutSink(on_event)
    if text.startswith("tcp://"):
        return TcpSink(text, on_event)
    return FileSink(Path(target))


# ---------------------------------------------------------------------------------------- inputs
def read_file(path: Path) -> Iterator[bytes]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise TransportError(f"bitstream not found: {path}") from None
    except IsADirectoryError:
        raise TransportError(f"{path} is a folder, not a bitstream") from None
    with fh:
        while chunk := fh.read(READ_BYTES):
            yield chunk


def read_stdin(stream=None) -> Iterator[bytes]:
    stream = stream or sys.stdin.buffer
    while True:
        chunk = stream.read1(READ_BYTES) if hasattr(stream, "read1") else stream.read(READ_BYTES)
        if not chunk:
            return
        yield chunk


class TcpListener:
    """``--listen tcp://HOST:PORT``: accepts encoders one after another (an encoder that reconnects,
    or a new one) and yields what they send, :data:`BREAK` between connections. Stops when
    :meth:`stop` is called (the decoder saw the stream's end). ``peer`` is the address of the
    connection being read; :meth:`drop_connection` closes it (the decoder refused it) and goes on."""

    def __init__(self, url: str):
        self.host, self.port = parse_tcp(url)
        try:
            self.server = socket.create_server((self.host, self.port), reuse_port=False)
        except OSError as exc:
            raise TransportError(f"cannot listen on tcp://{self.host}:{self.port}: {exc.strerror or exc}") from None
        self.server.settimeout(0.2)
        self.stopped = False
        self.conn: socket.socket | None = None
        self.peer: str | None = None
        self.dropping = False

    @property
    def address(self) -> tuple[str, int]:
        return self.server.getsockname()[:2]

    def stop(self) -> None:
        self.stopped = True

    def drop_connection(self) -> None:
        """Close the connection being read, before its next piece; :data:`BREAK` follows."""
        self.dropping = True

    def __iter__(self) -> Iterator[bytes | object]:
        try:
            while not self.stopped:
                try:
                    conn, address = self.server.accept()
                except TimeoutError:
                    continue
                self.conn, self.dropping = conn, False
                host, port = address[:2]
                self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                conn.settimeout(0.2)
                with conn:
                    while not self.stopped and not self.dropping:
                        try:
                            chunk = conn.recv(READ_BYTES)
                        except TimeoutError:
                            continue
                        except OSError:
                            break
                        if not chunk:
                            break
                        yield chunk
                self.conn = None
                if not self.stopped:
                    yield BREAK
        finally:
            self.server.close()


def open_input(path: str | Path | None, listen: str | None = None):
    """The decoder's input: a file, ``-`` (stdin) or a listener."""
    if listen is not None:
        return TcpListener(listen)
    if str(path) == "-":
        return read_stdin()
    return read_file(Path(path))


def stdout_is_terminal() -> bool:
    return os.isatty(sys.stdout.fileno()) if hasattr(sys.stdout, "fileno") else False
