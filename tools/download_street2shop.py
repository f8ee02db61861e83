#!/usr/bin/env python
"""Download the Exact Street2Shop photos (see datasets/README.md).

    python tools/download_street2shop.py --urls photos/photos.txt --root data/street2shop \
        [--only-annotated] [--workers 16] [--retries 3]

Photos go to ROOT/images/<id, 9 digits>.jpg, the manifest of what exists to
ROOT/download_manifest.json. Rerun the same command to resume.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from detret.data.download import DownloadSettings, download_photos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=Path, required=True, help="photos.txt of the dataset (<id>,<url> lines)")
    parser.add_argument("--root", type=Path, required=True, help="Street2Shop root (with meta/json/)")
    parser.add_argument("--only-annotated", action="store_true",
                        help="fetch only photos named by the pair and retrieval files under ROOT/meta/json")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--retry-dead", action="store_true", help="try again photos that answered 404/410 before")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ids = None
    if args.only_annotated:
        from detret.data.street2shop import load_street2shop

        ids = set(load_street2shop(args.root).all_photo_ids())
    manifest = download_photos(
        args.urls, args.root / "images", args.root / "download_manifest.json", photo_ids=ids,
        settings=DownloadSettings(workers=args.workers, retries=args.retries, backoff_s=args.backoff,
                                  timeout_s=args.timeout),
        retry_dead=args.retry_dead,
    )
    c = manifest["counts"]
    total = sum(c.values())
    print(f"ok {c['ok']} of {total} ({100.0 * c['ok'] / max(total, 1):.1f}%); dead {c['dead']}, "
          f"undecodable {c['undecodable']}, errors {c['error']}; manifest: {args.root / 'download_manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
