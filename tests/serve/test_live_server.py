"""`detret serve` in its own process on 127.0.0.1, under the hostile client of tools/bench_hostile.py: normal
searches get no error, every attack gets an answer that is not a 5xx (a 503 when busy is allowed), slow
clients are cut off by the deadlines, an unauthenticated 64 MiB upload is refused from its headers, and
the server's peak resident memory stays within a stated bound under concurrent worst-case uploads.
The load is small and stops by itself; nothing here is timed against a threshold but the deadlines."""
import socket
import time

import pytest

from tests.helpers import copy_catalogue, tool
from tests.serve.helpers import street_query

# The bound on the server's peak resident memory above its memory after warm-up, under concurrent worst-case
# uploads (40 MP 16-bit, RGBA and 32-bit photos of a few hundred KB) with the default limits: what the limits
# allow (about 1 GB, docs/serving.md) plus the allocator's retention; measured 544-761 MiB. Before issue 26 one
# such upload peaked at 0.56-1.25 GB and up to 40 were decoded at once: twelve at once are 6.7 GB or more.
PEAK_MEMORY_BOUND_MIB = 1536


@pytest.fixture(scope="module")
def bench_hostile():
    return tool("benchs.hostile")


@pytest.fixture(scope="module")
def hostile_run(bench_hostile, demo_catalogue, tmp_path_factory):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path_factory.mktemp("live") / "cat")
    data, category, _, _ = street_query(pcfg)
    return bench_hostile.run_hostile(cat, data, category, clients=4, requests=4, slow=2, hostile_max=24,
                                     body_timeout_s=2.0, header_timeout_s=1.0)


def test_normal_clients_get_no_error_beside_the_hostile_one(hostile_run):
    assert hostile_run["baseline"]["errors"] == 0, hostile_run["baseline"]["error_examples"]
    loaded = hostile_run["with_hostile_client"]
    assert loaded["errors"] == 0, loaded["error_examples"]
    assert hostile_run["server_alive_after"]


def test_every_attack_is_answered_without_a_server_error(hostile_run):
    hostile = hostile_run["with_hostile_client"]["hostile"]
    answers = hostile["answers"]
    assert hostile["server_errors_5xx"] == 0, answers
    for photo in ("thin", "eps", "dds", "dds-malformed"):
        assert set(answers[photo]) == {"400"}, (photo, answers[photo])
    for photo in ("png16-40mp", "rgba-40mp", "tiff32-40mp"):   # read (200), or refused when busy (503)
        assert set(answers[photo]) <= {"200", "503"}, (photo, answers[photo])
    assert set(answers["unauthenticated-64MiB"]) == {"401"}   # answered from the headers: no body was sent
    assert set(answers["invented-method"]) <= {"404", "405"}


def test_slow_clients_are_cut_off_by_the_deadlines(hostile_run):
    endings = hostile_run["with_hostile_client"]["hostile"]["slow_connections"]
    assert sum(endings.values()) == 2
    for ending in endings:
        assert ending in ("body: answered HTTP/1.1 408 Request Timeout", "headers: closed"), endings


def test_peak_memory_beside_the_hostile_client_is_bounded(hostile_run):
    memory = hostile_run["with_hostile_client"]["memory"]
    assert memory["peak_above_warm_up_mib"] < PEAK_MEMORY_BOUND_MIB, memory


def test_peak_memory_under_concurrent_worst_case_uploads_is_bounded(bench_hostile, demo_catalogue, tmp_path):
    """Twelve 40 MP photos of a few hundred KB (16-bit, RGBA, 32-bit) sent at once, twice over: before issue 26
    each peaked at 0.56-1.25 GB and all were decoded at once."""
    import threading

    import httpx

    root, _ = demo_catalogue
    photos = bench_hostile.hostile_photos()
    worst = [photos[k] for k in ("png16-40mp", "rgba-40mp", "tiff32-40mp")] * 4
    statuses = []
    with bench_hostile.serving(copy_catalogue(root, tmp_path / "cat"), []) as server:
        port = server.port
        memory = bench_hostile.PeakMemory(server.proc.pid)
        for _ in range(2):
            def send(name, data):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
                    statuses.append(http.post("/api/search", files={"photo": (name, data, "image/png")},
                                              data={"category": "bags"}).status_code)
            threads = [threading.Thread(target=send, args=w) for w in worst]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        peak = memory.stop()
    assert set(statuses) <= {200, 503} and statuses.count(200) >= len(worst), statuses
    assert peak["peak_above_warm_up_mib"] < PEAK_MEMORY_BOUND_MIB, peak


def test_connections_at_once_are_bounded(bench_hostile, demo_catalogue, tmp_path):
    """`--max-connections N`: with N connections open, the next client's request is answered 503 at once."""
    root, _ = demo_catalogue
    with bench_hostile.serving(copy_catalogue(root, tmp_path / "cat"), ["--max-connections", "3"]) as server:
        port = server.port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        status, _ = bench_hostile._raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 503
        for s in held:
            s.close()
        deadline = time.monotonic() + 60
        while bench_hostile._raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] != 200:
            assert time.monotonic() < deadline, "the server did not take connections again"
