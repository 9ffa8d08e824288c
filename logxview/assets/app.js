// The logx viewer. Every value from the log reaches the page through
// textContent or an attribute set with setAttribute: never as HTML.
"use strict";

const LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"];
const COLORS = { DEBUG: "#8e8e93", INFO: "#2f6fbf", WARN: "#c98a00", ERROR: "#c8321e" };
const PAGE = 200;       // lines per page of results
const MAX_ROWS = 5000;  // rows kept on the page; the oldest go first
const MAX_CELL = 2000;  // characters a cell shows of a value (a line may be 64 KiB or more)
const MAX_TITLE = 8000; // characters of the whole line a row's tooltip shows
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
// query is the last search's parameters, with its range in absolute
// times (the server's, for the presets): "Load older" pages through it.
// abort ends the requests of the search under way when a newer one
// starts: each holds one of the server's few query turns until it ends.
const state = { oldest: 0, newest: 0, tail: null, live: false, searchId: 0, query: null, loading: false, abort: null };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// params are the query's parameters, as the API takes them.
function params() {
  const p = new URLSearchParams();
  const stream = $("stream").value;
  if (stream) p.set("stream", stream);
  const q = $("q").value;
  if (q) {
    p.set("q", q);
    if ($("regexp").checked) p.set("regexp", "1");
  }
  if ($("level").value) p.set("level", $("level").value);
  return p;
}

// setRange puts the chosen range into p: a preset as a duration, which
// the server reads by its own clock (the browser's may be off), a custom
// range as two times.
function setRange(p) {
  const r = $("range").value;
  if (r === "custom") {
    const from = fromLocal($("from").value), to = fromLocal($("to").value);
    if (from && to && from < to) {
      p.set("since", from.toISOString());
      p.set("until", to.toISOString());
      return;
    }
  }
  p.set("since", r === "custom" ? "1h" : r);
}

