"""The progress stream's events survive a JSON round trip, and a stored stream that is not one is refused clearly."""

from __future__ import annotations

import io
import json

import pytest

from evaluator.events import (
    EVENT_TYPES,
    BytesDone,
    Event,
    ImagesDone,
    PhaseFinished,
    PhaseStarted,
    RunPlaced,
    SubmissionsDone,
    Waiting,
    coalesced,
    event_json,
    json_lines,
    parse_event,
    phase,
    read_json_lines,
    tee,
    wait,
)

EXAMPLES: list[Event] = [PhaseStarted("pass", 2_000_000, 200), ImagesDone("pass", 30_000, 2_000_000, 3, 200),
                         PhaseFinished("pass", 12.5), Waiting("cooldown", 41.0, "GPU at 52 C"),
                         RunPlaced("team-a", 2, "node-1"), SubmissionsDone("team-a", 1, 4, 2, "node-1"),
                         BytesDone("cifar10", 10, None)]


def test_every_event_type_has_an_example_and_round_trips_through_json():
    assert {event.kind for event in EXAMPLES} == set(EVENT_TYPES)
    for event in EXAMPLES:
        line = json.dumps(event_json(event))
        assert parse_event(json.loads(line)) == event


@pytest.mark.parametrize("document, message", [
    ([], "JSON object"), ({"event": "launch"}, "unknown progress event 'launch'"),
    ({"event": "phase_started", "phase": "x", "extra": 1}, "unknown fields ['extra']"),
    ({"event": "phase_finished", "phase": "x"}, "phase_finished"),
])
def test_a_stored_stream_that_is_not_events_is_refused_with_the_reason(document, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_event(document)


def test_wait_counts_down_to_zero_without_real_sleeping():
    events: list[Event] = []
    slept: list[float] = []
    wait(events.append, "idle_baseline", 0.0, sleep=slept.append)
    assert events == [Waiting("idle_baseline", 0.0, "")] and slept == []


def test_a_phase_finishes_with_its_seconds_only_when_its_block_ends_normally():
    events: list[Event] = []
    with phase(events.append, "pass", 2000, 2):
        pass
    with pytest.raises(RuntimeError), phase(events.append, "audit"):
        raise RuntimeError("the audit failed")
    assert events[0] == PhaseStarted("pass", 2000, 2) and isinstance(events[1], PhaseFinished)
    assert events[1].phase == "pass" and events[1].seconds >= 0 and events[2:] == [PhaseStarted("audit")]


def test_json_lines_store_a_stream_that_reads_back_skipping_what_is_not_an_event():
    stream = io.StringIO()
    both: list[Event] = []
    sink = tee(json_lines(stream), both.append)
    for event in EXAMPLES:
        sink(event)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(EXAMPLES) and both == EXAMPLES
    assert list(read_json_lines([*lines[:2], '{"event": "pha', "[]", *lines[2:]])) == EXAMPLES


def test_a_stream_whose_reader_is_gone_stops_forwarding_without_raising():
    stream = io.StringIO()
    sink = json_lines(stream)
    stream.close()
    sink(EXAMPLES[0])  # a closed stream: the scoring goes on
    sink(EXAMPLES[1])


def test_coalesced_counts_pass_on_at_most_every_interval_and_the_last_before_the_phase_ends():
    events: list[Event] = []
    sink = coalesced(events.append, every_s=3600.0)
    counts = [ImagesDone("pass", n * 10, 50, n, 5) for n in range(1, 6)]
    for event in [PhaseStarted("pass", 50, 5), *counts, PhaseFinished("pass", 1.0)]:
        sink(event)
    assert events == [PhaseStarted("pass", 50, 5), counts[0], counts[-1], PhaseFinished("pass", 1.0)]
    every: list[Event] = []
    unthrottled = coalesced(every.append, every_s=0.0)
    for event in counts:
        unthrottled(event)
    assert every == counts
