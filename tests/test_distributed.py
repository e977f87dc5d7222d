"""build-dataset on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1.

Workers download (yt-dlp, from a server on 127.0.0.1), decode, detect and write blocks into
the shared output folder. The result must be byte-identical to a local build of the same
manifest, also when a worker is killed with SIGKILL in the middle of a task."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from omgclip.dataset import format as fmt
from omgclip.dataset.build import BuildConfig, build_dataset
from omgclip.errors import OmgclipError

distributed = pytest.importorskip("distributed", reason="Dask is an extra: pip install 'omgclip[dask]'")
from omgclip.dataset.distributed import (check_shared_folder, connect, map_tasks,  # noqa: E402
                                         parse_scheduler, sees_token)

slow = pytest.mark.slow  # real footage on a real cluster: `-m "not slow"` skips it

CLIPS = [("M030_front_happy_level3_001.mp4", 3), ("W009_front_disgusted_level3_001.mp4", 1),
         ("M030_front_angry_level3_001.mp4", 0), ("W009_front_fear_level3_001.mp4", 2),
         ("M030_front_sad_level3_001.mp4", 5), ("W009_front_surprised_level3_001.mp4", 6)]


@pytest.fixture(scope="module")
def served(shared_data, loopback):
    routes = {f"/v/{name}": (shared_data / "mead_clips" / "videos" / name).read_bytes() for name, _ in CLIPS}
    with loopback(routes) as server:
        yield server


@pytest.fixture(scope="module")
def manifest(served, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "omg_TrainVideos.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"])
        for i, (name, label) in enumerate(CLIPS):
            w.writerow([served.url(f"/v/{name}"), 0.0, 3.6, f"vid{i}", "utterance_1.mp4", 0.5, 0.1, label])
        w.writerow([served.url("/v/gone.mp4"), 0, 2, "gone", "utterance_1.mp4", 0.5, 0.1, 4])  # 404
    return path


@pytest.fixture(scope="module")
def cluster():
    """A real scheduler and two single-threaded worker processes (each with a nanny that
    restarts it when it dies), on 127.0.0.1 only."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def local_build(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "ds"
    build_dataset(BuildConfig(manifests=(str(manifest),), out=str(out), progress=False))
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file under blocks/ (temp files included) and the tables, as bytes."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / fmt.BLOCKS_DIR).rglob("*")
             if p.is_file()}
    for name in (fmt.INDEX_FILE, fmt.SKIPS_FILE, fmt.FAILURES_FILE):
        files[name] = (out / name).read_bytes()
    return files


@slow
def test_cluster_build_is_byte_identical_to_a_local_build(manifest, cluster, local_build, tmp_path):
    out = tmp_path / "ds"
    report = build_dataset(BuildConfig(manifests=(str(manifest),), out=str(out), progress=False,
                                       scheduler=cluster.scheduler_address, download_interval=0.05))
    local = _snapshot(local_build)
    assert sum(k.endswith(".npy") for k in local) >= 2 * len(CLIPS)
    assert _snapshot(out) == local
    assert [f["source"].rsplit("/", 1)[1] for f in report.failures] == ["gone.mp4"]
    assert "404" in report.failures[0]["reason"]
    assert (out / "videos").is_dir() and len(list((out / "videos").glob("*.mp4"))) == len(CLIPS)
    assert (out / "videos" / ".throttle" / "127.0.0.1").is_file()  # the workers took turns


def _executing(dask_worker) -> list[str]:
    """On a worker: the keys of the tasks it is running right now."""
    return [str(ts.key) for ts in dask_worker.state.executing]


def _kill_a_busy_worker(address: str, build: threading.Thread, timeout: float = 120) -> str:
    """SIGKILL the process of a worker while it runs a build task; returns the task's key."""
    with distributed.Client(address, timeout=30) as client:
        pids = client.run(os.getpid)
        deadline = time.time() + timeout
        while time.time() < deadline and build.is_alive():
            running = [(w, k) for w, keys in client.run(_executing).items() for k in keys
                       if k.startswith("build-source")]
            if running:
                worker, key = running[0]
                os.kill(pids[worker], signal.SIGKILL)
                return key
            time.sleep(0.05)
    raise AssertionError("no build task was seen running")


@slow
def test_a_worker_killed_mid_build_changes_nothing(manifest, cluster, local_build, served, tmp_path):
    out = tmp_path / "ds"
    cfg = BuildConfig(manifests=(str(manifest),), out=str(out), progress=False,
                      scheduler=cluster.scheduler_address)
    done: dict = {}
    build = threading.Thread(target=lambda: done.setdefault("report", build_dataset(cfg)))
    build.start()
    killed_key = _kill_a_busy_worker(cluster.scheduler_address, build)
    build.join(timeout=300)
    assert not build.is_alive()
    assert killed_key and "report" in done
    assert [f["source"].rsplit("/", 1)[1] for f in done["report"].failures] == ["gone.mp4"]
    assert _snapshot(out) == _snapshot(local_build)
    assert not list(out.rglob("*.tmp"))
    # resumable as a local build: a rerun fetches nothing (the dead link is recorded; only
    # --retry-failed requests it again) and changes nothing
    gets = served.count("GET")
    build_dataset(cfg)
    assert served.count("GET") == gets
    assert _snapshot(out) == _snapshot(local_build)


