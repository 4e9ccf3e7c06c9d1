"""Build the course website, offline, from the notebooks executed in tiny mode: ``make site`` -> build/site/.

    python scripts/build_site.py               # execute missing/stale notebooks into build/notebooks, then build
    python scripts/build_site.py --no-execute  # build from whatever build/notebooks holds (missing ones are left out)

Steps: (1) every notebook whose executed copy in build/notebooks/ is missing or older than its source is executed
there by ``grpo_helpers.notebooks`` (the same executor as the tests); (2) build/site_src/ is staged: the README as
the landing page, docs/*.md, the executed notebooks and solutions, assets/; links are rewritten for the site (README
links to notebooks become their pages, repository files become GitHub links, the Colab badge image is a local copy
so pages work offline while still linking to Colab); (3) MkDocs (material theme, fonts off, mkdocs-jupyter, no
execution) writes build/site/. Nothing is downloaded. Open build/site/index.html, or serve the folder:
``python -m http.server -d build/site``.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "build" / "notebooks"
STAGE = ROOT / "build" / "site_src"
SITE = ROOT / "build" / "site"
REPO_URL = "https://github.com/grpo-course/grpo-course"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
# Repository markdown that becomes a site page (repo path -> page path), besides README and docs/*.md.
EXTRA_PAGES = {"CONTRIBUTING.md": "contributing.md", "benchmarks/RESULTS.md": "benchmarks.md"}
DOCS_ORDER = ["instructor.md", "challenge.md", "scaling.md"]  # then any other docs page, alphabetically


def course_sources() -> list[Path]:
    """Notebooks and solutions in learning order (repo-relative)."""
    from grpo_helpers.notebooks import course_notebooks

    return [p.relative_to(ROOT) for p in course_notebooks(ROOT / "notebooks")]


def stale(sources: list[Path]) -> list[Path]:
    """Sources whose executed copy is missing or older than the source."""
    out = []
    for src in sources:
        executed = EXECUTED / src.relative_to("notebooks")
        if not executed.exists() or executed.stat().st_mtime < (ROOT / src).stat().st_mtime:
            out.append(src)
    return out


def page_map(sources: list[Path]) -> dict[str, str]:
    """Repository path -> staged page/file path, for everything the site holds."""
    pages = {"README.md": "index.md", **EXTRA_PAGES, "notebooks/solutions": "solutions.md",
             "notebooks/solutions/": "solutions.md"}
    for doc in sorted((ROOT / "docs").glob("*.md")):
        pages[f"docs/{doc.name}"] = doc.name
    for src in sources:
        if (EXECUTED / src.relative_to("notebooks")).exists():
            pages[src.as_posix()] = src.as_posix()
    for folder in ("assets", "docs/assets"):
        for f in (ROOT / folder).glob("*") if (ROOT / folder).is_dir() else []:
            pages[f"{folder}/{f.name}"] = f"assets/{f.name}"
    return pages


def rewrite_links(text: str, repo_file: str, pages: dict[str, str], in_notebook: bool = False) -> str:
    """Point the links of ``text`` (found in repository file ``repo_file``) at the site's pages.

    A page of the site is linked relatively (``.ipynb`` as its ``.html`` page inside notebooks, which MkDocs does not
    rewrite); any other repository path becomes a GitHub link; the Colab badge image becomes the local copy.
    """
    here_repo = Path(repo_file).parent
    here_site = Path(pages[repo_file]).parent

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if target == COLAB_BADGE:
            return match.group(1) + os.path.relpath("assets/colab-badge.svg", here_site) + match.group(3)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = os.path.normpath(here_repo / path).replace(os.sep, "/")
        site_path = pages.get(repo_path) or pages.get(repo_path.rstrip("/"))
        if site_path is None:
            kind = "tree" if (ROOT / repo_path).is_dir() else "blob"
            return f"{match.group(1)}{REPO_URL}/{kind}/main/{repo_path}{'#' + anchor if anchor else ''}{match.group(3)}"
        new = os.path.relpath(site_path, here_site).replace(os.sep, "/")
        if in_notebook and new.endswith((".ipynb", ".md")):
            new = new.rsplit(".", 1)[0] + ".html"  # notebook HTML is not rewritten by MkDocs
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return LINK.sub(fix, text)


TIMINGS_START, TIMINGS_END = "<!-- timings:start -->", "<!-- timings:end -->"


def timings_table(timings_file: Path = EXECUTED / "timings.json") -> str | None:
    """A Markdown table of the measured tiny-mode time of every notebook (from the executor's timings.json)."""
    if not timings_file.exists():
        return None
    timings = json.loads(timings_file.read_text())
    rows = ["| notebook | tiny mode, this CPU | figures |", "|---|---|---|"]
    total = 0.0
    for src in course_sources():
        t = timings.get(src.as_posix())
        if t is None:
            continue
        total += t["seconds"] if src.parent.name != "solutions" else 0.0
        rows.append(f"| `{src.as_posix().removeprefix('notebooks/')}` | {t['seconds']:.0f} s | {t['figures']} |")
    rows.append(f"| **the course notebooks (without solutions)** | **{total / 60:.1f} min** | |")
    return "\n".join(rows)


def with_fresh_timings(text: str) -> str:
    """Replace the table between the timings markers of a docs page with this build's measurement."""
    table = timings_table()
    if table is None or TIMINGS_START not in text or TIMINGS_END not in text:
        return text
    head, rest = text.split(TIMINGS_START, 1)
    return f"{head}{TIMINGS_START}\n{table}\n{TIMINGS_END}{rest.split(TIMINGS_END, 1)[1]}"


HEADING = re.compile(r"^(#{1,6}\s.*)$", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def code_in_headings_as_html(markdown: str) -> str:
    """Write inline code in the headings of a notebook's markdown as ``<code>`` HTML, which renders the same.

    mkdocs-jupyter 0.26 builds a notebook page's table of contents from its markdown with every backtick span cut
    out (``nbconvert2.nb2md``), so "## 5. `GRPOConfig`: every setting" showed as "5. : every setting", and its link
    pointed at an anchor the page does not have. A ``<code>`` element survives that cut.

    Example:
        >>> code_in_headings_as_html("## 5. `GRPOConfig`: all\\nkeep `this` one")
        '## 5. <code>GRPOConfig</code>: all\\nkeep `this` one'
    """
    return HEADING.sub(lambda m: CODE_SPAN.sub(lambda c: f"<code>{html.escape(c.group(1))}</code>", m.group(1)),
                       markdown)


def notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    heading = next((line[2:].strip() for line in first.splitlines() if line.startswith("# ")), path.stem)
    return heading.split(":")[0].strip()


def stage(sources: list[Path]) -> list:
    """Fill build/site_src/ and return the MkDocs nav."""
    import nbformat

    shutil.rmtree(STAGE, ignore_errors=True)
    (STAGE / "assets").mkdir(parents=True)
    pages = page_map(sources)
    for repo, site in pages.items():
        src = ROOT / repo
        if src.is_file() and site.startswith("assets/"):
            shutil.copy(src, STAGE / site)
    for repo in ["README.md", *EXTRA_PAGES, *(f"docs/{d.name}" for d in sorted((ROOT / "docs").glob("*.md")))]:
        if (ROOT / repo).exists():
            text = with_fresh_timings((ROOT / repo).read_text()) if repo.startswith("docs/") else (ROOT / repo).read_text()
            (STAGE / pages[repo]).write_text(rewrite_links(text, repo, pages))
    built = [s for s in sources if s.as_posix() in pages]
    for src in built:
        nb = nbformat.read(EXECUTED / src.relative_to("notebooks"), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = code_in_headings_as_html(rewrite_links(cell.source, src.as_posix(), pages, in_notebook=True))
        target = STAGE / src
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    course = [s for s in built if s.parent.name != "solutions"]
    solutions = [s for s in built if s.parent.name == "solutions"]
    lines = ["# Solutions", "", "Worked solutions to each notebook's exercises, executed in tiny mode.", ""]
    lines += [f"- [{notebook_title(EXECUTED / s.relative_to('notebooks'))}]({s.as_posix()})" for s in solutions]
    (STAGE / "solutions.md").write_text("\n".join(lines) + "\n")

    docs = sorted((ROOT / "docs").glob("*.md"), key=lambda d: (d.name not in DOCS_ORDER,
                                                                  DOCS_ORDER.index(d.name) if d.name in DOCS_ORDER else 0, d.name))
    nav: list = [{"Home": "index.md"}]
    nav += [{(d.read_text().splitlines() or [d.stem])[0].lstrip("# ").split(":")[0].strip() or d.stem: d.name}
            for d in docs]
    nav.append({"Notebooks": [{notebook_title(EXECUTED / s.relative_to("notebooks")): s.as_posix()} for s in course]})
    nav.append({"Solutions": ["solutions.md"] + [{notebook_title(EXECUTED / s.relative_to("notebooks")): s.as_posix()}
                                                 for s in solutions]})
    nav += [{"Contributing": "contributing.md"}, {"Benchmarks": "benchmarks.md"}]
    return nav


def execute_stale(sources: list[Path]) -> None:
    """Execute every notebook whose copy in build/notebooks is missing or older than its source."""
    todo = stale(sources)
    if todo:
        from grpo_helpers.notebooks import execute as run_notebook, record_timings

        results = []
        for src in todo:
            result = run_notebook(ROOT / src, EXECUTED, root=ROOT / "notebooks")
            results.append(result)
            print(f"executed {src} in {result.seconds:.0f} s" + (f" ({len(result.problems)} problems)" if result.problems else ""))
        record_timings(results, EXECUTED / "timings.json")


def build(execute: bool = True) -> float:
    """Execute what is missing or stale, stage, run MkDocs (strict: a warning fails it); return MkDocs' seconds."""
    sources = course_sources()
    if execute:
        execute_stale(sources)
    missing = [s for s in sources if not (EXECUTED / s.relative_to("notebooks")).exists()]
    if missing:
        print(f"not in the site (never executed): {', '.join(map(str, missing))}")
    nav = stage(sources)
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    start = time.perf_counter()
    config = load_config(str(ROOT / "mkdocs.yml"), nav=nav, docs_dir=str(STAGE), site_dir=str(SITE), strict=True)
    mkdocs_build(config)
    seconds = time.perf_counter() - start
    (SITE / "build.json").write_text(json.dumps({"mkdocs_seconds": round(seconds, 1), "pages": len(nav)}))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-execute", action="store_true", help="do not execute missing or stale notebooks")
    parser.add_argument("--execute-only", action="store_true", help="execute missing or stale notebooks, build nothing")
    parser.add_argument("--timings-table", action="store_true", help="print the measured times as Markdown and stop")
    args = parser.parse_args(argv)
    if args.timings_table:
        print(timings_table() or "no build/notebooks/timings.json yet: run python -m grpo_helpers.notebooks")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    if args.execute_only:
        execute_stale(course_sources())
        return 0
    mkdocs_seconds = build(execute=not args.no_execute)
    print(f"site built in {SITE} (MkDocs {mkdocs_seconds:.1f} s, total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
