// sift's search page. Plain browser JavaScript, no build step, nothing
// loaded from elsewhere. It posts the question to /v1/search and reads the
// run's Server-Sent Events with fetch and a ReadableStream (EventSource can
// only GET), then shows the answer as its tokens arrive, a timeline of the
// tool calls, and a card per product with its live stock and price from
// /v1/products/{sku}. Every piece of text from the server goes into the page
// through textContent, never as HTML.
"use strict";

// ---- Server-Sent Events over fetch: a pure parser, no DOM ----

// Returns feed(text): give it the decoded text of the stream in pieces of any
// size; it calls onEvent(name, data) once per complete event, the same
// events whatever the split (tests/e2e/sse_parser.test.js checks every
// split). Lines end with \n, \r\n or \r; ":" lines are comments; data lines
// are joined with \n; an event with no data line is not dispatched, nor is
// an unfinished one at the end of the stream (as EventSource does).
function siftSseParser(onEvent) {
  let buf = "", event = "", data = [];
  return function feed(text) {
    buf += text;
    // A lone \r at the end may be half of a \r\n: keep it for the next piece.
    let end = buf.length;
    if (buf.endsWith("\r")) end--;
    const lines = buf.slice(0, end).split(/\r\n|\r|\n/);
    buf = lines.pop() + buf.slice(end);
    for (const line of lines) {
      if (line === "") {
        if (data.length) onEvent(event || "message", data.join("\n"));
        event = "";
        data = [];
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
    }
  };
}

if (typeof module === "object" && module.exports) module.exports = { siftSseParser };

(typeof document === "undefined") || (function () {
  const $ = (id) => document.getElementById(id);
  const form = $("search"), q = $("q"), stop = $("stop");
  const keybox = $("keybox"), keyInput = $("key"), keySave = $("key-save");
  const errorBox = $("error"), statusLine = $("status");
  const answer = $("answer"), timeline = $("timeline"), products = $("products");
  const newConv = $("new");

  const MAX_CARDS = 12;
  const WAREHOUSES = ["HAN", "DAD", "SGN"];
  const WAREHOUSE_NAMES = { HAN: "Hanoi", DAD: "Da Nang", SGN: "Ho Chi Minh City" };

  // ---- the API key: only asked for when the server wants one ----

  const store = window.sessionStorage;
  (function keyFromUrl() {
    // ?key=... is taken once and removed from the address bar, so it does not
    // stay in the history or get shared with a copied link.
    const params = new URLSearchParams(location.search);
    if (!params.has("key")) return;
    const k = params.get("key").trim();
    if (k) store.setItem("sift.key", k);
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  })();

  function authHeaders() {
    const k = store.getItem("sift.key");
    return k ? { Authorization: "Bearer " + k } : {};
  }

  function askForKey(message) {
    keybox.hidden = false;
    keyInput.value = store.getItem("sift.key") || "";
    showError(message);
    keyInput.focus();
  }

  function saveKey() {
    const k = keyInput.value.trim();
    if (k) store.setItem("sift.key", k);
    else store.removeItem("sift.key");
    clearError();
    q.focus();
  }
  keySave.addEventListener("click", saveKey);
  keyInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      saveKey();
      if (q.value.trim()) form.requestSubmit();
    }
  });

  // Does this server want a key? /v1/models answers 401 when it does.
  fetch("/v1/models", { headers: authHeaders() }).then((res) => {
    if (res.status === 401) {
      keybox.hidden = false;
      keyInput.value = store.getItem("sift.key") || "";
      if (store.getItem("sift.key")) showError("The API key kept in this tab was refused: enter another.");
    }
  }, () => {});

  // ---- the conversation: one session id per tab ----

  function newSessionId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function sessionId() {
    let id = store.getItem("sift.session");
    if (!id) {
      id = newSessionId();
      store.setItem("sift.session", id);
    }
    return id;
  }
  newConv.addEventListener("click", () => {
    if (running) {
      running.abort();
      setRunning(null); // the aborted search leaves the page alone
    }
    store.setItem("sift.session", newSessionId());
    answer.textContent = "";
    timeline.replaceChildren();
    products.replaceChildren();
    cards.clear();
    clearError();
    setStatus("New conversation: sift has forgotten the earlier questions.");
    q.value = "";
    q.focus();
  });

  // ---- messages ----

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }
  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }
  function setStatus(text) {
    statusLine.textContent = text;
  }

  // The message of an API error body {"error":{"code","message"}}.
  async function errorText(res) {
    let msg = "HTTP " + res.status;
    try {
      const body = await res.json();
      if (body && body.error) msg = body.error.message + " (" + body.error.code + ")";
    } catch (e) { /* not JSON: keep the status */ }
    const retry = res.headers.get("Retry-After");
    if (retry) msg += "; try again in " + retry + " s";
    return msg;
  }

  // ---- the run ----

  let running = null; // the AbortController of the run in progress
  let runStart = 0;
  let runFailed = false; // the run sent an error event
  const cards = new Map(); // sku -> card element

  function setRunning(ctrl) {
    running = ctrl;
    // Search stays enabled: a new question replaces the one being answered
    // (a disabled default button would also block Enter in the box).
    stop.hidden = !ctrl;
    answer.setAttribute("aria-busy", ctrl ? "true" : "false");
  }

  function compactArgs(args) {
    if (!args || typeof args !== "object") return String(args);
    const drop = (v) => {
      if (Array.isArray(v)) return v.map(drop);
      if (v && typeof v === "object") {
        const o = {};
        for (const [k, x] of Object.entries(v)) if (x !== null) o[k] = drop(x);
        return o;
      }
      return v;
    };
    return JSON.stringify(drop(args));
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function toolStarted(ev) {
    const li = el("li");
    li.dataset.id = ev.id;
    li.dataset.name = ev.name;
    li.dataset.state = "running";
    const state = el("span", "state", "running… (+" + Math.round(performance.now() - runStart) + " ms)");
    li.append(state, el("span", "name", ev.name), el("code", "", compactArgs(ev.arguments)));
    timeline.append(li);
    const sku = ev.arguments && typeof ev.arguments.sku === "string" ? ev.arguments.sku : null;
    if (sku) ensureCard({ sku: sku });
  }

  function toolFinished(ev) {
    let li = Array.from(timeline.children).find((x) => x.dataset.id === ev.id);
    if (!li) {
      toolStarted({ id: ev.id, name: ev.name, arguments: null });
      li = timeline.lastElementChild;
    }
    const ms = typeof ev.duration_ms === "number" ? ev.duration_ms : 0;
    const took = ms < 10 ? ms.toFixed(1) : String(Math.round(ms));
    li.dataset.durationMs = String(ms);
    if (ev.error) {
      li.dataset.state = "error";
      li.querySelector(".state").textContent = "failed after " + took + " ms";
      li.append(el("span", "err", ev.error.message + " (" + ev.error.code + ")"));
    } else {
      li.dataset.state = "ok";
      li.querySelector(".state").textContent = "done in " + took + " ms";
    }
  }

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat(currency === "VND" ? "vi-VN" : "en-US", {
        style: "currency", currency: currency,
      }).format(amount);
    } catch (e) {
      return amount + " " + currency;
    }
  }

  function attrsText(attrs) {
    if (!attrs) return "";
    const keys = ["size", "colour", "gender", "material"];
    const parts = [];
    for (const k of keys) if (attrs[k]) parts.push(k + " " + attrs[k]);
    return parts.join(" · ");
  }

  // "Also in sizes 39, 40; colours white" from the product's variants: the
  // other sizes in its colour and the other colours in its size.
  function variantsText(p) {
    const a = p.attributes || {};
    const sizes = [], colours = [];
    for (const v of p.variants || []) {
      const b = v.attributes || {};
      if (v.sku === p.sku) continue;
      if (b.size && b.size !== a.size && b.colour === a.colour && !sizes.includes(b.size)) sizes.push(b.size);
      if (b.colour && b.colour !== a.colour && b.size === a.size && !colours.includes(b.colour)) colours.push(b.colour);
    }
    const parts = [];
    if (sizes.length) parts.push("sizes " + sizes.join(", "));
    if (colours.length) parts.push("colours " + colours.join(", "));
    return parts.length ? "Also in " + parts.join("; ") : "";
  }

  // A card for a product the run returned or named; filled from /v1/products.
  function ensureCard(p) {
    if (!p || !p.sku) return;
    let card = cards.get(p.sku);
    if (!card) {
      if (cards.size >= MAX_CARDS) return;
      card = el("li", "card");
      card.dataset.sku = p.sku;
      card.append(el("h3", "title", p.title || p.sku), el("div", "sku", p.sku),
        el("p", "attrs", attrsText(p.attributes)), el("p", "price", "Price: loading…"),
        el("ul", "stock"), el("p", "variants"), el("p", "live", "Stock: loading…"));
      products.append(card);
      cards.set(p.sku, card);
      loadProduct(card, p.sku);
    } else if (p.title && card.querySelector(".title").textContent === p.sku) {
      card.querySelector(".title").textContent = p.title;
      card.querySelector(".attrs").textContent = attrsText(p.attributes);
    }
  }

  async function loadProduct(card, sku) {
    const live = card.querySelector(".live");
    let res;
    try {
      res = await fetch("/v1/products/" + encodeURIComponent(sku), { headers: authHeaders() });
    } catch (e) {
      live.textContent = "Stock could not be read: " + e.message;
      card.dataset.state = "error";
      return;
    }
    if (!res.ok) {
      const msg = await errorText(res);
      card.querySelector(".price").textContent = "";
      live.textContent = res.status === 404 ? "Not in the catalog." : "Stock could not be read: " + msg;
      card.dataset.state = "error";
      if (res.status === 401) askForKey("This server needs an API key: " + msg);
      return;
    }
    const p = await res.json();
    card.querySelector(".title").textContent = p.title;
    card.querySelector(".attrs").textContent = [p.brand, attrsText(p.attributes)].filter(Boolean).join(" · ");
    const price = card.querySelector(".price");
    const vnd = p.prices.find((x) => x.currency === "VND");
    const usd = p.prices.find((x) => x.currency === "USD");
    const main = vnd || usd || p.prices[0];
    price.textContent = main ? money(main.amount, main.currency) : "No price";
    if (main && usd && usd !== main) price.append(" ", el("small", "", "(" + money(usd.amount, "USD") + ")"));
    const list = card.querySelector(".stock");
    list.replaceChildren();
    const stock = new Map(p.stock.map((s) => [s.code, s]));
    const codes = WAREHOUSES.concat(p.stock.map((s) => s.code).filter((c) => !WAREHOUSES.includes(c)));
    for (const code of codes) {
      const s = stock.get(code) || { code: code, quantity: 0 };
      const li = el("li", s.quantity > 0 ? "in" : "out",
        code + " " + (s.quantity > 0 ? s.quantity + " in stock" : "out of stock"));
      li.dataset.warehouse = code;
      li.dataset.quantity = String(s.quantity);
      li.title = (s.name || WAREHOUSE_NAMES[code] || code) + ": " + s.quantity;
      li.setAttribute("aria-label", (s.name || WAREHOUSE_NAMES[code] || code) + ": " +
        (s.quantity > 0 ? s.quantity + " in stock" : "out of stock"));
      list.append(li);
    }
    const other = variantsText(p);
    card.querySelector(".variants").textContent = other;
    card.querySelector(".variants").hidden = !other;
    live.textContent = "Live stock, read at " + new Date().toLocaleTimeString();
    card.dataset.state = "loaded";
  }

  // Cards the answer talks about come first.
  function markMentioned(text) {
    const mentioned = [];
    for (const [sku, card] of cards) {
      if (text.includes(sku)) {
        card.classList.add("mentioned");
        mentioned.push(card);
      }
    }
    for (const card of mentioned.reverse()) products.prepend(card);
  }

  function onEvent(name, data) {
    let ev;
    try {
      ev = JSON.parse(data);
    } catch (e) {
      return;
    }
    switch (name) {
      case "run.started":
        setStatus("sift is looking (" + ev.model + ")…");
        break;
      case "tool.started":
        toolStarted(ev);
        setStatus("Running " + ev.name + "…");
        break;
      case "tool.finished":
        toolFinished(ev);
        break;
      case "products":
        for (const p of ev.products || []) ensureCard(p);
        break;
      case "token":
        answer.append(ev.text);
        break;
      case "answer":
        answer.textContent = ev.text;
        markMentioned(ev.text);
        break;
      case "run.finished": {
        const t = ev.timings || {};
        const ms = Math.round(t.total_ms || 0);
        if (runFailed) setStatus("Stopped after " + ms + " ms, " + ev.steps + " steps.");
        else setStatus("Answered in " + ms + " ms, " + ev.steps + " steps.");
        return "finished";
      }
      case "error":
        runFailed = true;
        showError("The run stopped: " + ev.message + " (" + ev.code + ")");
        break;
    }
    return null;
  }

  async function search(text) {
    if (running) running.abort();
    const ctrl = new AbortController();
    clearError();
    answer.textContent = "";
    timeline.replaceChildren();
    products.replaceChildren();
    cards.clear();
    setStatus("Sending…");
    setRunning(ctrl);
    runStart = performance.now();
    runFailed = false;
    let finished = false;
    try {
      const res = await fetch("/v1/search", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json", Accept: "text/event-stream" }, authHeaders()),
        body: JSON.stringify({ query: text, session_id: sessionId() }),
        signal: ctrl.signal,
      });
      if (!res.ok) {
        const msg = await errorText(res);
        setStatus("");
        if (res.status === 401) askForKey("This server needs an API key: " + msg);
        else showError("The search was refused: " + msg);
        return;
      }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      const feed = siftSseParser((n, d) => {
        if (onEvent(n, d) === "finished") finished = true;
      });
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(dec.decode(value, { stream: true }));
      }
      if (!finished) showError("The answer stopped early: the connection was closed.");
    } catch (e) {
      if (running !== ctrl) {
        // replaced by a newer search, which owns the status now
      } else if (e.name === "AbortError") {
        setStatus("Stopped. Ask again when you are ready.");
      } else {
        showError("Could not reach sift: " + e.message);
        setStatus("");
      }
    } finally {
      // A newer search may have replaced this one: then the page is its.
      if (running === ctrl) {
        setRunning(null);
        for (const li of timeline.querySelectorAll('li[data-state="running"]')) {
          li.dataset.state = "error";
          li.querySelector(".state").textContent = "stopped";
        }
      }
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = q.value.trim();
    if (!text) {
      showError("Type a question first.");
      q.focus();
      return;
    }
    search(text);
  });
  stop.addEventListener("click", () => {
    if (running) running.abort();
    q.focus();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && running) {
      e.preventDefault();
      running.abort();
    } else if (e.key === "/" && document.activeElement !== q && document.activeElement !== keyInput) {
      e.preventDefault();
      q.focus();
      q.select();
    }
  });

  // ?q=... fills the box and searches (a link to a search).
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) {
    q.value = initial;
    search(initial);
  }
})();