def test_a_task_that_keeps_failing_is_reported_not_raised(cluster):
    def flaky(x):
        if x == 2:
            raise ValueError(f"bad item {x}")
        return x * 10

    with distributed.Client(cluster.scheduler_address) as client:
        outcomes = list(map_tasks(client, flaky, [1, 2, 3], kwargs={}, retries=1, name="t", progress=False))
    by_item = {o.item: o for o in outcomes}
    assert {i: o.result for i, o in by_item.items() if o.error is None} == {1: 10, 3: 30}
    assert by_item[2].error == "task failed: ValueError: bad item 2"


@slow
def test_cli_with_a_local_cluster_builds_the_same(manifest, local_build, tmp_path, capsys):
    """``omgclip build-dataset --scheduler local:2`` starts (and stops) its own cluster."""
    from omgclip.cli import main

    out = tmp_path / "ds"
    assert main(["build-dataset", "--manifest", str(manifest), "--out", str(out), "--scheduler", "local:2",
                 "--task-retries", "1", "--no-progress"]) == 0
    assert "1 source(s) failed" in capsys.readouterr().out
    assert _snapshot(out) == _snapshot(local_build)


def test_cli_refuses_a_bad_address_in_one_line(tmp_path, capsys):
    from omgclip.cli import main

    assert main(["build-dataset", "--manifest", "m.csv", "--out", str(tmp_path / "x"), "--scheduler",
                 "tcp://nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("omgclip: error: --scheduler 'tcp://nowhere'") and "\n" not in err


def test_workers_must_see_the_output_folder(cluster, tmp_path):
    with distributed.Client(cluster.scheduler_address) as client:
        check_shared_folder(client, tmp_path / "out")  # same machine: every worker sees it
    assert not list((tmp_path / "out").iterdir())  # the probe file is gone
    assert not sees_token(str(tmp_path / "nothing-here"), "x")

    class BlindWorkers:  # what a worker without the shared mount answers
        def run(self, func, *args):
            return {"tcp://10.0.0.7:4242": False, "tcp://10.0.0.8:4242": func(*args)}

    with pytest.raises(OmgclipError, match=r"1 Dask worker\(s\) \(tcp://10.0.0.7:4242\) do not see"):
        check_shared_folder(BlindWorkers(), tmp_path / "out")


def test_a_task_refuses_an_output_folder_the_client_did_not_make(tmp_path):
    """A worker that joined after the check, without the shared mount, writes nothing."""
    from omgclip.dataset.build import Job, build_source
    from omgclip.dataset.manifest import Utterance

    utt = Utterance(row=2, source="/nowhere/v.mp4", start=None, end=None, video="v", utterance="u",
                    label=3, group="g", split="train")
    cfg = BuildConfig(manifests=("m.csv",), out=str(tmp_path / "ds"))
    with pytest.raises(OmgclipError, match="does not see"):
        build_source(Job(utt.source, utt.source, ((utt, 20),)), cfg, str(tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("text", ["", "local:0", "local:x", "tcp://host", "http://h:1", "host:8786"])
def test_bad_scheduler_addresses_are_refused_before_any_write(text, tmp_path):
    with pytest.raises(OmgclipError, match="--scheduler"):
        parse_scheduler(text)
    with pytest.raises(OmgclipError, match="--scheduler"):
        BuildConfig(manifests=("m.csv",), out=str(tmp_path / "x"), scheduler=text)
    assert not (tmp_path / "x").exists()


def test_good_scheduler_addresses():
    assert parse_scheduler("tcp://10.1.2.3:8786").address == "tcp://10.1.2.3:8786"
    assert parse_scheduler("local:3").local_workers == 3
    assert parse_scheduler("local").local_workers >= 1


def test_unreachable_scheduler_is_one_clear_error(monkeypatch):
    import socket

    from omgclip.dataset import distributed as engine

    monkeypatch.setattr(engine, "CONNECT_TIMEOUT_S", 3.0)
    with socket.socket() as s:  # a free port on 127.0.0.1 where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OmgclipError, match="cannot reach the Dask scheduler"):
        with connect(parse_scheduler(f"tcp://127.0.0.1:{port}")):
            pass


@slow
def test_predict_on_the_cluster_gives_the_local_rows(shared_data, cluster, tmp_path, monkeypatch):
    import pandas as pd

    from omgclip.apps.predict import PartialPredictError, PredictConfig, predict

    videos = shared_data / "mead_clips" / "videos"
    monkeypatch.chdir(videos)  # relative inputs: sent as absolute paths, rows keep the name given
    inputs = ("M030_front_happy_level3_001.mp4", "W009_front_angry_level3_001.mp4", "missing.mp4")
    local = cluster_err = None
    with pytest.raises(PartialPredictError) as local:
        predict(PredictConfig(inputs=inputs, progress=False))
    with pytest.raises(PartialPredictError) as cluster_err:
        predict(PredictConfig(inputs=inputs, progress=False, scheduler=cluster.scheduler_address,
                              out=str(tmp_path / "rows.csv")))
    here, there = local.value.rows, cluster_err.value.rows
    assert list(there.file.unique()) == list(inputs[:2])
    pd.testing.assert_frame_equal(there, here)
    assert "missing.mp4" in str(cluster_err.value) and "1 of 3 inputs failed" in str(cluster_err.value)
    assert len(pd.read_csv(tmp_path / "rows.csv")) == len(here)
