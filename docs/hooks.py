"""mkdocs hooks: the pages' generated parts, so that the documentation cannot drift from the code or
from the measurements.

A page holds a marker where a generated block goes:

- ``<!-- detret:cli -->``: every command and option, from the typer application itself;
- ``<!-- detret:config -->``: every pipeline config key, its default and its comment, from the schema;
- ``<!-- detret:http -->``: every route, its fields and its answers, from the service's OpenAPI document;
- ``<!-- detret:blocks -->``: the registered poolings, losses, samplers and re-rankings;
- ``<!-- detret:demo SECTION -->``: a section of ``benchmarks/demo.json`` (what a finished demo measured);
- ``<!-- detret:bench NAME -->``: the figures of ``benchmarks/NAME.json``;
- ``<!-- detret:include PATH -->``: a file a benchmark wrote, verbatim.

Every measured block ends with the CPU, the date and the command that measured it. A marker naming a
file that does not exist fails the build (``mkdocs build --strict`` runs in the tests).
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- detret:(\w[\w-]*)\s*([^>]*?)\s*-->")


from mkdocs.exceptions import PluginError


class DocsError(PluginError):
    """A marker that cannot be rendered: mkdocs reports it in one line and the build fails."""


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown)


def render(kind: str, arg: str) -> str:
    renderers = {"cli": lambda _: cli_reference(), "config": lambda _: config_reference(),
                 "http": lambda _: http_reference(), "blocks": lambda _: blocks_table(), "demo": demo_section,
                 "bench": bench_figures, "include": include_file}
    if kind not in renderers:
        raise DocsError(f"unknown marker detret:{kind} (one of {', '.join(renderers)})")
    return renderers[kind](arg)


# --- measured figures -------------------------------------------------------------------------------

def _json(path: Path) -> Dict:
    if not path.is_file():
        raise DocsError(f"{path.relative_to(ROOT)} is missing: run the benchmark that writes it")
    return json.loads(path.read_text())


def _committed(path: Path) -> str:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"committed {out}" if out else "date not recorded"


def provenance(data: Dict, path: Path) -> str:
    """"Measured on <cpu> (<n> cores), <date>: `<command>` (`<file>`)"."""
    machine = data.get("machine", {})
    date = data.get("date") or _committed(path)
    command = data.get("command", "python tools/benchmark.py ...")
    return (f"\n\n*Measured on {machine.get('cpu', 'an unrecorded CPU')} ({machine.get('cores', '?')} cores), "
            f"{date}: `{command}` (`{path.relative_to(ROOT)}`).*\n")


def _pct(cell) -> str:
    value, lo, hi = cell
    return f"{value:.1f}" if lo is None else f"{value:.1f} [{lo:.1f}, {hi:.1f}]"


def _means_table(means: Dict[str, Dict]) -> str:
    metrics = list(next(iter(means.values())))
    rows = ["| run | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    rows += [f"| {run} | " + " | ".join(_pct(m[k]) for k in metrics) + " |" for run, m in means.items()]
    return "\n".join(rows)


def _seconds_table(seconds: Dict[str, float]) -> str:
    rows = ["| step | seconds |", "|---|---:|"] + [f"| {step} | {s:.1f} |" for step, s in seconds.items()]
    return "\n".join(rows + [f"| **all** | **{sum(seconds.values()):.0f}** |"])


def _detector_table(d: Dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    head = f"Box AP {d['AP']:.1f}, AP50 {d['AP50']:.1f} on the held-out synthetic photos; per label: " + ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(d["per_category_AP"].items())) + "."
    rows = ["| category | crop covers the product (IoU >= 0.5) | falls back to the whole photo |", "|---|---:|---:|"]
    rows += [f"| {c} | {pct(d['covers_product'][c])} | {pct(d['fallback_rate'][c])} |" for c in d["covers_product"]]
    return head + f" On its {d['shop_photos']} shop photos:\n\n" + "\n".join(rows)


def demo_section(section: str) -> str:
    path = ROOT / "benchmarks" / "demo.json"
    data = _json(path)
    makers = {"table1": lambda: _means_table(data["table1"]), "reading": lambda: data["reading"],
              "seeds": lambda: _means_table(data["seeds"]), "reading-seeds": lambda: data["reading_seeds"],
              "detector": lambda: _detector_table(data["detector"]),
              "timings": lambda: _seconds_table(data["timings_s"]),
              "timings-seeds": lambda: _seconds_table(data["timings_seeds_s"])}
    if section not in makers:
        raise DocsError(f"detret:demo {section!r} is not one of {', '.join(makers)}")
    return makers[section]().strip() + provenance(data, path)


def _flat(data: Dict, prefix: str = "") -> List[tuple]:
    rows = []
    for key, value in data.items():
        if key in ("machine", "command", "date", "benchmark"):
            continue
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append((prefix + key, value))
    return rows


def bench_figures(name: str) -> str:
    path = ROOT / "benchmarks" / f"{name}.json"
    data = _json(path)

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else f"`{v}`" if isinstance(v, str) else str(v)

    rows = ["| figure | value |", "|---|---:|"] + [f"| {k} | {fmt(v)} |" for k, v in _flat(data)]
    return "\n".join(rows) + provenance(data, path)


def include_file(arg: str) -> str:
    path = ROOT / arg
    if not path.is_file():
        raise DocsError(f"{arg} is missing: run the benchmark that writes it")
    text = path.read_text()
    data_path = path.with_suffix(".json")
    return text + (provenance(_json(data_path), data_path) if data_path.is_file() else "")


# --- generated from the code ------------------------------------------------------------------------

def cli_reference() -> str:
    """Every command of the typer application, its help and its parameters (typer ships its own click, so
    groups and options are told apart by what they have, not by click's classes)."""
    import typer

    from detret.cli.app import app

    lines: List[str] = []

    def walk(command, path: str) -> None:
        if getattr(command, "commands", None):
            if path != "detret":
                lines.append(f"## `{path}`\n\n{(command.help or '').strip()}\n")
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")
            return
        lines.append(f"### `{path}`\n\n{(command.help or '').strip()}\n")
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines.append("| argument or option | default | what |\n|---|---|---|")
            lines.extend(_parameter_row(p) for p in params)
            lines.append("")

    root = typer.main.get_command(app)
    lines.append("## Global options\n\n| option | default | what |\n|---|---|---|")
    lines += [_parameter_row(p) for p in root.params if p.name != "help"]
    lines.append("")
    walk(root, "detret")
    return "\n".join(lines)


def _parameter_row(p) -> str:
    option = any(o.startswith("-") for o in getattr(p, "opts", []))
    name = " / ".join(list(p.opts) + list(getattr(p, "secondary_opts", []))) if option else (p.name or "").upper()
    default = p.default
    shown = "required" if p.required else "" if default in (None, (), []) or callable(default) else f"`{default}`"
    what = (getattr(p, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    return f"| `{name}` | {shown} | {what} |"


def _dataclass_fields(text: str) -> Dict[str, List[tuple]]:
    """class name -> [(field, annotation, default source, comment)] of the dataclasses of the module ``text``."""
    source = text.splitlines()
    classes = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = []
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                comments, n = [], item.lineno - 2
                while n >= 0 and source[n].strip().startswith("#"):
                    comments.insert(0, source[n].strip()[1:].strip())
                    n -= 1
                line = source[item.lineno - 1]
                if "#" in line:
                    comments.append(line.split("#", 1)[1].strip())
                default = ast.get_source_segment(text, item.value) if item.value is not None else ""
                fields.append((item.target.id, ast.unparse(item.annotation), default, " ".join(comments)))
        classes[node.name] = fields
    return classes


def config_reference() -> str:
    classes = _dataclass_fields((ROOT / "detret" / "config" / "pipeline.py").read_text())
    rows = ["| key | type | default | what |", "|---|---|---|---|"]

    def walk(name: str, prefix: str) -> None:
        for field, annotation, default, comment in classes[name]:
            if annotation in classes:
                walk(annotation, f"{prefix}{field}.")
                continue
            shown = re.sub(r"field\(default_factory=(\w+)\)", lambda m: "[]" if m.group(1) == "list" else m.group(1),
                           default)
            rows.append(f"| `{prefix}{field}` | `{annotation}` | `{shown}` | {comment.replace('|', '/')} |")

    walk("PipelineConfig", "")
    return "\n".join(rows)


def http_reference() -> str:
    from detret.serve.app import openapi_document

    doc = openapi_document()
    lines = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            lines.append(f"### `{method.upper()} {path}`\n\n{op.get('summary', '')}\n")
            body = op.get("requestBody", {}).get("content", {})
            for media in body.values():
                ref = media["schema"].get("$ref", "").rsplit("/", 1)[-1]
                fields = doc["components"]["schemas"].get(ref, {}).get("properties", {})
                lines.append("| field | what |\n|---|---|")
                lines += [f"| `{f}` | {s.get('description', '')} |" for f, s in fields.items()]
                lines.append("")
            answers = [f"{status} ({_answer(r)})" for status, r in op["responses"].items()]
            lines.append("Answers: " + ", ".join(answers) + ".\n")
    lines.append("The answers' schemas, in full:\n\n```json\n"
                 + json.dumps(doc["components"]["schemas"], indent=1)[:200_000] + "\n```")
    return "\n".join(lines)


def _answer(response: Dict) -> str:
    for media, content in response.get("content", {}).items():
        ref = content.get("schema", {}).get("$ref")
        return f"`{ref.rsplit('/', 1)[-1]}`" if ref else media
    return response.get("description", "")


def blocks_table() -> str:
    from detret.retrieval.batch import SAMPLERS
    from detret.retrieval.objective import LOSSES
    from detret.retrieval.pooling import POOLINGS
    from detret.search.rerank import RERANKERS

    rows = ["| block | name | what it is |", "|---|---|---|"]
    for registry in (POOLINGS, LOSSES, SAMPLERS, RERANKERS):
        rows += [f"| {registry.kind} | `{e.name}` | {e.summary} |" for e in registry]
    return "\n".join(rows)
