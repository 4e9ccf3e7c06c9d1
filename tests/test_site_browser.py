"""``make site``: the course website, built offline from the executed notebooks, read in headless Chromium.

Builds the site with scripts/build_site.py (which executes any notebook whose copy in build/notebooks/ is missing or
stale; after tests/test_notebook_outputs.py that is none) inside a network namespace with no network at all when
``unshare -n`` works (root on Linux), so a build step that downloads anything fails here. Then serves build/site/
on a free loopback port and opens every page in Debian's Chromium (Playwright with ``executable_path``; see
/work/shared/browser/README.md): every notebook page shows each of its figures as a loaded image, and no page shows
``<Figure size`` text or a Python traceback; every notebook page's table of contents shows each heading in full
(inline code included) and links to an anchor the page has. Landing page = the README, solutions linked, Colab
badges kept.
"""

import functools
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from grpo_helpers.notebooks import IMAGE_TYPES, course_notebooks

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "build" / "site"
EXECUTED = ROOT / "build" / "notebooks"
WAIT_MS = 30_000

pytestmark = [pytest.mark.browser, pytest.mark.site]
SHOWN_TEXT_JS = """notebook => {
    if (notebook) return Array.from(document.querySelectorAll('.jp-OutputArea')).map(e => e.innerText).join('\\n');
    const content = document.querySelector('.md-content').cloneNode(true);
    content.querySelectorAll('code, pre').forEach(e => e.remove());
    return content.innerText;
}"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run `bash scripts/install_chromium.sh` (make test does).")
    return path


def offline_prefix() -> list[str]:
    """``unshare -n`` (a new network namespace with only a down loopback) when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.fixture(scope="module")
