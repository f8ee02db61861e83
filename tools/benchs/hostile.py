"""The hostile-client load run of tools/benchmark.py (``serve-hostile``), all on 127.0.0.1.

``detret serve`` runs in its own process on a catalogue made from a demo run. Two load runs, each a
fixed number of searches (the load stops by itself):

- baseline: ``--clients`` normal clients (threads), each sending ``--requests`` searches with detection
  (category given, no box) one after another;
- hostile: the same, while one hostile client sends, in turn and until the normal clients are done
  (at most ``--hostile-max`` attacks): thin photos (22000 x 8), EPS named photo.jpg, well-formed and
  malformed DDS, 16-bit and RGBA PNGs and a 32-bit TIFF of 40 MP (small files that decode big),
  unauthenticated 64 MiB bodies to ``/api/catalogue`` (headers only: the server must answer before the
  body), invented HTTP methods; and holds ``--slow`` connections that send a body or headers two bytes
  a second until the server cuts them off (its deadlines, which the run sets to 10 s and 2 x 5 s; the
  run waits for that, so it lasts at least as long as the deadlines).

Reported: the normal clients' errors and p50/p95 in both runs and the p95 ratio; the hostile
requests' answers by status (a 5xx is the server's failure); the server's peak resident memory
(VmHWM, reset after warm-up) above its resident memory after warm-up, in both runs.
"""
from __future__ import annotations

import io
import select
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import service as bench_service

TOKEN = "bench-token"


# --- what the hostile client sends ------------------------------------------------------------------

