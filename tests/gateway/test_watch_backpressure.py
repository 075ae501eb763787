"""A slow watcher is cut off with WatchLagged instead of slowing anyone down."""

from __future__ import annotations

from services.common.api.slidelane.v1 import events_pb2, types_pb2
from services.gateway.watch import _LAGGED, QUEUE_SIZE, Watcher, is_terminal


def _event(seq: int, workflow_id: str = "wf") -> events_pb2.WorkflowEvent:
    return events_pb2.WorkflowEvent(workflow_id=workflow_id, seq=seq)


def test_a_watcher_that_falls_behind_is_marked_lagged_and_holds_no_backlog():
    watcher = Watcher("wf")
    for seq in range(1, QUEUE_SIZE + 1):
        watcher.offer(_event(seq))
    assert not watcher.lagged and watcher.queue.qsize() == QUEUE_SIZE
    watcher.offer(_event(QUEUE_SIZE + 1))  # one too many: never blocks the publisher
    assert watcher.lagged
    assert watcher.queue.qsize() == 1 and watcher.queue.get_nowait() is _LAGGED
    watcher.offer(_event(QUEUE_SIZE + 2))
    assert watcher.queue.qsize() == 0, "a lagged watcher must not keep buffering"


def test_a_workflow_watcher_ignores_other_workflows_of_the_tenant():
    watcher = Watcher("wf")
    watcher.offer(_event(1, "other"))
    assert watcher.queue.qsize() == 0


def test_terminal_events_end_the_stream():
    done = events_pb2.WorkflowEvent(
        workflow_state_changed=events_pb2.WorkflowStateChanged(state=types_pb2.WORKFLOW_STATE_SUCCEEDED)
    )
    running = events_pb2.WorkflowEvent(
        workflow_state_changed=events_pb2.WorkflowStateChanged(state=types_pb2.WORKFLOW_STATE_RUNNING)
    )
    assert is_terminal(done) and not is_terminal(running)
