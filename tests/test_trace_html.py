"""The HTML trace viewer: static checks on the page, then a real headless Chromium through selenium.

The browser tests need the Debian packages ``chromium`` and ``chromium-driver``; they skip (with that
reason) only when /usr/bin/chromium is absent. The screenshot path is printed (run with ``-s``).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest

from reasonflow.trace import Trace, render_html
from reasonflow.trace.viewer_css import STATUS_COLORS

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FULL_TEXT = ("The farm sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = 18 dollars every day.\n"
             + "Checking the arithmetic once more, step by step. " * 8 + "\nSo the answer is 18.")
HOSTILE = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><!-- & @DATA@'


def viewer_trace(hostile: bool = False) -> Trace:
    """A small tree-of-thought search: 2 levels of proposals, some pruned, one answer."""
    t = Trace(program="gsm8k.tot", strategy="tot", config={"breadth": 3, "depth": 2},
              question="A farm's hens lay 16 eggs per day. She eats three for breakfast and bakes muffins "
                       "with four. She sells the rest at $2 per egg. How much does she make every day?")
    root = t.add_node(text=t.graph.graph["question"], status="expanded", calls=["call-0"])
    kids = []
    for i, (score, status) in enumerate([(0.82, "selected"), (0.41, "pruned"), (0.67, "expanded")]):
        kids.append(t.add_node(text=f"Thought {i}: compute eggs left = 16 - 3 - 4.", parent=root,
                               action=f"propose #{i}", score=score, status=status, calls=["call-1"],
                               prompt_tokens=120 if i == 0 else 0, completion_tokens=40, latency_s=1.2))
    t.add_node(text=FULL_TEXT, parent=kids[0], action="finish", score=0.93, status="answer", answer="18",
               calls=["call-2"], prompt_tokens=180, completion_tokens=64, latency_s=0.8)
    t.add_node(text=HOSTILE if hostile else "9 eggs, times $3 = 27", parent=kids[0], action="propose",
               score=0.3, status="pruned", calls=["call-2"], completion_tokens=30)
    t.add_node(text="Maybe she keeps 9 eggs?", parent=kids[2], action="propose", score=0.5,
               status="terminal", calls=["call-3"], prompt_tokens=150, completion_tokens=25)
    t.add_node(text="unscored proposal", parent=kids[2], action="propose", status="proposed")
    t.finish(answer="18", usage={"prompt_tokens": 450, "completion_tokens": 279}, budget_exhausted=True,
             answer_node="n4")
    return t


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S)
    assert match, "no embedded trace data"
    return json.loads(match.group(1))


def test_page_embeds_the_trace_and_names_no_external_url():
    t = viewer_trace()
    page = render_html(t)
    data = embedded_json(page)
    assert data["trace"] == t.to_dict() and data["best_path"] == ["n0", "n1", "n4"]
    assert data["stats"] == t.stats()
    for pattern in (r"https?:", r"\bsrc\s*=", r"url\(", r"@import", r"//[a-z0-9.-]+\.[a-z]{2,}/"):
        assert not re.search(pattern, page, re.I), pattern
    assert "default-src 'none'" in page  # CSP: the browser itself refuses any network load


def test_hostile_text_cannot_close_the_data_tag_or_expand_template_markers():
    page = render_html(viewer_trace(hostile=True))
    block = page.split('id="trace-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block and "&" not in block
    assert embedded_json(page)["trace"]["nodes"][5]["text"] == HOSTILE
    assert page.count("</script>") == 2  # the data block and the viewer script, nothing injected


def test_to_html_writes_one_file_and_returns_its_path(tmp_path):
    path = viewer_trace().to_html(tmp_path / "deep" / "trace.html")
    assert path == tmp_path / "deep" / "trace.html" and os.listdir(path.parent) == ["trace.html"]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- real browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium chromium-driver to run viewer tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_viewer(driver, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    return driver


def row(driver, node_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#tree .row[data-node-id="{node_id}"]')


def severe_logs(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_viewer_renders_without_js_errors_and_is_not_blank(browser, tmp_path_factory):
    from PIL import Image
    from selenium.webdriver.common.by import By

    out = tmp_path_factory.mktemp("viewer")
    open_viewer(browser, viewer_trace().to_html(out / "trace.html"))
    assert severe_logs(browser) == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tree .row[data-node-id]")) == 8
    assert browser.find_element(By.ID, "answer").text == "18"
    assert browser.find_element(By.ID, "budget-badge").is_displayed()
    assert "A farm's hens lay 16 eggs" in browser.find_element(By.ID, "question").text
    assert browser.find_element(By.CSS_SELECTOR, ".row.best[data-node-id='n4']")
    shot = out / "viewer.png"
    shot.write_bytes(browser.get_screenshot_as_png())
    print(f"\nviewer screenshot: {shot}\nviewer page: {out / 'trace.html'}")
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = {rgb for _, rgb in image.getcolors(maxcolors=1 << 22)}
    assert len(colours) > 50, "screenshot looks blank"
    accents = {s: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for s, (c, _) in STATUS_COLORS.items()}
    shown = {s for s, rgb in accents.items() if rgb in colours}
    assert shown == set(STATUS_COLORS), f"status colours missing from the screenshot: {set(STATUS_COLORS) - shown}"


def test_clicking_a_node_shows_its_full_text_and_figures(browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_viewer(browser, viewer_trace().to_html(tmp_path / "t.html"))
    row(browser, "n1").click()
    details = browser.find_element(By.ID, "details")
    assert details.get_attribute("data-node-id") == "n1"
    row(browser, "n4").click()
    assert details.get_attribute("data-node-id") == "n4"
    assert browser.find_element(By.ID, "d-text").get_attribute("textContent") == FULL_TEXT
    fields = {dd.get_attribute("data-field"): dd.text
              for dd in browser.find_elements(By.CSS_SELECTOR, "#d-fields dd")}
    assert fields["score"] == "0.93" and fields["status"] == "answer" and fields["depth"] == "2"
    assert fields["prompt tokens"] == "180" and fields["completion tokens"] == "64"
    assert fields["latency"] == "0.800 s" and fields["calls"] == "call-2" and fields["answer"] == "18"
    assert severe_logs(browser) == []


def test_collapsing_a_node_hides_its_children_and_expanding_shows_them(browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_viewer(browser, viewer_trace().to_html(tmp_path / "t.html"))
    toggle = browser.find_element(By.CSS_SELECTOR, 'button.toggle[data-toggle-for="n3"]')
    assert row(browser, "n6").is_displayed() and row(browser, "n7").is_displayed()
    toggle.click()
    assert not row(browser, "n6").is_displayed() and not row(browser, "n7").is_displayed()
    assert row(browser, "n3").is_displayed() and row(browser, "n4").is_displayed()
    assert "+2 hidden" in row(browser, "n3").text
    toggle.click()
    assert row(browser, "n6").is_displayed() and row(browser, "n7").is_displayed()


def test_expand_to_depth_hides_deeper_nodes_but_keeps_best_path_open(browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_viewer(browser, viewer_trace().to_html(tmp_path / "t.html"))
    browser.find_element(By.CSS_SELECTOR, '#depth-controls button[data-depth="1"]').click()
    assert all(row(browser, n).is_displayed() for n in ("n0", "n1", "n2", "n3"))
    assert row(browser, "n4").is_displayed() and row(browser, "n5").is_displayed()  # n1 is on the best path
    assert not row(browser, "n6").is_displayed() and not row(browser, "n7").is_displayed()
    browser.find_element(By.CSS_SELECTOR, '#depth-controls button[data-depth="all"]').click()
    assert all(row(browser, f"n{i}").is_displayed() for i in range(8))


def test_hostile_node_text_is_shown_as_text_never_run(browser, tmp_path):
    from selenium.webdriver.common.by import By

    open_viewer(browser, viewer_trace(hostile=True).to_html(tmp_path / "t.html"))
    row(browser, "n5").click()
    assert browser.find_element(By.ID, "d-text").get_attribute("textContent") == HOSTILE
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert severe_logs(browser) == []
