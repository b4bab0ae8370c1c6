"""The web client in a real browser: headless Chromium (Debian's package, installed
by .ci/run) driven by selenium, against chatd as a subprocess.

Set CHATD_SCREENSHOT=docs/web-client.png to keep the mid-conversation screenshot
(the README shows it); otherwise it goes to the test's temporary directory.
"""

import os
import shutil
import socket
from contextlib import ExitStack

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from support import WAIT, ChatClient, ServerProcess

# Chromium's start-up and a reconnect through the backoff take longer than a frame.
BROWSER_WAIT = 30.0
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1000,640")


def free_port() -> int:
    """A port nothing listens on now (the web port must stay the same across restarts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser(profile) -> webdriver.Chrome:
    """Headless Chromium with a fresh profile, Debian's chromium and chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


class Page:
    """One browser on the web client."""

    def __init__(self, driver: webdriver.Chrome, url: str):
        self.driver = driver
        driver.get(url)

    def wait(self, condition, what: str):
        return WebDriverWait(self.driver, BROWSER_WAIT).until(
            lambda driver: condition(), message=what)

    def enter(self, name: str, register_with: str | None = None) -> None:
        """Choose `name` with the keyboard alone; with a password, register it too."""
        field = self.driver.find_element(By.ID, "name")
        field.send_keys(name)
        if register_with is not None:
            field.send_keys(Keys.TAB, register_with, Keys.TAB, Keys.SPACE)
        field.send_keys(Keys.ENTER)
        self.wait(lambda: self.status().startswith(f"Connected as {name}"), f"{name} welcomed")
        if register_with is not None:
            self.wait(lambda: self.status() == f"Connected as {name} (account)",
                      f"{name} registered")

    def status(self) -> str:
        return self.driver.find_element(By.ID, "status").text

    def type(self, line: str) -> None:
        self.driver.find_element(By.ID, "message").send_keys(line, Keys.ENTER)

    def log(self) -> str:
        return self.driver.find_element(By.ID, "log").text

    def shows(self, text: str) -> None:
        self.wait(lambda: text in self.log(), f"{text!r} shown")

    def open_conversation(self, label: str) -> None:
        for button in self.driver.find_elements(By.CSS_SELECTOR, "#rooms button"):
            if button.text.split()[0] == label:
                button.send_keys(Keys.ENTER)
                return
        raise AssertionError(f"no conversation {label}")

    def unread(self, label: str) -> str:
        for button in self.driver.find_elements(By.CSS_SELECTOR, "#rooms button"):
            words = button.text.split()
            if words[0] == label:
                return words[1] if len(words) > 1 else "0"
        return "none"


def test_two_pages_chat_privately_and_catch_up_after_the_server_restarts(tmp_path):
    web_port = free_port()
    store = str(tmp_path / "chatd.db")
    flags = ("--store", store, "--rate-limit", "0")
    screenshot = os.environ.get("CHATD_SCREENSHOT") or str(tmp_path / "web-client.png")
    with ExitStack() as stack:
        server = stack.enter_context(ServerProcess(*flags, "--ws-port", str(web_port)))
        server.wait_for_log(rf"web client on http://127.0.0.1:{web_port}/")
        url = f"http://127.0.0.1:{web_port}/"
        drivers = [browser(tmp_path / f"profile-{n}") for n in (1, 2)]
        for driver in drivers:
            stack.callback(driver.quit)
        alice, bob = (Page(driver, url) for driver in drivers)
        alice.enter("alice", register_with="correct horse")
        bob.enter("bob")
        alice.type("Hello bob, <b>this</b> stays text")
        bob.shows("Hello bob, <b>this</b> stays text")
        bob.type("Hi alice!")
        alice.shows("Hi alice!")
        assert alice.driver.find_elements(By.CSS_SELECTOR, "#log b") == []
        bob.type("/msg alice just between us")
        bob.shows("just between us")
        alice.wait(lambda: alice.unread("@bob") == "1", "unread count of @bob")
        alice.driver.save_screenshot(screenshot)
        alice.open_conversation("@bob")
        alice.shows("just between us")
        alice.type("agreed, privately")
        bob.shows("agreed, privately")
        alice.open_conversation("#lobby")

        # Restart: down, then up without the web port while carol talks (the pages
        # cannot hear it live), then up with it: both pages must catch up, alice
        # logging in again with her password (her reclaim token died with the server).
        assert server.stop() == 0
        for page in (alice, bob):
            page.wait(lambda page=page: "reconnecting" in page.status(), "reconnecting")
        with ServerProcess(*flags) as quiet:
            with ChatClient((quiet.host, quiet.port), "carol") as carol:
                carol.send({"type": "say", "text": "said while you were away"})
                assert carol.next_of("msg")["text"] == "said while you were away"
                carol.send({"type": "quit"})
                carol.frames_until_close(timeout=WAIT)
            assert quiet.stop() == 0
        server = stack.enter_context(ServerProcess(*flags, "--ws-port", str(web_port)))
        for page, status in ((alice, "Connected as alice (account)"),
                             (bob, "Connected as bob")):
            page.wait(lambda page=page, status=status: page.status() == status, status)
        bob.open_conversation("#lobby")
        for page in (alice, bob):
            page.shows("said while you were away")
            page.shows("Hi alice!")  # what came before is still there, once
            assert page.log().count("said while you were away") == 1
        alice.type("back again")
        bob.shows("back again")
        with open(screenshot, "rb") as image:
            assert image.read(8) == b"\x89PNG\r\n\x1a\n"
