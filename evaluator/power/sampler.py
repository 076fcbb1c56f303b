"""The sampler: a separate ``spawn`` process that reads every source every period and appends to a file.

Workload and measurement meet only through ``time.monotonic`` timestamps (one clock for all
processes on Linux). The file is written line by line, so a crash of the scorer loses nothing that
was already sampled, and it is self-describing: its first line holds the channel list as JSON.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
import traceback
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TextIO

from evaluator.errors import MeterError
from evaluator.power.base import Channel, MeterUnavailable, PowerSource, SourceSpec
from evaluator.power.rapl import ASSUMED_MAX_W

SAMPLES_FORMAT = "edl-samples/1"
READY_TIMEOUT_S = 60.0


def _write_header(handle: TextIO, channels: list[Channel], unavailable: dict[str, str], period_s: float,
                  shortest_wrap_s: float | None = None) -> None:
    """The file's first two lines: its metadata as JSON, then the column names.

    ``shortest_wrap_s``: how soon the fastest-wrapping counter (RAPL) can wrap at full power, or None when no
    counter wraps; readers refuse gaps that could hide a wrap. Files without it (older) are read as None.
    """
    meta = {
        "format": SAMPLES_FORMAT,
        "clock": "time.monotonic",
        "period_s": period_s,
        "shortest_wrap_s": shortest_wrap_s,
        "channels": [asdict(channel) for channel in channels],
        "unavailable": unavailable,
        "pid": os.getpid(),
    }
    handle.write("# " + json.dumps(meta) + "\n")
    handle.write(",".join(["t_s"] + [channel.name for channel in channels]) + "\n")


def _format_row(t_s: float, values: list[float]) -> str:
    return ",".join([f"{t_s:.6f}"] + ["nan" if math.isnan(v) else f"{v:.6f}" for v in values]) + "\n"


def wrap_too_fast(period_s: float, wrap_s: float) -> str:
    """Why a sample period cannot be used: the rule (period under half the wrap time) with the real numbers."""
    return (f"a {period_s:.3g} s sample period is too slow: a RAPL counter here can wrap in {wrap_s:.3g} s at "
            f"{ASSUMED_MAX_W:.0f} W, and the period must be under half that ({wrap_s / 2:.3g} s) so that no wrap "
            f"goes unseen; use --sample-ms below {wrap_s / 2 * 1000:.3g}")


def sampler_main(specs: list[SourceSpec], path: str, period_s: float, conn: Connection) -> None:
    """Body of the sampler process: open sources, say ready, sample until told to stop, flush, exit.

    The only channel to the parent is a pipe: unlike a shared Event or Queue it cannot be left
    locked when one side is killed, and its end-of-file tells the sampler that the parent died.
    Ctrl-C reaches the whole process group, but only the parent acts on it: it stops the sampler
    through the pipe, so the sampler ignores SIGINT (held since ``Sampler.start`` spawned it).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    sources: list[PowerSource] = []
    unavailable: dict[str, str] = {}
    try:
        for spec in specs:
            try:
                sources.append(spec.open())
            except MeterUnavailable as exc:
                unavailable[spec.name] = str(exc)
        channels = [channel for source in sources for channel in source.channels()]
        wraps = [wrap for source in sources if (wrap := source.shortest_wrap_seconds()) is not None]
        if wraps and period_s >= min(wraps) / 2:
            raise MeterError(wrap_too_fast(period_s, min(wraps)))
        with open(path, "w", buffering=1) as handle:  # line-buffered: every sample reaches the OS at once
            _write_header(handle, channels, unavailable, period_s, min(wraps, default=None))
            handle.write(_format_row(time.monotonic(), [v for source in sources for v in source.read()]))
            conn.send({"channels": [asdict(c) for c in channels], "unavailable": unavailable})
            next_t = time.monotonic()
            while True:
                next_t += period_s
                delay = next_t - time.monotonic()
                if delay < -period_s:  # fell behind (a stall): resynchronise rather than burst
                    next_t = time.monotonic()
                    delay = 0.0
                if conn.poll(max(delay, 0.0)):
                    break  # "stop", or end-of-file because the parent died
                t_s = time.monotonic()
                handle.write(_format_row(t_s, [v for source in sources for v in source.read()]))
            handle.write(_format_row(time.monotonic(), [v for source in sources for v in source.read()]))
            try:
                orderly = conn.recv() == "stop"
            except EOFError:
                orderly = False
            if orderly:
                handle.write("# end\n")
    except BaseException:
        try:
            conn.send({"error": traceback.format_exc()})
        except OSError:
            pass
        raise
    finally:
        for source in sources:
            source.close()


class Sampler:
    """Starts and stops the sampler process; a pipe carries the ready/stop handshake."""

    def __init__(self, specs: list[SourceSpec], path: Path, period_s: float = 0.01) -> None:
        if period_s <= 0:
            raise MeterError(f"sample period {period_s} s must be positive")
        self.specs = specs
        self.path = Path(path)
        self.period_s = period_s
        self._context = multiprocessing.get_context("spawn")
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.channels: list[dict] = []
        self.unavailable: dict[str, str] = {}

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        parent_end, child_end = self._context.Pipe(duplex=True)
        self._conn = parent_end
        self._process = self._context.Process(
            target=sampler_main,
            args=(self.specs, str(self.path), self.period_s, child_end),
            name="edl-sampler",
            daemon=True,
        )
        import signal

        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # no Ctrl-C in the child's start-up
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        child_end.close()
        try:
            message = self._await_ready(parent_end)
        except BaseException:  # Ctrl-C too: a sampler that never became ready is never left behind
            self._kill()
            raise
        self.channels = message["channels"]
        self.unavailable = message["unavailable"]

    def _await_ready(self, conn: Connection) -> dict:
        """The sampler's first message: its channels, or why it could not start."""
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not conn.poll(0.05):
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise MeterError("the power sampler did not start (it died or hung before its first sample)")
        try:
            message = conn.recv()
        except EOFError:
            raise MeterError("the power sampler died before its first sample") from None
        if "error" in message:
            raise MeterError(f"the power sampler failed: {message['error'].strip().splitlines()[-1]}")
        return message

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join()

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self) -> None:
        """Stop and join; a sampler that died before this makes the measurement invalid."""
        if self._process is None or self._conn is None:
            return
        died = not self._process.is_alive()
        if not died:
            try:
                self._conn.send("stop")
            except OSError:
                died = True
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._kill()
            raise MeterError("the power sampler did not stop within 10 s; the measurement is invalid")
        if died or self._process.exitcode != 0:
            raise MeterError(
                f"the power sampler died during the run (exit code {self._process.exitcode}); the measurement is "
                "invalid, not low: score again"
            )

    def close(self) -> None:
        """Ask a running sampler to stop, then make sure it is gone; safe to call at any time."""
        try:
            if self.alive() and self._conn is not None and self._process is not None:
                try:
                    self._conn.send("stop")
                except OSError:
                    pass
                self._process.join(timeout=10)
        finally:  # a second Ctrl-C while it stops still leaves no sampler behind
            self._kill()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
