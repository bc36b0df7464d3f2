"""Issue 19: the study's storage goes away mid-search (a PostgreSQL restart, a longer stop, an SQLite file
locked by another process): the search waits and goes on with nothing lost or duplicated, and past
``--storage-wait`` it exits with one line (exit 75) and the same command resumes the study cleanly."""

from __future__ import annotations

import os

import pytest

from outages import postgres_outage, sqlite_lock
from postgres import postgres, server_bin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    if server_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL server not installed here (apt-get install postgresql); CI installs it")
    with postgres() as running:
        yield running


def _clean(figures: dict) -> None:
    seen = {k: v for k, v in figures.items() if k != "log_tail"} | {"log_tail": figures["log_tail"][-1500:]}
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["zombies"] == 0, seen
    assert figures["ownerless"] <= 1, seen  # see outages._figures
    assert figures["counted"] == figures["budget"], seen
    assert figures["tracebacks"] == 0, seen


def test_a_postgresql_restart_mid_search_is_waited_out(tmp_path, server):
    figures = postgres_outage(tmp_path, server, down_s=None, wait="60s", runner="ray")
    _clean(figures)
    assert figures["first_exit"] == 0 and figures["ownerless"] == 0, figures
    # a restart takes ~1 s: a search that touched the storage meanwhile says so, and says when it is back
    waited = [line for line in figures["outage_lines"] if "retrying for up to 60 s" in line]
    assert len([line for line in figures["outage_lines"] if "reachable again" in line]) == len(waited), figures


def test_a_postgresql_stop_shorter_than_the_wait_is_waited_out(tmp_path, server):
    figures = postgres_outage(tmp_path, server, down_s=8.0, wait="60s", runner="local", budget=12)
    _clean(figures)
    assert figures["first_exit"] == 0 and figures["ownerless"] == 0, figures
    assert any("unreachable" in line and "retrying for up to 60 s" in line for line in figures["outage_lines"]), figures
    assert any("reachable again after" in line for line in figures["outage_lines"]), figures


def test_a_postgresql_stop_longer_than_the_wait_exits_with_one_line_and_resumes(tmp_path, server):
    figures = postgres_outage(tmp_path, server, down_s=12.0, wait="4s", runner="ray", budget=10)
    _clean(figures)
    assert figures["first_exit"] == 75, figures
    gave_up = [line for line in figures["outage_lines"] if "past --storage-wait 4 s" in line]
    assert len(gave_up) == 1, figures  # one line, no traceback (``_clean``)
    assert figures["resumed_exit"] == 0 and "resumed" in figures["resumed_first_line"], figures


def test_an_sqlite_file_locked_past_the_wait_exits_with_one_line_and_resumes(tmp_path):
    figures = sqlite_lock(tmp_path, locked_s=8.0, wait="3s")
    _clean(figures)
    assert figures["running_when_locked"] and figures["complete_before_outage"] < figures["budget"], figures
    assert figures["first_exit"] == 75 and figures["resumed_exit"] == 0, figures
    assert any("past --storage-wait 3 s" in line for line in figures["outage_lines"]), figures


def _open_new(url: str) -> str:
    from autotradeoff.study.storage import open_storage

    try:
        open_storage(url)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong in the child
        return str(exc)


def test_processes_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    """Each creates the schema of a database that does not exist yet; the slower ones used to fail with
    "table ... already exists" (seen in CI: a search and a reader of its study started together)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for n in range(6):
            assert pool.map(_open_new, [f"sqlite:///{tmp_path}/new{n}.db"] * 4) == ["ok"] * 4
