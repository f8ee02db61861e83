"""Download the Exact Street2Shop photos from their URL list, many of them dead by now.

Input: ``photos.txt`` of the dataset, one ``<photo id>,<url>`` per line (ids
zero-padded to 9 digits; a line without a comma or id is an error naming the
line). Output: ``<out>/<photo id, 9 digits>.jpg`` (the bytes as served, checked
to decode) and a download manifest, JSON::

    {"format": "detret.download/1", "url_list": ..., "url_list_sha256": ...,
     "counts": {"ok": n, "dead": n, "undecodable": n, "error": n, "pending": n},
     "photos": {"<id>": {"status": ..., "detail": ..., "bytes": n, "sha256": ...}}}

so that metrics can say on how much of the dataset they were computed.

- Concurrency: a thread pool (downloads wait on the network, not the CPU).
- Retries: timeouts, connection errors, HTTP 429 and 5xx are retried with
  exponential back-off (``backoff_s * 2**attempt``, plus jitter); 404 and 410 are
  final ("dead"), as are other 4xx.
- Decode check: every downloaded file is decoded before it is kept; a page of
  HTML served with status 200 is "undecodable", not a photo.
- Resume: photos already recorded "ok" whose file still has the recorded size
  and hash are kept, and so are "dead" ones (HTTP 404/410) unless
  ``retry_dead``; everything else is tried again. The manifest is rewritten
  atomically every `checkpoint_every` photos, so an interrupted run loses at
  most that much bookkeeping, and never a photo file (files are written
  atomically too).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from PIL import Image

from ..errors import InputError
from ..runs.atomic import atomic_write_bytes, atomic_write_json
from ..runs.manifest import sha256_file
from ..utils.progress import progress

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "detret.download/1"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_USER_AGENT = "detret-street2shop-downloader/1"


@dataclass(frozen=True)
class DownloadSettings:
    workers: int = 16
    retries: int = 3            # attempts after the first
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    max_bytes: int = 50 << 20   # refuse anything larger than 50 MiB
    checkpoint_every: int = 500


def read_url_list(path: Path) -> List[Tuple[int, str]]:
    """(photo id, url) pairs of a Street2Shop ``photos.txt``."""
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            head, sep, url = line.partition(",")
            if not sep or not head.strip().isdigit() or not url.strip():
                raise InputError(f"{path}:{n}: expected '<photo id>,<url>', got {line[:120]!r}")
            pairs.append((int(head), url.strip()))
    return pairs


def decode_problem(data: bytes) -> Optional[str]:
    """None when the bytes are a decodable image, else the reason."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if min(img.size) < 1:
                return "empty image"
    except Exception as exc:  # noqa: BLE001 -- Pillow raises many types for bad data; all mean "not a photo"
        return f"not a decodable image ({type(exc).__name__}: {str(exc)[:100]})"
    return None


def fetch_one(photo_id: int, url: str, out_dir: Path, settings: DownloadSettings) -> Dict:
    """Download, check and store one photo; returns its manifest entry."""
    last = ""
    for attempt in range(settings.retries + 1):
        if attempt:
            time.sleep(settings.backoff_s * (2 ** (attempt - 1)) * (1 + 0.25 * random.random()))
        try:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
                data = response.read(settings.max_bytes + 1)
            if len(data) > settings.max_bytes:
                return {"status": "error", "detail": f"larger than {settings.max_bytes} bytes", "url": url}
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_STATUS:
                last = f"HTTP {exc.code}"
                continue
            return {"status": "dead", "detail": f"HTTP {exc.code}", "url": url}
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(exc).__name__}: {reason}"
            continue
        problem = decode_problem(data)
        if problem:
            return {"status": "undecodable", "detail": problem, "url": url}
        target = out_dir / f"{photo_id:09d}.jpg"
        atomic_write_bytes(target, data, fsync=False)
        return {"status": "ok", "detail": "", "url": url, "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}
    return {"status": "error", "detail": f"gave up after {settings.retries + 1} attempts ({last})", "url": url}


def _still_ok(entry: Dict, path: Path) -> bool:
    return (entry.get("status") == "ok" and path.is_file() and path.stat().st_size == entry.get("bytes")
            and sha256_file(path) == entry.get("sha256"))


def _write_manifest(path: Path, url_list: Path, url_sha: str, photos: Dict[str, Dict], total: int) -> Dict:
    counts = {s: 0 for s in ("ok", "dead", "undecodable", "error")}
    for entry in photos.values():
        counts[entry["status"]] += 1
    counts["pending"] = total - len(photos)
    doc = {"format": MANIFEST_FORMAT, "url_list": str(url_list), "url_list_sha256": url_sha, "counts": counts,
           "photos": photos}
    atomic_write_json(path, doc)
    return doc


def download_photos(
    url_list: Path,
    out_dir: Path,
    manifest_path: Path,
    *,
    photo_ids: Optional[Set[int]] = None,
    settings: DownloadSettings = DownloadSettings(),
    retry_dead: bool = False,
) -> Dict:
    """Download the photos of `url_list` (only `photo_ids` when given); returns the manifest."""
    url_list, out_dir, manifest_path = Path(url_list), Path(out_dir), Path(manifest_path)
    pairs = read_url_list(url_list)
    if photo_ids is not None:
        pairs = [(i, u) for i, u in pairs if i in photo_ids]
    url_sha = sha256_file(url_list)
    photos: Dict[str, Dict] = {}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{manifest_path}: not a detret download manifest")
        photos = {k: v for k, v in old.get("photos", {}).items()
                  if _still_ok(v, out_dir / f"{int(k):09d}.jpg") or (v.get("status") == "dead" and not retry_dead)}
    todo = [(i, u) for i, u in pairs if str(i) not in photos]
    logger.info("%s: %d photos, %d already downloaded, %d to fetch", url_list, len(pairs), len(pairs) - len(todo),
                len(todo))
    out_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    with ThreadPoolExecutor(max_workers=settings.workers) as pool:
        futures = {pool.submit(fetch_one, i, u, out_dir, settings): i for i, u in todo}
        for future in progress(as_completed(futures), "downloading", total=len(futures)):
            photos[str(futures[future])] = future.result()
            done += 1
            if done % settings.checkpoint_every == 0:
                _write_manifest(manifest_path, url_list, url_sha, photos, len(pairs))
    return _write_manifest(manifest_path, url_list, url_sha, photos, len(pairs))
