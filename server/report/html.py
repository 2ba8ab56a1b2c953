"""`report.html` from `report.md`: one self-contained file a coordinator can open or mail.

The Markdown stays the source (diffable, readable in a terminal or on a code host); the HTML is the
same text rendered by the `markdown` package with its tables extension, and every image the
Markdown references beside it is embedded as a base64 data URI, so the HTML has no loose files.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from sites.files import write_atomic

_IMAGE = re.compile(r'<img([^>]*?)src="([^"]+)"')
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }
th { background: #f2f2f2; }
td { font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


class MissingReportImage(FileNotFoundError):
    """The Markdown references an image that is not beside it."""


def _embed(match: re.Match, image_dir: Path) -> str:
    attributes, source = match.group(1), match.group(2)
    if source.startswith("data:"):
        return match.group(0)
    path = image_dir / html.unescape(source)
    if not path.is_file():
        raise MissingReportImage(f"report image {path} is missing; expected it beside the report")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img{attributes}src="data:image/png;base64,{data}"'


def markdown_to_html(markdown_text: str, *, image_dir: Path, title: str) -> str:
    """The whole HTML page for `markdown_text`, images (PNG, relative to `image_dir`) embedded."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    body = _IMAGE.sub(lambda m: _embed(m, Path(image_dir)), body)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html(markdown_path: Path, *, title: str) -> Path:
    """Write `<name>.html` beside `markdown_path` (atomically: no half-written page); return it."""
    markdown_path = Path(markdown_path)
    page = markdown_to_html(markdown_path.read_text(), image_dir=markdown_path.parent, title=title)
    return write_atomic(markdown_path.with_suffix(".html"), page.encode())
