// vigil live page: cameras and their state (polled), per-camera score charts fed by /ws/scores, recent alerts
// (GET /alerts, then /ws/alerts) with the peak frame's thumbnail and heatmap and a playable clip. Plain JS, no
// dependencies.
// Calibration: each camera shows whether it is learning its reference or which version scores it; operators mark
// alerts as false alarms or confirm them, acknowledge and resolve them (the list filters by that state); a
// threshold slider per camera replays the chart's time range through
// POST /cameras/{id}/replay, so the alerts that threshold would have produced show above the chart.
// The API key is kept in localStorage; REST calls send it as X-API-Key, WebSockets as a subprotocol
// (browsers cannot set headers on a WebSocket, and a query string would put the key into access logs).
"use strict";

const KEY_STORAGE = "vigil.apiKey";
const POINTS = 600; // scores kept per camera chart (24 s at 25 fps)
const MAX_ALERTS = 50; // alerts listed
const CAMERA_POLL_MS = 2000;

const state = {
  key: localStorage.getItem(KEY_STORAGE) || "",
  cameras: new Map(), // id -> {el, canvas, stateEl, scoreEl, points: [{frame, score}], dirty}
  alerts: new Map(), // id -> {alert, el, thumbFrame}
  sockets: {},
  // Counters the headless-browser test reads; also handy in the devtools console.
  stats: { scores: 0, alertEvents: 0, thumbnails: 0, heatmaps: 0, replays: 0, feedback: 0, acks: 0, clips: 0 },
  filter: "all", // which alerts the list shows: all, open, unacknowledged, acknowledged, resolved
};
window.vigil = state;

function $(id) {
  return document.getElementById(id);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // textContent only: data never becomes markup
  return node;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, body) {
  const headers = state.key ? { "X-API-Key": state.key } : {};
  const init = { headers, cache: "no-store" };
  if (body !== undefined) {
    Object.assign(init, { method: "POST", body: JSON.stringify(body) });
    headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    showMessage(`API key refused: ${body.detail || resp.status}. Enter a viewer key above.`);
    throw new Error(`auth ${resp.status}`);
  }
  return resp;
}

// --- cameras -------------------------------------------------------------------------------------------

function cameraCard(id) {
  let cam = state.cameras.get(id);
  if (cam) return cam;
  const card = el("div", "camera");
  card.dataset.camera = id;
  const head = el("div", "camera-head");
  const stateEl = el("span", "state", "pending");
  const scoreEl = el("span", "score", "score –");
  const modelEl = el("span", "muted", "");
  const calibEl = el("span", "calib", "calibration –");
  head.append(el("span", "camera-id", id), stateEl, calibEl, modelEl, scoreEl);
  const canvas = el("canvas", "chart");
  const controls = replayControls(id);
  card.append(head, canvas, controls.box);
  $("cameras").append(card);
  $("no-cameras").hidden = true;
  cam = { el: card, canvas, stateEl, scoreEl, modelEl, calibEl, points: [], dirty: true };
  Object.assign(cam, { threshold: null, replay: null, sliderTouched: false });
  Object.assign(cam, { slider: controls.slider, sliderLabel: controls.label, replayEl: controls.result });
  state.cameras.set(id, cam);
  return cam;
}

async function refreshCameras() {
  try {
    const resp = await api("/cameras");
    if (!resp.ok) throw new Error(`GET /cameras: ${resp.status}`);
    const cameras = await resp.json();
    const seen = new Set();
    for (const c of cameras) {
      seen.add(c.id);
      const cam = cameraCard(c.id);
      cam.stateEl.textContent = c.state;
      cam.stateEl.className = `state state-${c.state}`;
      cam.el.dataset.state = c.state;
      cam.modelEl.textContent = c.model;
      refreshCalibration(c.id, cam);
      renderHealth(cam, c.conditions);
    }
    for (const [id, cam] of state.cameras) {
      if (!seen.has(id)) {
        cam.el.remove();
        state.cameras.delete(id);
      }
    }
    $("no-cameras").hidden = state.cameras.size > 0;
  } catch (e) {
    console.warn("cameras:", e);
  }
}

