#!/usr/bin/env python
"""Export the ModaNet photos from the PaperDoll LMDB (see datasets/README.md).

    python tools/export_modanet_images.py --lmdb paperdoll/data/chictopia/photos.lmdb \
        --annotations data/modanet/annotations/modanet2018_instances_train.json \
        --out data/modanet/images

Rerun to resume; photos already exported with the same bytes are skipped.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from detret.data.paperdoll import export_modanet_images


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lmdb", type=Path, required=True, help="PaperDoll photos.lmdb")
    parser.add_argument("--annotations", type=Path, required=True, help="ModaNet COCO instances JSON")
    parser.add_argument("--out", type=Path, required=True, help="folder for <file_name> photos")
    args = parser.parse_args(argv)
    report = export_modanet_images(args.lmdb, args.annotations, args.out)
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}))
    if report["missing_in_database"]:
        print(f"first missing ids: {report['missing_in_database'][:20]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