// datetime-local inputs hold UTC here (the page shows UTC throughout).
function toLocal(d) { return d.toISOString().slice(0, 19); }
function fromLocal(s) { return s ? new Date(s + "Z") : null; }

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(path, p, signal) {
  const res = await fetch("api/" + path + "?" + p.toString(), { headers: { Accept: "application/json" }, signal });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// shown makes a value safe to read: the invisible format characters
// (Unicode's Cf: bidirectional overrides and isolates, which make a line
// read as another; zero width spaces, which make "ad\u200bmin" look like
// "admin"; tags) and U+2028/9 are written as \uXXXX, as logx tail and
// grep write them, but the zero width joiners, which scripts and emoji
// need; a value longer than max is cut, saying how much more there is.
function shown(s, max) {
  if (!s) return "";
  let out = s.replace(/[\p{Cf}\u2028\u2029]/gu, (c) => {
    if (c === "\u200c" || c === "\u200d") return c;
    const cp = c.codePointAt(0);
    return cp > 0xffff ? "\\U" + cp.toString(16).padStart(8, "0") : "\\u" + cp.toString(16).padStart(4, "0");
  });
  if (out.length > max) out = out.slice(0, max) + ` … (${out.length - max} more characters)`;
  return out;
}

function row(e) {
  const tr = el("tr");
  tr.dataset.seq = String(e.seq);
  tr.appendChild(el("td", "seq", String(e.seq)));
  tr.appendChild(el("td", "time", e.time ? e.time.replace("T", " ").replace("Z", "") : ""));
  const lvl = el("td", "lvl");
  const span = el("span", "lvl lvl-" + (LEVELS.includes(e.level) ? e.level : "INFO"), e.level);
  lvl.appendChild(span);
  tr.appendChild(lvl);
  tr.appendChild(el("td", "node", shown(e.node, MAX_CELL)));
  const caller = el("td", "caller", shown(e.caller, MAX_CELL));
  caller.title = caller.textContent;
  tr.appendChild(caller);
  tr.appendChild(el("td", "msg", shown(e.msg || (e.attrs ? "" : e.text), MAX_CELL)));
  const attrs = el("td", "attrs");
  for (const [k, v] of e.attrs || []) {
    attrs.appendChild(el("span", "k", shown(k, MAX_CELL) + "="));
    attrs.appendChild(el("span", "v", shown(v, MAX_CELL)));
  }
  tr.appendChild(attrs);
  tr.title = shown(e.text, MAX_TITLE);
  return tr;
}

// trim keeps the page at MAX_ROWS rows, dropping the oldest (a search
// finds them again).
function trim() {
  const rows = $("rows");
  if (rows.children.length <= MAX_ROWS) return;
  while (rows.children.length > MAX_ROWS) rows.lastChild.remove();
  state.oldest = Number(rows.lastChild.dataset.seq);
}

async function search() {
  const id = ++state.searchId;
  if (state.abort) state.abort.abort(); // the server's turns go to this one
  const ctl = new AbortController();
  state.abort = ctl;
  stopTail();
  const p = params();
  setRange(p);
  const hp = new URLSearchParams(p);
  hp.set("buckets", String(bucketsFor()));
  p.set("limit", String(PAGE));
  setStatus("searching…");
  $("rows").replaceChildren();
  $("older").hidden = true;
  state.query = null;
  try {
    const [res, hist] = await Promise.all([api("search", p, ctl.signal), api("histogram", hp, ctl.signal)]);
    if (id !== state.searchId) return; // a newer search is under way
    for (const e of res.lines) $("rows").appendChild(row(e));
    state.newest = res.lines.length ? res.lines[0].seq : 0;
    state.oldest = res.lines.length ? res.lines[res.lines.length - 1].seq : 0;
    state.query = new URLSearchParams(p);
    state.query.set("since", hist.since);
    state.query.set("until", hist.until);
    $("older").hidden = !res.more;
    drawHistogram(hist);
    setStatus(`${hist.total} entries in range · showing ${res.lines.length}${res.more ? "+" : ""} newest first · ${res.took_ms} ms`);
    if (state.live) startTail();
  } catch (err) {
    if (id === state.searchId) setStatus(String(err.message || err), true);
  } finally {
    if (state.abort === ctl) state.abort = null;
  }
}

// older appends the next page of the last search's matches.
async function older() {
  if (!state.oldest || !state.query || state.loading) return;
  if ($("rows").children.length >= MAX_ROWS) {
    $("older").hidden = true;
    setStatus(`showing the newest ${MAX_ROWS}: narrow the range or the search to see older lines`);
    return;
  }
  const id = state.searchId;
  const p = new URLSearchParams(state.query);
  p.set("max_seq", String(state.oldest - 1));
  state.loading = true;
  $("older").disabled = true;
  try {
    const res = await api("search", p);
    if (id !== state.searchId) return;
    for (const e of res.lines) $("rows").appendChild(row(e));
    if (res.lines.length) state.oldest = res.lines[res.lines.length - 1].seq;
    $("older").hidden = !res.more;
  } catch (err) {
    if (id === state.searchId) setStatus(String(err.message || err), true);
  } finally {
    state.loading = false;
    $("older").disabled = false;
  }
}

function bucketsFor() {
  const width = $("histogram").clientWidth || 1000;
  return Math.max(10, Math.min(120, Math.floor(width / 9)));
}

function drawHistogram(h) {
  const box = $("histogram");
  const W = box.clientWidth || 1000, H = 110, top = 6, bottom = 18;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const n = h.counts.length;
  let max = 1;
  for (const c of h.counts) max = Math.max(max, c.reduce((a, b) => a + b, 0));
  const bw = W / n;
  const since = new Date(h.since).getTime();
  const width = h.bucket_ns / 1e6; // milliseconds
  for (let i = 0; i < n; i++) {
    let y = H - bottom;
    const from = new Date(since + i * width);
    const to = i === n - 1 ? new Date(h.until) : new Date(since + (i + 1) * width);
    const total = h.counts[i].reduce((a, b) => a + b, 0);
    for (let k = 0; k < h.levels.length; k++) {
      const c = h.counts[i][k];
      if (!c) continue;
      const bh = (c / max) * (H - top - bottom);
      y -= bh;
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", "bar");
      r.setAttribute("x", (i * bw + 0.5).toFixed(1));
      r.setAttribute("y", y.toFixed(1));
      r.setAttribute("width", Math.max(1, bw - 1).toFixed(1));
      r.setAttribute("height", bh.toFixed(1));
      r.setAttribute("fill", COLORS[h.levels[k]] || "#888");
      r.dataset.from = from.toISOString();
      r.dataset.to = to.toISOString();
      const t = document.createElementNS(SVG, "title");
      t.textContent = `${toLocal(from)} – ${toLocal(to)} UTC: ${total} (` +
        h.levels.map((l, j) => `${l} ${h.counts[i][j]}`).join(", ") + ")";
      r.appendChild(t);
      r.addEventListener("click", () => narrow(from, to));
      svg.appendChild(r);
    }
  }
  const span = new Date(h.until) - since;
  const label = (d) => span <= 86400e3 ? toLocal(d).slice(11) : toLocal(d).slice(5, 16).replace("T", " ");
  for (const [i, anchor] of [[0, "start"], [n / 2, "middle"], [n, "end"]]) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", String(Math.max(2, Math.min(W - 2, i * bw))));
    t.setAttribute("y", String(H - 4));
    t.setAttribute("text-anchor", anchor);
    t.textContent = label(i === n ? new Date(h.until) : new Date(since + i * width));
    svg.appendChild(t);
  }
  box.replaceChildren(svg);
}

