// JellyChat page: Socket.IO for the answer as it streams, REST for the conversations.
// Plain script, no build step; the libraries come from ./vendor (see web/client).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const embed = params.get("embed") === "1";
  const application = (params.get("application") || (embed ? "widget" : "web")).slice(0, 100);
  const assistantId = (params.get("assistant") || "").slice(0, 100); // ?assistant=<id>
  let assistant = null; // that assistant ({name, greeting, suggested_questions}) once loaded
  const TOKEN_KEY = "user_token"; // the key the original JellyChat page used
  const CONVERSATION_KEY = "jellychat.conversation";

  const els = {
    messages: $("messages"), input: $("input"), send: $("send"), stop: $("stop"),
    composer: $("composer"), banner: $("banner"), list: $("conversations"),
    newChat: $("new-chat"), menu: $("menu"), closeSidebar: $("close-sidebar"),
    scrim: $("scrim"), status: $("status"),
    title: $("title-text"),
    files: $("files"), attach: $("attach"), fileInput: $("file-input"), dropZone: $("drop-zone"),
    memoriesPage: $("memories-page"), memoriesOpen: $("memories-open"),
    memoriesClose: $("memories-close"), memoriesList: $("memories"),
    memoriesEmpty: $("memories-empty"), memoriesClear: $("memories-clear"),
  };

  // ---- storage that survives a browser that refuses localStorage (e.g. blocked in an iframe)
  const memory = {};
  const store = {
    get(key) {
      try { return localStorage.getItem(key); } catch (e) { return memory[key] || null; }
    },
    set(key, value) {
      try { localStorage.setItem(key, value); } catch (e) { memory[key] = value; }
    },
    remove(key) {
      try { localStorage.removeItem(key); } catch (e) { delete memory[key]; }
    },
  };

  function newToken() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // A new visitor's token comes from the server (POST /users: 256 random bits, and the
  // only kind a server with REQUIRE_SERVER_TOKENS=1 accepts); made here only when the
  // server cannot be asked (an older server without /users, or no connection yet).
  let userToken = store.get(TOKEN_KEY);
  async function ensureToken() {
    if (userToken) return;
    try {
      const response = await fetch("/users", { method: "POST", headers: { Accept: "application/json" } });
      if (response.ok) userToken = (await response.json()).user_token;
    } catch (e) { /* unreachable: the token below works with servers that accept any */ }
    if (!userToken) userToken = newToken();
    store.set(TOKEN_KEY, userToken);
  }

  // ---- state
  let conversations = [];
  let currentId = store.get(CONVERSATION_KEY);
  let feedbackAvailable = true;
  let run = null; // the run in flight: {runId, conversationId, view, text, tools, frame}

  // ---- embedding options
  if (embed) document.body.classList.add("embed");
  const title = params.get("title");
  if (title) {
    els.title.textContent = title.slice(0, 80);
    document.title = title.slice(0, 80);
  }
  const color = params.get("color");
  if (color && CSS.supports("color", color)) {
    document.documentElement.style.setProperty("--accent", color);
    document.documentElement.style.setProperty("--accent-text", "#fff");
  }

  // ---- safe Markdown: raw HTML in the text shows as text, images become links,
  // and DOMPurify cleans whatever marked produced before it reaches the page
  const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  marked.use({
    gfm: true,
    breaks: true,
    renderer: {
      html(token) { return escapeHtml(token.raw !== undefined ? token.raw : token.text); },
      image(token) {
        return `<a href="${escapeHtml(token.href)}">${escapeHtml(token.text || token.href)}</a>`;
      },
    },
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      const href = node.getAttribute("href") || "";
      if (!/^(https?:|mailto:|#)/i.test(href)) node.removeAttribute("href");
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  function renderMarkdown(el, text) {
    el.innerHTML = DOMPurify.sanitize(marked.parse(text || ""), {
      FORBID_TAGS: ["style", "img", "form", "input", "button", "iframe", "svg", "math"],
      FORBID_ATTR: ["style"],
    });
  }

  // ---- REST
  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(method, path, body) {
    const init = { method, headers: { "X-User-Token": userToken, Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      showBanner("Can't reach the JellyChat server. Check your connection; retrying…");
      throw new HttpError(0, "unreachable");
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      throw new HttpError(response.status, (data && data.error) || response.statusText);
    }
    return data;
  }

  // ---- proof of work (ALTCHA v1): the number whose SHA-256(salt + number) is the challenge
  async function solveChallenge() {
    const c = await api("GET", "/pow/challenge");
    const encoder = new TextEncoder();
    for (let n = 0; n <= c.maxNumber; n++) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n)));
      let hex = "";
      for (const b of digest) hex += b.toString(16).padStart(2, "0");
      if (hex === c.challenge) {
        return btoa(JSON.stringify({ algorithm: c.algorithm, challenge: c.challenge, number: n,
                                     salt: c.salt, signature: c.signature }));
      }
    }
    throw new Error("no solution");
  }

  // ---- banner and status
  function showBanner(text) { els.banner.textContent = text; els.banner.hidden = false; }
  function hideBanner() { els.banner.hidden = true; els.banner.textContent = ""; }
  function say(text) { els.status.textContent = text; }

  // ---- message views
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function scrollDown(force) {
    const m = els.messages;
    if (force || m.scrollHeight - m.scrollTop - m.clientHeight < 120) m.scrollTop = m.scrollHeight;
  }
  function addHuman(text) {
    const article = el("article", "msg human");
    article.setAttribute("aria-label", "You said");
    article.append(el("div", "bubble", text));
    els.messages.append(article);
    scrollDown(true);
    return article;
  }
  function addJelly() {
    const article = el("article", "msg jelly");
    article.setAttribute("aria-label", "Jelly said");
    const tools = el("ul", "tools");
    tools.hidden = true;
    const bubble = el("div", "bubble md");
    article.append(tools, bubble);
    els.messages.append(article);
    scrollDown(true);
    return { article, tools, bubble, toolLines: {} };
  }
  function toolLine(view, callId, text) {
    let line = callId && view.toolLines[callId];
    if (!line) {
      line = el("li", "tool running");
      line.append(el("span", "name", text), el("span", "summary"));
      view.tools.append(line);
      view.tools.hidden = false;
      if (callId) view.toolLines[callId] = line;
    }
    return line;
  }
  function endTool(line, status, summary, durationMs) {
    line.classList.remove("running");
    line.classList.add(status === "ok" ? "ok" : "error");
    const bits = [];
    if (summary) {
      const oneLine = String(summary).replace(/\s+/g, " ").trim();
      bits.push(oneLine.length > 80 ? `${oneLine.slice(0, 79)}…` : oneLine);
      line.title = oneLine;
    }
    if (typeof durationMs === "number") bits.push(durationMs < 1000 ? `${Math.round(durationMs)} ms` : `${(durationMs / 1000).toFixed(1)} s`);
    line.querySelector(".summary").textContent = bits.length ? ` — ${bits.join(" · ")}` : "";
  }
  function finishJelly(view, text, sources, status, messageId, rating) {
    renderMarkdown(view.bubble, text);
    view.text = text;
    if (sources && sources.length) {
      const box = el("div", "sources");
      box.append(el("h2", "", "Sources"));
      const ul = el("ul");
      for (const s of sources) {
        const li = el("li");
        const url = String(s.url || "");
        if (/^https?:\/\//i.test(url)) {
          const a = el("a", "", s.title || url);
          a.href = url;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          li.append(a);
        } else {
          li.textContent = s.title || url;
        }
        ul.append(li);
      }
      box.append(ul);
      view.article.append(box);
    }
    const notes = {
      stopped: "Stopped.", failed: "This answer failed.",
      timed_out: "This answer took too long and was cut short.",
    };
    if (notes[status]) {
      view.article.append(el("p", `run-note ${status === "stopped" ? "" : "failed"}`, notes[status]));
    }
    for (const line of view.tools.querySelectorAll(".tool.running")) endTool(line, !status || status === "succeeded" ? "ok" : "error");
    addActions(view, messageId, rating);
  }
  function addActions(view, messageId, rating) {
    const bar = el("div", "actions");
    const copy = el("button", "icon copy", "Copy");
    copy.type = "button";
    copy.setAttribute("aria-label", "Copy the answer");
    copy.addEventListener("click", () => copyText(view.text || view.bubble.textContent, copy));
    bar.append(copy);
    if (messageId) {
      const up = el("button", "icon thumb up", "👍");
      const down = el("button", "icon thumb down", "👎");
      up.type = down.type = "button";
      up.setAttribute("aria-label", "Good answer");
      down.setAttribute("aria-label", "Bad answer");
      for (const [button, value] of [[up, "up"], [down, "down"]]) {
        button.setAttribute("aria-pressed", String(rating === value));
        button.disabled = !feedbackAvailable;
        button.addEventListener("click", () => rate(messageId, value, up, down));
      }
      bar.append(up, down);
    }
    view.article.append(bar);
  }
  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = el("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "✓ Copied";
    say("Answer copied");
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }
  async function rate(messageId, value, up, down) {
    const pressed = (value === "up" ? up : down).getAttribute("aria-pressed") === "true";
    const rating = pressed ? null : value;
    try {
      await api("POST", `/messages/${encodeURIComponent(messageId)}/feedback`, { user_token: userToken, rating });
      up.setAttribute("aria-pressed", String(rating === "up"));
      down.setAttribute("aria-pressed", String(rating === "down"));
      say(rating ? "Thanks for the feedback" : "Feedback withdrawn");
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        // this server has no feedback endpoint (yet): stop offering it
        feedbackAvailable = false;
        for (const b of document.querySelectorAll(".thumb")) {
          b.disabled = true;
          b.title = "Feedback isn't available on this server";
        }
        say("Feedback isn't available on this server");
      } else if (e.status) {
        say(`Feedback not saved: ${e.message}`);
      }
    }
  }
  function greeting() {
    const view = addJelly();
    renderMarkdown(view.bubble, (assistant && assistant.greeting) ||
      "Hi, I'm Jelly 🪼! Ask me anything about DeFiChain, live on-chain data, or some math.");
    offerQuestions((assistant && assistant.suggested_questions) || []);
  }
  // suggested questions on an empty conversation: a click asks one
  function offerQuestions(questions) {
    if (!questions.length) return;
    const list = el("ul", "suggested");
    list.setAttribute("aria-label", "Suggested questions");
    for (const q of questions.slice(0, 10)) {
      const item = el("li");
      const button = el("button", "suggestion", q);
      button.type = "button";
      button.addEventListener("click", () => { list.remove(); send(q); });
      item.append(button);
      list.append(item);
    }
    els.messages.append(list);
  }
  async function loadAssistant() {
    if (!assistantId) return;
    try {
      assistant = await api("GET", `/assistants/${encodeURIComponent(assistantId)}`);
      if (!title && assistant.name) {
        els.title.textContent = assistant.name.slice(0, 80);
        document.title = assistant.name.slice(0, 80);
      }
    } catch (e) {
      say(`Couldn't load the assistant: ${e.message}`);
    }
  }

  // ---- transcript of a conversation (REST rows -> views)
  function showTranscript(rows) {
    els.messages.textContent = "";
    let pendingTools = [];
    for (const row of rows) {
      const type = row.type || row.message_type;
      if (type === "human") {
        addHuman(row.content);
      } else if (type === "tool") {
        pendingTools.push(row);
      } else if (type === "jelly") {
        const view = addJelly();
        for (const t of pendingTools) {
          const call = t.tool_call || {};
          const line = toolLine(view, call.call_id, call.tool || t.content);
          endTool(line, call.status || "ok", "", call.duration_ms);
        }
        pendingTools = [];
        finishJelly(view, row.content, row.sources, row.run_status, row.id, row.rating);
      }
    }
    if (!rows.length) greeting();
    scrollDown(true);
  }

  // ---- conversations (sidebar)
  let renaming = false; // a rename box is open: the list is redrawn when it closes, not under it
  function renderList() {
    if (renaming) return;
    els.list.textContent = "";
    for (const c of conversations) {
      const li = el("li");
      li.dataset.id = c.id;
      if (c.id === currentId) li.classList.add("current");
      const open = el("button", "open");
      open.type = "button";
      open.append(el("span", "name", c.title || "New chat"));
      if (c.preview) open.append(el("span", "preview", c.preview));
      if (c.id === currentId) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => { switchTo(c.id); closeSidebar(); });
      const rename = el("button", "icon rename", "✎");
      rename.type = "button";
      rename.setAttribute("aria-label", `Rename "${c.title || "New chat"}"`);
      rename.addEventListener("click", () => startRename(li, c));
      const del = el("button", "icon delete", "🗑");
      del.type = "button";
      del.setAttribute("aria-label", `Delete "${c.title || "New chat"}"`);
      del.addEventListener("click", () => remove(c));
      li.append(open, rename, del);
      els.list.append(li);
    }
  }
  let listEdits = 0; // changes made here to the list: one asked for before a change is out of date
  async function loadList() {
    const edits = listEdits;
    try {
      const data = await api("GET", "/conversations?limit=50");
      if (edits !== listEdits) return loadList(); // it crossed a rename, a new chat or a delete
      conversations = data.conversations || [];
      renderList();
    } catch (e) {
      if (e.status) say(`Couldn't list conversations: ${e.message}`);
    }
  }
  async function switchTo(id) {
    currentId = id;
    if (id) store.set(CONVERSATION_KEY, id); else store.remove(CONVERSATION_KEY);
    renderList();
    els.messages.textContent = ""; // never show one conversation's messages under another's name
    loadFiles();
    if (!id) { greeting(); return; }
    try {
      const data = await api("GET", `/conversations/${encodeURIComponent(id)}`);
      if (currentId !== id) return;
      hideBanner();
      const rows = data.messages || [];
      showTranscript(rows);
      // nothing asked yet (a new visitor's conversation holds only its greeting): the
      // assistant's suggested questions, as on an empty conversation
      if (!rows.some((r) => (r.type || r.message_type) === "human")) {
        offerQuestions((assistant && assistant.suggested_questions) || []);
      }
    } catch (e) {
      if (e.status === 404) { // deleted elsewhere
        conversations = conversations.filter((c) => c.id !== id);
        return switchTo(conversations.length ? conversations[0].id : null);
      }
    }
  }
  async function newChat() {
    try {
      const c = await api("POST", "/conversations", {});
      listEdits++;
      conversations.unshift(c);
      await switchTo(c.id);
      closeSidebar();
      els.input.focus();
    } catch (e) {
      if (e.status) say(`Couldn't start a new chat: ${e.message}`);
    }
  }
  function startRename(li, c) {
    const box = el("input", "rename-box");
    box.value = c.title || "";
    box.maxLength = 200;
    box.setAttribute("aria-label", "New name of the conversation");
    li.textContent = "";
    li.append(box);
    renaming = true;
    box.focus();
    box.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = box.value.trim();
      if (save && title && title !== c.title) {
        try {
          const updated = await api("PATCH", `/conversations/${encodeURIComponent(c.id)}`, { title });
          listEdits++;
          // the list may have been reloaded meanwhile (an answer ended): update what it holds now
          for (const held of conversations) if (held.id === c.id) Object.assign(held, updated);
          Object.assign(c, updated);
        } catch (e) {
          if (e.status) say(`Couldn't rename: ${e.message}`);
        }
      }
      renaming = false;
      renderList();
      const again = els.list.querySelector(`li[data-id="${CSS.escape(c.id)}"] .rename`);
      if (again) again.focus();
    };
    box.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); finish(true); }
      if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); finish(false); }
    });
    box.addEventListener("blur", () => finish(true));
  }
  async function remove(c) {
    if (!window.confirm(`Delete the conversation "${c.title || "New chat"}"? This cannot be undone.`)) return;
    try {
      await api("DELETE", `/conversations/${encodeURIComponent(c.id)}`);
    } catch (e) {
      if (e.status !== 404) { if (e.status) say(`Couldn't delete: ${e.message}`); return; }
    }
    listEdits++;
    conversations = conversations.filter((x) => x.id !== c.id);
    if (c.id === currentId) await switchTo(conversations.length ? conversations[0].id : null);
    else renderList();
    say("Conversation deleted");
    els.newChat.focus();
  }

  // ---- sidebar on narrow screens
  function openSidebar() {
    document.body.classList.add("sidebar-open");
    els.menu.setAttribute("aria-expanded", "true");
    els.scrim.hidden = false;
    const first = els.list.querySelector("li.current .open") || els.newChat;
    first.focus();
  }
  function closeSidebar() {
    if (!document.body.classList.contains("sidebar-open")) return;
    document.body.classList.remove("sidebar-open");
    els.menu.setAttribute("aria-expanded", "false");
    els.scrim.hidden = true;
  }

  // ---- a run over Socket.IO
  const socket = io({ transports: ["websocket", "polling"], reconnectionDelayMax: 5000 });
  let everConnected = false;
  socket.on("connect", () => {
    document.documentElement.dataset.connected = "true";
    hideBanner();
    if (everConnected) {
      say("Reconnected");
      if (run) { abandonRun("The connection dropped during this answer; here is the conversation as saved."); reloadCurrent(); }
      else reloadCurrent();
    }
    everConnected = true;
  });
  socket.on("disconnect", (reason) => {
    document.documentElement.dataset.connected = "false";
    if (reason === "io client disconnect") return;
    showBanner("Lost the connection to the JellyChat server. Reconnecting…");
  });
  socket.on("connect_error", () => {
    showBanner(everConnected
      ? "Lost the connection to the JellyChat server. Reconnecting…"
      : "Can't reach the JellyChat server. Is it running? Retrying…");
  });
  function reloadCurrent() {
    loadList();
    if (currentId) switchTo(currentId);
  }

  function setBusy(busy) {
    els.send.hidden = busy;
    els.stop.hidden = !busy;
    els.messages.setAttribute("aria-busy", String(busy));
    if (!busy && document.activeElement === document.body) els.input.focus();
  }
  function ours(data) {
    return run && (!data || !data.run_id || !run.runId || data.run_id === run.runId);
  }
  function paint() {
    run.frame = 0;
    renderMarkdown(run.view.bubble, run.text);
    scrollDown(false);
  }

  socket.on("run_started", (data) => {
    if (!run || run.runId) return;
    run.runId = data.run_id;
    if (data.conversation_id && data.conversation_id !== currentId) {
      currentId = data.conversation_id;
      store.set(CONVERSATION_KEY, currentId);
    }
  });
  socket.on("tool_start", (data) => {
    if (!ours(data)) return;
    toolLine(run.view, data.call_id, data.tool_name || data.tool || "Using a tool");
    scrollDown(false);
  });
  socket.on("tool_end", (data) => {
    if (!ours(data)) return;
    const line = run.view.toolLines[data.call_id];
    if (line) endTool(line, data.status, data.summary, data.duration_ms);
  });
  socket.on("memory_saved", (data) => {
    if (!ours(data) || !data || !data.id) return;
    const note = el("p", "run-note remembered");
    note.append(el("span", "", `🧠 Remembered: ${data.content}`));
    const undo = el("button", "link undo", "Undo");
    undo.type = "button";
    undo.addEventListener("click", async () => {
      try {
        await api("DELETE", `/me/memories/${encodeURIComponent(data.id)}`);
        note.textContent = "Forgotten.";
      } catch (e) {
        if (e.status === 404) note.textContent = "Forgotten.";
        else if (e.status) say(`Couldn't undo: ${e.message}`);
      }
    });
    note.append(" ", undo);
    run.view.article.append(note);
  });
  socket.on("file_ready", (data) => {
    if (data && data.conversation_id === currentId) loadFiles();
  });
  socket.on("final_answer_token", (data) => {
    if (!ours(data)) return;
    run.text += data.token;
    if (!run.frame) run.frame = requestAnimationFrame(paint);
  });
  socket.on("final_message", (data) => {
    if (!ours(data)) return;
    const current = run;
    if (current.frame) cancelAnimationFrame(current.frame);
    run = null;
    finishJelly(current.view, data.message, data.sources, data.status, data.message_id, null);
    setBusy(false);
    say(data.status === "stopped" ? "Stopped" : "");
    if (data.conversation_id) {
      if (!currentId) { currentId = data.conversation_id; store.set(CONVERSATION_KEY, currentId); }
      loadList();
    }
    scrollDown(false);
  });
  socket.on("error", (data) => {
    const message = (data && data.error) || "Something went wrong.";
    if (run && data && data.field === "pow" && !run.powTried) {
      // POW_REQUIRED=1: solve the server's challenge once for this conversation, then resend
      const current = run;
      current.powTried = true;
      say("Checking this browser (a moment of work, no data leaves it)…");
      solveChallenge().then((pow) => {
        if (run === current) socket.emit("user_message", { ...current.payload, pow });
      }).catch(() => abandonRun("The server's check could not be completed. Please try again."));
      return;
    }
    if (data && data.code === "budget_exceeded") {
      // the user's balance or monthly budget is used up: one short line, nothing was sent
      if (run) {
        const current = run;
        run = null;
        current.view.bubble.textContent = "";
        current.view.article.append(el("p", "run-note budget", message));
        setBusy(false);
      }
      say("Budget used up");
    } else if (run && ours(data)) {
      const current = run;
      run = null;
      current.view.bubble.textContent = "";
      current.view.article.append(el("p", "run-note failed", message));
      setBusy(false);
    } else {
      say(message);
    }
  });
  function abandonRun(note) {
    if (!run) return;
    run.view.article.append(el("p", "run-note failed", note));
    run = null;
    setBusy(false);
  }

  function send(text) {
    if (run) return;
    if (!socket.connected) {
      showBanner("Not connected to the JellyChat server yet; your message wasn't sent. Retrying the connection…");
      return;
    }
    addHuman(text);
    run = { runId: null, view: addJelly(), text: "", frame: 0 };
    setBusy(true);
    say("Jelly is answering…");
    const payload = { user_token: userToken, message: text, application };
    if (assistant) payload.assistant_id = assistant.id;
    els.messages.querySelectorAll(".suggested").forEach((list) => list.remove());
    if (currentId) payload.conversation_id = currentId;
    run.payload = payload;
    socket.emit("user_message", payload);
  }
  function stop() {
    if (!run) return;
    socket.emit("stop", run.runId ? { run_id: run.runId } : {});
    say("Stopping…");
  }

  // ---- input
  els.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = els.input.value.trim();
    if (!text) { els.input.focus(); return; }
    els.input.value = "";
    autosize();
    send(text);
  });
  els.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      els.composer.requestSubmit();
    }
  });
  function autosize() {
    els.input.style.height = "auto";
    els.input.style.height = `${Math.min(els.input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  }
  els.input.addEventListener("input", autosize);
  els.stop.addEventListener("click", stop);
  els.newChat.addEventListener("click", newChat);
  els.menu.addEventListener("click", () => (
    document.body.classList.contains("sidebar-open") ? closeSidebar() : openSidebar()));
  els.closeSidebar.addEventListener("click", () => { closeSidebar(); els.menu.focus(); });
  els.scrim.addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (document.body.classList.contains("sidebar-open")) { closeSidebar(); els.menu.focus(); } else if (run) stop();
  });

  // ---- the conversation's files: attach button, drag and drop, list with delete
  let filesShown = [];
  function renderFiles() {
    els.files.textContent = "";
    els.files.hidden = !filesShown.length;
    for (const f of filesShown) {
      const li = el("li", `file ${f.status}`);
      li.dataset.id = f.id;
      const label = f.status === "ready" ? f.name
        : f.status === "processing" ? `${f.name} (reading…)` : `${f.name} (failed: ${f.error || "unreadable"})`;
      li.append(el("span", "name", `📄 ${label}`));
      const del = el("button", "icon delete-file", "✕");
      del.type = "button";
      del.setAttribute("aria-label", `Remove ${f.name} from this conversation`);
      del.addEventListener("click", () => removeFile(f));
      li.append(del);
      els.files.append(li);
    }
  }
  async function loadFiles() {
    const id = currentId;
    if (!id) { filesShown = []; renderFiles(); return; }
    try {
      const rows = await api("GET", `/conversations/${encodeURIComponent(id)}/files`);
      if (currentId !== id) return;
      filesShown = rows || [];
      renderFiles();
      if (filesShown.some((f) => f.status === "processing")) {
        socket.emit("watch_files", { user_token: userToken, conversation_id: id });
      }
    } catch (e) {
      filesShown = [];
      renderFiles();
    }
  }
  async function removeFile(f) {
    try {
      await api("DELETE", `/files/${encodeURIComponent(f.id)}`);
    } catch (e) {
      if (e.status && e.status !== 404) { say(`Couldn't remove ${f.name}: ${e.message}`); return; }
    }
    filesShown = filesShown.filter((x) => x.id !== f.id);
    renderFiles();
    say(`Removed ${f.name}`);
  }
  async function uploadFile(file) {
    if (!currentId) {
      try {
        const c = await api("POST", "/conversations", {});
        listEdits++;
        conversations.unshift(c);
        await switchTo(c.id);
      } catch (e) {
        if (e.status) say(`Couldn't start a conversation for the file: ${e.message}`);
        return;
      }
    }
    const id = currentId;
    const form = new FormData();
    form.append("file", file, file.name);
    say(`Adding ${file.name}…`);
    let response;
    try {
      response = await fetch(`/conversations/${encodeURIComponent(id)}/files`, {
        method: "POST", headers: { "X-User-Token": userToken, Accept: "application/json" }, body: form,
      });
    } catch (e) {
      say(`Couldn't send ${file.name}: the server is unreachable`);
      return;
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      say(`${file.name} was not added: ${(data && data.error) || response.statusText}`);
      return;
    }
    say(data.status === "failed" ? `${file.name} could not be read: ${data.error}` : `Added ${file.name}`);
    if (data.status === "processing") socket.emit("watch_files", { user_token: userToken, conversation_id: id });
    if (currentId === id) loadFiles();
  }
  els.attach.addEventListener("click", () => els.fileInput.click());
  els.fileInput.addEventListener("change", () => {
    for (const file of els.fileInput.files) uploadFile(file);
    els.fileInput.value = "";
  });
  let dragDepth = 0;
  const main = document.querySelector("main");
  const carriesFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes("Files");
  main.addEventListener("dragenter", (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    dragDepth++;
    els.dropZone.hidden = false;
  });
  main.addEventListener("dragover", (ev) => { if (carriesFiles(ev)) ev.preventDefault(); });
  main.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) els.dropZone.hidden = true;
  });
  main.addEventListener("drop", (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    dragDepth = 0;
    els.dropZone.hidden = true;
    for (const file of ev.dataTransfer.files) uploadFile(file);
  });

  // ---- what Jelly remembers: a page listing the user's memories, each with a delete button
  async function loadMemories() {
    let rows = [];
    try { rows = (await api("GET", "/me/memories")) || []; } catch (e) { if (e.status) say(`Couldn't load memories: ${e.message}`); }
    els.memoriesList.textContent = "";
    els.memoriesEmpty.hidden = rows.length > 0;
    els.memoriesClear.hidden = rows.length === 0;
    for (const m of rows) {
      const li = el("li", "memory");
      li.dataset.id = m.id;
      li.append(el("span", "content", m.content));
      const del = el("button", "icon delete-memory", "✕");
      del.type = "button";
      del.setAttribute("aria-label", `Forget: ${m.content}`);
      del.addEventListener("click", async () => {
        try { await api("DELETE", `/me/memories/${encodeURIComponent(m.id)}`); } catch (e) {
          if (e.status && e.status !== 404) { say(`Couldn't forget it: ${e.message}`); return; }
        }
        loadMemories();
      });
      li.append(del);
      els.memoriesList.append(li);
    }
  }
  function openMemories() {
    els.memoriesPage.hidden = false;
    els.memoriesOpen.setAttribute("aria-expanded", "true");
    loadMemories();
    els.memoriesClose.focus();
  }
  function closeMemories() {
    els.memoriesPage.hidden = true;
    els.memoriesOpen.setAttribute("aria-expanded", "false");
  }
  els.memoriesOpen.addEventListener("click", () => (els.memoriesPage.hidden ? openMemories() : closeMemories()));
  els.memoriesClose.addEventListener("click", () => { closeMemories(); els.memoriesOpen.focus(); });
  els.memoriesClear.addEventListener("click", async () => {
    try { await api("DELETE", "/me/memories"); } catch (e) { if (e.status) say(`Couldn't forget: ${e.message}`); }
    loadMemories();
  });
  if (location.hash === "#memories") openMemories();

  // ---- embedded: is the embedding site allowed? (the widget checks too; this covers a hand-made iframe)
  async function embedAllowed() {
    if (!embed) return true;
    const origin = params.get("origin") || "";
    try {
      const check = await api("GET", `/embed/check?origin=${encodeURIComponent(origin)}`);
      if (check.allowed) return true;
      showBanner(`This chat can't be embedded here: ${check.reason}`);
    } catch (e) { /* unreachable: the banner says so */ }
    els.input.disabled = true;
    els.send.disabled = true;
    socket.disconnect();
    return false;
  }

  // ---- start
  (async function start() {
    await ensureToken();
    if (!(await embedAllowed())) return;
    await Promise.all([loadList(), loadAssistant()]);
    const known = conversations.some((c) => c.id === currentId);
    if (!known) currentId = conversations.length ? conversations[0].id : null;
    await switchTo(currentId);
    if (!embed) els.input.focus();
  })().finally(() => { document.documentElement.dataset.ready = "true"; });
})();
