"""Leader election on a coordination.k8s.io Lease (rollout.release.lease), through the real
httpx adapter against a loopback stand-in of the Lease API (tests/support/kube_lease.py: HTTPS
with its own CA, bearer token, 409 on a stale resourceVersion). No Kubernetes API server can run
here; the stand-in keeps the semantics the elector relies on. Clocks are injected: expiry is
decided on the elector's own clock, as in client-go."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.kube_lease import KubeLeaseServer

from rollout.release.lease import KubeLeaseApi, LeaderElector, LeaseError, LeaseRecord, held_by_other, next_record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api_server(tmp_path: Path):
    with KubeLeaseServer(tmp_path) as server:
        yield server


def elector(server: KubeLeaseServer, identity: str, clock: Clock) -> LeaderElector:
    api = KubeLeaseApi.in_cluster("genesis-rollout-bot", environ=server.env())
    return LeaderElector(api, identity, lease_seconds=30, renew_deadline_seconds=20, retry_seconds=5, clock=clock)


def test_one_pod_leads_the_other_waits_until_the_lease_expires_on_its_own_clock(api_server: KubeLeaseServer) -> None:
    clock = Clock()
    old, new = elector(api_server, "bot-old", clock), elector(api_server, "bot-new", clock)
    assert old.try_acquire_or_renew() and old.leading()
    assert api_server.holder("genesis-rollout-bot") == "bot-old"
    assert not new.try_acquire_or_renew() and not new.leading()
    clock.now += 25  # renewals keep it: the holder writes, the candidate's expiry clock restarts
    assert old.try_acquire_or_renew()
    clock.now += 25
    assert not new.try_acquire_or_renew()
    # the holder dies silently: after one lease duration unchanged on the candidate's clock, it takes over
    clock.now += 31
    assert not old.leading()  # past its renew deadline the old holder no longer counts itself leader
    assert new.try_acquire_or_renew() and new.leading()
    assert api_server.holder("genesis-rollout-bot") == "bot-new"
    lease = api_server.leases[("monitoring", "genesis-rollout-bot")]["spec"]
    assert lease["leaseTransitions"] == 1 and lease["leaseDurationSeconds"] == 30


def test_a_released_lease_is_taken_at_once(api_server: KubeLeaseServer) -> None:
    """A SIGTERMed bot hands the lease back: the new pod does not wait a lease duration."""
    clock = Clock()
    old, new = elector(api_server, "bot-old", clock), elector(api_server, "bot-new", clock)
    assert old.try_acquire_or_renew()
    assert not new.try_acquire_or_renew()
    old.release()
    assert api_server.holder("genesis-rollout-bot") == "" and not old.leading()
    assert new.try_acquire_or_renew() and new.leading()


def test_a_write_on_a_stale_resource_version_is_refused_so_only_one_wins(api_server: KubeLeaseServer) -> None:
    api_a = KubeLeaseApi.in_cluster("race", environ=api_server.env())
    api_b = KubeLeaseApi.in_cluster("race", environ=api_server.env())
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    api_a.create(LeaseRecord(holder="", duration_seconds=1))
    seen_a, seen_b = api_a.get(), api_b.get()
    assert seen_a == seen_b and seen_a is not None
    api_a.update(next_record(seen_a, "a", 30, now))
    with pytest.raises(LeaseError, match="409 Conflict"):
        api_b.update(next_record(seen_b, "b", 30, now))
    assert api_server.holder("race") == "a"


def test_a_rotated_token_is_read_again_and_a_wrong_one_is_named(api_server: KubeLeaseServer) -> None:
    clock = Clock()
    bot = elector(api_server, "bot", clock)
    assert bot.try_acquire_or_renew()
    api_server.rotate_token("sa-token-rotated")
    assert bot.try_acquire_or_renew()  # the kubelet rotated the projected token: still renewing
    api_server.token = "something-else"
    with pytest.raises(LeaseError, match="HTTP 401") as refused:
        bot.api.get()
    assert "sa-token" not in str(refused.value)  # the token it sent is never in the error


def test_outside_a_pod_leader_election_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(LeaseError, match="KUBERNETES_SERVICE_HOST is not set"):
        KubeLeaseApi.in_cluster("x", environ={})
    with pytest.raises(LeaseError, match="no ServiceAccount token"):
        KubeLeaseApi.in_cluster("x", environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "ROLLOUT_SERVICE_ACCOUNT_DIR": str(tmp_path)})


def test_expiry_is_judged_from_when_we_saw_the_record_not_from_its_renew_time() -> None:
    record = LeaseRecord(holder="other", duration_seconds=30)
    assert held_by_other(record, "me", observed_at=100.0, now=129.0)
    assert not held_by_other(record, "me", observed_at=100.0, now=130.0)
    assert not held_by_other(LeaseRecord(holder="", duration_seconds=30), "me", 100.0, 101.0)
    assert not held_by_other(LeaseRecord(holder="me", duration_seconds=30), "me", 100.0, 101.0)
