"""The transition table is the lifecycle: check it says what DESIGN and the README say."""

from __future__ import annotations

import pytest

from models.state import TERMINAL_STATES, TRANSITIONS, JobState, Transition, can

S = JobState


def test_every_transition_of_the_lifecycle() -> None:
    table = {t: (set(m.sources), m.target) for t, m in TRANSITIONS.items()}
    assert table == {
        Transition.CLAIM: ({S.QUEUED}, S.SUBMITTING),
        Transition.MARK_RUNNING: ({S.SUBMITTING}, S.RUNNING),
        Transition.BEGIN_FINALIZE: ({S.SUBMITTING, S.RUNNING}, S.FINALIZING),
        Transition.SUCCEED: ({S.FINALIZING}, S.SUCCEEDED),
        Transition.ADVANCE: ({S.FINALIZING}, S.QUEUED),
        Transition.REQUEUE: ({S.SUBMITTING, S.RUNNING, S.FINALIZING}, S.QUEUED),
        Transition.FAIL: ({S.SUBMITTING, S.RUNNING, S.FINALIZING}, S.FAILED),
        Transition.CANCEL: ({S.QUEUED, S.SUBMITTING, S.RUNNING, S.FINALIZING}, S.CANCELED),
        Transition.RETRY: ({S.FAILED, S.CANCELED}, S.QUEUED),
    }


def test_a_succeeded_job_never_moves_again() -> None:
    assert not any(can(t, S.SUCCEEDED) for t in TRANSITIONS)


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_only_an_ops_retry_leaves_a_terminal_state(state: JobState) -> None:
    allowed = {t for t in TRANSITIONS if can(t, state)}
    assert allowed <= {Transition.RETRY}


def test_every_state_is_reachable_from_queued() -> None:
    reached, frontier = {S.QUEUED}, [S.QUEUED]
    while frontier:
        state = frontier.pop()
        for move in TRANSITIONS.values():
            if state in move.sources and move.target not in reached:
                reached.add(move.target)
                frontier.append(move.target)
    assert reached == set(JobState)
