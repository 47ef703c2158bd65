"""Redis Cluster on a real local 3-master cluster: cameras and partitions spread over the shards, each camera's
scripts and transactions in one slot, windows read from every partition, the alert outbox applied exactly once, and
a wrong mode or partition count refused at start with the setting to change."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.alerts.schema import Incident
from service.bus import keys, topics
from service.bus.client import check_server, connect, is_cluster, wait_for_redis
from service.errors import BusError
from service.messages import Alert, AlertEvent, JobRecord, ScoreMsg
from service.settings import RedisSettings
from tests.redis_cluster import LocalCluster
from tests.service.bus.test_topics import _alert, _window

PARTITIONS = 6
JOB = "0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield local
    local.stop()


@pytest.fixture
def rc(cluster: LocalCluster) -> Iterator[redis.Redis]:
    """A vigil client of the cluster with PARTITIONS partitions; the cluster is emptied and the process's partition
    count set back to 1 afterwards."""
    client = connect(RedisSettings(url=cluster.url, cluster=True, partitions=PARTITIONS))
    wait_for_redis(client, 10)
    yield client
    client.flushall()  # every primary
    client.close()
    keys.set_partitions(1)


def _cameras(n: int) -> list[str]:
    return [f"cam-{i}" for i in range(n)]


def test_cameras_and_partitions_spread_over_every_shard(cluster: LocalCluster, rc: redis.Redis) -> None:
    assert is_cluster(rc)
    partition_shards = {cluster.master_of(keys.windows_stream(p)) for p in range(PARTITIONS)}
    camera_shards = {cluster.master_of(keys.camera_state_key(c)) for c in _cameras(24)}
    assert partition_shards == camera_shards == set(cluster.ports)
    # Everything a camera's scripts touch together is in its partition's slot; a job's progress with its stream's keys.
    job = keys.job_stream("j1")
    assert cluster.master_of(keys.job_progress_key("j1")) == cluster.master_of(keys.camera_seq_key(job))
    for camera in _cameras(24):
        p = keys.partition_of(camera)
        slot_keys = [keys.windows_stream(p), keys.results_waiting_set(p), keys.alert_outbox(p)]
        slot_keys += [keys.camera_state_key(camera), keys.score_stream_key(camera), keys.camera_signals_key(camera)]
        assert len({cluster.master_of(k) for k in slot_keys}) == 1


def test_windows_of_every_partition_are_read_claimed_and_acknowledged(rc: redis.Redis) -> None:
    topics.ensure_window_group(rc)
    cameras = _cameras(12)
    for camera in cameras:
        assert topics.publish_window(rc, _window(camera))[0] == 1
    got = topics.read_windows(rc, "w1", count=5, block_ms=50)
    assert 5 <= len(got) <= 5 + PARTITIONS - 1  # a share of each partition, then the rest from those that had more
    deadline = time.monotonic() + 10
    while len(got) < len(cameras) and time.monotonic() < deadline:
        got += topics.read_windows(rc, "w1", count=5, block_ms=50)
    assert sorted(w.camera for _, w in got) == sorted(cameras)  # type: ignore[union-attr]
    assert topics.window_backlog(rc) == (12, 0, 12)
    # A dead consumer's windows are found and taken over in every partition.
    assert topics.dead_consumers(rc, "w2") == [("w1", 12)]
    taken = topics.claim_windows_of(rc, "w1", "w2", 0, 100)
    assert sorted(ref for ref, _ in taken) == sorted(ref for ref, _ in got)
    topics.ack_windows(rc, [ref for ref, _ in taken])
    assert topics.window_backlog(rc) == (0, 0, 0)
    assert topics.read_windows(rc, "w2", count=5, block_ms=30) == []


def test_a_busy_partition_fills_a_batch_in_one_read(rc: redis.Redis) -> None:
    topics.ensure_window_group(rc)
    for _ in range(12):
        topics.publish_window(rc, _window("hot"))
    got = topics.read_windows(rc, "w1", count=8, block_ms=50)
    assert [w.seq for _, w in got] == list(range(1, 9))  # type: ignore[union-attr]


def test_scores_of_cameras_in_different_slots_are_read_together(rc: redis.Redis) -> None:
    cameras = _cameras(6)
    for i, camera in enumerate(cameras):
        score = ScoreMsg(
            camera=camera, frame=i, seq=1, score=0.5, signals=[0.1], model="m@v1", capture_ts=1.0, published_ts=1.0
        )
        topics.add_scores(rc, [score])
    got = topics.read_new_scores(rc, dict.fromkeys(cameras, "0-0"), block_ms=100)
    assert sorted((c, s.frame) for c, _, s in got) == [(c, i) for i, c in enumerate(cameras)]
    assert topics.read_new_scores(rc, dict.fromkeys(cameras, "$"), block_ms=50) == []


def test_the_alert_outbox_is_applied_once_in_order_by_racing_relays(rc: redis.Redis) -> None:
    camera = "door"
    for i in range(40):  # queued as a camera's transaction would, without relaying
        alert = _alert(f"{camera}-{i}-0000000{i % 10}", camera, "open" if i % 2 == 0 else "closed")
        pipe = rc.pipeline(transaction=True)
        topics.queue_alert_event(pipe, AlertEvent(kind="opened", alert=alert), retention_s=600)
        pipe.execute()
    incident = Incident(id="inc-1", camera=camera, state="closed", start_ts=1.0, end_ts=2.0, alerts=1)
    topics.save_incident(rc, incident, 600)  # relays the 40 alert changes before it, too
    applied: list[int] = []
    threads = [threading.Thread(target=lambda: applied.append(topics.relay_all(rc))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(applied) == 0  # all of them were applied by the first relay already
    page = topics.list_alerts(rc, limit=100)
    assert [a.id for a in page.alerts] == [f"{camera}-{i}-0000000{i % 10}" for i in range(40)]
    assert page.next_cursor == 40  # one revision per change, none twice
    assert topics.list_alerts(rc, state="open").alerts == page.alerts[::2]
    assert [i.id for i in topics.list_incidents(rc).incidents] == ["inc-1"]
    assert rc.xlen(keys.alert_outbox(keys.partition_of(camera))) == 0
    assert rc.xlen(keys.ALERT_EVENTS_STREAM) == 40


def test_an_outbox_entry_applied_but_not_deleted_is_not_applied_again(rc: redis.Redis) -> None:
    """A relay that died between applying and deleting left the entry behind, with the applied mark at its id: the
    next relay skips and deletes it."""
    event = AlertEvent(kind="opened", alert=_alert("gate-1-00000000", "gate"))
    topics.save_alert_event(rc, event, retention_s=600)
    p = keys.partition_of("gate")
    pipe = rc.pipeline(transaction=True)
    topics.queue_alert_event(pipe, event.model_copy(update={"kind": "closed"}), retention_s=600)
    pipe.execute()
    ((entry_id, _),) = rc.xrange(keys.alert_outbox(p))
    rc.hset(keys.OUTBOX_APPLIED_HASH, str(p), entry_id)  # as the dead relay's script left it
    assert topics.relay_outbox(rc, p) == 0
    assert topics.list_alerts(rc).next_cursor == 1
    assert rc.xlen(keys.alert_outbox(p)) == 0


def test_a_standalone_client_of_a_cluster_and_a_cluster_client_of_a_standalone_are_refused(
    cluster: LocalCluster, redis_url: str
) -> None:
    client = connect(RedisSettings(url=cluster.url))
    with pytest.raises(BusError, match=r"is a Redis Cluster node .* set VIGIL_REDIS__CLUSTER=true"):
        wait_for_redis(client, 10)
    client.close()
    with pytest.raises(
        BusError, match=r"is a standalone server, not a Redis Cluster node.*set VIGIL_REDIS__CLUSTER=false"
    ):
        connect(RedisSettings(url=redis_url, cluster=True, startup_wait_s=2))


def test_another_partition_count_than_the_data_was_written_with_is_refused(
    rc: redis.Redis, cluster: LocalCluster
) -> None:
    assert int(rc.get(keys.PARTITIONS_KEY) or 0) == PARTITIONS
    other = connect(RedisSettings(url=cluster.url, cluster=True, partitions=4))
    try:
        with pytest.raises(
            BusError, match=f"spread over {PARTITIONS} partitions.*VIGIL_REDIS__PARTITIONS={PARTITIONS}"
        ):
            check_server(other)
    finally:
        other.close()
        keys.set_partitions(PARTITIONS)  # the fixture's client goes on with its own count


def test_alert_changes_committed_while_the_global_shard_is_down_land_when_it_is_back(
    cluster: LocalCluster, rc: redis.Redis
) -> None:
    """The camera's transaction commits in its own shard; the relay to the global alert store (another shard) fails
    while that master is down, and the worker's sweep applies the outbox once it is back."""
    global_port = cluster.master_of(keys.ALERTS_INDEX)
    camera = next(c for c in _cameras(50) if cluster.master_of(keys.alert_outbox(keys.partition_of(c))) != global_port)
    alert: Alert = _alert(f"{camera}-5-abcdef01", camera)
    pipe = rc.pipeline(transaction=True)
    topics.queue_alert_event(pipe, AlertEvent(kind="opened", alert=alert), retention_s=600)
    pipe.execute()
    cluster.procs[global_port].kill()
    cluster.procs[global_port].wait(10)
    with pytest.raises(topics_errors()):
        topics.relay_outbox(rc, keys.partition_of(camera))
    cluster.start_node(global_port)
    cluster.wait_ok()
    deadline = time.monotonic() + 30
    while True:
        try:
            topics.relay_all(rc)
            break
        except topics_errors():
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert [a.id for a in topics.list_alerts(rc).alerts] == [alert.id]