// --- camera health -------------------------------------------------------------------------------------------

// The camera's raised health conditions (GET /cameras lists them; GET /cameras/{id}/health has since-when and
// details): a badge beside its state. Frames flagged by them are scored but never alert.
function renderHealth(cam, conditions) {
  if (!cam.healthEl) {
    cam.healthEl = el("span", "health");
    cam.stateEl.after(cam.healthEl);
  }
  const raised = conditions || [];
  cam.healthEl.textContent = raised.length ? `health: ${raised.join(", ").replaceAll("_", " ")}` : "health ok";
  cam.healthEl.className = raised.length ? "health health-bad" : "health health-ok";
  cam.el.dataset.health = raised.length ? raised.join(" ") : "ok";
}

// --- score charts --------------------------------------------------------------------------------------

function onScore(msg) {
  const cam = cameraCard(msg.camera);
  cam.points.push({ frame: msg.frame, score: msg.score, ts: msg.capture_ts, alertable: msg.alertable !== false });
  if (cam.points.length > POINTS) cam.points.splice(0, cam.points.length - POINTS);
  cam.scoreEl.textContent = `score ${msg.score.toFixed(3)} · frame ${msg.frame}`;
  cam.el.dataset.points = String(cam.points.length);
  cam.dirty = true;
  state.stats.scores += 1;
}

function alertSpans(cameraId) {
  const spans = [];
  for (const { alert } of state.alerts.values()) {
    if (alert.camera === cameraId) spans.push([alert.start_frame, alert.end_frame ?? Infinity]);
  }
  return spans;
}

