"""The chat page and the widget in a real browser: Debian's Chromium driven by Playwright,
against the real server process, whose model is the scripted OpenAI-compatible server
(tests/fakes/openai_server.py: tool calls, echoes, and slow streams by its `[slow S]`
and `[long N]` directives).

Set SCREENSHOT_DIR (e.g. docs/screenshots) to also save the README's screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import ServerProcess, free_port

SLOW = "[slow 0.05] [long 150] Please count for me"  # ~7 s of streaming, one word at a time
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR")
TIMEOUT_MS = 20_000


def _need_chromium():
    if shutil.which(CHROMIUM) is None:
        reason = f"Chromium not found at {CHROMIUM}: apt-get install chromium (make install-browser)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " -- CI must run the browser tests")
        print(f"\nSKIPPED browser tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield chromium
        chromium.close()


class HostSite:
    """A second origin (another local port) whose page embeds the widget with one tag."""

    def __init__(self, server_url: str, port: int | None = None, data_server: str | None = None,
                 attributes: str = 'data-title="Ask Jelly"'):
        tag = (
            f'<script src="{server_url}/widget.js" defer data-server="{data_server or server_url}" '
            f'data-application="host-site" {attributes} data-color="#0e7490"></script>'
        )
        html = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>A site</title></head>"
            f"<body><h1>Some website</h1><p>It embeds JellyChat.</p>{tag}</body></html>"
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

        self.port = port or free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def allowed_port():
    return free_port()


@pytest.fixture(scope="module")
def web(tmp_path_factory, llm, allowed_port):
    """The server; CORS_ORIGINS allows only the host site on `allowed_port`."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("web-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "scripted",
             "LLM_MAX_RETRIES": "0", "CORS_ORIGINS": f"http://127.0.0.1:{allowed_port}",
             "ADMIN_API_KEY": "test-admin-key-0123456789abcdefghij"},
    ).start()
    yield srv
    srv.stop()


class Console:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def open_chat(context, url: str, token: str | None = None):
    """A page of the chat, with its own user (a fresh token in localStorage) unless given one."""
    page = context.new_page()
    console = Console(page)
    token = token or f"pw-{uuid.uuid4().hex[:10]}"
    page.add_init_script(
        f"localStorage.getItem('user_token') || localStorage.setItem('user_token', {token!r})")
    page.goto(url)
    page.wait_for_selector("html[data-ready='true'][data-connected='true']")
    return page, console


def ask(page, text: str):
    page.fill("#input", text)
    page.keyboard.press("Enter")


def last_answer(page):
    return page.locator(".msg.jelly").last


def wait_answer_done(page):
    """Until the last answer is final (its actions appear) and the Send button is back."""
    last_answer(page).locator(".actions").wait_for()
    page.wait_for_selector("#send:not([hidden])")


def shot(page, name: str):
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / f"{name}.png"))


def test_page_widget_and_embed_check_over_http(web, allowed_port):
    """Needs no browser: the headers and answers the page and the widget rely on."""
    page = web.get("/")
    assert page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    widget = web.get("/widget.js")
    assert widget.status_code == 200 and "javascript" in widget.headers["Content-Type"]
    allowed = f"http://127.0.0.1:{allowed_port}"
    ok = web.get("/embed/check", params={"origin": allowed}, headers={"Origin": "http://elsewhere.example"})
    assert ok.json() == {"origin": allowed, "allowed": True}
    assert ok.headers["Access-Control-Allow-Origin"] == "*"  # the widget asks from any site
    refused = web.get("/embed/check", params={"origin": "http://elsewhere.example"}).json()
    assert refused["allowed"] is False and "CORS_ORIGINS" in refused["reason"]
    assert web.get("/embed/check").json()["allowed"] is False  # no origin: not on the list
    # Socket.IO accepts the listed origin and the server's own page, refuses the rest
    handshake = "/socket.io/?EIO=4&transport=polling"
    for origin, status in ((allowed, 200), (web.url, 200), ("http://elsewhere.example", 400)):
        assert web.get(handshake, headers={"Origin": origin}).status_code == status, origin
    for name in ("socket.io.min.js", "marked.umd.js", "purify.min.js"):
        assert web.get(f"/assets/vendor/{name}").status_code == 200


def test_vendored_libraries_match_their_pins():
    root = Path(__file__).resolve().parent.parent / "web"
    pins = json.loads((root / "client" / "package.json").read_text())["dependencies"]
    vendored = json.loads((root / "static" / "vendor" / "VERSIONS.json").read_text())
    assert vendored == pins, "run `make vendor` after changing web/client/package.json"


