"""The web console in a real browser (Debian's Chromium through Selenium) against a real Altus 4 (gunicorn,
MariaDB, Redis): a new user's whole first visit, an XSS row shown as text, search-as-you-type, analytics
narrowed by dates, key and database, a tenant token minted in the page, the demo's console link, keyboard
use, an axe-core audit of every page, and the page's security headers.

Screenshots of every page go to `test-artifacts/console/` (or `$ALTUS4_ARTIFACTS/console/`), with each
page's axe-core report (`axe-<page>.json`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import jwt
import pytest
from conftest import READER, TARGET_A, env_for_tests, fresh_fulltext_table
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait
from servers import call, start_gunicorn

pytestmark = pytest.mark.slow  # a browser: about 20 s

ROOT = Path(__file__).resolve().parent.parent
AXE_VERSION = "4.14.1"  # the axe-core npm package the audit loads (into the page by the test; the page never does)
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
def axe_source(tmp_path_factory) -> str:
    """axe-core's browser build, from npm."""
    where = tmp_path_factory.mktemp("axe")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(where), f"axe-core@{AXE_VERSION}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (where / "node_modules" / "axe-core" / "axe.min.js").read_text()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


class Person:
    """What a person does and sees: fills forms, clicks, waits for the page, takes a screenshot."""

    def __init__(self, driver, base: str, axe: str = ""):
        self.driver, self.base, self.axe_source = driver, base, axe
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

    def api(self, path: str):
        """What the API says, with this tab's session (the JWT in sessionStorage)."""
        token = self.driver.execute_script("return sessionStorage.getItem('altus4.jwt')")
        status, body, _ = call(self.base + "/api/v1" + path, token=token)
        assert status == 200, body
        return body["data"]

    def axe(self, page: str) -> dict:
        """axe-core's WCAG 2.1 A/AA rules over the page as it is now; the report goes next to the screenshots."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(self.axe_source)  # through WebDriver: the page's CSP does not apply
        report = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
            ".then(r => done({passed: r.passes.length, violations: r.violations.map(v => ({id: v.id,"
            " impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))}),"
            " e => done({passed: 0, violations: [{id: 'axe failed', impact: 'critical', help: String(e)}]}))"
        )
        (ARTIFACTS / f"axe-{page}.json").write_text(json.dumps(report, indent=2))
        return report

    def audit(self, page: str) -> None:
        """No serious or critical violation (the report lists every impact)."""
        report = self.axe(page)
        bad = [v for v in report["violations"] if v["impact"] in ("serious", "critical")]
        assert report["passed"] >= 10 and not bad, f"{page}: {json.dumps(report, indent=2)}"


def test_a_new_users_first_visit(server, browser, migrated, axe_source):
    me = Person(browser, server.url, axe_source)
    email = f"console-{uuid.uuid4().hex[:8]}@example.com"
    me.go("account")
    me.find("#register")
    assert not browser.find_element(By.ID, "nav").is_displayed()  # signed out: no navigation
    me.snap("01-sign-in")
    me.audit("sign-in")
    # the audit sees a defect where there is one: a field without a label, faint text
    browser.execute_script(
        "const box = document.createElement('div'), faint = document.createElement('p');"
        "box.id = 'defect'; faint.textContent = 'faint'; faint.style.color = '#ddd';"  # CSSOM: the CSP allows it
        "box.append(document.createElement('input'), faint); document.querySelector('main').append(box)"
    )
    assert {"label", "color-contrast"} <= {v["id"] for v in me.axe("with-defects")["violations"]}
    browser.execute_script("document.getElementById('defect').remove()")
    me.fill("#register", name="Console User", email=email, password="a console password")
    me.submit("#register")

    # the first API key in one step, shown once with a copy button
    me.find("#setup-key").click()
    secret = me.text("#secret-value")
    assert secret.startswith("altus4_sk_") and me.find("#new-secret [data-copy]")
    me.snap("02-first-key")
    me.audit("account")
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
    me.audit("databases")
    nowhere = browser.find_elements(By.CSS_SELECTOR, "tr[data-connection]")[-1]
    nowhere.find_element(By.CSS_SELECTOR, "button.danger").click()
    browser.switch_to.alert.accept()
    me.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-connection]")) == 2, "Nowhere removed")

    # natural search: highlighted results, per-database status, exact total, paging, the curl
    me.go("search")
    assert me.find("#search-form button[type=submit]").get_attribute("disabled") is None
    me.fill("#search-form", limit=3, query="gevent workers")
    me.find("#query").send_keys(Keys.ENTER)  # Enter in the query box searches
    me.until(lambda d: "gevent workers" in me.text("#curl") and not d.find_elements(By.ID, "preview"), "a search")
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
    me.audit("search-results")
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
    me.snap("05-search-facets")  # the README's screenshot (docs/console-playground.png)
    # the tables without a price are left out, and the page says so in words (the code kept for a developer)
    warning = me.find("#search-output .warning")
    assert warning.get_attribute("data-code") == "SORT_COLUMN_MISSING", warning.get_attribute("outerHTML")
    assert warning.text.startswith("Left out of the search, without") and "articles" in warning.text, warning.text
    value.click()
    me.until(lambda d: int(me.text("#total").split()[0]) == count, "the results filtered to the facet value")
    assert me.find("#search-form [name=filter]").get_attribute("value") == f'category = "{chosen}"'
    pressed = f'#facets .facet-value[data-value="{chosen}"]'
    assert me.find(pressed).get_attribute("aria-pressed") == "true"
    assert '"filter": "category = ' in me.text("#curl").replace('":"', '": "') or "category =" in me.text("#curl")
    prices = [float(p.text.split()[-1]) for p in browser.find_elements(By.CSS_SELECTOR, "#results .fields span")
              if p.text.startswith("price ")]  # fmt: skip
    assert prices and prices == sorted(prices), prices  # price ascending
    me.snap("05b-facet-value-chosen")
    me.audit("search-facets")
    me.find(pressed).click()
    me.until(lambda d: me.find("#search-form [name=filter]").get_attribute("value") == "", "the facet unselected")
    me.fill("#search-form", filter="price >")
    me.submit("#search-form")
    assert "INVALID_FILTER" in me.text("#search-error") and me.text("#error-position").startswith("price >")

    # search-as-you-type: one preview per pause in typing (a search and the suggestions), not recorded in the
    # analytics; a suggestion picked with the keyboard is a recorded search
    me.fill("#search-form", filter="", facets="", sort="", limit=3)
    query = me.find("#query")
    query.clear()
    searches = me.api("/analytics/search-history?limit=1")["total"]
    uses = me.api("/keys")["apiKeys"][0]["usageCount"]
    query.send_keys("gevent work")
    me.until(lambda d: '"gevent work"' in me.text("#curl") and d.find_elements(By.ID, "preview"), "a preview")
    suggestion = me.find("#suggestions li[role=option]").text
    assert suggestion.lower().startswith("gevent work") and suggestion.lower() != "gevent work"
    assert me.find("#query").get_attribute("aria-expanded") == "true"
    me.snap("06-search-as-you-type")
    me.audit("search-as-you-type")
    assert me.api("/analytics/search-history?limit=1")["total"] == searches  # previews are not searches
    typed = me.api("/keys")["apiKeys"][0]["usageCount"] - uses
    assert 2 <= typed <= 4, f"{typed} requests for 11 keystrokes"  # one search and one suggestions call a pause
    query.send_keys(Keys.ARROW_DOWN)
    assert query.get_attribute("aria-activedescendant") == "suggestion-0"
    query.send_keys(Keys.ENTER)
    me.until(lambda d: me.find("#query").get_attribute("value") == suggestion, "the suggestion picked")
    me.until(lambda d: f'"{suggestion}"' in me.text("#curl") and not d.find_elements(By.ID, "preview"), "its search")
    assert not browser.find_element(By.ID, "suggestions").is_displayed()
    assert me.api("/analytics/search-history?limit=1")["total"] == searches + 1

    # the keyboard: no element out of the document's order, Tab walks the form in its visual order with a
    # visible focus ring
    positive = "return [...document.querySelectorAll('[tabindex]')].filter(e => e.tabIndex > 0).length"
    assert browser.execute_script(positive) == 0
    order = []
    for _ in range(4):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        order.append(focused.get_attribute("name"))
        assert focused.value_of_css_property("outline-style") == "solid", focused.get_attribute("name")
    assert order == ["searchMode", "tables", "limit", "filter"], order
    me.fill("#search-form", query="gevent workers", limit=3)

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
    me.snap("07-search-boolean-error")

    # a row with markup in it is shown as text, and runs nothing
    shop = next(c["id"] for c in me.api("/databases") if c["name"] == "Shop")
    me.find(f"#search-form input[name=databases][value='{shop}']").click()  # Notes only
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
    me.snap("08-xss-shown-as-text")
    me.fill("#search-form", query="qqqnothing")
    me.submit("#search-form")
    me.until(lambda d: me.text("#total") == "0 matches", "a search that finds nothing")

    # analytics show what was just searched: volume and latency (p50, p95) per day on charts with a y-axis,
    # popular, zero-result and slowest queries, narrowed by a database, a key or dates
    me.go("analytics")
    me.until(lambda d: "gevent workers" in me.text("#recent"), "the search in recent searches")
    assert "gevent workers" in me.text("#popular") and "cache hits" in me.text("#cache-ratio")
    assert "qqqnothing" in me.text("#zero-results") and "gevent workers" not in me.text("#zero-results")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#volume svg text.tick")) >= 5 + 1  # y ticks + a date
    assert browser.find_elements(By.CSS_SELECTOR, "#volume svg rect.series-0")
    assert browser.find_elements(By.CSS_SELECTOR, "#latency svg rect.series-1")  # p95 beside p50
    everything = int(me.text("#totals").split()[0])
    me.snap("09-analytics")
    me.audit("analytics")
    me.fill("#analytics-range", databaseId=shop)
    me.submit("#analytics-range")
    me.until(lambda d: "zebrafish" not in me.text("#recent"), "only the searches that included Shop")
    assert "gevent workers" in me.text("#recent")
    in_shop = me.api(f"/analytics/search-history?databaseId={shop}")["total"]
    assert 0 < in_shop < everything and me.text("#totals").startswith(f"{in_shop} searches")
    key = me.api("/keys")["apiKeys"][0]["id"]
    me.fill("#analytics-range", databaseId="", apiKeyId=key)
    me.submit("#analytics-range")
    me.until(lambda d: me.text("#totals").startswith(f"{everything} searches"), "the key's searches (all of them)")
    long_ago = date.today() - timedelta(days=10)
    browser.execute_script(
        "const f = document.getElementById('analytics-range'); f.startDate.value = arguments[0];"
        " f.endDate.value = arguments[1];", long_ago.isoformat(), (long_ago + timedelta(days=5)).isoformat()
    )  # fmt: skip
    me.submit("#analytics-range")
    me.until(lambda d: me.text("#totals").startswith("0 searches"), "nothing in an earlier range")
    assert "No searches in this range" in me.text("#recent") and "No data in this range" in me.text("#volume")
    me.find("#analytics-range [data-days='7']").click()
    me.until(lambda d: me.text("#totals").startswith(f"{everything} searches"), "the last 7 days")

    # keys: usage chart; a second key made and regenerated (each secret shown once); the first revoked, and
    # the playground's search is refused with it
    me.go("keys")
    me.find("tr[data-key] button.secondary").click()
    me.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#key-usage svg rect"), "a usage chart")
    used = me.api("/keys")["apiKeys"][0]["usageCount"]
    assert used >= 14 and f"{used} requests in 14 days" in me.text("#key-usage")
    assert me.text("tr[data-key] td:nth-child(6)") == str(used) and "left this hour" in me.text("#key-usage")
    me.snap("10-key-usage")
    me.fill("#create-key", name="second key", rateLimitTier="pro")
    me.submit("#create-key")
    made = me.text("#secret-value")
    assert made.startswith("altus4_sk_test_") and made != secret
    keys = me.api("/keys")["apiKeys"]  # newest first
    first_key = next(k["id"] for k in keys if secret.startswith(k["keyPrefix"]))
    second_key = next(k["id"] for k in keys if made.startswith(k["keyPrefix"]))
    me.find(f'tr[data-key="{second_key}"]').find_element(By.XPATH, ".//button[.='Regenerate']").click()
    me.until(lambda d: me.text("#secret-value") not in (made, secret), "a regenerated secret")
    assert not me.find(f'tr[data-key="{second_key}"]').find_elements(By.CSS_SELECTOR, "[data-revoke]")  # replaced

    # a tenant token minted in the page from the first key (its secret already in this tab) and a filter:
    # it searches only the rows the filter keeps, and the key's secret never left the page
    me.fill("#tenant-token", apiKeyId=first_key)
    assert me.find("#tenant-token [name=secret]").get_attribute("value") == secret
    me.fill("#tenant-token", filter=f'category = "{chosen}"', hours=2)
    me.submit("#tenant-token")
    token = me.text("#tenant-token-value")
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["apiKeyId"] == first_key and claims["searchRules"] == {"*": {"filter": f'category = "{chosen}"'}}
    assert 7000 < claims["exp"] - time.time() <= 7200
    browse = {"query": "", "sort": ["price:asc"], "limit": 100}
    status, found, _ = call(server.url + "/api/v1/search", "POST", browse, token)
    assert status == 200 and found["data"]["totalCount"] == count, found
    assert {r["data"]["category"] for r in found["data"]["results"]} == {chosen}
    me.snap("11-tenant-token")
    me.audit("keys")

    # on a phone's width (420 px) every page fits: nothing makes the page itself scroll sideways (a wide table
    # scrolls in its own box)
    browser.set_window_size(420, 900)
    try:
        for view, ready in (("keys", "tr[data-key]"), ("analytics", "#volume svg"), ("search", "#search-form")):
            me.go(view)
            me.find(ready)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            me.snap(f"14-narrow-{view}")
            assert overflow <= 0, f"{view} is {overflow} px wider than a 420 px window"
    finally:
        browser.set_window_size(1280, 1000)
    me.go("keys")
    me.find(f'tr[data-key="{first_key}"] [data-revoke]').click()
    browser.switch_to.alert.accept()
    me.until(lambda d: "revoked" in me.text(f'tr[data-key="{first_key}"]'), "the key revoked")
    me.snap("12-keys")
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
    me.snap("13-signed-out")
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
    assert status == 200 and '<script type="module" src="/console/console.js"></script>' in body
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, headers = call(server.url + "/console/console.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert call(server.url + "/console/../config.py")[0] == 404
    assert call(server.url + "/console/nothing.js")[0] == 404
    status, icon, headers = call(server.url + "/favicon.ico")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml") and "<svg" in icon


def test_the_demo_link_fills_in_the_key(server, browser):
    """`make run` runs `altus4 demo --console URL`: its link signs nobody in, but once the demo user signs in,
    the playground searches with the demo key; the key is gone from the address bar at once."""
    env = {**os.environ, **env_for_tests()}
    demo = subprocess.run(
        [sys.executable, "-m", "altus4.cli", "demo", "--console", server.url + "/console"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    lines = dict(line.split(": ", 1) for line in demo.stdout.splitlines() if ": " in line)
    key, link = lines["demo API key"], lines["demo console"].split()[0]
    email, password = lines["demo user"].split(" / ")
    assert link == f"{server.url}/console#/search?key={key}"
    browser.get(server.url + "/console")
    browser.execute_script("sessionStorage.clear()")
    me = Person(browser, server.url)
    browser.get(link)
    me.find("#sign-in")
    assert "key=" not in browser.current_url and key not in browser.current_url
    me.fill("#sign-in", email=email, password=password)
    me.submit("#sign-in")
    me.until(lambda d: me.find("#search-form [name=apiKey]").get_attribute("value") == key, "the demo key filled in")
    me.fill("#search-form", query="wireless")
    me.submit("#search-form")
    me.until(lambda d: d.find_elements(By.ID, "total"), "a search with the demo key")
    assert int(me.text("#total").split()[0]) > 0
    me.find("#sign-out").click()
    me.find("#sign-in")
