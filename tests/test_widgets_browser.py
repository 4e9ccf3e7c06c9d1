"""The reward playground in a real JupyterLab, driven by headless Chromium (Debian's ``chromium``, via Playwright).

Follows /work/shared/browser/README.md: JupyterLab on a free loopback port with a token, Playwright launching the
system Chromium through ``executable_path`` (``playwright install`` downloads are blocked). ``make test`` installs
chromium first (scripts/install_chromium.sh). The test opens a copy of notebook 04 in a temporary folder (so no run
can ever save outputs into the committed notebook), runs the setup cells and the playground cell, types a completion
into the widget, and waits for the total to change. It saves assets/widget_playground.png.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_reward_design.ipynb"
SCREENSHOT = ROOT / "assets" / "widget_playground.png"
TOKEN = "grpo-course-browser-test"
WAIT_MS = 60_000
NEGATIVE = "<reasoning>\nIt was 5 degrees.\nIt fell 8 degrees: 5 - 8 = -3.\n</reasoning>\n<answer>\n-3\n</answer>\n"

pytestmark = pytest.mark.browser


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run `bash scripts/install_chromium.sh` (make test does).")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(folder: Path) -> None:
    """User settings for the test server: no autosave, no news pop-up."""
    settings = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                           "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab server on a free loopback port serving a copy of notebook 04; killed (by its pid) at the end."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    write_settings(tmp_path / "settings")
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRPO_COURSE_TINY="1", TOKENIZERS_PARALLELISM="false",
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.token={TOKEN}", "--allow-root", f"--ServerApp.root_dir={work}",
         "--ServerApp.port_retries=0"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start in 60 s: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield url, NOTEBOOK.name
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (its own session)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def run_cell(page, text: str) -> None:
    """Select the first code cell containing ``text`` and run it with Shift+Enter."""
    cell = page.locator(".jp-CodeCell", has_text=text).first
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def test_playground_updates_in_jupyterlab(jupyter_lab):
    from playwright.sync_api import expect, sync_playwright

    url, name = jupyter_lab
    expect.set_options(timeout=WAIT_MS)  # the first cell waits for the kernel to start
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{url}/lab/tree/{name}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook")
            # Run nothing before the kernel is up, or JupyterLab asks which kernel to start.
            expect(page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle").first).to_be_visible()
            run_cell(page, "show_environment()")
            run_cell(page, "cfg = course_config()")
            run_cell(page, "playground = RewardPlayground()")

            total = page.locator(".grpo-playground-total")
            expect(total).to_contain_text("total: fixed 4.00 / 4.00 | seed 3.00")  # the "honest, right" example
            box = page.locator(".grpo-playground-completion textarea")
            box.fill(NEGATIVE)
            expect(total).to_contain_text("total: fixed 2.00 / 4.00 | seed 0.50")  # still scored against "7"
            answer = page.locator(".grpo-playground-answer input")
            answer.fill("-3")
            # The fixed rewards pay the negative answer in full; the seed's isdigit() and one-line regexes do not.
            expect(total).to_contain_text("total: fixed 4.00 / 4.00 | seed 2.50")
            expect(page.locator(".grpo-playground-table")).to_contain_text("correctness")
            box.fill("7")  # the bare-number hack
            expect(total).to_contain_text("total: fixed 0.00 / 4.00 | seed 0.50")  # isdigit pays "7"
            box.fill(NEGATIVE)
            expect(total).to_contain_text("total: fixed 4.00 / 4.00 | seed 2.50")
            widget = page.locator(".jp-OutputArea-output", has=total).first
            widget.scroll_into_view_if_needed()
            SCREENSHOT.parent.mkdir(exist_ok=True)
            widget.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