def test_page_loads_without_console_errors_under_strict_csp(context, web):
    response = web.get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page, console = open_chat(context, web.url)
    assert page.locator(".msg.jelly").count() >= 1  # the greeting
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert page.evaluate("document.querySelectorAll('[style]').length") == 0
    assert page.locator("#banner").is_hidden()
    assert console.errors == []


def test_answer_streams_token_by_token(context, web):
    page, console = open_chat(context, web.url)
    ask(page, "[slow 0.05] [long 60] Please count for me")
    bubble = last_answer(page).locator(".bubble")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msg.jelly .bubble')].pop().textContent.includes('word3')")
    first = len(bubble.text_content())
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.msg.jelly .bubble')].pop().textContent.length > {first + 20}")
    assert "word59" not in bubble.text_content()  # still streaming
    assert page.locator("#stop").is_visible()
    wait_answer_done(page)
    assert "word59" in bubble.text_content()
    assert console.errors == []


def test_tool_line_for_a_calculator_question(context, web):
    page, console = open_chat(context, web.url)
    ask(page, "What is 20000 divided by 33.3?")
    wait_answer_done(page)
    tool = last_answer(page).locator(".tool")
    assert tool.count() == 1
    assert "math" in tool.text_content().lower()
    assert "ok" in tool.get_attribute("class").split()
    assert "600.6" in last_answer(page).locator(".bubble").text_content()
    assert console.errors == []


def test_stop_ends_a_slow_run(context, web):
    page, console = open_chat(context, web.url)
    ask(page, SLOW)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msg.jelly .bubble')].pop().textContent.includes('word2')")
    page.click("#stop")
    wait_answer_done(page)
    answer = last_answer(page)
    assert "Stopped" in answer.locator(".run-note").text_content()
    assert "word149" not in answer.locator(".bubble").text_content()
    # the next question is answered normally
    ask(page, "What is 2 + 3?")
    wait_answer_done(page)
    assert "5" in last_answer(page).locator(".bubble").text_content()
    assert console.errors == []


def test_conversation_survives_a_reload(context, web):
    page, _ = open_chat(context, web.url)
    ask(page, "What is 7 * 6?")
    wait_answer_done(page)
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    texts = page.locator("#messages").inner_text()
    assert "What is 7 * 6?" in texts
    assert "42" in last_answer(page).locator(".bubble").text_content()
    assert last_answer(page).locator(".tool").count() == 1


def test_a_second_conversation_is_listed_and_switches(context, web):
    page, console = open_chat(context, web.url)
    ask(page, "What is 1 + 1?")
    wait_answer_done(page)
    page.wait_for_selector("#conversations li")
    page.click("#new-chat")
    page.wait_for_function("() => document.querySelectorAll('#conversations li').length === 2")
    page.wait_for_function(  # the new conversation's greeting alone
        "() => document.querySelectorAll('.msg').length === 1 && document.querySelector('.msg.jelly')")
    ask(page, "What is 3 * 3?")
    wait_answer_done(page)
    items = page.locator("#conversations li")
    assert items.count() == 2
    # rename the current one with the keyboard alone
    page.locator("#conversations li.current .rename").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Control+a")
    page.keyboard.type("Squares")
    page.keyboard.press("Enter")
    page.wait_for_selector("#conversations li.current .name:text('Squares')")
    # switch back to the first: its messages come back
    page.locator("#conversations li:not(.current) .open").click()
    page.wait_for_function("() => document.body.innerText.includes('What is 1 + 1?')")
    assert "What is 3 * 3?" not in page.locator("#messages").inner_text()
    # delete it (confirm dialog): the other conversation remains and opens
    page.once("dialog", lambda d: d.accept())
    page.locator("#conversations li.current .delete").click()
    page.wait_for_function("() => document.querySelectorAll('#conversations li').length === 1")
    page.wait_for_function("() => document.body.innerText.includes('What is 3 * 3?')")
    assert console.errors == []


HOLD_NEXT_LIST = """
window.__holdNextList = false; window.__heldList = null;
const realFetch = window.fetch.bind(window);
window.fetch = (url, init) => {
  if (window.__holdNextList && String(url).includes("/conversations?limit=50")) {
    window.__holdNextList = false;
    return new Promise((resolve) => { window.__heldList = () => resolve(realFetch(url, init)); });
  }
  return realFetch(url, init);
};
"""


