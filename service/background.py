"""A daemon thread running one loop until it is told to stop: the timer scheduler, its PostgreSQL listener, the
webhook sender and the history retention."""
from __future__ import annotations

import threading


class LoopThread:
    thread_name = "govflow"
    join_seconds = 10.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Tell the loop to end and wait for it (at most join_seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)

    def _loop(self) -> None:
        raise NotImplementedError