def site():
    pytest.importorskip("mkdocs", reason="the docs extra is missing: pip install -e '.[docs]' (make site installs it)")
    script = str(ROOT / "scripts" / "build_site.py")
    executed = subprocess.run([sys.executable, script, "--execute-only"], cwd=ROOT, capture_output=True, text=True,
                              timeout=3600)  # kernels talk over loopback TCP, which a fresh namespace lacks
    assert executed.returncode == 0, executed.stdout[-2000:] + executed.stderr[-3000:]
    prefix = offline_prefix()
    start = time.perf_counter()
    result = subprocess.run([*prefix, sys.executable, script, "--no-execute"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    seconds = time.perf_counter() - start
    print(f"\nsite build {'without network' if prefix else 'with network available'}: {seconds:.1f} s\n"
          f"{result.stdout[-1500:]}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]  # strict: any MkDocs warning fails
    return SITE


@pytest.fixture(scope="module")
def server(site):
    """build/site/ over HTTP on a free loopback port, in a thread of this process (stopped at the end)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def expected_pages() -> dict[str, int]:
    """Site page of every executed notebook -> how many figures its executed copy holds."""
    pages = {}
    for source in course_notebooks(ROOT / "notebooks"):
        executed = EXECUTED / source.relative_to(ROOT / "notebooks")
        if executed.exists():
            nb = nbformat.read(executed, as_version=4)
            figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                          if any(k in o.get("data", {}) for k in IMAGE_TYPES))
            pages[executed.relative_to(EXECUTED).with_suffix(".html").as_posix()] = figures
    return pages


def test_every_page_shows_its_figures_and_no_figure_text_or_traceback(server):
    from playwright.sync_api import sync_playwright

    notebook_pages = expected_pages()
    assert notebook_pages, "no executed notebook in build/notebooks"
    docs = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("*.html") if p.name != "404.html")
    problems, shown = [], {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            blocked = []
            # Nothing may leave the machine: the pages must read the same offline (the CDN widget loader just fails).
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else (blocked.append(route.request.url), route.abort()))
            for path in [*docs, *notebook_pages]:
                page.goto(f"{server}/notebooks/{path}" if path in notebook_pages else f"{server}/{path}",
                          wait_until="load")
                # What the page shows as results: a notebook's outputs; a prose page's text outside code, where
                # documentation may quote "<Figure size" or a traceback on purpose (benchmarks/RESULTS.md does).
                text = page.evaluate(SHOWN_TEXT_JS, path in notebook_pages)
                for bad in ("<Figure size", "Traceback (most recent call last)"):
                    if bad in text:
                        problems.append(f"{path}: shows {bad!r}")
                if path in notebook_pages:
                    loaded = page.eval_on_selector_all(
                        ".jupyter-wrapper .jp-OutputArea-output img",
                        "imgs => imgs.filter(i => i.complete && i.naturalWidth > 50).length")
                    shown[path] = loaded
                    if loaded < notebook_pages[path]:
                        problems.append(f"{path}: {loaded} figures shown as images, the notebook has "
                                        f"{notebook_pages[path]}")
            page.goto(f"{server}/index.html")
            landing = page.inner_text("body")
            badges = page.eval_on_selector_all("a[href^='https://colab.research.google.com/'] img",
                                               "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
            solutions = page.eval_on_selector_all("a[href$='solutions.html']", "links => links.length")
        finally:
            browser.close()
    print(f"\n{len(docs)} pages and {len(notebook_pages)} notebook pages; figures shown: {json.dumps(shown)}; "
          f"{len(blocked)} requests off this machine blocked: {sorted(set(u.split('/')[2] for u in blocked))}")
    assert not problems, "\n".join(problems)
    assert "learn GRPO by doing it" in landing and badges >= 8 and solutions >= 1


TOC_JS = """() => {
    const entries = Array.from(document.querySelectorAll('nav.md-nav--secondary a.md-nav__link'))
        .map(a => [a.getAttribute('href'), a.innerText.trim()]);
    const headings = Array.from(document.querySelectorAll('.jupyter-wrapper h2, .jupyter-wrapper h3'))
        .map(h => h.innerText.replace(/\u00b6/g, '').trim());
    const missing = entries.filter(([href]) => !href.startsWith('#') || !document.getElementById(href.slice(1)))
        .map(([href]) => href);
    return {entries: entries.map(([, text]) => text), headings, missing};
}"""


def toc_problems(path: str, toc: dict) -> list[str]:
    """What a page's table of contents gets wrong: a heading shown without its full text, or a link to nowhere."""
    problems = [f"{path}: the table of contents links to {href}, which the page does not have"
                for href in dict.fromkeys(toc["missing"])]  # Material draws the TOC twice (sidebar, drawer)
    shown = set(toc["entries"])
    problems += [f"{path}: heading {h!r} is not in the table of contents as written" for h in toc["headings"] if h not in shown]
    return problems


def test_toc_problems_name_a_heading_cut_short_and_a_dead_link():
    toc = {"entries": ["5. : every setting of the recipe"], "headings": ["5. GRPOConfig: every setting of the recipe"],
           "missing": ["#5-every-setting-of-the-recipe"]}
    assert toc_problems("06.html", toc) == [
        "06.html: the table of contents links to #5-every-setting-of-the-recipe, which the page does not have",
        "06.html: heading '5. GRPOConfig: every setting of the recipe' is not in the table of contents as written"]


def test_every_notebook_table_of_contents_shows_each_heading_in_full(server):
    """Issue 19: 06's "## 5. `GRPOConfig`: every setting of the recipe" showed as "5. : every setting of the recipe"."""
    from playwright.sync_api import sync_playwright

    pages = expected_pages()
    assert pages, "no executed notebook in build/notebooks"
    problems, headings = [], 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server) else route.abort())
            for path in pages:
                page.goto(f"{server}/notebooks/{path}", wait_until="load")
                toc = page.evaluate(TOC_JS)
                headings += len(toc["headings"])
                problems += toc_problems(path, toc)
        finally:
            browser.close()
    print(f"\n{headings} notebook headings checked in {len(pages)} tables of contents")
    assert headings > len(pages) and not problems, "\n".join(problems)


def test_code_in_headings_survives_mkdocs_jupyters_toc():
    builder = load_builder()
    assert builder.code_in_headings_as_html("## 6. `GRPOTrainer` & `a<b`\nText with `code`.") == (
        "## 6. <code>GRPOTrainer</code> & <code>a&lt;b</code>\nText with `code`.")


def test_notebook_pages_link_their_solutions_and_the_challenge_is_there(site):
    challenge = (site / "notebooks" / "09_reward_challenge.html").read_text()
    assert 'href="solutions/09_reward_challenge.html"' in challenge and "grpo-challenge" in challenge
    solution = (site / "notebooks" / "solutions" / "09_reward_challenge.html").read_text()
    assert 'href="../09_reward_challenge.html"' in solution
    index = (site / "index.html").read_text()
    assert "assets/colab-badge.svg" in index and "colab.research.google.com/assets/colab-badge.svg" not in index
    assert (site / "instructor.html").exists() and (site / "challenge.html").exists()


def load_builder():
    """scripts/build_site.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_point_at_site_pages_github_or_the_local_badge():
    builder = load_builder()
    pages = {"README.md": "index.md", "docs/challenge.md": "challenge.md",
             "notebooks/04_reward_design.ipynb": "notebooks/04_reward_design.ipynb",
             "notebooks/solutions/04_reward_design.ipynb": "notebooks/solutions/04_reward_design.ipynb"}
    readme = ("[04](notebooks/04_reward_design.ipynb) [tests](tests/gpu/README.md) [web](https://x.org) "
              f"[![Open In Colab]({builder.COLAB_BADGE})](https://colab.research.google.com/x) [kit](docs/challenge.md#a)")
    assert builder.rewrite_links(readme, "README.md", pages) == (
        "[04](notebooks/04_reward_design.ipynb) [tests](https://github.com/grpo-course/grpo-course/blob/main/tests/gpu/"
        "README.md) [web](https://x.org) [![Open In Colab](assets/colab-badge.svg)](https://colab.research.google.com/x)"
        " [kit](challenge.md#a)")
    cell = "Solutions: [here](solutions/04_reward_design.ipynb), code: [rewards](../grpo_helpers/rewards.py)"
    assert builder.rewrite_links(cell, "notebooks/04_reward_design.ipynb", pages, in_notebook=True) == (
        "Solutions: [here](solutions/04_reward_design.html), code: "
        "[rewards](https://github.com/grpo-course/grpo-course/blob/main/grpo_helpers/rewards.py)")


def test_timings_table_is_filled_between_the_markers(tmp_path, monkeypatch):
    builder = load_builder()
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"notebooks/04_reward_design.ipynb": {"seconds": 65.2, "figures": 2, "problems": []}}))
    table = builder.timings_table(timings)
    assert "| `04_reward_design.ipynb` | 65 s | 2 |" in table and "**1.1 min**" in table
    monkeypatch.setattr(builder, "timings_table", lambda: table)
    page = f"intro\n{builder.TIMINGS_START}\nold table\n{builder.TIMINGS_END}\nafter"
    assert builder.with_fresh_timings(page) == f"intro\n{builder.TIMINGS_START}\n{table}\n{builder.TIMINGS_END}\nafter"