def test_a_rename_is_kept_when_the_list_reloads_under_it(context, web):
    """The list reloads when an answer ends. That reload, held back in the page
    (its `fetch` wrapped by an init script) until the rename box is open, comes
    back while the user types: the box and the new name survive it, and the list
    read before the rename does not bring the old name back. (It redrew the list
    under the box, and the typed name went nowhere.)"""
    context.add_init_script(HOLD_NEXT_LIST)
    page, console = open_chat(context, web.url)
    ask(page, "What is 1 + 1?")
    wait_answer_done(page)
    page.wait_for_selector("#conversations li.current")
    page.evaluate("() => { window.__holdNextList = true; }")
    ask(page, "What is 2 + 2?")
    wait_answer_done(page)
    page.wait_for_function("() => window.__heldList !== null")
    page.locator("#conversations li.current .rename").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#conversations .rename-box:focus")
    page.evaluate("() => window.__heldList()")
    page.keyboard.press("Control+a")
    page.keyboard.type("Sums")
    page.keyboard.press("Enter")
    page.wait_for_selector("#conversations li.current .name:text('Sums')")
    page.reload()
    page.wait_for_selector("#conversations li.current .name:text('Sums')")  # stored
    assert console.errors == []


def test_html_in_an_answer_renders_as_text(context, web):
    page, console = open_chat(context, web.url)
    payload = "<img src=x onerror=\"window.__xss=1\"> and <script>window.__xss=2</script>"
    ask(page, payload)
    wait_answer_done(page)
    ask(page, "What did I ask?")
    wait_answer_done(page)
    answer = last_answer(page).locator(".bubble")
    assert "<img src=x onerror=" in answer.text_content()
    assert "<script>" in answer.text_content()
    assert page.locator("#messages img, #messages script").count() == 0
    assert page.evaluate("window.__xss") is None
    # Markdown cannot smuggle a script link or load a remote image (a tracking pixel)
    ask(page, "[click me](javascript:window.__xss=3) ![pixel](http://127.0.0.1:9/pixel.png)")
    wait_answer_done(page)
    ask(page, "What did I ask?")
    wait_answer_done(page)
    links = last_answer(page).locator(".bubble a")
    assert links.count() == 2
    assert links.nth(0).text_content() == "click me" and links.nth(0).get_attribute("href") is None
    assert links.nth(1).get_attribute("href") == "http://127.0.0.1:9/pixel.png"  # a link, not an <img>
    assert page.locator("#messages img").count() == 0
    assert console.errors == []


def test_sources_markdown_and_feedback_with_the_offline_model(context, server):
    """On the suite's shared server: the offline model, CORS_ORIGINS=*, as `make run` starts it."""
    assert server.get("/embed/check", params={"origin": "https://any.example"}).json()["allowed"]
    assert "frame-ancestors *" in server.get("/?embed=1").headers["Content-Security-Policy"]
    page, _ = open_chat(context, server.url)
    ask(page, "What is a masternode?")
    wait_answer_done(page)
    answer = last_answer(page)
    assert answer.locator(".tool").count() == 1
    assert answer.locator(".bubble blockquote").count() >= 1  # Markdown rendered (a quote per passage used)
    link = answer.locator(".sources a").first
    assert link.get_attribute("href").startswith("https://www.defichainwiki.com/")
    assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
    ask(page, "What is 20000 divided by 33.3?")
    wait_answer_done(page)
    shot(page, "light")
    page.emulate_media(color_scheme="dark")
    shot(page, "dark")
    page.emulate_media(color_scheme="light")
    # copy puts the answer's Markdown on the clipboard
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    last_answer(page).locator(".copy").click()
    page.wait_for_selector(".copy:text('Copied')")
    assert "600.6" in page.evaluate("navigator.clipboard.readText()")
    # thumbs: rated when the server has the feedback endpoint, disabled with a reason when not
    up = last_answer(page).locator(".thumb.up")
    up.click()
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('.thumb.up')].pop();"
        " return b.disabled || b.getAttribute('aria-pressed') === 'true'; }")
    if up.is_disabled():
        assert "isn't available" in up.get_attribute("title")
    else:
        assert up.get_attribute("aria-pressed") == "true"


def test_widget_opens_on_another_origin(browser, web, allowed_port):
    site = HostSite(web.url, port=allowed_port)
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        console = Console(page)
        page.goto(site.url)
        launcher = page.locator("[data-jellychat-widget] .launcher")
        launcher.focus()
        page.keyboard.press("Enter")  # keyboard alone
        assert launcher.get_attribute("aria-expanded") == "true"
        frame = page.frame_locator("[data-jellychat-widget] iframe")
        frame.locator("html[data-ready='true'][data-connected='true']").wait_for()
        assert frame.locator("#title-text").text_content() == "Ask Jelly"
        frame.locator("#input").fill("What is 12 * 12?")
        frame.locator("#input").press("Enter")
        frame.locator(".msg.jelly").last.locator(".actions").wait_for()
        assert "144" in frame.locator(".msg.jelly .bubble").last.text_content()
        shot(page, "widget")
        assert console.errors == []
    finally:
        ctx.close()
        site.close()


