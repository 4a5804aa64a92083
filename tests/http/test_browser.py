"""The page at ``/`` in headless Chromium (selenium) against a real server on 127.0.0.1: type a
question, see hits and a cited answer. Skipped, saying why, where Debian's chromium is absent."""
from __future__ import annotations

import shutil

import pytest

from tests.http.gateway import RO, gateway
from tests.rag import corpus
from tests.rag.fake_llm_server import FakeLLMProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(DRIVER)),
                       reason="needs Debian's chromium and chromium-driver "
                              "(apt-get install -y chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_search_and_cited_chat_in_the_page(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with FakeLLMProcess() as llm, gateway(tmp_path / "db", llm.base_url) as (server, base):
        if not corpus.supports_text_collections(server.database):
            pytest.skip("collections with an embedding model are not merged yet")
        corpus.fill(server.database, "docs")
        browser.get(base + "/")
        wait = WebDriverWait(browser, 30)
        key = browser.find_element(By.ID, "key")
        key.send_keys(RO)
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
        wait.until(lambda d: [o.text for o in Select(d.find_element(By.ID, "collection")).options] == ["docs"])
        Select(browser.find_element(By.ID, "mode")).select_by_visible_text("dense")

        question = browser.find_element(By.ID, "question")
        question.send_keys("Where do herons nest?")
        browser.find_element(By.ID, "search").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li"))
        hits = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#hits li")]
        assert "heronries" in hits[0] and "birds/heron.md" in hits[0]

        browser.find_element(By.ID, "chat").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#citations li"))
        answer = browser.find_element(By.ID, "answer").text
        assert answer.endswith("[1].") and "heronries" in answer
        citation = browser.find_element(By.CSS_SELECTOR, "#citations li").text
        assert citation.startswith("[1] birds/heron.md")
        assert browser.find_element(By.ID, "error").text == ""