function narrow(from, to) {
  $("range").value = "custom";
  $("custom").hidden = false;
  $("from").value = toLocal(from);
  $("to").value = toLocal(new Date(to.getTime() + 999)); // to the second, inclusive of the bucket's end
  search();
}

// Live tail: server-sent events of the lines that arrive, newest on top.
// Pausing closes the stream; resuming reopens it from the line after the
// last one shown, so nothing in between is missed (the server replays at
// most 10,000 lines, and says how many it skipped).
function startTail() {
  stopTail();
  const p = params();
  if (state.newest) p.set("from", String(state.newest + 1));
  const es = new EventSource("api/tail?" + p.toString());
  es.onmessage = (ev) => {
    const e = JSON.parse(ev.data);
    if (e.seq <= state.newest) return;
    state.newest = e.seq;
    const tr = row(e);
    tr.classList.add("fresh");
    $("rows").prepend(tr);
    trim();
  };
  es.addEventListener("gap", (ev) => {
    setStatus(`live: ${ev.data} older lines were skipped; search to see them`);
  });
  es.addEventListener("error", (ev) => {
    // The server's error event (ErrRetained, the node closing), or the
    // connection refused (too many tails): stop rather than retry.
    if (ev.data || es.readyState === EventSource.CLOSED) {
      stopLive("live tail stopped: " + (ev.data ? JSON.parse(ev.data) : "the server refused it"));
    }
  });
  state.tail = es;
  setStatus("live: new lines appear at the top");
}

function stopTail() {
  if (state.tail) {
    state.tail.close();
    state.tail = null;
  }
}

// A tab in the background gives its tail back (the server has 16 for
// all its clients) and takes it again, from the line after the last one
// shown, when it comes back.
document.addEventListener("visibilitychange", () => {
  if (!state.live) return;
  if (document.hidden) {
    stopTail();
    setStatus("live: paused while the tab is hidden");
  } else if (!state.tail) {
    startTail();
  }
});

function stopLive(why) {
  state.live = false;
  $("live").classList.remove("on");
  $("live").textContent = "Live";
  stopTail();
  setStatus(why, why !== "paused");
}

// toggleLive starts or pauses the tail. A tail shows what arrives now, so
// a custom range gives way to the last 15 minutes first.
function toggleLive() {
  if (state.live) {
    stopLive("paused");
    return;
  }
  state.live = true;
  $("live").classList.add("on");
  $("live").textContent = "Pause";
  if ($("range").value === "custom") {
    $("range").value = "15m";
    $("custom").hidden = true;
    search(); // then starts the tail
    return;
  }
  startTail();
}

async function init() {
  const legend = $("legend");
  for (const l of LEVELS) {
    const s = el("span", "", l);
    s.style.setProperty("--c", COLORS[l]);
    legend.appendChild(s);
  }
  try {
    const { streams } = await api("streams", new URLSearchParams());
    for (const s of streams) {
      const o = el("option", "", s);
      o.value = s;
      $("stream").appendChild(o);
    }
    $("stream").hidden = streams.length < 2;
  } catch (err) {
    setStatus(String(err.message || err), true);
  }
  $("query").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  $("range").addEventListener("change", () => {
    const custom = $("range").value === "custom";
    $("custom").hidden = !custom;
    if (custom && !$("from").value) {
      const [since, until] = [new Date(Date.now() - 3600e3), new Date()];
      $("from").value = toLocal(since);
      $("to").value = toLocal(until);
    }
    search();
  });
  for (const id of ["level", "stream", "regexp"]) $(id).addEventListener("change", search);
  $("older").addEventListener("click", older);
  $("live").addEventListener("click", toggleLive);
  search();
}

init();