def test_an_assistant_shows_its_name_greeting_and_suggested_questions(browser, context, web, llm,
                                                                      allowed_port):
    """`?assistant=` (and the widget's `data-assistant`): the assistant's name and greeting,
    its suggested questions on an empty conversation; one click asks it of that assistant."""
    import requests

    made = requests.post(f"{web.url}/assistants", timeout=30,
                         headers={"Authorization": "Bearer test-admin-key-0123456789abcdefghij"},
                         json={"name": "Docs Desk", "instructions": "You are the docs desk.",
                               "greeting": "Welcome to the docs desk!",
                               "suggested_questions": ["What is 3 * 4?", "What is DFI?"]})
    assert made.status_code == 201, made.text
    assistant = made.json()
    page, console = open_chat(context, f"{web.url}/?assistant={assistant['id']}")
    assert page.locator("#title-text").text_content() == "Docs Desk"
    assert last_answer(page).locator(".bubble").text_content().strip() == "Welcome to the docs desk!"
    buttons = page.locator(".suggested .suggestion")
    assert buttons.all_text_contents() == ["What is 3 * 4?", "What is DFI?"]
    shot(page, "assistant")
    buttons.first.click()
    wait_answer_done(page)
    assert page.locator(".msg.human .bubble").last.text_content() == "What is 3 * 4?"
    assert "12" in last_answer(page).locator(".bubble").text_content()
    assert page.locator(".suggested").count() == 0
    asked = [r for r in llm.requests if r["messages"][-1].get("content") == "What is 3 * 4?"]
    assert asked and asked[0]["messages"][0]["content"].startswith("You are the docs desk.")
    assert console.errors == []

    site = HostSite(web.url, port=allowed_port, attributes=f'data-assistant="{assistant["id"]}"')
    visitor = browser.new_context()  # a new visitor: an empty conversation
    visitor.set_default_timeout(TIMEOUT_MS)
    try:
        host = visitor.new_page()
        host.goto(site.url)
        host.locator("[data-jellychat-widget] .launcher").click()
        frame = host.frame_locator("[data-jellychat-widget] iframe")
        frame.locator("html[data-ready='true'][data-connected='true']").wait_for()
        assert frame.locator("#title-text").text_content() == "Docs Desk"
        assert frame.locator(".suggested .suggestion").count() == 2
    finally:
        visitor.close()
        site.close()


def test_widget_tells_a_site_that_is_not_allowed(context, web):
    site = HostSite(web.url)  # a port that CORS_ORIGINS does not list
    try:
        page = context.new_page()
        page.goto(site.url)
        page.locator("[data-jellychat-widget] .launcher").click()
        message = page.locator("[data-jellychat-widget] .message")
        message.wait_for()
        assert site.url in message.text_content()
        assert "CORS_ORIGINS" in message.text_content()
        assert page.locator("[data-jellychat-widget] iframe").count() == 0
        # a hand-made iframe of the embed page is refused by the browser (frame-ancestors)
        csp = web.get(f"/?embed=1&origin={site.url}").headers["Content-Security-Policy"]
        assert f"frame-ancestors 'self' {web.extra_env['CORS_ORIGINS']}" in csp
    finally:
        site.close()


def test_widget_says_when_the_server_is_unreachable(context, web):
    site = HostSite(web.url, data_server=f"http://127.0.0.1:{free_port()}")
    try:
        page = context.new_page()
        page.goto(site.url)
        page.locator("[data-jellychat-widget] .launcher").click()
        message = page.locator("[data-jellychat-widget] .message")
        message.wait_for()
        assert "Can't reach the chat server" in message.text_content()
    finally:
        site.close()


