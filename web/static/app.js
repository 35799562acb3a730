// scoreid page-turner: the page's script.
// Loads the library's pieces (/api/library), opens one WebSocket per stream (/ws, protocol in
// web/session.py), sends the microphone or a chosen recording through the capture worklet as
// float32 chunks at the contract rate, and shows what the engine answers: the identity, the
// followed piece's page (turning to the position's show_page), its system and a cursor at x, and
// the ranking. window.scoreidStats keeps timings and what was shown (tests and bench read it).
"use strict";

const $ = (id) => document.getElementById(id);
const CHUNK_S = 0.1; // seconds of audio per WebSocket frame
const UNKNOWN_AFTER_VOTING = 40; // voting hops (20 s at 0.5 s) without an identity: say "not recognised"

const stats = (window.scoreidStats = {
  updates: 0, latencies: [], identities: [], pagesShown: [], cursor: [], follow: [], closes: [], errors: [],
});

let library = null; // {pieces: [...], sample_rate, hop_s}
let byId = {};
let ws = null;
let audio = null; // {ctx, node, source, stream, kind}
let sent = new Map(); // samples sent so far -> performance.now() when sent
let samplesSent = 0;
let pinned = null; // a piece the user chose to see
let last = null; // the last update
let shown = { piece: null, page: -1, system: null };
let wantStop = false;

// ------------------------------------------------------------------ states
function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

function banner(kind, text, action) {
  const b = $("banner");
  if (!text) { b.hidden = true; return; }
  b.hidden = false;
  b.dataset.kind = kind;
  $("banner-text").textContent = text;
  const a = $("banner-action");
  a.hidden = !action;
  if (action) { a.textContent = action.label; a.onclick = action.run; }
}

const CLOSE_TEXT = {
  1003: "The server did not understand the page (reload it).",
  1007: "The server refused the audio.",
  1008: "The server closed the stream.",
  1009: "An audio chunk was too large for the server.",
  1011: "The server failed; start again.",
  1013: "The server is busy.",
  4000: "The stream was idle and closed.",
  4001: "The session reached its time limit.",
  4002: "The library is empty: add pieces with `scoreid library add`, then reload.",
  4003: "The scoreid stack is unreachable: is `scoreid up` running?",
};
// close codes -> the status line's words (others: "refused" before the stream, "disconnected" after)
const CLOSE_STATUS = { 1013: "server busy", 4002: "library empty", 4003: "server unreachable" };

// ------------------------------------------------------------------ library
async function loadLibrary() {
  try {
    const r = await fetch("/api/library", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    library = await r.json();
  } catch (e) {
    library = null;
    setStatus("error", "server unreachable");
    banner("error", "The scoreid server is unreachable. Is `scoreid web` still running?",
      { label: "Retry", run: () => { banner(); loadLibrary(); } });
    return false;
  }
  byId = Object.fromEntries(library.pieces.map((p) => [p.id, p]));
  if (!library.pieces.length) {
    banner("error", "The library is empty: there is nothing to recognise. Add pieces with `scoreid library add`, then reload.");
    $("listen").disabled = true;
    $("choose").disabled = true;
    setStatus("error", "library empty");
  } else {
    setStatus("idle", `not listening · ${library.pieces.length} pieces`);
  }
  return true;
}

// ------------------------------------------------------------------ the stream
function connect() {
  return new Promise((resolve, reject) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    let opened = false;
    const sock = new WebSocket(url);
    sock.binaryType = "arraybuffer";
    sock.onopen = () => { opened = true; };
    sock.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "hello") {
        sock.send(JSON.stringify({ type: "start", sample_rate: m.sample_rate, format: m.format }));
      } else if (m.type === "started") {
        ws = sock;
        resolve(sock);
      } else {
        onMessage(m);
      }
    };
    sock.onclose = (ev) => {
      stats.closes.push({ code: ev.code, reason: ev.reason });
      if (ws !== sock) { // closed before the stream started: unreachable, busy, empty library...
        const err = new Error(ev.reason || CLOSE_TEXT[ev.code] || `closed (code ${ev.code})`);
        err.code = ev.code;
        err.opened = opened;
        reject(err);
        return;
      }
      ws = null;
      if (wantStop || ev.code === 1000) return;
      stopAudio();
      if (ev.code === 1006) {
        setStatus("error", "server unreachable");
        banner("error", "The connection to the server was lost. Is `scoreid web` still running?",
          { label: "Retry", run: () => { banner(); loadLibrary(); } });
        return;
      }
      const idle = ev.code === 4000;
      banner(idle ? "info" : "error", ev.reason || CLOSE_TEXT[ev.code] || `The connection closed (code ${ev.code}).`);
      setStatus(idle ? "idle" : "error", idle ? "not listening" : CLOSE_STATUS[ev.code] || "disconnected");
    };
  });
}