function drawChart(id, cam) {
  const canvas = cam.canvas;
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0c1014";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#2a323b"; // grid at 0.25, 0.5, 0.75
  for (const g of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(0, h - g * h);
    ctx.lineTo(w, h - g * h);
    ctx.stroke();
  }
  const pts = cam.points;
  if (pts.length === 0) return;
  const first = pts[0].frame;
  const span = Math.max(POINTS, pts[pts.length - 1].frame - first + 1);
  const x = (frame) => ((frame - first) / span) * w;
  ctx.fillStyle = "rgba(138, 150, 163, 0.18)"; // frames held back (the camera is learning or settling)
  for (const p of pts) if (!p.alertable) ctx.fillRect(x(p.frame), 0, Math.max(1, w / span), h);
  ctx.fillStyle = "rgba(255, 90, 95, 0.25)"; // frames inside alerts of this camera
  for (const [start, end] of alertSpans(id)) {
    const x0 = Math.max(0, x(start));
    const x1 = Math.min(w, end === Infinity ? w : x(end + 1));
    if (x1 > x0) ctx.fillRect(x0, 0, x1 - x0, h);
  }
  ctx.fillStyle = "rgba(255, 176, 64, 0.9)"; // the what-if replay's alerts: a band along the top
  for (const a of (cam.replay && cam.replay.alerts) || []) {
    const x0 = Math.max(0, x(a.start_frame));
    const x1 = Math.min(w, a.end_frame === null ? w : x(a.end_frame + 1));
    if (x1 > x0) ctx.fillRect(x0, 0, x1 - x0, 5 * dpr);
  }
  const threshold = cam.sliderTouched ? Number(cam.slider.value) : cam.threshold;
  if (threshold !== null) {
    ctx.strokeStyle = "#ffb040"; // the alert threshold (or the one being tried)
    ctx.setLineDash([4 * dpr, 4 * dpr]);
    ctx.beginPath();
    ctx.moveTo(0, h - threshold * (h - 2 * dpr) - dpr);
    ctx.lineTo(w, h - threshold * (h - 2 * dpr) - dpr);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#4fb3ff";
  ctx.lineWidth = 1.5 * dpr;
  ctx.beginPath();
  pts.forEach((p, i) => {
    const y = h - p.score * (h - 2 * dpr) - dpr;
    if (i === 0) ctx.moveTo(x(p.frame), y);
    else ctx.lineTo(x(p.frame), y);
  });
  ctx.stroke();
}

function drawLoop() {
  for (const [id, cam] of state.cameras) {
    if (cam.dirty) {
      cam.dirty = false;
      drawChart(id, cam);
    }
  }
  requestAnimationFrame(drawLoop);
}

// --- calibration and what-if replay ----------------------------------------------------------------------

async function refreshCalibration(id, cam) {
  try {
    const resp = await api(`/cameras/${encodeURIComponent(id)}/calibration`);
    if (!resp.ok) return;
    const view = await resp.json();
    cam.threshold = view.threshold;
    if (!cam.sliderTouched) {
      cam.slider.value = String(view.threshold);
      cam.sliderLabel.textContent = thresholdText(view.threshold);
    }
    const learning = Object.entries(view.learning);
    let text = "new: nothing scored yet";
    if (learning.length) {
      const [profile, l] = learning[0];
      text = `learning ${profile}: ${Math.min(100, Math.round((100 * l.seconds) / l.target_s))}% (alerts held back)`;
    } else if (view.state === "ready") {
      text = `calibrated v${view.version} · ${view.profile}`;
    }
    cam.calibEl.textContent = text;
    cam.calibEl.dataset.state = view.state;
    cam.calibEl.dataset.version = String(view.version);
    cam.dirty = true;
  } catch (e) {
    console.warn("calibration:", e);
  }
}

function thresholdText(threshold) {
  // The score scale: 0.5 = reached about once an hour by the camera's normal footage; each 0.1 is a factor of 10.
  const perHour = 10 ** ((0.5 - threshold) / 0.1);
  const rate = perHour >= 1 ? `${perHour.toPrecision(2)}×/h` : `once per ${(1 / perHour).toPrecision(2)} h`;
  return `threshold ${threshold.toFixed(2)} (normal footage reaches it ${rate})`;
}

function replayControls(id) {
  const box = el("div", "replay");
  const slider = el("input");
  Object.assign(slider, { type: "range", min: "0.05", max: "0.95", step: "0.01", value: "0.5" });
  slider.setAttribute("aria-label", `what-if alert threshold for ${id}`);
  const label = el("span", "muted", thresholdText(0.5));
  const result = el("span", "replay-result", "");
  box.append(el("span", "", "what if:"), slider, label, result);
  slider.addEventListener("input", () => {
    const cam = state.cameras.get(id);
    cam.sliderTouched = true;
    label.textContent = thresholdText(Number(slider.value));
    cam.dirty = true;
  });
  slider.addEventListener("change", () => runReplay(id));
  return { box, slider, label, result };
}

async function runReplay(id) {
  const cam = state.cameras.get(id);
  const pts = cam.points;
  if (!pts.length) return;
  const body = { start: pts[0].ts, end: pts[pts.length - 1].ts, threshold: Number(cam.slider.value) };
  try {
    const resp = await api(`/cameras/${encodeURIComponent(id)}/replay`, body);
    const result = await resp.json();
    if (!resp.ok) {
      cam.replayEl.textContent = `replay: ${result.detail}`;
      return;
    }
    cam.replay = result;
    cam.replayEl.textContent = `${result.alerts.length} alert(s) over the last ${result.frames} frames`;
    cam.el.dataset.replayAlerts = String(result.alerts.length);
    state.stats.replays += 1;
    cam.dirty = true;
  } catch (e) {
    console.warn("replay:", e);
  }
}

// --- alerts --------------------------------------------------------------------------------------------

function fmtTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString() : "–";
}

// The peak frame's pictures: its thumbnail, and its heatmap (where the model saw the anomaly) for models with a
// localisation map; a heatmap that does not come (a model without maps) leaves no slot.
const PICTURES = {
  thumbnail: { cls: "thumb", alt: "peak frame", stat: "thumbnails" },
  heatmap: { cls: "heat", alt: "heatmap of the peak frame", stat: "heatmaps" },
};

function loadThumbnail(entry) {
  entry.thumbFrame = entry.alert.peak_frame;
  loadPicture(entry, "thumbnail");
  loadPicture(entry, "heatmap");
}

