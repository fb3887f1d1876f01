"""The leader's own view of its lease: when it ends locally, renewals, stepping down once, the guard that
refuses API calls after the end; a standby's pauses; what status and /metrics say; the config's rule."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from burst_agent.config import ConfigError, config_from_mapping
from burst_agent.leadership import Leadership, LeaseView, Terms, guard_session
from burst_agent.ledger import Deposed
from burst_agent.metrics import Metrics, standby_registry
from burst_agent.store import StoreError

TERMS = Terms(lease_s=8, renew_s=2)


class Row:
    holder = "a:1"

    def __init__(self, answers=()):
        self.answers, self.released = list(answers), []

    def renew(self, epoch):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def release(self, epoch):
        self.released.append(epoch)

    def close(self):
        pass


def leader(row, now, lost):
    return Leadership(row, TERMS, 3, sent_at=0.0, on_lost=lost.append, clock=lambda: now[0])


def test_the_local_lease_ends_before_the_servers_and_a_renewal_moves_it():
    now, lost = [5.0], []
    lead = leader(Row([True]), now, lost)
    assert lead.valid_until == 7.5  # sent at 0: the server's 8 s began later
    assert lead.renew_once() and lead.valid_until == 12.5
    assert lead.valid() and lost == []


def test_a_leader_that_cannot_renew_steps_down_once_when_its_lease_ends():
    now, lost = [1.0], []
    lead = leader(Row([StoreError("unreachable")]), now, lost)
    assert not lead.renew_once() and lost == []  # the database may come back in time
    now[0] = 7.4
    lead.watch_once()
    assert lost == []
    now[0] = 7.5
    lead.watch_once()
    lead.watch_once()
    assert len(lost) == 1 and "ended" in lost[0] and not lead.valid()


def test_a_renewal_that_finds_the_lease_taken_steps_down_at_once():
    now, lost = [2.0], []
    lead = leader(Row([False]), now, lost)
    assert not lead.renew_once()
    assert lost == ["the lease was over or taken when renewed"]


class Recorder(requests.adapters.BaseAdapter):
    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append(request.method)
        response = requests.Response()
        response.status_code, response._content, response.request = 200, b"{}", request
        return response

    def close(self):
        pass


def test_api_calls_are_refused_once_the_lease_ended_and_the_leader_steps_down():
    now, lost, recorder = [1.0], [], Recorder()
    lead = leader(Row(), now, lost)
    session = requests.Session()
    session.mount("http://", recorder)
    guard_session(session, lead.check)
    assert session.post("http://rescale.example/api/v2/jobs/").status_code == 200
    now[0] = 7.6  # e.g. resumed after SIGSTOP: the monotonic clock went on meanwhile
    with pytest.raises(Deposed):
        session.post("http://rescale.example/api/v2/jobs/")
    assert recorder.sent == ["POST"] and len(lost) == 1


def test_a_release_ends_the_lease_without_stepping_down():
    now, lost, row = [1.0], [], Row()
    lead = leader(row, now, lost)
    lead.release()
    assert row.released == [3] and lost == [] and not lead.valid()
    lead.fence().refused()  # a write after the release: refused by the database, no exit
    assert lost == []


@pytest.mark.parametrize(("left", "pause"), [(7.0, 2.0), (0.5, 0.52), (-1.0, 0.0)])
def test_a_standby_looks_again_at_the_latest_just_after_the_lease_ends(left, pause):
    assert TERMS.standby_wait(left) == pytest.approx(pause)


def test_an_idle_fenced_transaction_ends_well_inside_the_lease():
    assert TERMS.idle_ms == 3000  # a paused leader's open write is gone before its lease is


@pytest.mark.parametrize(("view", "shown"), [
    (LeaseView("node1:42", 3, 6.25), "node1:42 (epoch 3), lease 6.2 s left"),
    (LeaseView("node1:42", 3, -2.0), "none: the lease of node1:42 (epoch 3) ended 2.0 s ago"),
    (LeaseView("", 0, -1e9), "none yet (no agent has led)"),
])
def test_status_says_who_leads(view, shown):
    assert view.describe() == shown


def test_a_renewal_must_come_at_least_three_times_a_lease():
    with pytest.raises(ConfigError, match=r"agent\.leader_renew_s: 2\.5 is over a third"):
        config_from_mapping({"agent": {"leader_lease_s": 6, "leader_renew_s": 2.5}})
    allowed = config_from_mapping({"agent": {"leader_lease_s": 6, "leader_renew_s": 2}})
    assert (allowed.agent.leader_lease_s, allowed.agent.leader_renew_s) == (6, 2)


def _samples(text):
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_standby_serves_leader_0_and_nothing_of_the_shared_state():
    from prometheus_client import generate_latest

    standby = _samples(generate_latest(standby_registry()).decode())
    assert set(standby) == {"burst_agent_leader", "burst_agent_build_info"}  # no job counts twice
    assert standby["burst_agent_leader"] == 0
    assert _samples(Metrics().exposition().decode())["burst_agent_leader"] == 1
