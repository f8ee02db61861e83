"""The product list a retailer gives ``catalogue add``: a CSV file, one photo per line.

Columns (a header line names them, in any order): ``photo`` (path relative to the CSV file),
``product`` (the retailer's product id, any text), ``category`` (one of the catalogue's retrieval
categories), and optionally ``box`` (the garment's box ``x0,y0,x1,y1`` in pixels of the upright photo,
quoted, or separated by spaces; empty: the detector and the paper's crop policy choose it), ``title``
and ``url`` (an absolute ``http://`` or ``https://`` URL: the page makes it a link, so ``javascript:``,
``data:`` and the like are refused). The file is UTF-8 text. A product's category is the same on every line. A bad line stops the add before
anything changes, with the file, the line and the problem; a missing or unreadable photo does not
(it is listed with the reason and the other photos are added).
"""
from __future__ import annotations

import csv
import io
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..data.boxes import BoxXYXY
from ..errors import InputError, MissingFileError

REQUIRED = ("photo", "product", "category")
OPTIONAL = ("box", "title", "url")
URL_SCHEMES = ("http", "https")
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class ProductLine:
    line: int                 # line number in the CSV file (the header is line 1)
    photo: Path               # resolved path
    source: str               # the path as written in the CSV
    product: str
    category: str
    box_xyxy: Optional[BoxXYXY]
    title: Optional[str]
    url: Optional[str]


def shown(text: str, limit: int = 80) -> str:
    """``repr`` of a value a user sent, cut to ``limit`` characters (an error must not echo megabytes)."""
    return repr(text) if len(text) <= limit else repr(text[:limit - 3] + "...")


def parse_box(text: str, where: str) -> Optional[BoxXYXY]:
    """``"x0,y0,x1,y1"`` (or space-separated) -> a box; empty -> None; anything else -> InputError."""
    text = (text or "").strip()
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or any(v != v or abs(v) == float("inf") for v in values):
        raise InputError(f"{where}: box {shown(text)} is not four numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{where}: box {shown(text)} is empty (need x1 > x0 and y1 > y0)")
    return (x0, y0, x1, y1)


def check_url(text: Optional[str], where: str) -> Optional[str]:
    """A product's link: None, or an absolute http(s) URL with a host; anything else -> InputError."""
    if text is None:
        return None
    parsed = urllib.parse.urlsplit(text) if len(text) <= MAX_URL_CHARS and text.isprintable() else None
    if parsed is None or parsed.scheme.lower() not in URL_SCHEMES or not parsed.netloc:
        raise InputError(f"{where}: url {shown(text)} is not an http:// or https:// URL (at most {MAX_URL_CHARS} "
                         "printable characters)")
    return text


def _text(row: Dict[str, Optional[str]], key: str) -> Optional[str]:
    value = (row.get(key) or "").strip()
    return value or None


def read_products_csv(path: Path, categories: Sequence[str]) -> List[ProductLine]:
    """Every line of the CSV, checked (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: product list not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the product list "
                         "as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                         f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    reader.fieldnames = header
    try:
        lines = [_line(path, reader.line_num, row, categories) for row in reader]
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not a CSV line ({exc})") from None
    _check_product_categories(path, lines)
    return lines


def _line(path: Path, line: int, row: Dict, categories: Sequence[str]) -> ProductLine:
    where = f"{path}:{line}"
    photo, product, category = (_text(row, k) for k in REQUIRED)
    for key, value in zip(REQUIRED, (photo, product, category)):
        if value is None:
            raise InputError(f"{where}: empty {key}")
    if category not in categories:
        raise InputError(f"{where}: unknown category {shown(category)}; the catalogue's categories: "
                         f"{', '.join(categories)}")
    return ProductLine(line, (path.parent / photo).resolve(), photo, product, category,
                       parse_box(row.get("box") or "", where), _text(row, "title"), check_url(_text(row, "url"), where))


def _check_product_categories(path: Path, lines: List[ProductLine]) -> None:
    first: Dict[str, ProductLine] = {}
    for ln in lines:
        seen = first.setdefault(ln.product, ln)
        if seen.category != ln.category:
            raise InputError(f"{path}:{ln.line}: product {ln.product!r} is {ln.category!r} here but "
                             f"{seen.category!r} on line {seen.line}; a product has one category")