async function loadPicture(entry, kind, attempt = 0) {
  const { alert } = entry;
  const pic = PICTURES[kind];
  try {
    const resp = await api(`/alerts/${encodeURIComponent(alert.id)}/${kind}.jpg`);
    if (resp.status === 404 && attempt < 5) {
      // The worker stores the picture right after the event: try again shortly.
      setTimeout(() => loadPicture(entry, kind, attempt + 1), 1000);
      return;
    }
    if (!resp.ok) return;
    const url = URL.createObjectURL(await resp.blob());
    const img = el("img");
    img.alt = `${pic.alt} ${alert.peak_frame} of ${alert.camera}`;
    img.title = kind === "heatmap" ? "where the model saw the anomaly" : "";
    img.onload = () => {
      state.stats[pic.stat] += 1;
      entry.el.dataset[kind] = "loaded";
    };
    img.src = url;
    const old = entry.el.querySelector(`.${pic.cls}`);
    old.replaceWith(Object.assign(img, { className: pic.cls }));
    if (old.src) URL.revokeObjectURL(old.src);
  } catch (e) {
    console.warn(`${kind}:`, e);
  }
}

// Alert clips (GET /alerts/{id}/clip.mp4): an alert read carries `clip` once its ingester wrote one (partial while the
// alert is open). The button fetches the current clip with the key as a header into a blob URL a <video> plays
// (a <video src> request could not carry the key); an alert without a clip yet is looked up again a few times.
const CLIP_CHECKS = 10;
const CLIP_CHECK_MS = 3000;

function clipRow(entry) {
  const { alert } = entry;
  const row = el("div", "clip-row");
  if (!alert.clip) {
    if ((entry.clipChecks || 0) < CLIP_CHECKS && !entry.clipCheck) {
      entry.clipCheck = setTimeout(() => recheckClip(entry), CLIP_CHECK_MS);
    }
    return row;
  }
  const button = el("button", "play-clip", alert.state === "open" ? "Play clip (so far)" : "Play clip");
  button.type = "button";
  button.addEventListener("click", () => playClip(entry, button));
  row.append(button);
  return row;
}

async function recheckClip(entry) {
  entry.clipCheck = null;
  entry.clipChecks = (entry.clipChecks || 0) + 1;
  try {
    const resp = await api(`/alerts/${encodeURIComponent(entry.alert.id)}`);
    if (!resp.ok) return;
    const alert = await resp.json();
    if (state.alerts.get(alert.id) === entry) {
      entry.alert = alert;
      renderAlert(entry);
    }
  } catch (e) {
    console.warn("clip:", e);
  }
}

async function playClip(entry, button) {
  button.disabled = true;
  try {
    const resp = await api(entry.alert.clip);
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      showMessage(`clip: ${body.detail || resp.status}`);
      return;
    }
    const video = el("video", "clip");
    Object.assign(video, { controls: true, muted: true, autoplay: true, playsInline: true });
    video.addEventListener("loadedmetadata", () => {
      state.stats.clips += 1;
      entry.el.dataset.clip = "loaded";
    });
    const old = entry.el.querySelector("video.clip");
    if (old) {
      URL.revokeObjectURL(old.src);
      old.remove();
    }
    video.src = URL.createObjectURL(await resp.blob());
    entry.el.querySelector(".alert-body").after(video);
  } catch (e) {
    console.warn("clip:", e);
  } finally {
    button.disabled = false;
  }
}