def _encoded(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def hostile_photos(max_pixels: int = 40_000_000) -> Dict[str, Tuple[str, bytes]]:
    """name -> (file name sent, bytes): photos meant to break or exhaust the server."""
    from PIL import Image

    side = int(max_pixels ** 0.5) - 1   # just under the pixel cap
    rgb = Image.new("RGB", (64, 64), (200, 30, 30))
    dds = bytearray(_encoded(rgb, "DDS"))
    dds[80:84] = b"\x00\x00\x00\x00"
    gray16 = np.zeros((side, side), np.uint16)
    gray16[::97, :] = 65535
    return {
        "thin": ("thin.png", _encoded(Image.new("RGB", (22000, 8)), "PNG")),
        "eps": ("photo.jpg", _encoded(rgb, "EPS")),
        "dds": ("photo.dds", _encoded(rgb, "DDS")),
        "dds-malformed": ("photo.jpg", bytes(dds)),
        "png16-40mp": ("big16.png", _encoded(Image.fromarray(gray16), "PNG", compress_level=9)),
        "rgba-40mp": ("rgba.png", _encoded(Image.new("RGBA", (side, side), (0, 0, 0, 0)), "PNG", compress_level=9)),
        "tiff32-40mp": ("i32.tif", _encoded(Image.fromarray(np.zeros((side, side), np.int32)), "TIFF",
                                            compression="tiff_deflate")),
    }


def _raw(port: int, data: bytes, timeout_s: float = 30.0) -> Tuple[Optional[int], float]:
    """Send raw bytes, read the answer's status line: (status or None when closed without one, seconds)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        try:
            s.sendall(data)
            line = s.makefile("rb").readline()
        except OSError:
            return None, time.perf_counter() - t0
    parts = line.split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None), time.perf_counter() - t0


def unauthenticated_big_body(port: int) -> Tuple[Optional[int], float]:
    """Headers announcing a 64 MiB upload to /api/catalogue without a token, and no body: the answer must come."""
    head = (b"POST /api/catalogue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 67108864\r\n\r\n")
    return _raw(port, head)


def invented_method(port: int, i: int) -> Tuple[Optional[int], float]:
    return _raw(port, f"INVENTED{i} / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


def slow_connection(port: int, body: bool, give_up_s: float, pace_s: float = 0.5) -> str:
    """A client sending its body (or its headers) a byte at a time until the server ends it (or ``give_up_s``
    passes, which the server's deadlines must come well before): how it ended."""
    head = (b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 100000\r\n\r\n")
    part = (b"--x\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n")   # a well-formed upload, its photo's bytes trickling
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if body:
            s.sendall(head + part)
        trickle = b"\xff" * 100000 if body else head
        deadline = time.monotonic() + give_up_s
        for i in range(len(trickle)):
            if time.monotonic() > deadline:
                return f"still open after {give_up_s:g} s"
            try:
                s.sendall(trickle[i:i + 1])
                if select.select([s], [], [], pace_s)[0]:
                    answer = s.recv(4096)
                    return ("answered " + answer.split(b"\r\n", 1)[0].decode(errors="replace")) if answer else "closed"
            except OSError:
                return "closed"
    return "sent everything"


class HostileClient:
    """One hostile client: photo attacks, big unauthenticated bodies and invented methods in turn on one
    thread until ``stop`` (or ``max_attacks``), slow connections on others until the server cuts them off."""

    def __init__(self, url: str, port: int, photos: Dict[str, Tuple[str, bytes]], slow: int, max_attacks: int,
                 slow_give_up_s: float = 120.0):
        self.url, self.port, self.photos, self.slow, self.max_attacks = url, port, photos, slow, max_attacks
        self.slow_give_up_s = slow_give_up_s
        self.statuses: Dict[str, Counter] = {}
        self.slow_endings: List[str] = []
        self.stop = threading.Event()
        self._threads: List[threading.Thread] = []

    def _note(self, what: str, status) -> None:
        self.statuses.setdefault(what, Counter())[str(status)] += 1

    def _attacks(self) -> None:
        import httpx

        kinds = len(self.photos) + 2
        with httpx.Client(base_url=self.url, timeout=60) as http:
            for n in range(max(self.max_attacks, kinds)):
                if self.stop.is_set() and n >= kinds:   # every kind of attack once, whatever the normal load
                    return
                kind = n % kinds
                if kind < len(self.photos):
                    name = list(self.photos)[kind]
                    file_name, data = self.photos[name]
                    try:
                        r = http.post("/api/search", files={"photo": (file_name, data, "application/octet-stream")},
                                      data={"category": "bags"})
                        self._note(name, r.status_code)
                    except httpx.HTTPError as exc:
                        self._note(name, type(exc).__name__)
                elif kind == len(self.photos):
                    self._note("unauthenticated-64MiB", unauthenticated_big_body(self.port)[0])
                else:
                    self._note("invented-method", invented_method(self.port, n)[0])

    def _slow(self, body: bool) -> None:
        ending = slow_connection(self.port, body, self.slow_give_up_s)
        self.slow_endings.append(("body: " if body else "headers: ") + ending)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._attacks)] + [
            threading.Thread(target=self._slow, args=(i % 2 == 0,)) for i in range(self.slow)]
        for t in self._threads:
            t.start()

    def finish(self) -> Dict:
        self.stop.set()
        for t in self._threads:
            t.join()   # the attack loop stops now; each slow connection when the server cuts it off (or gives up)
        server_errors = sum(c for counts in self.statuses.values() for s, c in counts.items()
                            if s.isdigit() and int(s) >= 500 and s != "503")
        return {"answers": {k: dict(v) for k, v in self.statuses.items()}, "server_errors_5xx": server_errors,
                "slow_connections": dict(Counter(self.slow_endings))}


# --- the server and its memory --------------------------------------------------------------------

class PeakMemory:
    """The server's peak resident memory from now on: VmHWM reset by /proc/PID/clear_refs where the kernel
    allows it, and VmRSS sampled every 20 ms in any case (the larger of the two is reported)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.sampled_kib = pid, 0
        self.reset_ok = False
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.reset_ok = True
        except OSError:
            pass
        self.start_kib = bench_service.status_kib(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.sampled_kib = max(self.sampled_kib, bench_service.status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    def stop(self) -> Dict[str, float]:
        self._stop.set()
        self._thread.join()
        peak = self.sampled_kib
        if self.reset_ok:
            peak = max(peak, bench_service.status_kib(self.pid, "VmHWM"))
        return {"rss_after_warm_up_mib": self.start_kib / 1024, "peak_mib": peak / 1024,
                "peak_above_warm_up_mib": (peak - self.start_kib) / 1024, "vmhwm_reset": self.reset_ok}


def serving(catalogue: Path, options: List[str]) -> "bench_service.Server":
    """`detret serve` on 127.0.0.1 with changes enabled (the token ``TOKEN``): bench_service's server."""
    return bench_service.Server(catalogue, options, env={"DETRET_SERVE_TOKEN": TOKEN})


# --- the run ---------------------------------------------------------------------------------------

def normal_load(url: str, photo: bytes, category: str, clients: int, per_client: int) -> Dict:
    """Searches with detection (category given, no box): bench_service's load, its p50 and p95 in ms."""
    out = bench_service._load(url, photo, {"category": category, "k": "20"}, clients, per_client)
    return {**out, "p50_ms": out["p50"], "p95_ms": out["p95"]}


def run_hostile(catalogue: Path, photo: bytes, category: str, *, clients: int = 8, requests: int = 10,
                slow: int = 4, hostile_max: int = 200, body_timeout_s: float = 10.0,
                header_timeout_s: float = 5.0, photos: Optional[Dict] = None) -> Dict:
    """Both load runs against one server (see the module docstring)."""
    photos = photos or hostile_photos()
    with serving(catalogue, ["--body-timeout-s", str(body_timeout_s), "--header-timeout-s",
                             str(header_timeout_s)]) as server:
        url, port, proc = server.url, server.port, server.proc
        normal_load(url, photo, category, 1, 3)   # warm-up
        memory = PeakMemory(proc.pid)
        baseline = normal_load(url, photo, category, clients, requests)
        baseline["memory"] = memory.stop()
        memory = PeakMemory(proc.pid)
        hostile = HostileClient(url, port, photos, slow, hostile_max,
                                slow_give_up_s=4 * (body_timeout_s + 2 * header_timeout_s) + 30)
        hostile.start()
        loaded = normal_load(url, photo, category, clients, requests)
        loaded["hostile"] = hostile.finish()
        loaded["memory"] = memory.stop()
        alive = proc.poll() is None
    return {"clients": clients, "requests_per_client": requests, "baseline": baseline, "with_hostile_client": loaded,
            "p95_ratio": loaded["p95_ms"] / baseline["p95_ms"], "server_alive_after": alive,
            "hostile_photo_bytes": {k: len(v[1]) for k, v in photos.items()},
            "deadlines_s": {"body": body_timeout_s, "headers": 2 * header_timeout_s}}


def bench_serve_hostile(args) -> Dict:
    from .service import _street_query, make_catalogue

    work = Path(tempfile.mkdtemp(prefix="detret-bench-hostile-"))
    try:
        cat = make_catalogue(args.config, args.model, work / "cat")
        photo, category, _ = _street_query(args.config, args.model)
        result = run_hostile(cat, photo.read_bytes(), category, clients=8, requests=args.requests,
                             slow=args.slow, hostile_max=args.hostile_max)
        return {"benchmark": "serve-hostile", **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)