function sendChunk(samples) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  samplesSent += samples.length;
  sent.set(samplesSent, performance.now());
  ws.send(samples.buffer);
}

async function startAudio(kind, makeSource) {
  if (!library && !(await loadLibrary())) return;
  if (!library.pieces.length) return;
  stopAudio();
  wantStop = false;
  banner();
  setStatus("connecting", "connecting…");
  let sock;
  try {
    sock = await connect();
  } catch (e) {
    if (e.opened) {
      setStatus("error", CLOSE_STATUS[e.code] || "refused");
      banner("error", e.message);
    } else {
      setStatus("error", "server unreachable");
      banner("error", "The scoreid server is unreachable. Is `scoreid web` still running?",
        { label: "Retry", run: () => { banner(); loadLibrary(); } });
    }
    return;
  }
  resetView();
  try {
    const ctx = kind === "file" ? new AudioContext({ sampleRate: library.sample_rate }) : new AudioContext();
    await ctx.audioWorklet.addModule("/static/capture-worklet.js");
    const node = new AudioWorkletNode(ctx, "scoreid-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { targetRate: library.sample_rate, chunk: Math.round(library.sample_rate * CHUNK_S) },
    });
    node.port.onmessage = (e) => {
      sendChunk(e.data.samples);
      $("level").style.width = `${Math.min(100, Math.sqrt(e.data.level) * 220)}%`;
    };
    const { source, stream, onEnded } = await makeSource(ctx);
    source.connect(node);
    node.connect(ctx.destination); // the worklet writes silence; connected, it is pulled
    audio = { ctx, node, source, stream, kind };
    if (onEnded) onEnded(() => endStream());
    if (ctx.state !== "running") await ctx.resume();
  } catch (e) {
    if (sock) sock.close(1000);
    ws = null;
    stopAudio();
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    if (denied) {
      setStatus("error", "microphone denied");
      banner("error", "Microphone access was denied. Allow it in the browser's site settings (the icon next to the address), or play a recording instead.");
    } else if (e && e.name === "NotFoundError") {
      setStatus("error", "no microphone");
      banner("error", "No microphone was found. Connect one, or play a recording instead.");
    } else if (e && e.name === "EncodingError") {
      setStatus("error", "unreadable file");
      banner("error", "The browser cannot decode that file. Try WAV, FLAC, OGG or MP3.");
    } else {
      setStatus("error", "audio failed");
      banner("error", `Audio could not start: ${e && e.message ? e.message : e}`);
    }
    stats.errors.push(String(e && e.name));
    return;
  }
  setStatus("listening", kind === "mic" ? "listening" : "playing the recording");
  $("listen").textContent = "Stop";
  $("listen").classList.add("on");
  $("restart").disabled = false;
}

function startMic() {
  return startAudio("mic", async (ctx) => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const e = new Error("this page needs https (or localhost) for the microphone");
      e.name = "SecurityError";
      throw e;
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    return { source: ctx.createMediaStreamSource(stream), stream };
  });
}

function startFile(file) {
  return startAudio("file", async (ctx) => {
    const data = await file.arrayBuffer();
    const buf = await ctx.decodeAudioData(data);
    const src = ctx.createBufferSource();
    src.buffer = buf;
    const gain = ctx.createGain(); // heard as well as sent
    src.connect(gain).connect(ctx.destination);
    src.start();
    return { source: src, onEnded: (cb) => { src.onended = cb; } };
  });
}

function endStream() {
  if (audio) audio.node.port.postMessage("flush");
  setTimeout(() => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
    stopAudio();
    setStatus("idle", "not listening");
  }, 100);
}

function stopAudio() {
  if (audio) {
    try { audio.source.disconnect(); } catch (e) { /* already */ }
    if (audio.stream) audio.stream.getTracks().forEach((t) => t.stop());
    audio.ctx.close();
    audio = null;
  }
  $("listen").textContent = "Listen";
  $("listen").classList.remove("on");
  $("level").style.width = "0";
}

function restart() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "start", sample_rate: library.sample_rate, format: "f32le" }));
  samplesSent = 0;
  sent = new Map();
  resetView();
}

