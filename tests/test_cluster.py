"""Issue 19: a two-node Ray cluster on loopback loses its second node mid-search (a preempted spot instance)."""

from __future__ import annotations

import pytest

from cluster import lost, node_loss

pytestmark = pytest.mark.integration


def test_losing_one_of_two_nodes_fails_its_trials_once_requeues_them_and_loses_nothing(tmp_path):
    figures = node_loss(tmp_path, budget=12, sleep_s=3.0)
    log = (tmp_path / "nodes.log").read_text(errors="replace") if (tmp_path / "nodes.log").exists() else ""
    seen = f"{ {k: v for k, v in figures.items() if k != 'now'} }\nsearch output (tail):\n{log[-3000:]}"  # all of it, untruncated
    assert figures["killed_at"] is not None and figures["killed_processes"] >= 2, seen  # raylet + a trial worker at least
    assert figures["exit"] == 0, seen
    assert figures["complete_on"]["head"] >= 1 and figures["complete_on"]["second"] >= 1, seen  # trials landed on both
    assert lost(figures) == 0 and figures["duplicated"] == 0 and figures["zombies"] == 0, seen
    # the dead node's running trial(s): FAIL with Ray's reason, each config queued again and re-run exactly once
    assert figures["interrupted"] >= 1 and all(n == 1 for n in figures["reruns_per_interrupted"]), seen
    assert all(r.startswith("worker failed:") for r in figures["fail_reasons"]), seen
    # the search ends with its budget: the interrupted attempts do not count, their re-runs do
    assert figures["counted"] == figures["budget"], seen
    # charged up to their death (plus the seconds Ray takes to declare the node dead), not beyond
    assert all(0 < s <= 3.0 + 30 for s in figures["interrupted_charged_s"]), seen
