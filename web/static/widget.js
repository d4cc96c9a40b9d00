/* JellyChat widget: one tag adds a floating chat button to any site.
 *
 *   <script src="https://your-jellychat.example/widget.js" defer
 *           data-server="https://your-jellychat.example" data-application="my-site"
 *           data-title="Ask Jelly" data-color="#7c3aed"></script>
 *
 * `data-assistant="<id>"` chats with that assistant (GET /assistants): its name,
 * greeting and suggested questions.
 *
 * The chat itself is the server's page in an iframe (embed mode), inside a shadow
 * root so the site's CSS and the widget's never mix. Before opening it the widget
 * asks the server whether this site's origin is in its CORS_ORIGINS, and says so
 * plainly (on the panel and in the console) when it is not.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__jellychatWidget) return;
  window.__jellychatWidget = true;
  var data = script.dataset;
  var server = (data.server || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var title = data.title || "Chat with Jelly";
  var application = data.application || "widget";
  var assistant = (data.assistant || "").slice(0, 100); // data-assistant: an assistant's id
  var color = data.color || "#7c3aed";
  if (!(window.CSS && CSS.supports("color", color))) color = "#7c3aed";

  var css = [
    ":host { all: initial; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483646; width: 60px; height: 60px;",
    "  border-radius: 50%; border: 0; background: var(--jc-accent); color: #fff; font-size: 28px; cursor: pointer;",
    "  box-shadow: 0 6px 24px rgb(0 0 0 / 0.25); }",
    ".launcher:focus-visible, .close:focus-visible { outline: 3px solid #2563eb; outline-offset: 3px; }",
    ".panel { position: fixed; right: 20px; bottom: 92px; z-index: 2147483647; width: 400px; height: min(640px, calc(100vh - 120px));",
    "  display: flex; flex-direction: column; border-radius: 14px; overflow: hidden; background: #fff;",
    "  box-shadow: 0 12px 48px rgb(0 0 0 / 0.3); font: 15px/1.45 system-ui, sans-serif; color: #1d1b26; }",
    ".panel[hidden] { display: none; }",
    ".head { display: flex; align-items: center; gap: 8px; padding: 8px 12px; background: var(--jc-accent); color: #fff; }",
    ".head strong { flex: 1; font-size: 15px; }",
    ".close { background: none; border: 0; color: #fff; font-size: 20px; cursor: pointer; border-radius: 6px; }",
    "iframe { flex: 1; width: 100%; border: 0; }",
    ".message { margin: 16px; padding: 12px 14px; border: 1px solid #b42318; color: #b42318; border-radius: 10px; }",
    ".message code { font-family: ui-monospace, monospace; }",
    "@media (prefers-color-scheme: dark) { .panel { background: #1b1a23; color: #ecebf3; } .message { color: #f97066; border-color: #f97066; } }",
    "@media (max-width: 520px) { .panel { inset: 0; width: auto; height: auto; border-radius: 0; } }",
  ].join("\n");

  var host = document.createElement("div");
  host.setAttribute("data-jellychat-widget", "");
  host.style.setProperty("--jc-accent", color);
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css); // a constructed sheet: no inline <style>, so the site's CSP can stay strict
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
  }

  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.textContent = "🪼";
  launcher.setAttribute("aria-label", "Open chat: " + title);
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "jellychat-panel");

  var panel = document.createElement("div");
  panel.className = "panel";
  panel.id = "jellychat-panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);
  var head = document.createElement("div");
  head.className = "head";
  var heading = document.createElement("strong");
  heading.textContent = title;
  var close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "✕";
  close.setAttribute("aria-label", "Close chat");
  head.appendChild(heading);
  head.appendChild(close);
  panel.appendChild(head);
  root.appendChild(panel);
  root.appendChild(launcher);

  var loaded = false;
  function problem(text) {
    var box = document.createElement("p");
    box.className = "message";
    box.setAttribute("role", "alert");
    box.textContent = text;
    panel.appendChild(box);
    if (window.console) console.error("JellyChat widget: " + text);
  }
  function load() {
    loaded = true;
    var origin = location.origin;
    fetch(server + "/embed/check?origin=" + encodeURIComponent(origin), { mode: "cors" })
      .then(function (r) { return r.json(); })
      .then(function (check) {
        if (!check.allowed) {
          problem("This site (" + origin + ") may not use this chat: " + check.reason + ".");
          return;
        }
        var frame = document.createElement("iframe");
        frame.title = title;
        var query = {embed: "1", origin: origin, title: title, color: color, application: application};
        if (assistant) {
          query.assistant = assistant;
          if (!data.title) delete query.title; // the page shows the assistant's name
        }
        frame.src = server + "/?" + new URLSearchParams(query).toString();
        frame.setAttribute("allow", "clipboard-write");
        panel.appendChild(frame);
      })
      .catch(function () {
        loaded = false; // try again on the next open
        problem("Can't reach the chat server at " + server + ". Please try again later.");
      });
  }
  function toggle(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", (open ? "Close chat: " : "Open chat: ") + title);
    if (open) {
      var old = panel.querySelector(".message");
      if (old && !loaded) old.remove();
      if (!loaded) load();
      close.focus();
    } else {
      launcher.focus();
    }
  }
  launcher.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") toggle(false); });

  function mount() { document.body.appendChild(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
