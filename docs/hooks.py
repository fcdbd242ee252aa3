"""mkdocs hooks: pages that show a file kept elsewhere in the repository, so each text lives once.

``<!-- include: PATH -->`` on its own line is replaced by the file at PATH (relative to the repository root), its
headings one level down when the page has a title of its own, and its links to ``docs/`` made relative to the site; the benchmark PNGs that
benchmarks/RESULTS.md shows are added to the site under ``results/``; Python subscripts in prose stay text.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)
# a Python subscript in prose, `groups[0]['params']`, reads as a markdown reference link `[0]['params']`
SUBSCRIPT = re.compile(r"\]\[(?=\\?['\"])")


def _root(config) -> Path:
    return Path(config["docs_dir"]).resolve().parent


def _demote(text: str) -> str:
    out, fenced = [], False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        out.append("#" + line if not fenced and re.match(r"#+ ", line) else line)
    return "\n".join(out) + "\n"


def on_page_markdown(markdown, page, config, files):
    root = _root(config)

    def include(m):
        text = (root / m.group(1)).read_text(encoding="utf-8")
        titled = re.search(r"^# ", markdown[: m.start()], re.M)  # the page has its own title: nest under it
        return (_demote(text) if titled else text).replace("](docs/", "](")

    return _escape_subscripts(INCLUDE.sub(include, markdown))


def _escape_subscripts(markdown: str) -> str:
    """``x[0]['key']`` outside code spans and fences: escape the ``[`` so it stays text, not a reference link."""
    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        fenced ^= line.startswith("```")
        if fenced or "][" not in line:
            out.append(line)
            continue
        parts = line.split("`")  # even parts are outside code spans
        out.append("`".join(SUBSCRIPT.sub("]\\[", s) if i % 2 == 0 else s for i, s in enumerate(parts)))
    return "".join(out)


def on_files(files, config):
    results = _root(config) / "benchmarks"
    for png in sorted((results / "results").glob("*.png")):
        files.append(
            File(f"results/{png.name}", str(results), config["site_dir"], config["use_directory_urls"])
        )
    return files
