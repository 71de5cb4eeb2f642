"""Blocking adapter for the control channel: frames over a pair of file descriptors.

wasmldr and keepldr are single-purpose processes whose control loops read one
frame and answer it, so plain blocking reads on pipes are the simplest
correct adapter around the sans-IO ``FrameDecoder``. keepmgr uses its own
asyncio adapter around the same decoder.
"""

from __future__ import annotations

import contextlib
import os
import threading

from arx.errors import TransportError
from arx.protocol.messages import FrameDecoder, Message, encode_frame

_READ_SIZE = 64 * 1024


class Channel:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._decoder = FrameDecoder()
        # Output pumps and the control loop may write from different threads.
        self._write_lock = threading.Lock()

    def send(self, msg: Message) -> None:
        data = encode_frame(msg)
        with self._write_lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._write_fd, view)
                except OSError as exc:
                    raise TransportError(f"control channel closed: {exc}") from exc
                view = view[written:]

    def receive(self) -> Message | None:
        """The next frame, or ``None`` at end of stream (the peer went away)."""
        while True:
            msg = self._decoder.next_message()
            if msg is not None:
                return msg
            try:
                data = os.read(self._read_fd, _READ_SIZE)
            except OSError as exc:
                raise TransportError(f"control channel closed: {exc}") from exc
            if not data:
                if self._decoder.pending:
                    raise TransportError("control channel closed in the middle of a frame")
                return None
            self._decoder.feed(data)

    def close(self) -> None:
        for fd in {self._read_fd, self._write_fd}:
            with contextlib.suppress(OSError):
                os.close(fd)


def private_stdio_channel() -> Channel:
    """Moves the channel off fds 0 and 1 and points fd 1 at stderr.

    The control channel arrives as stdin/stdout. Keeping it on private
    descriptors means nothing that prints (a library, a stray ``print``) can
    corrupt a frame: such output goes to stderr, which keepmgr logs.
    """
    read_fd = os.dup(0)
    write_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    os.set_inheritable(read_fd, False)
    os.set_inheritable(write_fd, False)
    return Channel(read_fd, write_fd)
