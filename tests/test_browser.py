"""The browser sample end to end in real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

``python -m sample_projects.browser`` starts the sample issuer (demo login on, serving the page) and
the FastAPI sample (CORS for the issuer's origin) as real servers on 127.0.0.1, both with
``DPOP_NONCE=always``, so the page has to answer a nonce challenge at the token endpoint and at the
API (cross-origin: only possible because CORS exposes ``DPoP-Nonce`` and ``WWW-Authenticate``). The browser profile lives in ``tmp_path``
and is kept across the reload, so the key in IndexedDB survives it, as it would for a user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from servers import free_port, python_argv, running, wait_for_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1500",
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The sample's own launcher: the issuer (serving the page) and the API, real servers on 127.0.0.1."""
    log = tmp_path_factory.mktemp("server-logs") / "launcher.log"
    issuer_port, api_port = free_port(), free_port()
    argv = python_argv("-m", "sample_projects.browser", "--issuer-port", str(issuer_port), "--api-port", str(api_port))
    # running() stops the launcher's whole process group, both servers included.
    with running(argv, issuer_port, log_path=log):
        wait_for_port(api_port)
        yield f"http://127.0.0.1:{issuer_port}", f"http://127.0.0.1:{api_port}"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).is_file(), f"{path} missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # One profile for the whole test: IndexedDB (the key) must outlive the reload.
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    # Both paths given, so Selenium Manager has nothing to look up or download.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    # Elements vanish while the page navigates (sign-in redirects, reload): look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(condition)


def page_settled(driver: WebDriver) -> bool:
    state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    if state == "error":
        raise AssertionError(f"the page failed: {driver.find_element(By.ID, 'error').text}")
    return state == "ready"


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def attribute(driver: WebDriver, element_id: str, name: str) -> str | None:
    value = driver.find_element(By.ID, element_id).get_attribute(name)
    return None if value is None else str(value)


def exchanges(driver: WebDriver, label: str) -> list[dict[str, str]]:
    """The page's request log for ``label``: status, error, attempt, whether the proof had a nonce."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"#log li[data-label='{label}']")
    names = ("status", "error", "attempt", "nonce-sent", "method", "path")
    return [{name: str(row.get_attribute(f"data-{name}")) for name in names} for row in rows]


def call_me(driver: WebDriver) -> None:
    before = int(str(driver.find_element(By.TAG_NAME, "body").get_attribute("data-api-calls")))
    driver.find_element(By.ID, "btn-me").click()
    wait(
        driver,
        lambda d: (
            page_settled(d) and d.find_element(By.TAG_NAME, "body").get_attribute("data-api-calls") == str(before + 1)
        ),
    )


STORED_KEY_SCRIPT = """
const done = arguments[arguments.length - 1];
const open = indexedDB.open("dpop-browser-sample");
open.onerror = () => done({error: String(open.error)});
open.onsuccess = () => {
  const get = open.result.transaction("keys").objectStore("keys").get("dpop-key");
  get.onsuccess = () => {
    const record = get.result;
    open.result.close();
    done(record ? {
      privateType: record.privateKey.type,
      privateExtractable: record.privateKey.extractable,
      usages: record.privateKey.usages,
      curve: record.privateKey.algorithm.namedCurve,
      isCryptoKey: record.privateKey instanceof CryptoKey,
    } : null);
  };
};
"""


def test_browser_flow_with_a_non_extractable_key(sample: tuple[str, str], browser: WebDriver, tmp_path: Path) -> None:
    issuer, api = sample
    browser.get(f"{issuer}/browser/")
    wait(browser, page_settled)

    # A new key, made non-extractable; its thumbprint is shown.
    assert attribute(browser, "key-status", "data-created") == "true"
    assert text(browser, "key-extractable") == "false"
    jkt = text(browser, "jkt")
    assert len(jkt) == 43
    assert text(browser, "api-url") == api

    # Custody: every export attempt of the private key failed, and the page says why.
    custody = browser.find_elements(By.CSS_SELECTOR, "#custody li")
    assert {item.get_attribute("data-format") for item in custody} == {"jwk", "pkcs8"}
    for item in custody:
        assert item.get_attribute("data-exported") == "false"
        assert "InvalidAccessError" in item.text and "refused" in item.text

    # Sign in: /authorize (auto-approved demo login) sends us back with a code, exchanged with a proof.
    browser.find_element(By.ID, "btn-login").click()
    wait(browser, lambda d: page_settled(d) and attribute(d, "session-status", "data-signed-in") == "true")
    assert browser.current_url == f"{issuer}/browser/"  # the code is gone from the address bar
    token_calls = exchanges(browser, "token")
    assert [(c["status"], c["error"], c["nonce-sent"]) for c in token_calls] == [
        ("400", "use_dpop_nonce", "no"),
        ("200", "", "yes"),
    ]

    # The protected call: challenged for a nonce (cross-origin, so CORS exposed DPoP-Nonce and
    # WWW-Authenticate to the page), answered once, then 200 with the identity bound to our key.
    call_me(browser)
    me_calls = exchanges(browser, "me")
    assert [(c["status"], c["error"], c["attempt"], c["nonce-sent"]) for c in me_calls] == [
        ("401", "use_dpop_nonce", "0", "no"),
        ("200", "", "1", "yes"),
    ]
    assert (text(browser, "id-sub"), text(browser, "id-client")) == ("demo-user", "browser-demo")
    assert text(browser, "id-jkt") == jkt
    assert attribute(browser, "id-match", "class") == "ok"

    # A POST with a JSON body (a preflight for Content-Type, Authorization and DPoP): the nonce is
    # already known, so no challenge this time.
    browser.find_element(By.ID, "btn-note").click()
    wait(browser, lambda d: page_settled(d) and len(exchanges(d, "note")) == 1)
    assert [(c["status"], c["nonce-sent"]) for c in exchanges(browser, "note")] == [("201", "yes")]
    browser.save_screenshot(str(tmp_path / "browser-signed-in.png"))

    # Reload: same key from IndexedDB (same jkt), token still in this tab's session, call again.
    browser.refresh()
    wait(browser, page_settled)
    assert attribute(browser, "key-status", "data-created") == "false"
    assert text(browser, "jkt") == jkt
    assert attribute(browser, "session-status", "data-signed-in") == "true"
    call_me(browser)
    after_reload = exchanges(browser, "me")
    assert [(c["status"], c["attempt"]) for c in after_reload] == [("401", "0"), ("200", "1")]
    assert text(browser, "id-jkt") == jkt
    for item in browser.find_elements(By.CSS_SELECTOR, "#custody li"):
        assert item.get_attribute("data-exported") == "false"

    # What is stored: a CryptoKey in IndexedDB, not extractable; nothing in localStorage.
    stored = browser.execute_async_script(STORED_KEY_SCRIPT)
    assert stored == {
        "privateType": "private",
        "privateExtractable": False,
        "usages": ["sign"],
        "curve": "P-256",
        "isCryptoKey": True,
    }
    assert browser.execute_script("return window.localStorage.length") == 0

    screenshot = tmp_path / "browser-after-reload.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
