"""The web console in a real browser (Debian's Chromium through Selenium) against a real Altus 4 (gunicorn,
MariaDB, Redis): a new user's whole first visit, an XSS row shown as text, and the page's security headers.

Screenshots of every page go to `test-artifacts/console/` (or `$ALTUS4_ARTIFACTS/console/`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from conftest import READER, TARGET_A, env_for_tests, fresh_fulltext_table
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait
from servers import call, start_gunicorn

pytestmark = pytest.mark.slow  # a browser: about 20 s

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ALTUS4_ARTIFACTS", ROOT / "test-artifacts")) / "console"
XSS_DB = "altus4_test_console"
XSS_ROWS = [
    (1, "zebrafish <script>window.__xss = 1</script> note", '<img src=x onerror="window.__xss = 2"> zebrafish'),
    (2, "zebrafish & friends", "plain zebrafish text with \"quotes\" and 'apostrophes'"),
]


@pytest.fixture(scope="module")
def server(migrated, targets, tmp_path_factory):
    fresh_fulltext_table(
        migrated,
        XSS_DB,
        "notes",
        "CREATE TABLE notes (id INT PRIMARY KEY, title VARCHAR(200), body TEXT,"
        " FULLTEXT KEY ft_notes (title, body)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "INSERT INTO notes VALUES (%s, %s, %s)",
        XSS_ROWS,
    )
    gunicorn = start_gunicorn(env_for_tests(), tmp_path_factory.mktemp("console"), workers=2)
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Person:
    """What a person does and sees: fills forms, clicks, waits for the page, takes a screenshot."""

    def __init__(self, driver, base: str):
        self.driver, self.base = driver, base
        # the page re-renders a view after each change: an element found just before can go stale
        self.wait = WebDriverWait(driver, 15, ignored_exceptions=[StaleElementReferenceException])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def go(self, view: str) -> None:
        self.driver.get(f"{self.base}/console#/{view}")

    def find(self, css: str):
        return self.wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def gone(self, css: str) -> None:
        self.wait.until(seen.invisibility_of_element_located((By.CSS_SELECTOR, css)))

    def text(self, css: str) -> str:
        return self.find(css).text

    def fill(self, form: str, **values) -> None:
        for name, value in values.items():
            field = self.find(f"{form} [name={name}]")
            if field.tag_name == "select":
                Select(field).select_by_value(value)
            else:
                field.clear()
                field.send_keys(str(value))

    def submit(self, form: str) -> None:
        self.find(f"{form} button[type=submit]").click()

    def until(self, condition, what: str):
        return self.wait.until(lambda d: condition(d), message=what)

    def snap(self, name: str) -> None:
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def notice(self) -> str:
        return self.driver.find_element(By.ID, "notice").text


def test_a_new_users_first_visit(server, browser, migrated):
    me = Person(browser, server.url)
    email = f"console-{uuid.uuid4().hex[:8]}@example.com"
    me.go("account")
    me.find("#register")
    assert not browser.find_element(By.ID, "nav").is_displayed()  # signed out: no navigation
    me.snap("01-sign-in")
    me.fill("#register", name="Console User", email=email, password="a console password")
    me.submit("#register")

    # the first API key in one step, shown once with a copy button
    me.find("#setup-key").click()
    secret = me.text("#secret-value")
    assert secret.startswith("altus4_sk_") and me.find("#new-secret [data-copy]")
    me.snap("02-first-key")
    # the password changed from the account page: this tab stays signed in
    me.fill("#change-password", currentPassword="a console password", newPassword="a new console password")
    me.submit("#change-password")
    me.until(lambda d: "Password changed" in me.notice(), "the password changed")

    # connect the demo database and an unreachable one; look at the schema and its index advice
    me.go("databases")
    connection = dict(host=migrated.db_host, port=migrated.db_port, username=READER[0], password=READER[1])
    me.fill("#add-database", name="Shop", database=TARGET_A, **connection)
    me.submit("#add-database")
    me.until(lambda d: "connected" in me.text("tbody [data-status]"), "the demo database connected")
    me.fill("#add-database", name="Notes", database=XSS_DB, **connection)
    me.submit("#add-database")
    me.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-connection]")) == 2, "two connections")
    me.fill("#add-database", name="Nowhere", host="127.0.0.1", port=1, database="none", username="u", password="p")
    me.submit("#add-database")
    me.until(lambda d: "Nowhere saved, but" in me.notice(), "the API's error for an unreachable database")
    me.find("tr[data-connection] button.secondary").click()  # Schema of Shop
    me.find("#schema tr[data-table=plain] pre.suggested")
    assert me.text("#schema tr[data-table=plain] pre.suggested").startswith("ALTER TABLE `plain` ADD FULLTEXT")
    me.snap("03-databases")
    nowhere = browser.find_elements(By.CSS_SELECTOR, "tr[data-connection]")[-1]
    nowhere.find_element(By.CSS_SELECTOR, "button.danger").click()
    browser.switch_to.alert.accept()
    me.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-connection]")) == 2, "Nowhere removed")

    # natural search: highlighted results, per-database status, exact total, paging, the curl
    me.go("search")
    assert me.find("#search-form button[type=submit]").get_attribute("disabled") is None
    me.fill("#search-form", query="gevent workers", limit=3)
    me.submit("#search-form")
    total = me.text("#total")
    assert int(total.split()[0]) > 3 and me.text("#page").startswith("page 1 of")
    marks = [m.text.lower() for m in browser.find_elements(By.CSS_SELECTOR, "#results mark")]
    assert marks and all(m in ("gevent", "workers") for m in marks)
    assert "Shop: ok" in me.text("#db-status") and me.text("#cached") == "not cached"
    assert "/api/v1/search" in me.text("#curl") and "gevent workers" in me.text("#curl")
    # each result: a title from the row's name/title column, the score as a bar and a rounded value
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#results .result .title")]
    assert len(titles) == 3 and all(t and not t.startswith("row ") for t in titles), titles
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .score-bar > span")) == 3
    assert not browser.find_elements(By.ID, "ai")  # no AI line outside semantic mode
    me.snap("04-search-natural")
    first_page = [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, ".result")]
    browser.find_element(By.XPATH, "//button[contains(., 'Next')]").click()
    me.until(lambda d: me.text("#page").startswith("page 2"), "page 2")
    second_page = [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, ".result")]
    assert second_page and not set(first_page) & set(second_page)
    me.submit("#search-form")  # the same search again comes from the cache
    me.until(lambda d: me.text("#cached") == "cached" and me.text("#page").startswith("page 1"), "a cached repeat")

    # structured search: browse (no query) with a facet and a sort; a facet value clicked filters the results
    # to it (and is shown pressed), clicked again takes the filter back out; a malformed filter is shown with
    # a caret under the filter
    me.fill("#search-form", query="", facets="category", sort="price:asc", limit=10)
    me.submit("#search-form")
    value = me.find("#facets [data-facet=category] .facet-value")
    chosen, count = value.get_attribute("data-value"), int(value.find_element(By.CSS_SELECTOR, ".count").text)
    assert "products" in me.text("#summary") or int(me.text("#total").split()[0]) >= count
    value.click()
    me.until(lambda d: int(me.text("#total").split()[0]) == count, "the results filtered to the facet value")
    assert me.find("#search-form [name=filter]").get_attribute("value") == f'category = "{chosen}"'
    pressed = f'#facets .facet-value[data-value="{chosen}"]'
    assert me.find(pressed).get_attribute("aria-pressed") == "true"
    assert '"filter": "category = ' in me.text("#curl").replace('":"', '": "') or "category =" in me.text("#curl")
    prices = [float(p.text.split()[-1]) for p in browser.find_elements(By.CSS_SELECTOR, "#results .fields span")
              if p.text.startswith("price ")]  # fmt: skip
    assert prices and prices == sorted(prices), prices  # price ascending
    me.snap("05-search-facets")
    me.find(pressed).click()
    me.until(lambda d: me.find("#search-form [name=filter]").get_attribute("value") == "", "the facet unselected")
    me.fill("#search-form", filter="price >")
    me.submit("#search-form")
    assert "INVALID_FILTER" in me.text("#search-error") and me.text("#error-position").startswith("price >")
    me.fill("#search-form", query="gevent workers", filter="", facets="", sort="", limit=3)

    # semantic mode without an AI provider: the page says the AI was not used, and why
    me.fill("#search-form", searchMode="semantic")
    me.submit("#search-form")
    me.until(lambda d: d.find_elements(By.ID, "ai"), "the AI line")
    assert me.text("#ai").startswith("AI not used") and "mode natural" in me.text("#summary")

    # boolean search, then a malformed one: the API's message at its position
    me.fill("#search-form", query="+mysql -redis", searchMode="boolean")
    me.submit("#search-form")
    me.until(lambda d: "mode boolean" in me.text("#summary"), "a boolean search")
    assert browser.find_elements(By.CSS_SELECTOR, "#results mark")
    me.fill("#search-form", query='+mysql "unclosed')
    me.submit("#search-form")
    error = me.text("#search-error")
    assert "INVALID_QUERY" in error and "^" in me.text("#error-position")
    me.snap("06-search-boolean-error")

    # a row with markup in it is shown as text, and runs nothing
    me.fill("#search-form", query="zebrafish", searchMode="natural", limit=10)
    me.submit("#search-form")
    me.until(lambda d: "Notes: ok" in me.text("#db-status"), "the notes database answered")
    for summary in browser.find_elements(By.CSS_SELECTOR, "#results details summary"):
        summary.click()  # the row data too
    shown = me.text("#results")
    assert "<script>window.__xss = 1</script>" in shown and "<img src=x onerror=" in shown
    assert "zebrafish & friends" in shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#results script, #results img")
    assert browser.execute_script("return window.__xss === undefined")
    me.snap("07-xss-shown-as-text")

    # analytics show what was just searched
    me.go("analytics")
    me.until(lambda d: "gevent workers" in me.text("#recent"), "the search in recent searches")
    assert "gevent workers" in me.text("#popular") and "cache hits" in me.text("#cache-ratio")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    me.snap("08-analytics")

    # keys: usage chart; a second key made and regenerated (each secret shown once); the first revoked, and
    # the playground's search is refused with it
    me.go("keys")
    me.find("tr[data-key] button.secondary").click()
    me.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#key-usage svg rect"), "a usage chart")
    assert "10 requests in 14 days" in me.text("#key-usage") and me.text("tr[data-key] td:nth-child(6)") == "10"
    me.snap("09-key-usage")
    me.fill("#create-key", name="second key", rateLimitTier="pro")
    me.submit("#create-key")
    made = me.text("#secret-value")
    assert made.startswith("altus4_sk_test_") and made != secret
    second = browser.find_elements(By.CSS_SELECTOR, "tr[data-key]")[-1]
    second.find_element(By.XPATH, ".//button[.='Regenerate']").click()
    me.until(lambda d: me.text("#secret-value") not in (made, secret), "a regenerated secret")
    first = browser.find_elements(By.CSS_SELECTOR, "tr[data-key]")[0]
    first.find_element(By.CSS_SELECTOR, "[data-revoke]").click()
    browser.switch_to.alert.accept()
    me.until(lambda d: "revoked" in me.text("tr[data-key]"), "the key revoked")
    me.snap("10-keys")
    me.go("search")
    me.fill("#search-form", query="gevent", apiKey=secret)
    me.submit("#search-form")
    assert "INVALID_API_KEY" in me.text("#search-error")

    # sign out: the sign-in page, and no token left in the tab
    me.find("#sign-out").click()
    me.find("#sign-in")
    assert browser.execute_script("return sessionStorage.getItem('altus4.jwt')") is None
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#nav a.active")
    me.snap("11-signed-out")
    # the next person in this tab starts from an empty playground (nothing of the last search or key)
    me.fill("#sign-in", email=email, password="a new console password")
    me.submit("#sign-in")
    me.find("#sign-out")
    me.go("search")
    assert me.find("#search-form [name=query]").get_attribute("value") == ""
    assert me.find("#search-form [name=apiKey]").get_attribute("value") == ""
    # the account deleted from its page, with the password: signed out, and the password no longer signs in
    me.go("account")
    me.fill("#delete-account", currentPassword="a new console password")
    me.submit("#delete-account")
    browser.switch_to.alert.accept()
    me.find("#sign-in")
    me.until(lambda d: "deleted" in me.notice(), "the account deleted")
    login = {"email": email, "password": "a new console password"}
    assert call(server.url + "/api/v1/auth/login", "POST", login)[0] == 401

    # the page ran under its CSP without a violation; no token ever went into a URL or the access log
    logs = [entry["message"] for entry in browser.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m], logs
    assert "altus4_sk_" not in server.log.read_text() and "eyJ" not in server.log.read_text()


def test_the_console_is_served_with_a_strict_policy(server):
    status, body, headers = call(server.url + "/console")
    policy = headers["Content-Security-Policy"]
    assert status == 200 and '<script src="/console/console.js" defer></script>' in body
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, headers = call(server.url + "/console/console.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert call(server.url + "/console/../config.py")[0] == 404
    assert call(server.url + "/console/nothing.js")[0] == 404
    status, icon, headers = call(server.url + "/favicon.ico")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml") and "<svg" in icon