def test_phone_width_dark_mode_and_keyboard(browser, web):
    ctx = browser.new_context(viewport={"width": 390, "height": 760}, color_scheme="dark",
                              is_mobile=True, has_touch=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page, console = open_chat(ctx, web.url)
        ask(page, "What is 20000 divided by 33.3?")
        wait_answer_done(page)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(x) for x in background[4:-1].split(",")[:3]) < 120  # dark
        assert page.locator("#sidebar").is_hidden()
        shot(page, "phone-dark")
        page.locator("#menu").focus()
        page.keyboard.press("Enter")
        assert page.locator("#menu").get_attribute("aria-expanded") == "true"
        page.wait_for_selector("#sidebar", state="visible")
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('sidebar')).transform === 'none'")
        assert page.evaluate("document.activeElement.closest('#sidebar') !== null")  # focus moved in
        shot(page, "phone-sidebar")
        page.keyboard.press("Escape")
        page.wait_for_selector("#sidebar", state="hidden")
        assert console.errors == []
    finally:
        ctx.close()


def test_unreachable_server_message_and_reconnection(context, web):
    """Runs last: it restarts the module's server."""
    page, console = open_chat(context, web.url)
    web.stop()
    banner = page.locator("#banner")
    banner.wait_for()
    assert "JellyChat server" in banner.text_content()
    web.start()
    page.wait_for_selector("html[data-connected='true']", timeout=60_000)
    banner.wait_for(state="hidden")
    ask(page, "What is 5 * 5?")
    wait_answer_done(page)
    assert "25" in last_answer(page).locator(".bubble").text_content()
    # only the connection attempts while the server was down may have failed
    assert all("ERR_CONNECTION_REFUSED" in e or "WebSocket" in e or "Failed to load" in e
               for e in console.errors), console.errors


def test_the_page_solves_the_proof_of_work_when_required(context, tmp_path):
    """POW_REQUIRED=1: the page's first message of a conversation is refused for want of
    a proof of work; the page solves the server's challenge and resends, once."""
    srv = ServerProcess(tmp_path, env={"POW_REQUIRED": "1", "POW_MAX_NUMBER": "3000",
                                       "KNOWLEDGE_STARTER": "0"}).start()
    try:
        refused = srv.post("/user_message", {"user_token": "pw-rest", "message": "hi"})
        assert refused.status_code == 400 and refused.json()["field"] == "pow"  # it is required
        page, console = open_chat(context, srv.url)
        ask(page, "What is 6 * 7?")
        wait_answer_done(page)
        assert "42" in last_answer(page).text_content()
        ask(page, "What is 7 * 7?")  # the conversation is open now: no second challenge
        wait_answer_done(page)
        assert "49" in last_answer(page).text_content()
        assert console.errors == []
    finally:
        srv.stop()


def test_files_attach_drop_and_delete_and_memories_with_undo(context, server):
    """On the offline server: a file attached with the button and one dropped on the page,
    listed and deleted; an answer from the file; a "remembered" note whose undo forgets;
    the memories page with a delete button per memory."""
    page, console = open_chat(context, server.url)
    page.set_input_files("#file-input", files=[{
        "name": "kelpie.md", "mimeType": "text/markdown",
        "buffer": b"# Kelpie\n\nThe vault code word is marmalade.\n"}])
    page.wait_for_selector("#files .file.ready:has-text('kelpie.md')")
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["Second note: the lighthouse opens at nine."], "note.txt",
                                {type: "text/plain"}));
        const main = document.querySelector("main");
        for (const type of ["dragenter", "dragover", "drop"]) {
            main.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
        }
    }""")
    page.wait_for_selector("#files .file.ready:has-text('note.txt')")
    assert page.locator("#drop-zone").is_hidden()
    ask(page, "What is the vault code word?")
    wait_answer_done(page)
    assert "marmalade" in last_answer(page).locator(".bubble").text_content()
    assert "kelpie.md" in last_answer(page).locator(".sources").text_content()
    page.locator("#files .file:has-text('note.txt') .delete-file").click()
    page.wait_for_function("() => !document.querySelector('#files').textContent.includes('note.txt')")
    page.reload()
    page.wait_for_selector("#files .file:has-text('kelpie.md')")
    assert page.locator("#files .file").count() == 1
    # memories: the note and its undo
    ask(page, "Remember that my favourite token is DUSD")
    wait_answer_done(page)
    note = last_answer(page).locator(".remembered")
    assert "my favourite token is DUSD" in note.text_content()
    note.locator(".undo").click()
    page.wait_for_selector(".remembered:has-text('Forgotten')")
    ask(page, "Remember that I run two masternodes")
    wait_answer_done(page)
    page.click("#memories-open")
    page.wait_for_selector("#memories .memory:has-text('I run two masternodes')")
    assert page.locator("#memories .memory").count() == 1  # the undone one is gone
    shot(page, "memories")
    page.locator("#memories .memory .delete-memory").first.click()
    page.wait_for_selector("#memories-empty:not([hidden])")
    assert page.locator("#memories .memory").count() == 0
    assert console.errors == []