function renderAlert(entry) {
  const { alert } = entry;
  const li = entry.el || el("li");
  li.className = `alert ${alert.state}`;
  li.dataset.alert = alert.id;
  li.dataset.camera = alert.camera;
  li.dataset.ack = alert.ack ? alert.ack.state : "unacknowledged";
  li.hidden = !matchesFilter(alert);
  if (!entry.el) {
    const heat = el("div", "heat");
    heat.hidden = true; // until a heatmap loads
    li.append(el("div", "thumb thumb-missing", "no picture"), heat, el("div", "alert-body"));
    entry.el = li;
  }
  const body = li.querySelector(".alert-body");
  const end = alert.end_frame === null ? "…" : alert.end_frame;
  body.replaceChildren(
    el("div", "", `${alert.camera} `),
    el("div", "alert-state", alert.state === "open" ? "OPEN" : "closed"),
    el("div", "", `peak ${alert.peak_score.toFixed(3)} at frame ${alert.peak_frame}`),
    el("div", "muted", `frames ${alert.start_frame}–${end} · ${fmtTime(alert.start_ts)}`),
    feedbackRow(alert),
    ackRow(alert),
    clipRow(entry),
  );
  body.firstChild.append(el("span", "muted", alert.model));
  if (entry.thumbFrame !== alert.peak_frame) loadThumbnail(entry);
}

function feedbackRow(alert) {
  const row = el("div", "feedback");
  if (alert.feedback) {
    const label = alert.feedback.verdict === "false_alarm" ? "marked a false alarm" : "confirmed";
    row.append(el("span", `verdict verdict-${alert.feedback.verdict}`, `${label} (${alert.feedback.role})`));
    row.dataset.verdict = alert.feedback.verdict;
    return row;
  }
  for (const [verdict, text] of [["false_alarm", "False alarm"], ["confirmed", "Confirm"]]) {
    const button = el("button", `give-${verdict}`, text);
    button.type = "button";
    button.addEventListener("click", () => giveFeedback(alert.id, verdict, button));
    row.append(button);
  }
  return row;
}

async function giveFeedback(id, verdict, button) {
  button.disabled = true;
  try {
    const resp = await api(`/alerts/${encodeURIComponent(id)}/feedback`, { verdict });
    const body = await resp.json();
    if (!resp.ok) {
      showMessage(`feedback on ${id}: ${body.detail}`);
      button.disabled = false;
      return;
    }
    state.stats.feedback += 1;
    upsertAlert(body); // the event on /ws/alerts carries it to every other open page too
  } catch (e) {
    button.disabled = false;
    console.warn("feedback:", e);
  }
}

// --- acknowledging -----------------------------------------------------------------------------------------
// POST /alerts/{id}/ack (operator key): acknowledged, then resolved; the event on /ws/alerts updates every open page.

function ackRow(alert) {
  const row = el("div", "ack");
  const ack = alert.ack;
  if (ack) {
    const note = ack.note ? `: ${ack.note}` : "";
    row.append(el("span", `ack-state ack-${ack.state}`, `${ack.state} (${ack.role}, ${fmtTime(ack.ts)})${note}`));
  }
  let actions = [["acknowledge", "Acknowledge"], ["resolve", "Resolve"]];
  if (ack) actions = ack.state === "acknowledged" ? actions.slice(1) : [];
  if (!actions.length) return row;
  const input = el("input", "ack-note");
  Object.assign(input, { type: "text", placeholder: "note", maxLength: 1000 });
  row.append(input);
  for (const [action, text] of actions) {
    const button = el("button", `do-${action}`, text);
    button.type = "button";
    button.addEventListener("click", () => giveAck(alert.id, action, input.value, button));
    row.append(button);
  }
  return row;
}

async function giveAck(id, action, note, button) {
  button.disabled = true;
  try {
    const resp = await api(`/alerts/${encodeURIComponent(id)}/ack`, { action, note });
    const body = await resp.json();
    if (!resp.ok) {
      showMessage(`${action} ${id}: ${body.detail}`);
      button.disabled = false;
      return;
    }
    state.stats.acks += 1;
    upsertAlert(body);
  } catch (e) {
    button.disabled = false;
    console.warn("ack:", e);
  }
}

function matchesFilter(alert) {
  const f = state.filter;
  if (f === "all") return true;
  if (f === "open") return alert.state === "open";
  return (alert.ack ? alert.ack.state : "unacknowledged") === f;
}

function applyFilter() {
  for (const entry of state.alerts.values()) entry.el.hidden = !matchesFilter(entry.alert);
}