// ------------------------------------------------------------------ what the engine says
function onMessage(m) {
  if (m.type === "started") return;
  if (m.type !== "update" && m.type !== "final") return;
  const t0 = sent.get(m.samples);
  const tRecv = performance.now();
  stats.updates += 1;
  last = m;
  render(m);
  if (t0 !== undefined && m.type === "update") {
    sent.delete(m.samples);
    requestAnimationFrame(() => {
      stats.latencies.push({ t: m.t, recv_ms: tRecv - t0, paint_ms: performance.now() - t0 });
    });
  }
  for (const k of sent.keys()) if (k < m.samples) sent.delete(k); // chunks that completed no hop
  if (m.type === "final") {
    setStatus("idle", "finished");
    $("restart").disabled = true;
  }
}

function followed(m) {
  // the piece whose page is shown: the one the user chose, else the identity, else the best guess
  if (pinned) return { pid: pinned, how: "chosen" };
  if (m.identity) return { pid: m.identity, how: "identified" };
  const top = m.top.find((e) => e.page !== undefined);
  return top ? { pid: top.piece, how: "guess" } : null;
}

function render(m) {
  const idEl = $("identity");
  const top = m.top[0];
  $("clock").textContent = `${m.t.toFixed(1)} s`;
  $("confidence").style.width = `${Math.round((m.confidence || 0) * 100)}%`;
  if (m.identity) {
    const p = byId[m.identity] || { title: m.identity, composer: "" };
    idEl.dataset.state = "identified";
    $("identity-label").textContent = "Now playing";
    $("identity-title").textContent = p.title;
    $("identity-composer").textContent = p.composer;
    $("identity-note").textContent = `identified · ${Math.round(m.confidence * 100)} % sure`;
    if (stats.identities[stats.identities.length - 1] !== m.identity) stats.identities.push(m.identity);
  } else {
    idEl.dataset.state = "unknown";
    $("identity-label").textContent = "Piece";
    $("identity-title").textContent = "Unknown";
    $("identity-composer").textContent = "";
    let note;
    if (m.voting === 0) note = "Silence: play something (is the microphone on?)";
    else if (m.silent) note = "Silence…";
    else if (m.voting < UNKNOWN_AFTER_VOTING) note = top ? `Listening… best guess: ${titleOf(top.piece)}` : "Listening…";
    else note = top ? `Not recognised yet (best guess: ${titleOf(top.piece)}). Is it in the library?` : "Not recognised: is this piece in the library?";
    $("identity-note").textContent = note;
  }
  renderRanking(m);
  renderScore(m);
}

function titleOf(pid) {
  return byId[pid] ? byId[pid].title : pid;
}

function renderRanking(m) {
  const ol = $("ranking");
  ol.textContent = "";
  if (!m.top.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = m.voting === 0 ? "silence so far" : "nothing yet";
    ol.appendChild(li);
    return;
  }
  m.top.forEach((e, i) => {
    const li = document.createElement("li");
    if (i === 0) li.className = "top";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `${i + 1}.`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = titleOf(e.piece);
    const sc = document.createElement("span");
    sc.className = "score";
    sc.textContent = `${Math.round(e.score * 100)} %`;
    li.append(rank, name, sc);
    li.title = e.page !== undefined ? `page ${e.page + 1}, system ${e.system + 1}` : "";
    li.onclick = () => choose(e.piece);
    ol.appendChild(li);
  });
}

function renderScore(m) {
  const f = followed(m);
  if (!f) return;
  const piece = byId[f.pid];
  if (!piece || !piece.pages.length) return;
  const entry = m.top.find((e) => e.piece === f.pid);
  const pos = entry && entry.page !== undefined ? entry : null;
  const page = pos ? pos.show_page : (shown.piece === f.pid ? shown.page : 0);
  const how = f.how === "guess" ? " (best guess)" : f.how === "chosen" ? " (chosen)" : "";
  $("score-title").textContent = `${piece.title}${how}`;
  showPage(f.pid, page);
  $("sheet").classList.toggle("guess", f.how === "guess");
  if (pos) stats.follow.push({ t: m.t, piece: f.pid, page: pos.page, show_page: pos.show_page, shown: page });
  const pg = piece.pages[page];
  const [h, w] = pg.size;
  const sys = $("system"), cur = $("cursor");
  if (pos && pos.page === page && pg.systems[pos.system]) {
    const [top, bottom, left, right] = pg.systems[pos.system];
    const pad = (bottom - top) * 0.12;
    place(sys, left - 6, top - pad, right - left + 12, bottom - top + 2 * pad, w, h);
    sys.classList.remove("next");
    sys.hidden = false;
    const [y0, y1] = pos.band;
    const cy0 = Math.max(top - pad, Math.min(y0, top)), cy1 = Math.min(bottom + pad, Math.max(y1, bottom));
    place(cur, pos.x, cy0, null, cy1 - cy0, w, h);
    cur.hidden = false;
    const key = `${f.pid}/${page}/${pos.system}`;
    if (key !== shown.system) { shown.system = key; sys.scrollIntoView({ block: "center", behavior: "smooth" }); }
    stats.cursor.push({ t: m.t, piece: f.pid, page, system: pos.system, x: pos.x });
  } else if (pos && pg.systems.length) { // turned ahead: the music is still at the end of the last page
    const [top, bottom, left, right] = pg.systems[0];
    place(sys, left - 6, top, right - left + 12, bottom - top, w, h);
    sys.classList.add("next");
    sys.hidden = false;
    const key = `${f.pid}/${page}/next`;
    if (key !== shown.system) { shown.system = key; sys.scrollIntoView({ block: "center", behavior: "smooth" }); }
    cur.hidden = true;
  } else {
    sys.hidden = true;
    cur.hidden = true;
  }
}

