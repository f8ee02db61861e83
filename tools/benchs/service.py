"""The catalogue and service benchmarks of tools/benchmark.py (``serve`` and ``catalogue-add``).

- serve: a catalogue made from a demo run (``--import-gallery``) served by ``detret serve`` in its own
  process on 127.0.0.1; (1) a search with a box, p50 over HTTP, against ``detret query`` on the same
  photo and box (a new process each time, start-up included, as a user of the batch CLI pays it);
  (2) searches with detection (category given, no box), p50/p95/p99 with 1 client and with 8
  concurrent clients (threads on loopback, a fixed number of requests each: the load stops by
  itself), throughput ratio 8 / 1, errors; (3) the server's resident memory with the demo catalogue
  and with one grown to ``--photos`` photos.
- catalogue-add: ``add_lines`` of the same ``--new`` shop photos into catalogues grown to 1,000 and
  to 20,000 photos, models loaded once: the time ratio shows whether adding costs what the new photos
  cost or what the catalogue holds.

Catalogues are grown with synthetic rows (random unit vectors, one stored photo file) through the
catalogue's own change protocol, split over categories by the real Exact Street2Shop proportions.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

S2S_SHARE = {"bags": 16308, "belts": 1252, "dresses": 169827, "eyewear": 1595, "footwear": 75943, "hats": 2551,
             "leggings": 8219, "outerwear": 34695, "pants": 7640, "skirts": 18281, "tops": 68372}


def _pcfg(config: str):
    from detret.config.pipeline import load_pipeline_config

    return load_pipeline_config(Path(config), ["device=cpu"])


def make_catalogue(config: str, run: str, folder: Path) -> Path:
    from detret.catalogue.create import create_catalogue

    create_catalogue(_pcfg(config), folder, run, import_gallery=True)
    return folder


def grow(folder: Path, photos: int, seed: int = 0) -> int:
    """Add synthetic rows until the catalogue holds ``photos`` photos; the rows added."""
    from detret.catalogue.changes import NewPhoto, apply_change, begin_add
    from detret.catalogue.store import Catalogue

    with Catalogue.writing(folder, "benchmark: growing the catalogue") as cat:
        have = cat.conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
        need = max(0, photos - have)
        if not need:
            return 0
        template = dict(cat.conn.execute("SELECT * FROM photos LIMIT 1").fetchone())
        rng = np.random.default_rng(seed)
        share = np.array(list(S2S_SHARE.values()), float)
        cats = rng.choice(list(S2S_SHARE), size=need, p=share / share.sum())
        rows = [NewPhoto(f"filler-{i}", str(c), f"{i:064x}", template["file"], None, template["width"],
                         template["height"], None, "full") for i, c in enumerate(cats)]
        vectors = rng.standard_normal((need, cat.card.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        apply_change(cat.applier, begin_add(cat.applier, rows, vectors))
    return need


def _new_photos_csv(config: str, n: int, folder: Path) -> Path:
    """A product list of ``n`` of the demo's shop photos under new product ids (no box: detector + policy)."""
    from detret.embed.artifact import read_descriptors

    pcfg = _pcfg(config)
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    images = Path(pcfg.data.street2shop.root) / "images"
    lines = [f"{images / f'{r.photo_id:09d}.jpg'},bench-new-{i},{r.category}" for i, r in
             enumerate((rows * (n // len(rows) + 1))[:n])]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "new.csv"
    path.write_text("photo,product,category\n" + "\n".join(lines) + "\n")
    return path


def bench_catalogue_add(args) -> Dict:
    from detret.catalogue.add import add_lines
    from detret.catalogue.binding import BoundModels
    from detret.catalogue.products_csv import read_products_csv
    from detret.catalogue.store import Catalogue

    work = Path(tempfile.mkdtemp(prefix="detret-bench-add-"))
    try:
        base = make_catalogue(args.config, args.model, work / "base")
        sizes = {"1k": 1000, "20k": 20000}
        grown = {}
        for name, n in sizes.items():
            shutil.copytree(base, work / f"grown-{name}")
            grow(work / f"grown-{name}", n)
            grown[name] = work / f"grown-{name}"
        csv = _new_photos_csv(args.config, args.new, work)
        times: Dict[str, List[float]] = {name: [] for name in sizes}
        models = None
        for _ in range(args.repeat):
            for name in sizes:  # in turn, so a slow spell falls on both
                target = work / f"round-{name}"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(grown[name], target)
                with Catalogue.writing(target, "benchmark") as cat:
                    models = models or BoundModels(cat.card, target, "cpu")
                    lines = read_products_csv(csv, list(cat.card.category_map))
                    t0 = time.perf_counter()
                    report = add_lines(cat, lines, models)
                    times[name].append(time.perf_counter() - t0)
                assert report.added == args.new, report.to_json()
        best = {name: min(ts) for name, ts in times.items()}
        return {"benchmark": "catalogue-add", "new_photos": args.new, "catalogue_photos": sizes,
                "seconds": best, "ratio_20k_over_1k": best["20k"] / best["1k"],
                "per_new_photo_ms": {k: v / args.new * 1e3 for k, v in best.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid: int, key: str) -> int:
    """A memory line of /proc/PID/status (``VmRSS``, ``VmHWM``), in KiB; KeyError when the kernel has none."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _rss_mib(pid: int) -> float:
    try:
        return status_kib(pid, "VmRSS") / 1024
    except KeyError:
        return float("nan")


class Server:
    """`detret serve` in its own process on 127.0.0.1 (stopped on exit), with ``options`` of its command line and
    ``env`` added to the environment."""

    def __init__(self, catalogue: Path, options: Sequence[str] = (), env: Optional[Dict[str, str]] = None) -> None:
        import httpx

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "detret", "serve", str(catalogue), "--port",
                                      str(self.port), *options], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"detret serve did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _percentiles(ms: List[float]) -> Dict[str, float]:
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def _load(url: str, photo, fields: Dict, clients: int, per_client: int) -> Dict:
    """``clients`` threads each sending ``per_client`` searches one after another (the load ends by itself).
    ``photo``: one photo's bytes, or a list sent in turn (the service remembers the detections of recent photos
    by their pixels: distinct photos make every search with detection run the detector)."""
    import httpx

    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    photos = photo if isinstance(photo, list) else [photo]
    sent = iter(range(10**9))

    def client():
        with httpx.Client(base_url=url, timeout=120) as http:
            for _ in range(per_client):
                with lock:
                    data = photos[next(sent) % len(photos)]
                t0 = time.perf_counter()
                try:
                    response = http.post("/api/search", files={"photo": ("q.jpg", data, "image/jpeg")}, data=fields)
                    error = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:   # a connection the server dropped counts as an error, not a crash
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - t0) * 1e3
                with lock:
                    latencies.append(elapsed)
                    if error:
                        errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "error_examples": errors[:3],
            "throughput_rps": len(latencies) / wall, **_percentiles(latencies)}


def _query_cli_ms(config: str, run: str, photo: Path, category: str, box: str, rounds: int) -> List[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "detret", "--config", config, "query", str(photo), "--category", category,
                        "--box", box, "--run", run, "--k", "20"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _street_query(config: str, run: str):
    from detret.embed.artifact import read_descriptors

    pcfg = _pcfg(config)
    _, rows = read_descriptors(Path(pcfg.run_dir) / f"embed-{run}", "queries")
    r = rows[0]
    photo = Path(pcfg.data.street2shop.root) / "images" / f"{r.photo_id:09d}.jpg"
    return photo, r.category, ",".join(f"{v:g}" for v in r.box_xyxy)


def _variant(path: Path, i: int) -> bytes:
    """The photo as PNG with its first pixel changed by ``i`` (i = 0: unchanged): pixels the service has not seen,
    the detector's work the same."""
    import io

    from PIL import Image

    img = Image.open(path).convert("RGB")
    r, g, b = img.getpixel((0, 0))
    img.putpixel((0, 0), ((r + i) % 256, g, b))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def distinct_street_photos(config: str, run: str, n: int):
    """(category, ``n`` photos as bytes, how many street photos they come from): the test queries of the first
    query's category, then the same photos with one pixel changed. The service remembers the detections of recent
    photos by their pixels, so a load that sends one photo again and again times the detector once."""
    from detret.embed.artifact import read_descriptors

    pcfg = _pcfg(config)
    _, rows = read_descriptors(Path(pcfg.run_dir) / f"embed-{run}", "queries")
    category = rows[0].category
    images = Path(pcfg.data.street2shop.root) / "images"
    photos = [images / f"{r.photo_id:09d}.jpg" for r in rows if r.category == category]
    return category, [_variant(photos[i % len(photos)], i // len(photos)) for i in range(n)], len(photos)


def bench_serve(args) -> Dict:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="detret-bench-serve-"))
    try:
        cat = make_catalogue(args.config, args.model, work / "cat")
        photo, category, box = _street_query(args.config, args.model)
        data = photo.read_bytes()
        result: Dict = {"benchmark": "serve", "catalogue_photos": None, "query_photo": str(photo)}
        with Server(cat) as server:
            result["catalogue_photos"] = httpx.get(server.url + "/healthz").json()["photos"]
            _load(server.url, data, {"category": category, "box": box, "k": "20"}, 1, 3)  # warm-up, as below
            result["memory_mib"] = {str(result["catalogue_photos"]): _rss_mib(server.proc.pid)}
            boxed = _load(server.url, data, {"category": category, "box": box, "k": "20"}, 1, args.requests)
            cli_ms = _query_cli_ms(args.config, args.model, photo, category, box, args.cli_rounds)
            result["with_box"] = {"http": boxed, "detret_query_cli_ms": cli_ms,
                                  "speedup_p50": float(np.median(cli_ms)) / boxed["p50"]}
            per_client = max(1, args.requests // 2)
            detect_category, photos, _ = distinct_street_photos(args.config, args.model,
                                                                args.requests + 8 * per_client)
            fields = {"category": detect_category, "k": "20"}   # distinct photos: the detector runs every time
            one = _load(server.url, photos[:args.requests], fields, 1, args.requests)
            eight = _load(server.url, photos[args.requests:], fields, 8, per_client)
            result["with_detection"] = {"1_client": one, "8_clients": eight,
                                        "throughput_ratio_8_over_1": eight["throughput_rps"] / one["throughput_rps"]}
        grow(cat, args.grow_to)
        with Server(cat) as server:
            _load(server.url, data, {"category": category, "box": box, "k": "20"}, 1, 3)
            result["memory_mib"][str(args.grow_to)] = _rss_mib(server.proc.pid)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children alive now (uvicorn's workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    total = 0.0
    for p in [pid, *map(int, out.split())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_serve_workers(args) -> Dict:
    """``detret serve --workers 1`` then ``--workers 2`` on the same catalogue: searches with detection from 8
    clients; throughput, latency and the server's CPU seconds per request, and what they predict for more cores
    (throughput <= cores / CPU seconds per request, while the cores are the bottleneck)."""
    work = Path(tempfile.mkdtemp(prefix="detret-bench-workers-"))
    try:
        cat = make_catalogue(args.config, args.model, work / "cat")
        per_client = max(1, args.requests // 4)
        category, data, _ = distinct_street_photos(args.config, args.model, 8 * per_client + 8)
        fields = {"category": category, "k": "20"}   # distinct photos: the detector runs every time
        result: Dict = {"benchmark": "serve-workers", "cores": len(os.sched_getaffinity(0)), "runs": {}}
        for workers in (1, 2):
            with Server(cat, ["--workers", str(workers)]) as server:
                _load(server.url, data[-8:], fields, 2 * workers, 2)   # every worker warmed up
                cpu0 = _cpu_s(server.proc.pid)
                load = _load(server.url, data[:-8], fields, 8, per_client)
                cpu_per_request = (_cpu_s(server.proc.pid) - cpu0) / max(1, load["requests"])
            result["runs"][str(workers)] = {**load, "cpu_s_per_request": cpu_per_request,
                                            "predicted_max_rps_per_core": 1 / cpu_per_request}
        one, two = result["runs"]["1"], result["runs"]["2"]
        result["throughput_ratio_2_over_1"] = two["throughput_rps"] / one["throughput_rps"]
        result["predicted_rps"] = {f"{c} cores": round(c / one["cpu_s_per_request"], 1) for c in (2, 8, 32)}
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_arguments(parser) -> None:
    parser.add_argument("--new", type=int, default=50, help="catalogue-add: photos added")
    parser.add_argument("--requests", type=int, default=40, help="serve: searches per load test (8 clients: half "
                                                                 "each)")
    parser.add_argument("--cli-rounds", type=int, default=3, help="serve: runs of `detret query` as the baseline")
    parser.add_argument("--slow", type=int, default=4, help="serve-hostile: slow connections the hostile client holds")
    parser.add_argument("--hostile-max", type=int, default=400, help="serve-hostile: attacks at most")
    parser.add_argument("--grow-to", type=int, default=20000, help="serve: catalogue size for the memory figure "
                                                                   "(resident memory after 3 searches, both sizes)")


if __name__ == "__main__":
    print(json.dumps({"see": "python tools/benchmark.py serve | catalogue-add --config runs/demo/demo.yaml"}))
