"""What the docker CLI prints, as it prints it: tab-aligned tables (Go's tabwriter with
docker's settings), human ages and sizes (go-units), and the subset of Go templates that
people pass to --format: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`,
`{{index .Map "key"}}`, `{{upper …}}`/`{{lower …}}`, literal text, and the `table` prefix.

No regular expressions: re imports enum and more, a fifth of `matou ps`'s start.

May import: client.fastjson, oci.timestamps (and stdlib).
"""

from __future__ import annotations

import time

from matou.client import fastjson as json
from matou.oci.timestamps import human_duration

TYPE_CHECKING = False  # not typing's: the CLI starts faster
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


def table(rows: Sequence[Sequence[str]], min_width: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as docker configures it (minwidth 10, padding 3, the last column
    not padded)."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell))
    out = []
    for r in rows:
        cells = [cell.ljust(max(widths[i] + padding, min_width)) if i < len(r) - 1 else cell
                 for i, cell in enumerate(r)]
        out.append("".join(cells))
    return "\n".join(out) + "\n"


def ago(unix: float) -> str:
    return human_duration(time.time() - unix) + " ago"


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `precision` significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    text = f"{size:.{precision}g}"
    if "e" in text:
        text = f"{size:.0f}"
    return f"{text}{units[i]}"


def truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- Go templates (the subset people use) ------------------------------------------------

def _pieces(template: str) -> list[tuple[str, str | None]]:
    """The template as (literal text, action) pairs; the last action is None. Go's trim
    markers ({{- and -}}) are dropped from the action."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while (j := template.find("{{", i)) >= 0 and (k := template.find("}}", j + 2)) >= 0:
        action = template[j + 2:k]
        action = action[1:] if action.startswith("-") else action
        action = action[:-1] if action.endswith("-") else action
        out.append((template[i:j], action.strip()))
        i = k + 2
    out.append((template[i:], None))
    return out


def _words(expr: str) -> list[str]:
    """An action's words: "quoted strings" whole, else split at white space."""
    out = []
    i, n = 0, len(expr)
    while i < n:
        if expr[i].isspace():
            i += 1
            continue
        j = expr.find('"', i + 1) + 1 if expr[i] == '"' else 0
        if j <= 0:
            j = i
            while j < n and not expr[j].isspace():
                j += 1
        out.append(expr[i:j])
        i = j
    return out


def _lookup(obj: Any, path: str) -> Any:
    if path in (".", ""):
        return obj
    for part in path.lstrip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


def _value(expr: str, obj: Any) -> Any:
    words = _words(expr)
    if not words:
        return ""
    fn, args = words[0], words[1:]
    if fn == "json":
        return json.dumps(_go_order(_value(" ".join(args), obj)), ensure_ascii=False,
                          compact=True)
    if fn in ("upper", "lower", "title"):
        v = str(_value(" ".join(args), obj))
        return v.upper() if fn == "upper" else v.lower() if fn == "lower" else v.title()
    if fn == "index":
        base = _value(args[0], obj)
        key = args[1].strip('"')
        if isinstance(base, dict):
            return base.get(key)
        if isinstance(base, list) and key.isdigit() and int(key) < len(base):
            return base[int(key)]
        return None
    if fn == "join":
        base = _value(args[0], obj)
        sep = args[1].strip('"') if len(args) > 1 else " "
        return sep.join(str(x) for x in base or [])
    if fn.startswith('"'):
        return fn.strip('"')
    return _lookup(obj, fn)


def _go_order(v: Any) -> Any:
    """Go marshals a map with its keys sorted and a struct in field order: a dict of
    strings only (labels, attributes) is a map; others keep the API's order."""
    if isinstance(v, dict):
        items = {k: _go_order(x) for k, x in v.items()}
        if all(isinstance(x, str) for x in v.values()):
            return dict(sorted(items.items()))
        return items
    if isinstance(v, list):
        return [_go_order(x) for x in v]
    return v


def _text(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_text(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_text(x) for x in v) + "]"
    return str(v)


def render(template: str, obj: Any) -> str:
    template = template.encode().decode("unicode_escape") if "\\" in template else template
    return "".join(text + ("" if action is None else _text(_value(action, obj)))
                   for text, action in _pieces(template))


def formatted(fmt: str, items: Sequence[Any], headers: dict[str, str],
              row: Callable[[Any], Any] = lambda x: x) -> str:
    """--format for a list command: `table …` renders a table whose headers are the
    placeholders' docker names; anything else is one rendered line per item."""
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip() or ""
        header = "".join(
            text + ("" if action is None else
                    headers.get(action[1:], action[1:].upper())
                    if action[:1] == "." and action[1:].isidentifier() else
                    _text(_value(action, {})))
            for text, action in _pieces(body))
        lines = [header] + [render(body, row(i)) for i in items]
        return table([line.split("\t") for line in lines])
    return "".join(render(fmt, row(i)) + "\n" for i in items)
