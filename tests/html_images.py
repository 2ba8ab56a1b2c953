"""The `src` of every <img> in an HTML page, as the report tests check them (embedded PNGs)."""

from __future__ import annotations

from html.parser import HTMLParser


class ImageSources(HTMLParser):
    """Feed it a page; `sources` lists each image's `src` in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")