function upsertAlert(alert) {
  let entry = state.alerts.get(alert.id);
  if (!entry) {
    entry = { alert, el: null, thumbFrame: null };
    state.alerts.set(alert.id, entry);
  }
  entry.alert = alert;
  renderAlert(entry);
  // Newest first; forget the oldest beyond MAX_ALERTS.
  const sorted = [...state.alerts.values()].sort((a, b) => b.alert.start_ts - a.alert.start_ts);
  for (const old of sorted.slice(MAX_ALERTS)) {
    old.el.remove();
    state.alerts.delete(old.alert.id);
  }
  $("alerts").replaceChildren(...sorted.slice(0, MAX_ALERTS).map((e) => e.el));
  $("no-alerts").hidden = state.alerts.size > 0;
  const cam = state.cameras.get(alert.camera);
  if (cam) cam.dirty = true;
}

async function alertPage(since, limit) {
  const resp = await api(`/alerts?since=${since}&limit=${limit}`);
  if (!resp.ok) throw new Error(`GET /alerts: ${resp.status}`);
  return resp.json();
}

// GET /alerts pages oldest change first from a revision cursor. To show only the newest MAX_ALERTS without
// reading the whole retention window, find the smallest cursor with at most MAX_ALERTS changes after it:
// an exponential probe for the newest revision, then a binary search (about 2 log2(revisions) small requests).
async function recentCursor() {
  const more = async (since) => (await alertPage(since, MAX_ALERTS + 1)).alerts.length > MAX_ALERTS;
  if (!(await more(0))) return 0;
  let lo = 0; // more(lo) holds
  let hi = 1;
  while (await more(hi)) [lo, hi] = [hi, hi * 2];
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await more(mid)) lo = mid;
    else hi = mid;
  }
  return hi;
}

async function loadRecentAlerts() {
  const body = await alertPage(await recentCursor(), MAX_ALERTS);
  body.alerts.forEach(upsertAlert);
}

// --- WebSockets ----------------------------------------------------------------------------------------

function setConn(topic, text) {
  $(`conn-${topic}`).textContent = `${topic}: ${text}`;
  $("conn").dataset[topic] = text;
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  const b64 = btoa(String.fromCharCode(...bytes));
  return b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function openSocket(topic, onMessage, delayMs = 500) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // The key travels as a subprotocol, not in the URL (URLs end up in access logs): see routes/ui.py.
  const protocols = state.key ? ["vigil", `key.${base64url(state.key)}`] : [];
  const ws = new WebSocket(`${proto}//${location.host}/ws/${topic}`, protocols);
  state.sockets[topic] = ws;
  setConn(topic, "connecting");
  ws.onopen = () => {
    setConn(topic, "open");
    delayMs = 500;
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (state.sockets[topic] !== ws) return; // replaced after a key change
    if (ev.code === 1008) showMessage(`WebSocket refused the key: ${ev.reason}. Enter a viewer key above.`);
    setConn(topic, "closed, retrying");
    setTimeout(() => openSocket(topic, onMessage, Math.min(delayMs * 2, 10000)), delayMs);
  };
}

function onAlertEvent(event) {
  state.stats.alertEvents += 1;
  upsertAlert(event.alert);
}

function connect() {
  const old = Object.values(state.sockets);
  state.sockets = {}; // before close(): their onclose handlers must not reconnect with the old key
  old.forEach((ws) => ws.close());
  showMessage("");
  openSocket("scores", onScore);
  openSocket("alerts", onAlertEvent);
  refreshCameras();
  loadRecentAlerts().catch((e) => console.warn("alerts:", e));
}

function start() {
  $("key-input").value = state.key;
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("key-input").value.trim();
    localStorage.setItem(KEY_STORAGE, state.key);
    connect();
  });
  $("alert-filter").addEventListener("change", (ev) => {
    state.filter = ev.target.value;
    applyFilter();
  });
  connect();
  setInterval(refreshCameras, CAMERA_POLL_MS);
  requestAnimationFrame(drawLoop);
}

document.addEventListener("DOMContentLoaded", start);