def topics_errors() -> tuple[type[Exception], ...]:
    from service.bus.client import REDIS_ERRORS

    return REDIS_ERRORS


def test_a_job_is_queued_run_cancelled_and_deleted_on_a_cluster(rc: redis.Redis) -> None:
    """The job record's optimistic transaction (WATCH) and indexes are global; its progress lives with its stream."""
    job = JobRecord(id=JOB, model="m@v1", source="path", name="a.mp4", input="/footage/a.mp4")
    assert topics.put_job(rc, job)
    assert topics.active_jobs(rc) == [JOB]
    window = _window(keys.job_stream(JOB)).model_copy(update={"job_id": JOB, "source": "job"})
    assert topics.publish_job_window(rc, window) == (1, window.first_frame + window.num_scored)
    assert topics.job_progress(rc, JOB)["last_seq"] == "1"
    cancelled, changed = topics.cancel_job(rc, JOB, "stopped by a test")
    assert changed
    assert cancelled is not None
    assert cancelled.state == "cancelled"
    assert not topics.put_job(rc, job.model_copy(update={"state": "running"}))  # a cancelled job stays cancelled
    topics.expire_job_stream(rc, JOB, ttl_s=60)
    assert topics.delete_job(rc, JOB)
    assert topics.get_job(rc, JOB) is None
    assert topics.job_progress(rc, JOB) == {}