function place(el, x, y, width, height, w, h) {
  el.style.left = `${(x / w) * 100}%`;
  el.style.top = `${(y / h) * 100}%`;
  if (width !== null) el.style.width = `${(width / w) * 100}%`;
  el.style.height = `${(height / h) * 100}%`;
}

function showPage(pid, page) {
  $("placeholder").hidden = true;
  $("sheet").hidden = false;
  const n = byId[pid].pages.length;
  const pi = $("page-index");
  pi.textContent = `page ${page + 1} of ${n}`;
  pi.dataset.page = String(page);
  if (shown.piece === pid && shown.page === page) return;
  const [h, w] = byId[pid].pages[page].size; // the layout is known before the image arrives
  $("sheet").style.aspectRatio = `${w} / ${h}`;
  shown = { piece: pid, page, system: null };
  $("page").src = `/api/pieces/${encodeURIComponent(pid)}/pages/${page}`;
  stats.pagesShown.push({ piece: pid, page, t: last ? last.t : 0 });
}

function resetView() {
  last = null;
  samplesSent = 0;
  sent = new Map();
  $("identity").dataset.state = "unknown";
  $("identity-title").textContent = "Unknown";
  $("identity-composer").textContent = "";
  $("identity-note").textContent = "Listening…";
  $("confidence").style.width = "0";
  $("ranking").innerHTML = '<li class="empty">nothing yet</li>';
  $("clock").textContent = "";
}

// ------------------------------------------------------------------ choosing a piece
function choose(pid) {
  pinned = pid;
  $("chooser").hidden = true;
  $("choose").setAttribute("aria-expanded", "false");
  $("choose").textContent = pid ? "Follow automatically" : "Choose another piece";
  if (pid && !last) showPage(pid, 0);
  if (last) render(last);
  else if (pid) {
    $("score-title").textContent = `${byId[pid].title} (chosen)`;
    $("system").hidden = true;
    $("cursor").hidden = true;
  }
}

function openChooser() {
  if (pinned) { choose(null); return; }
  const list = $("chooser-list");
  list.textContent = "";
  const ranked = last ? last.top.map((e) => e.piece) : [];
  const ids = [...ranked, ...library.pieces.map((p) => p.id).filter((id) => !ranked.includes(id))];
  const current = shown.piece;
  for (const id of ids) {
    const p = byId[id];
    const li = document.createElement("li");
    if (id === current) li.className = "current";
    li.textContent = p.title;
    if (p.composer) {
      const sub = document.createElement("div");
      sub.className = "sub";
      sub.textContent = p.composer;
      li.appendChild(sub);
    }
    li.onclick = () => choose(id);
    list.appendChild(li);
  }
  const c = $("chooser");
  c.hidden = !c.hidden;
  $("choose").setAttribute("aria-expanded", String(!c.hidden));
}

// ------------------------------------------------------------------ wiring
window.addEventListener("DOMContentLoaded", async () => {
  $("listen").onclick = () => {
    if (audio) { wantStop = true; endStream(); } else startMic();
  };
  $("file").onchange = (e) => {
    const f = e.target.files[0];
    if (f) startFile(f);
    e.target.value = "";
  };
  $("restart").onclick = restart;
  $("choose").onclick = openChooser;
  $("page").onerror = () => banner("error", "This page's image could not be loaded (has its file moved since the library was built?).");
  await loadLibrary();
});
