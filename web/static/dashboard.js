// The livecoach dashboard: one page for the athlete (own session, "coach is watching")
// and for the coach (several athletes, pick one). No framework, no build step.
//
// URL parameters: token in the fragment, #token=..., which no server sees (the edge
// redirects ?token= there); moved to sessionStorage and removed from the address bar;
// athletes (coach: ids to watch; all the coach's athletes without it), session (a live session id), and, for tests and
// flaky networks, backoff_base_ms, backoff_max_ms, heartbeat_ms.

import { LiveCoachClient } from "./livecoach.js";
import { CHARTS, SessionChart, sessionSeries, timeInZones, zoneBands } from "./charts.js";
import { alertText } from "./alerttext.js";
import { Leaderboard } from "./leaderboard.js";

const API = "/api/v1/live";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// --- state --------------------------------------------------------------------------------

const ui = {
  me: null, // {id, role}
  client: null,
  athletes: new Map(), // athlete id -> AthleteView
  focus: null, // athlete id shown in the detail panel
  wantedAthletes: [],
  wantedSession: null,
  notified: new Set(), // alert ids already announced (a replay does not beep twice)
  prefs: loadPrefs(),
  audio: null,
  typingSent: 0,
  typingTimer: null,
  tokenWaiter: null,
  people: new Map(), // user id -> {id, name, role} (GET /roster)
  roster: null, // the roster's answer (null: not loaded, or an older edge without it)
  charts: {}, // kind -> SessionChart (the detail panel's)
  picked: null, // Set of athlete ids the coach chose to show (null: all)
  dirtyCards: new Set(), // athlete ids whose card changed since the last frame
  cardFrame: 0,
  board: null, // the group's Leaderboard (?group=<id>)
};

/** A live event's time in epoch seconds (ISO text or a number; now when absent). */
function eventTime(ev) {
  if (typeof ev.timestamp === "number") return ev.timestamp;
  const t = typeof ev.timestamp === "string" ? Date.parse(ev.timestamp) : NaN;
  return Number.isFinite(t) ? t / 1000 : Date.now() / 1000;
}

/** How long after its last sign of life an athlete still counts as online. */
const ONLINE_MS = 20000;

function newAthlete(id) {
  return {
    id,
    sessionId: null,
    sessionState: null,
    metrics: {},
    metricsAt: 0,
    alerts: new Map(), // alert id -> alert
    messages: new Map(), // message id -> {id, from, text, readAt, cmid}
    pending: new Map(), // client_message_id -> {text, status}
    watchers: new Map(), // watcher id -> role
    typing: new Map(), // sender id -> until (ms)
    readSent: 0, // seq of the newest message this page marked read
    othersReadUpTo: 0, // seq up to which the other side has read
    retired: new Set(), // session ids this view moved on from (ids are UUIDs: no order)
    sport: null, // the session's (metadata.sport): a ride shows speed, a run pace
    series: sessionSeries(), // chart kind -> Series of this session
    laps: new Map(), // lap index -> lap summary (session_event "lap")
    profile: null, // thresholds (zones), loaded when first shown
    error: null, // why this athlete cannot be shown (not linked, no such athlete)
    lastSeenMs: 0, // the last metrics of this athlete (Date.now())
    present: false, // the athlete's own dashboard or device is connected (presence)
  };
}

function athlete(id) {
  let view = ui.athletes.get(id);
  if (!view) {
    view = newAthlete(id);
    ui.athletes.set(id, view);
  }
  return view;
}

function loadPrefs() {
  try {
    return { sound: true, vibration: true, ...JSON.parse(localStorage.getItem("livecoach.prefs") || "{}") };
  } catch (_) {
    return { sound: true, vibration: true };
  }
}

// --- REST -----------------------------------------------------------------------------------

/** REST calls in flight at most (a grid of 50 athletes loads without a burst), and
 * the edge's per-user limit (429 with Retry-After) waited out, a few times. */
const API_CONCURRENCY = 4;
const apiQueue = { active: 0, waiting: [] };

async function api(path, init = {}) {
  if (apiQueue.active >= API_CONCURRENCY) await new Promise((go) => apiQueue.waiting.push(go));
  apiQueue.active += 1;
  try {
    for (let attempt = 0; ; attempt++) {
      const headers = { Authorization: `Bearer ${ui.client?.token || ""}`, ...(init.headers || {}) };
      if (init.body !== undefined) headers["Content-Type"] = "application/json";
      const resp = await fetch(API + path, { ...init, headers, cache: "no-store" });
      if (resp.status === 429 && attempt < 4) {
        const wait = Number(resp.headers.get("Retry-After")) || 1;
        await new Promise((r) => setTimeout(r, Math.min(10, wait) * 1000 * (1 + Math.random() / 2)));
        continue;
      }
      const body = resp.status === 204 ? null : await resp.json().catch(() => null);
      if (!resp.ok) throw Object.assign(new Error(body?.detail || resp.statusText), { status: resp.status, body });
      return body;
    }
  } finally {
    apiQueue.active -= 1;
    apiQueue.waiting.shift()?.();
  }
}

// --- formatting -----------------------------------------------------------------------------

const num = (v, digits = 0) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");

function clock(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

// The plan's current interval: time (or distance) left, then position, name and target.
function intervalLeft(i) {
  if (!i) return "–";
  if (i.remaining_s != null) return clock(i.remaining_s);
  return i.remaining_m != null ? `${num(i.remaining_m)} m` : "–";
}

function intervalSub(i) {
  if (!i) return "no plan";
  const t = i.target || {};
  const range = (r, f, unit) => `${f(r[0])}–${f(r[1])} ${unit}`;
  const targets = [
    t.power_w && range(t.power_w, (v) => num(v), "W"),
    t.pace_s_per_km && range(t.pace_s_per_km, clock, "/km"),
    t.heart_rate_bpm && range(t.heart_rate_bpm, (v) => num(v), "bpm"),
  ].filter(Boolean);
  const head = `${i.index + 1}/${i.count}${i.name ? ` ${i.name}` : ""}`;
  return [head, ...targets].join(" · ");
}

const TILES = [
  { key: "interval", label: "Interval", unit: "left", value: (m) => intervalLeft(m.interval), sub: (m) => intervalSub(m.interval) },
  { key: "heart_rate", label: "Heart rate", unit: "bpm", value: (m) => num(m.heart_rate), sub: (m) => (m.hr_zone ? `zone ${m.hr_zone}` : m.hr_avg_30s != null ? `30 s avg ${num(m.hr_avg_30s)}` : "") },
  { key: "power", label: "Power", unit: "W", value: (m) => num(m.power), sub: (m) => (m.power_3s != null ? `3 s avg ${num(m.power_3s)}` : "") },
  // The wire's pace is minutes per km (5.5 = 5:30) and its distance km; pace_s_per_km is
  // the same pace in seconds, which clock() formats.
  { key: "pace", label: "Pace", unit: "/km", value: (m) => (m.pace_s_per_km ? clock(m.pace_s_per_km) : "–"), sub: (m) => (m.speed_m_s != null ? `${num(m.speed_m_s * 3.6, 1)} km/h` : "") },
  { key: "distance", label: "Distance", unit: "km", value: (m) => (m.distance != null ? num(m.distance, 2) : "–"), sub: (m) => (m.elapsed_s != null ? `time ${clock(m.elapsed_s)}` : "") },
  { key: "cadence", label: "Cadence", unit: "rpm", value: (m) => num(m.cadence), sub: () => "" },
  { key: "zones", label: "Zones", unit: "", value: (m) => m.hr_zone || m.power_zone || m.pace_zone || "–", sub: (m) => [m.hr_zone && `HR ${m.hr_zone}`, m.power_zone && `P ${m.power_zone}`, m.pace_zone && `pace ${m.pace_zone}`].filter(Boolean).join(" · ") },
  { key: "np", label: "NP", unit: "W", value: (m) => num(m.np), sub: (m) => (m.if != null ? `IF ${num(m.if, 2)}` : m.tss != null ? `TSS ${num(m.tss)}` : "") },
  { key: "w_prime", label: "W′ balance", unit: "%", value: (m) => num(m.w_prime_bal_pct), sub: (m) => (m.w_prime_bal_j != null ? `${num(m.w_prime_bal_j / 1000, 1)} kJ` : "") },
];

function buildTiles() {
  const box = $("tiles");
  box.replaceChildren();
  for (const t of TILES) {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.dataset.metric = t.key;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = t.label;
    const value = document.createElement("span");
    const v = document.createElement("span");
    v.className = "value";
    v.id = `m-${t.key}`;
    v.textContent = "–";
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = t.unit;
    value.append(v, unit);
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.id = `s-${t.key}`;
    tile.append(label, value, sub);
    box.append(tile);
  }
}

/** A person's display name (users.name from GET /roster); "You" for oneself. */
function personName(id, role) {
  if (ui.me && id === ui.me.id) return "You";
  return displayName(id, role);
}

function displayName(id, role) {
  const p = ui.people.get(id);
  if (p?.name) return p.name;
  const r = role || p?.role;
  return `${r === "coach" ? "Coach" : "Athlete"} ${String(id).slice(0, 8)}`;
}

function isOnline(view) {
  return view.present || (view.lastSeenMs > 0 && Date.now() - view.lastSeenMs < ONLINE_MS);
}

// --- rendering ------------------------------------------------------------------------------

function renderConn() {
  const c = ui.client;
  const pill = $("conn");
  const state = c ? c.state : "idle";
  pill.dataset.state = state;
  document.body.dataset.state = state;
  document.body.dataset.connects = String(c ? c.connects : 0);
  let text = { idle: "not connected", connecting: "connecting…", open: "live", stopped: "disconnected" }[state];
  if (state === "waiting" && !c.nextRetryAt) text = "waiting for a new token";
  else if (state === "waiting") {
    const s = Math.max(0, Math.ceil((c.nextRetryAt - Date.now()) / 1000));
    text = `reconnecting in ${s} s`;
  }
  setText(pill, text);
  const q = c ? c.queue.length : 0;
  $("queued").hidden = q === 0;
  setText($("queued"), `${q} queued`);
}

/** A ride's pace tile shows speed (km/h first), a run's pace. */
const SPEED_TILE = {
  key: "pace",
  label: "Speed",
  unit: "km/h",
  value: (m) => (m.speed_m_s != null ? num(m.speed_m_s * 3.6, 1) : "–"),
  sub: (m) => (m.pace_s_per_km ? `${clock(m.pace_s_per_km)} /km` : ""),
};

/** A ride's zones: heart rate and power (pace zones are a runner's). */
const RIDE_ZONES_TILE = {
  key: "zones",
  label: "Zones",
  unit: "",
  value: (m) => m.power_zone || m.hr_zone || "–",
  sub: (m) => [m.hr_zone && `HR ${m.hr_zone}`, m.power_zone && `P ${m.power_zone}`].filter(Boolean).join(" · "),
};

function renderTiles() {
  const view = ui.athletes.get(ui.focus);
  const m = view ? view.metrics : {};
  for (const base of TILES) {
    const t = base.key === "pace" && isRide(view) ? SPEED_TILE : base.key === "zones" && isRide(view) ? RIDE_ZONES_TILE : base;
    setText($(`m-${t.key}`), t.value(m));
    setText($(`s-${t.key}`), t.sub(m));
    const tile = $(`m-${t.key}`).closest(".tile");
    setText(tile.querySelector(".label"), t.label);
    setText(tile.querySelector(".unit"), t.unit);
  }
}

function renderHeader() {
  const view = ui.athletes.get(ui.focus);
  const coach = ui.me?.role === "coach";
  const title = $("detail-title");
  if (!view) title.textContent = coach ? "Pick an athlete" : "Waiting for a live session…";
  else if (!view.sessionId) title.textContent = `${coach ? displayName(view.id, "athlete") : "My session"} — waiting for a live session…`;
  else title.textContent = `${coach ? displayName(view.id, "athlete") : "My session"} · session ${view.sessionId}`;
  $("session-state").textContent = view?.sessionState || "";
  $("session-state").hidden = !view?.sessionState;
  $("back").hidden = !coach || !view;
  $("detail").hidden = coach && !view;
  document.body.dataset.view = coach ? (view ? "coach-detail" : "coach-grid") : "athlete";
  const online = $("online");
  online.hidden = !coach || !view;
  if (coach && view) {
    online.textContent = isOnline(view) ? "online" : "offline";
    online.dataset.state = isOnline(view) ? "open" : "stopped";
  }
  const chatOk = !!view?.sessionId;
  $("chat-input").disabled = !chatOk;
  $("chat-send").disabled = !chatOk;
  $("chat-input").placeholder = chatOk ? "Message" : "No live session yet";
  $("lap").disabled = !chatOk || !["running", "active", null].includes(view?.sessionState ?? null);
  // presence
  if (view && ui.me) {
    const coaches = [...view.watchers].filter(([id, role]) => id !== ui.me.id && role === "coach");
    const names = coaches.map(([id]) => displayName(id, "coach"));
    if (ui.me.role === "athlete") {
      $("watching").hidden = coaches.length === 0;
      $("watching").textContent = coaches.length > 1 ? `Coaches ${names.join(", ")} are watching` : `Coach ${names[0] || ""} is watching`;
      $("also-watching").textContent = "";
    } else {
      $("also-watching").textContent = coaches.length ? `also watching: ${names.join(", ")}` : "";
    }
  }
}

/** Heart rate, power or pace as % of the plan's current target (its middle); "" without one. */
function ofTarget(m) {
  const t = m.interval?.target;
  if (!t) return "";
  const mid = (r) => (r[0] + r[1]) / 2;
  if (t.power_w && typeof m.power === "number") return `power ${num((100 * m.power) / mid(t.power_w))} % of target`;
  if (t.pace_s_per_km && m.pace_s_per_km) return `pace ${num((100 * mid(t.pace_s_per_km)) / m.pace_s_per_km)} % of target`;
  if (t.heart_rate_bpm && typeof m.heart_rate === "number") return `HR ${num((100 * m.heart_rate) / mid(t.heart_rate_bpm))} % of target`;
  return "";
}

const CARD_PARTS = ["head", "line", "target", "zone", "line alerts-count", "card-error"];

function makeCard(view) {
  const card = document.createElement("button");
  card.type = "button";
  card.className = "athlete-card";
  card.dataset.athlete = String(view.id);
  card.addEventListener("click", () => setFocus(view.id));
  const head = document.createElement("span");
  head.className = "head";
  const name = document.createElement("span");
  name.className = "name";
  const dot = document.createElement("span");
  dot.className = "online";
  head.append(name, dot);
  card.append(head);
  for (const cls of CARD_PARTS.slice(1)) {
    const span = document.createElement("span");
    span.className = cls;
    card.append(span);
  }
  return card;
}

/** Set a text only when it changed (an unchanged text costs no mutation, no layout). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setData(el, key, value) {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}

/** One card of the coach's grid, from its athlete's state. */
function renderCard(view, card) {
  const [head, line, target, zone, alerts, error] = card.children;
  const [name, dot] = head.children;
  setText(name, displayName(view.id, "athlete"));
  const online = isOnline(view);
  setText(dot, view.error ? "" : online ? "online" : "offline");
  setData(dot, "online", String(online));
  setData(card, "online", String(online));
  setText(error, view.error || "");
  if (card.classList.contains("has-error") !== !!view.error) card.classList.toggle("has-error", !!view.error);
  const m = view.metrics;
  if (view.error) {
    setText(line, "");
    setText(target, "");
    setText(zone, "");
    setText(alerts, "");
  } else {
    setText(
      line,
      !view.sessionId
        ? "no live session"
        : isRide(view)
          ? `${num(m.heart_rate)} bpm · ${num(m.power)} W · ${m.speed_m_s != null ? num(m.speed_m_s * 3.6, 1) : "–"} km/h`
          : `${num(m.heart_rate)} bpm · ${m.pace_s_per_km ? clock(m.pace_s_per_km) : "–"} /km${typeof m.power === "number" ? ` · ${num(m.power)} W` : ""}`,
    );
    setText(target, ofTarget(m));
    // A ride's pace zones (run thresholds) mean nothing: heart rate and power zones only.
    const z = [m.hr_zone && `HR ${m.hr_zone}`, m.power_zone && `power ${m.power_zone}`, !isRide(view) && m.pace_zone && `pace ${m.pace_zone}`].filter(Boolean);
    const w = typeof m.w_prime_bal_pct === "number" ? `W′ ${num(m.w_prime_bal_pct)} %` : "";
    setText(zone, [z.join(" · "), w].filter(Boolean).join(" · "));
    const open = [...view.alerts.values()].filter((a) => !a.acked).length;
    setText(alerts, open ? `${open} open alert${open > 1 ? "s" : ""}` : "");
  }
  if (card.getAttribute("aria-current") !== String(view.id === ui.focus)) card.setAttribute("aria-current", String(view.id === ui.focus));
  const hidden = ui.picked != null && !ui.picked.has(view.id);
  if (card.hidden !== hidden) card.hidden = hidden;
}

function renderAthleteList() {
  const grid = $("grid");
  if (ui.me?.role !== "coach") {
    grid.hidden = true;
    return;
  }
  grid.hidden = false;
  const nav = $("athlete-list");
  for (const view of ui.athletes.values()) {
    let card = nav.querySelector(`[data-athlete="${view.id}"]`);
    if (!card) {
      card = makeCard(view);
      nav.append(card);
    }
    renderCard(view, card);
  }
  const shown = [...ui.athletes.keys()].filter((id) => ui.picked == null || ui.picked.has(id)).length;
  $("grid-count").textContent = `${shown} of ${ui.athletes.size}`;
  renderPicker();
}

/** Redraw one card at the next frame (a 1 Hz feed of 50 athletes: one pass per frame). */
function cardChanged(view) {
  if (ui.me?.role !== "coach") return;
  ui.dirtyCards.add(view.id);
  if (ui.cardFrame) return;
  ui.cardFrame = requestAnimationFrame(() => {
    ui.cardFrame = 0;
    const nav = $("athlete-list");
    for (const id of ui.dirtyCards) {
      const view = ui.athletes.get(id);
      const card = view && nav.querySelector(`[data-athlete="${id}"]`);
      if (card) renderCard(view, card);
    }
    ui.dirtyCards.clear();
  });
}

function renderPicker() {
  const list = $("picker-list");
  for (const view of ui.athletes.values()) {
    let box = list.querySelector(`input[data-pick="${view.id}"]`);
    if (!box) {
      const label = document.createElement("label");
      box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.pick = view.id;
      box.addEventListener("change", () => {
        const picked = ui.picked ?? new Set(ui.athletes.keys());
        if (box.checked) picked.add(view.id);
        else picked.delete(view.id);
        ui.picked = picked.size === ui.athletes.size ? null : picked;
        savePicked();
        renderAthleteList();
      });
      const text = document.createElement("span");
      label.append(box, text);
      list.append(label);
    }
    box.checked = ui.picked == null || ui.picked.has(view.id);
    box.nextElementSibling.textContent = displayName(view.id, "athlete");
  }
}

function savePicked() {
  if (ui.picked == null) localStorage.removeItem("livecoach.picked");
  else localStorage.setItem("livecoach.picked", JSON.stringify([...ui.picked]));
}

function loadPicked() {
  try {
    const ids = JSON.parse(localStorage.getItem("livecoach.picked") || "null");
    return Array.isArray(ids) ? new Set(ids.filter((id) => ui.athletes.has(id))) : null;
  } catch (_) {
    return null;
  }
}

function renderAlerts() {
  const view = ui.athletes.get(ui.focus);
  const list = $("alerts");
  const alerts = view ? [...view.alerts.values()].sort((a, b) => (b.at || 0) - (a.at || 0)) : [];
  $("alerts-empty").hidden = alerts.length > 0;
  // The newest open alert, above the numbers: what a glance at the handlebars must catch.
  const open = alerts.find((a) => !a.acked);
  const banner = $("alert-banner");
  banner.hidden = !open;
  setText(banner, open ? alertText(open, { own: ui.me?.role === "athlete" }) : "");
  if (open) setData(banner, "severity", open.severity || "warning");
  const seen = new Set();
  for (const a of alerts) {
    seen.add(a.id);
    let li = list.querySelector(`li[data-id="${CSS.escape(a.id)}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = a.id;
      const msg = document.createElement("span");
      msg.className = "alert-text";
      const meta = document.createElement("span");
      meta.className = "meta";
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "ack";
      btn.textContent = "Acknowledge";
      btn.addEventListener("click", () => acknowledge(view, a.id, btn));
      li.append(msg, meta, btn);
    }
    li.className = `alert sev-${a.severity || "warning"}${a.acked ? " acked" : ""}`;
    li.dataset.acked = String(!!a.acked);
    if (a.notified) li.dataset.notified = a.notified;
    li.children[0].textContent = alertText(a, { own: ui.me?.role === "athlete" });
    li.title = a.message || "";
    const when = a.at ? new Date(a.at * 1000).toLocaleTimeString() : "";
    const sev = { critical: "Critical", warning: "Warning", info: "Note" }[a.severity] || "Alert";
    li.children[1].textContent = `${sev} · ${when}${a.acked ? ` · acknowledged${a.ackedBy ? ` by ${personName(a.ackedBy)}` : ""}` : ""}`;
    li.children[2].hidden = !!a.acked;
    list.append(li); // keeps the sorted order
  }
  for (const li of [...list.children]) if (!seen.has(li.dataset.id)) li.remove();
}

function renderMessages() {
  const view = ui.athletes.get(ui.focus);
  const list = $("messages");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const items = [];
  if (view) {
    const byCmid = new Set();
    for (const m of [...view.messages.values()].sort((a, b) => a.seq - b.seq)) {
      items.push({ key: `id-${m.id}`, mine: m.from === ui.me?.id, from: m.from, role: m.role, text: m.text, status: statusOf(view, m), readBy: readBy(m) });
      if (m.cmid) byCmid.add(m.cmid);
    }
    for (const [cmid, p] of view.pending) {
      if (!byCmid.has(cmid)) items.push({ key: `c-${cmid}`, mine: true, from: ui.me?.id, text: p.text, status: p.status });
    }
  }
  const keep = new Set(items.map((i) => i.key));
  for (const li of [...list.children]) if (!keep.has(li.dataset.key)) li.remove();
  for (const item of items) {
    let li = list.querySelector(`li[data-key="${CSS.escape(item.key)}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = item.key;
      const from = document.createElement("span");
      from.className = "from";
      const text = document.createElement("span");
      text.className = "text";
      const status = document.createElement("span");
      status.className = "status";
      li.append(from, text, status);
    }
    li.className = `msg ${item.mine ? "mine" : "theirs"}`;
    li.children[0].textContent = item.mine ? "You" : personName(item.from, item.role || (item.from === view.id ? "athlete" : "coach"));
    li.children[1].textContent = item.text; // text, never HTML
    li.children[2].textContent = item.mine ? { queued: "queued (offline)", sending: "sending…", sent: "✓ sent", read: item.readBy }[item.status] || "" : "";
    li.children[2].dataset.status = item.status || "";
    list.append(li);
  }
  if (stick) list.scrollTop = list.scrollHeight;
  const typing = view ? [...view.typing].filter(([, until]) => until > Date.now()) : [];
  $("typing").hidden = typing.length === 0;
  $("typing").textContent = typing.length
    ? `${typing.map(([id]) => displayName(id, id === view.id ? "athlete" : "coach")).join(", ")} is typing…`
    : "";
}

function statusOf(view, m) {
  if (m.from !== ui.me?.id) return "";
  return m.readers.size || m.readAt ? "read" : "sent";
}

/** "✓✓ read by Ana, Ben" (names of the readers of one of my messages). */
function readBy(m) {
  const names = [...(m.readers || [])].map((id) => displayName(id));
  return names.length ? `✓✓ read by ${names.join(", ")}` : "✓✓ read";
}

function buildCharts() {
  for (const fig of document.querySelectorAll("figure.chart")) {
    const kind = fig.dataset.chart;
    ui.charts[kind] = new SessionChart(fig.querySelector(".plot"), kind);
  }
}

/** The detail panel's charts show the focused athlete's series, zones and targets. */
function renderCharts() {
  const view = ui.athletes.get(ui.focus);
  const bands = zoneBands(view?.profile);
  for (const [slot, chart] of Object.entries(ui.charts)) {
    const kind = slot === "pace" && isRide(view) ? "speed" : slot;
    chart.setKind(kind);
    const fig = chart.el.closest("figure");
    fig.querySelector("figcaption").firstChild.textContent = `${CHARTS[kind].label} `;
    fig.querySelector("figcaption .unit").textContent = CHARTS[kind].unit;
    // A run without a power meter: no empty power chart.
    fig.hidden = ["power", "w_prime"].includes(slot) && !!view && view.sport === "run" && view.series[slot].points === 0;
    if (view) chart.show(view.series[kind]);
    chart.setBands(view?.profile ? bands[kind] : []);
  }
  renderTimeInZones();
}

/** Time in zone under the heart-rate and power charts ("Z2 12:40 · Z3 4:05"). */
function renderTimeInZones() {
  const view = ui.athletes.get(ui.focus);
  ui.tizAt = Date.now();
  const bands = view?.profile ? zoneBands(view.profile) : null;
  for (const kind of ["heart_rate", "power"]) {
    const box = ui.charts[kind]?.el.closest("figure").querySelector(".tiz");
    if (!box) continue;
    const zones = view && bands ? timeInZones(view.series[kind], bands[kind]).filter((z) => z.s >= 1) : [];
    setText(box, zones.length ? `Time in zone: ${zones.map((z) => `${z.name} ${clock(z.s)}`).join(" · ")}` : "");
  }
}

function lapRow(lap) {
  const pace = lap.pace_s_per_km ? `${clock(lap.pace_s_per_km)} /km` : "–";
  const how = { manual: "lap button", distance: "auto (distance)", time: "auto (time)", stop: "session end" }[lap.trigger] || lap.trigger || "";
  return [
    String(lap.index),
    clock(lap.moving_s),
    lap.distance_m != null ? `${num(lap.distance_m / 1000, 2)} km` : "–",
    lap.mean_hr != null ? `${num(lap.mean_hr)} bpm` : "–",
    lap.mean_power != null ? `${num(lap.mean_power)} W` : "–",
    pace,
    how,
  ];
}

function renderLaps() {
  const view = ui.athletes.get(ui.focus);
  const laps = view ? [...view.laps.values()].sort((a, b) => a.index - b.index) : [];
  $("laps").hidden = laps.length === 0;
  $("laps-empty").hidden = laps.length > 0;
  const body = $("laps-body");
  body.replaceChildren(
    ...laps.map((lap) => {
      const tr = document.createElement("tr");
      tr.dataset.lap = String(lap.index);
      for (const cell of lapRow(lap)) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.append(td);
      }
      return tr;
    }),
  );
}

function renderAll() {
  renderConn();
  renderHeader();
  renderTiles();
  renderAthleteList();
  renderAlerts();
  renderMessages();
  renderCharts();
  renderLaps();
}

function setFocus(id) {
  ui.focus = id;
  const view = ui.athletes.get(id);
  $("messages").replaceChildren();
  $("alerts").replaceChildren();
  renderAll();
  if (view) loadProfile(view);
  if (view?.sessionId) {
    markRead(view);
    loadDetail(view).catch((err) => console.warn("livecoach: loading the athlete failed", err));
  }
  if (view && ui.me?.role === "coach") $("detail").scrollIntoView?.({ block: "start" });
}

/** The athlete's thresholds (zone bands on the charts), once per athlete. */
async function loadProfile(view) {
  if (view.profile || view.error || view.profileLoading) return;
  view.profileLoading = true;
  try {
    view.profile = await api(`/athletes/${view.id}/thresholds`);
    if (view.id === ui.focus) renderCharts();
  } catch (err) {
    console.warn("livecoach: no thresholds for the zones", err.message);
  } finally {
    view.profileLoading = false;
  }
}

async function pressLap() {
  const view = ui.athletes.get(ui.focus);
  if (!view?.sessionId) return;
  const button = $("lap");
  button.disabled = true;
  try {
    await api(`/sessions/${view.sessionId}/lap`, { method: "POST", body: "{}" });
    $("lap-note").textContent = `Lap marked at ${new Date().toLocaleTimeString()}`;
    document.body.dataset.lapSent = String(Number(document.body.dataset.lapSent || 0) + 1);
  } catch (err) {
    $("lap-note").textContent = `Lap not marked: ${err.message}`;
  } finally {
    setTimeout(() => renderHeader(), 1000); // a second between laps: no double taps
  }
}

// --- alerts: sound, vibration, acknowledgement ----------------------------------------------

function beep(severity) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return false;
  try {
    ui.audio = ui.audio || new Ctx();
    const ctx = ui.audio;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const pulses = severity === "critical" ? 3 : severity === "warning" ? 2 : 1;
    const freq = severity === "critical" ? 1046 : severity === "warning" ? 880 : 660;
    for (let i = 0; i < pulses; i++) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const t0 = ctx.currentTime + i * 0.25;
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.3, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0);
      osc.stop(t0 + 0.2);
    }
    return true;
  } catch (err) {
    console.warn("livecoach: no sound", err);
    return false;
  }
}

function notify(alert) {
  if (ui.notified.has(alert.id)) return;
  ui.notified.add(alert.id);
  const did = [];
  if (alert.sound && ui.prefs.sound && beep(alert.severity)) did.push("sound");
  if (alert.vibration && ui.prefs.vibration && typeof navigator.vibrate === "function") {
    const pattern = alert.severity === "critical" ? [300, 100, 300, 100, 300] : [200, 100, 200];
    if (navigator.vibrate(pattern)) did.push("vibration");
    else did.push("vibration-refused");
  }
  alert.notified = did.join(" ") || "none";
}

async function acknowledge(view, alertId, button) {
  button.disabled = true;
  const alert = view.alerts.get(alertId);
  try {
    await api(`/alerts/${encodeURIComponent(alertId)}/ack`, { method: "POST" });
    if (alert) alert.acked = true;
  } catch (err) {
    if (err.status) {
      button.disabled = false;
      button.title = `could not acknowledge: ${err.message}`;
      return;
    }
    // Offline: the socket's queue takes it and sends it after the reconnect.
    ui.client.ackAlert(alertId).then(() => {
      if (alert) alert.acked = true;
      renderAlerts();
      renderAthleteList();
    });
  }
  renderAlerts();
  renderAthleteList();
}

// --- chat -----------------------------------------------------------------------------------

function markRead(view) {
  if (!view.sessionId || document.visibilityState === "hidden" || view.id !== ui.focus) return;
  // Message ids are UUIDs: the newest is the one with the highest seq (storage order).
  let newest = null;
  for (const m of view.messages.values()) if (m.from !== ui.me.id && (!newest || m.seq > newest.seq)) newest = m;
  if (newest && newest.seq > view.readSent) {
    view.readSent = newest.seq;
    ui.client.markRead(view.sessionId, newest.id);
  }
}

function sendChat(text) {
  const view = ui.athletes.get(ui.focus);
  if (!view?.sessionId || !text.trim()) return;
  const cmid = LiveCoachClient.newClientId();
  const online = ui.client.state === "open";
  view.pending.set(cmid, { text, status: online ? "sending" : "queued" });
  // A coach writes to the athlete; an athlete to the session's coach (or all coaches).
  const to = ui.me?.role === "coach" ? view.id : undefined;
  const sent = ui.client.sendMessage(view.sessionId, text, cmid, to);
  sent.then(
    () => {
      const p = view.pending.get(cmid);
      if (p) p.status = "sent";
      renderMessages();
    },
    (err) => {
      const p = view.pending.get(cmid);
      if (p) p.status = `failed: ${err.message}`;
      renderMessages();
    },
  );
  stopTyping(view);
  renderMessages();
  renderConn();
}

function onTypingInput() {
  const view = ui.athletes.get(ui.focus);
  if (!view?.sessionId) return;
  const now = Date.now();
  if (now - ui.typingSent > 3000) {
    ui.typingSent = now;
    ui.client.typing(view.sessionId, true);
  }
  clearTimeout(ui.typingTimer);
  ui.typingTimer = setTimeout(() => stopTyping(view), 4000);
}

function stopTyping(view) {
  clearTimeout(ui.typingTimer);
  if (ui.typingSent) {
    ui.typingSent = 0;
    ui.client.typing(view.sessionId, false);
  }
}

// --- live events ----------------------------------------------------------------------------

function viewOf(ev) {
  const id = typeof ev.user_id === "string" ? ev.user_id : null;
  if (id != null && ui.athletes.has(id)) return ui.athletes.get(id);
  // A session channel event without a user id: the athlete who owns the session.
  for (const v of ui.athletes.values()) if (v.sessionId === ev.session_id) return v;
  return null;
}

function adoptSession(view, sessionId) {
  if (!sessionId || view.sessionId === sessionId) return;
  if (view.retired.has(sessionId)) return; // an older session's event
  if (view.sessionId) view.retired.add(view.sessionId);
  view.sessionId = sessionId;
  view.metrics = {};
  view.alerts.clear();
  view.messages.clear();
  view.pending.clear();
  view.readSent = 0;
  view.othersReadUpTo = 0;
  view.sessionState = null;
  view.series = sessionSeries();
  view.laps.clear();
  if (view.id === ui.focus) renderCharts();
  loadSession(view).catch((err) => console.warn("livecoach: loading the session failed", err));
}

/** What a card needs of a session (its state, sport, alerts, who is there); the chat
 * and the metrics history come when the athlete is shown (loadDetail). */
async function loadSession(view) {
  const sid = view.sessionId;
  view.detailLoaded = null;
  const [session, alerts, presence] = await Promise.all([
    api(`/sessions/${sid}`).catch(() => null),
    api(`/sessions/${sid}/alerts?limit=50`).catch(() => null),
    api(`/sessions/${sid}/presence`).catch(() => null),
  ]);
  if (view.sessionId !== sid) return;
  if (session && !view.sessionState) view.sessionState = session.status;
  if (session?.metadata?.sport) view.sport = String(session.metadata.sport);
  for (const row of alerts?.alerts || []) {
    if (!view.alerts.has(row.id)) {
      view.alerts.set(row.id, alertFromRow(row));
      ui.notified.add(row.id); // history: shown, not announced
    }
  }
  if (presence) applyWatchers(view, presence.watchers);
  renderAll();
  if (view.id === ui.focus) await loadDetail(view);
}

/** The chat and the metrics history of the session of an athlete shown, once. */
async function loadDetail(view) {
  const sid = view.sessionId;
  if (!sid || view.detailLoaded === sid) return;
  view.detailLoaded = sid;
  const [messages, history] = await Promise.all([
    api(`/messages/${sid}?limit=100`).catch(() => null),
    api(`/sessions/${sid}/metrics?metric=heart_rate,power,speed&max_points=1500`).catch(() => null),
  ]);
  if (view.sessionId !== sid) return;
  applyHistory(view, history);
  for (const row of messages?.messages || []) {
    if (!view.messages.has(row.id)) view.messages.set(row.id, messageFromRow(row));
  }
  if (view.id === ui.focus) {
    renderMessages();
    markRead(view);
  }
}

/** The session's stored history (GET sessions/{id}/metrics) into the chart series. */
function applyHistory(view, history) {
  const per = { heart_rate: [], power: [], pace: [], speed: [] };
  for (const p of history?.points || []) {
    const t = Date.parse(p.bucket) / 1000;
    if (!Number.isFinite(t) || typeof p.avg !== "number") continue;
    if (p.metric_type === "speed") {
      per.speed.push([t, p.avg * 3.6]);
      if (p.avg >= 0.5) per.pace.push([t, 1000 / p.avg]); // slower than 33 min/km: stopped
    } else if (per[p.metric_type]) per[p.metric_type].push([t, p.avg]);
  }
  for (const [kind, points] of Object.entries(per)) {
    view.series[kind].step = Math.max(view.series[kind].step, history?.bucket_s || 1);
    view.series[kind].setHistory(points);
  }
  document.body.dataset.history = String(history?.points?.length ?? 0);
  if (view.id === ui.focus) renderCharts();
}

function isRide(view) {
  return !!view && (view.sport === "ride" || view.sport === "bike" || view.sport === "cycling");
}

/** A metrics_update into the chart series: values, and the plan's targets. */
function pushMetrics(view, t, m) {
  const pace = m.pace_s_per_km ?? (typeof m.pace === "number" ? m.pace * 60 : null);
  const speed = typeof m.speed_m_s === "number" ? m.speed_m_s * 3.6 : null;
  const values = { heart_rate: m.heart_rate, power: m.power, pace, speed, w_prime: m.w_prime_bal_pct };
  const target = m.interval?.target || {};
  for (const [kind, spec] of Object.entries(CHARTS)) {
    const series = view.series[kind];
    if (typeof values[kind] === "number") series.push(t, values[kind]);
    if (spec.target) series.target(t, target[spec.target] || null);
  }
  if (view.id !== ui.focus) return;
  // A hidden chart (a run without power) whose first point came: show it.
  if (["power", "w_prime"].some((k) => ui.charts[k].el.closest("figure").hidden && view.series[k].points > 0)) renderCharts();
  for (const chart of Object.values(ui.charts)) chart.update();
  if (Date.now() - (ui.tizAt || 0) > 5000) renderTimeInZones(); // a sum over the session: every 5 s
}

/** A message row of the REST API (or a snapshot) in the page's shape. */
function messageFromRow(row) {
  return {
    id: row.id,
    seq: row.seq,
    from: row.sender_id,
    to: row.recipient_id,
    text: row.message ?? "",
    readAt: row.read_at,
    readers: new Set((row.reads || []).map((r) => r.reader_id)),
    cmid: row.client_message_id,
  };
}

/** An alert row of the REST API (or a snapshot) in the page's shape. */
function alertFromRow(row) {
  return {
    id: row.id,
    severity: row.severity,
    message: row.message,
    metric: row.metric,
    current: row.current_value,
    threshold: row.threshold,
    rule: row.rule,
    direction: row.payload?.direction,
    bound: row.payload?.bound,
    started_at_s: row.payload?.started_at_s,
    fired_at_s: row.payload?.fired_at_s,
    at: Date.parse(row.triggered_at) / 1000,
    acked: !!row.acknowledged_at,
    ackedBy: row.acknowledged_by,
  };
}

function applyWatchers(view, watchers) {
  view.watchers.clear();
  for (const w of watchers || []) view.watchers.set(w.user_id, w.role);
  view.present = view.watchers.has(view.id); // the athlete's own page or app is connected
  cardChanged(view);
}

/** The athlete's open session, if any (the coach's grid shows it before its next event). */
async function discoverSession(view) {
  if (view.sessionId || view.error) return;
  try {
    const found = await api(`/sessions?athlete=${view.id}&status=active&limit=1`);
    const row = found?.sessions?.[0];
    if (row && !view.sessionId) {
      adoptSession(view, row.id);
      view.sport = row.metadata?.sport ? String(row.metadata.sport) : view.sport;
      view.sessionState = view.sessionState || row.status;
      renderHeader();
      cardChanged(view);
    }
  } catch (err) {
    console.warn("livecoach: no sessions of", view.id, err.message);
  }
}

function applySnapshot(ev) {
  // recovered:false: the gap is gone from the stream; take the snapshot as the state.
  const snap = ev.snapshot || {};
  const states = snap.sessions || (snap.session ? [snap] : []);
  for (const st of states) {
    const session = st.session;
    if (!session) continue;
    const view = ui.athletes.get(session.user_id);
    if (!view) continue;
    adoptSession(view, session.id);
    view.sessionState = session.status;
    for (const row of st.recent_messages || []) {
      view.messages.set(row.id, messageFromRow(row));
    }
    // latest_metrics: {metric_type: {value, at}}; types as stored (speed in m/s).
    for (const [k, v] of Object.entries(st.latest_metrics || {})) {
      const value = typeof v === "number" ? v : v?.value;
      if (typeof value !== "number") continue;
      if (k === "speed") {
        view.metrics.speed_m_s = value;
        view.metrics.pace_s_per_km = value > 0 ? 1000 / value : null;
        view.metrics.pace = value > 0 ? 1000 / value / 60 : null;
      } else if (k === "distance") {
        view.metrics.distance_m = value;
        view.metrics.distance = value / 1000; // stored in m, shown as the wire's km
      } else view.metrics[k] = value;
    }
    for (const row of st.open_alerts || []) {
      if (view.alerts.has(row.id)) continue;
      view.alerts.set(row.id, alertFromRow(row));
      ui.notified.add(row.id);
    }
  }
  renderAll();
}

function wire(client) {
  client.on("state", () => renderConn());
  client.on("queue", () => renderConn());
  client.on("reconnecting", () => renderConn());
  client.on("welcome", (ev) => {
    if (!ui.me) {
      ui.me = { id: ev.user_id, role: ev.role };
      $("who").textContent = ev.role;
      start().catch((err) => console.warn("livecoach: start failed", err));
    }
    renderConn();
  });
  client.on("metrics_update", (ev) => {
    const view = viewOf(ev);
    if (!view) return;
    adoptSession(view, ev.session_id);
    if (ev.session_id !== view.sessionId) return;
    Object.assign(view.metrics, ev.metrics || {});
    view.metrics.interval = ev.metrics?.interval ?? null; // absent once the plan is over
    const stateBefore = view.sessionState;
    if (ev.metrics?.state) view.sessionState = ev.metrics.state;
    view.metricsAt = Date.now();
    const wasOnline = isOnline(view);
    view.lastSeenMs = Date.now();
    pushMetrics(view, eventTime(ev), ev.metrics || {});
    if (view.id === ui.focus) {
      renderTiles();
      if (!wasOnline || stateBefore !== view.sessionState) renderHeader();
    }
    cardChanged(view);
  });
  client.on("alert", (ev) => {
    const view = viewOf(ev);
    if (!view || !ev.alert) return;
    adoptSession(view, ev.session_id);
    const a = ev.alert;
    const existing = view.alerts.get(a.id);
    const alert = {
      ...(existing || {}),
      id: a.id,
      severity: a.severity,
      message: a.message,
      metric: a.metric,
      rule: a.rule,
      direction: a.direction,
      bound: a.bound,
      started_at_s: a.started_at_s,
      fired_at_s: a.fired_at_s,
      current: a.current,
      threshold: a.threshold,
      sound: a.sound,
      vibration: a.vibration,
      at: ev.timestamp ? Date.parse(ev.timestamp) / 1000 : Date.now() / 1000,
      acked: existing?.acked || false,
    };
    view.alerts.set(a.id, alert);
    notify(alert);
    renderAlerts();
    renderAthleteList();
  });
  client.on("session_event", (ev) => {
    const view = viewOf(ev);
    if (!view) return;
    if (ev.event === "alert_acknowledged") {
      const a = view.alerts.get(ev.alert_id);
      if (a) {
        a.acked = true;
        a.ackedBy = ev.acknowledged_by ?? a.ackedBy;
      }
      renderAlerts();
      renderAthleteList();
      return;
    }
    adoptSession(view, ev.session_id);
    if (ev.event === "lap" && ev.lap && ev.session_id === view.sessionId) {
      view.laps.set(ev.lap.index, ev.lap);
      if (view.id === ui.focus) renderLaps();
      return;
    }
    if (ev.session_id === view.sessionId) {
      view.sessionState = ev.state || ({ start: "running", pause: "paused", resume: "running", stop: "stopped" }[ev.event] ?? view.sessionState);
    }
    renderHeader();
  });
  client.on("message", (ev) => {
    const view = viewOf(ev);
    if (!view || !ev.message) return;
    adoptSession(view, ev.session_id);
    if (ev.session_id !== view.sessionId) return;
    const m = ev.message;
    const old = view.messages.get(m.id);
    view.messages.set(m.id, {
      id: m.id,
      seq: m.seq,
      from: m.sender_id ?? m.from,
      to: m.recipient_id,
      role: m.role,
      text: m.message ?? m.text,
      cmid: m.client_message_id,
      readers: old?.readers || new Set(),
    });
    if (m.client_message_id) view.pending.delete(m.client_message_id);
    view.typing.delete(m.from);
    renderMessages();
    markRead(view);
  });
  client.on("read_receipt", (ev) => {
    const view = viewOf(ev);
    if (!view || ev.reader_id === ui.me?.id) return;
    // The receipt names the message ids this reader read (UUIDs): per reader.
    const ids = new Set(ev.message_ids || []);
    for (const m of view.messages.values()) if (ids.has(m.id)) m.readers.add(ev.reader_id);
    renderMessages();
  });
  client.on("typing", (ev) => {
    const view = viewOf(ev);
    if (!view || ev.sender_id === ui.me?.id) return;
    if (ev.typing) view.typing.set(ev.sender_id, Date.now() + 6000);
    else view.typing.delete(ev.sender_id);
    renderMessages();
    setTimeout(renderMessages, 6100);
  });
  client.on("presence", (ev) => {
    const view = ui.athletes.get(ev.user_id);
    if (!view) return;
    if (ev.watching) view.watchers.set(ev.watcher_id, ev.role);
    else view.watchers.delete(ev.watcher_id);
    if (ev.watcher_id === view.id) view.present = !!ev.watching; // the athlete's own page
    renderHeader();
    cardChanged(view);
  });
  client.on("resumed", (ev) => {
    if (ev.recovered === false) applySnapshot(ev);
  });
  client.on("leaderboard", (ev) => ui.board?.apply(ev));
  client.on("alert", (ev) => {
    if (ui.board && ev.group_id === ui.board.groupId) ui.board.flag(ev.user_id);
  });
  client.on("message", (ev) => {
    if (ui.board && ev.group_id === ui.board.groupId && !ev.session_id && ev.message) addGroupMessage(ev.message);
  });
  client.on("error", (ev) => console.warn("livecoach:", ev.code, ev.message));
  client.on("stopped", (ev) => {
    renderConn();
    if (ev.why === "forbidden") {
      $("login-note").textContent = `Not allowed: ${ev.reason || "forbidden"}`;
      $("detail-title").textContent = `Disconnected — not allowed: ${ev.reason || "forbidden"}`;
    }
  });
  client.on("auth_required", (ev) => {
    $("login-note").textContent = `Sign in again: ${ev.reason || "the token was refused"}`;
    $("login").hidden = false;
  });
}

// An athlete's Sound and Vibration switches are the delivery preferences of the profile
// (PUT athletes/{id}/thresholds): the alerts agent sets each alert's sound and vibration
// flags from them, on every device. A coach's switches are this browser's only.
async function loadProfilePrefs() {
  if (ui.me?.role !== "athlete") return;
  try {
    const profile = await api(`/athletes/${ui.me.id}/thresholds`);
    for (const key of ["sound", "vibration"]) {
      if (typeof profile[key] === "boolean") {
        ui.prefs[key] = profile[key];
        $(`pref-${key}`).checked = profile[key];
      }
    }
    document.body.dataset.prefs = "profile";
  } catch (err) {
    console.warn("livecoach: no profile preferences", err);
  }
}

async function saveProfilePref(key, value) {
  if (ui.me?.role !== "athlete") return;
  try {
    await api(`/athletes/${ui.me.id}/thresholds`, {
      method: "PUT",
      body: JSON.stringify({ [key]: value }),
    });
    document.body.dataset.prefsSaved = `${key}=${value}`;
  } catch (err) {
    $(`pref-${key}`).title = `not saved to the profile: ${err.message}`;
  }
}

/** After the first welcome: who is who (GET /roster), then what to follow. */
async function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  const coach = ui.me.role === "coach";
  $("app").classList.toggle("coach", coach);
  try {
    ui.roster = await api("/roster");
  } catch (err) {
    console.warn("livecoach: no roster (names and the coach's athletes)", err.message);
  }
  for (const p of ui.roster ? [ui.roster.me, ...ui.roster.athletes, ...ui.roster.coaches] : []) {
    ui.people.set(p.id, p);
  }
  $("who").textContent = ui.roster?.me?.name ? `${ui.roster.me.name} (${ui.me.role})` : ui.me.role;
  if (!coach) {
    ui.wantedAthletes = [ui.me.id];
    const coaches = ui.roster?.coaches || [];
    $("coaches").textContent = coaches.length ? `your coach${coaches.length > 1 ? "es" : ""}: ${coaches.map((c) => displayName(c.id, "coach")).join(", ")}` : "";
  }
  const linked = new Set((ui.roster?.athletes || []).map((p) => p.id));
  // A coach without ?athletes= sees every linked athlete.
  if (coach && ui.wantedAthletes.length === 0) ui.wantedAthletes = [...linked];
  const follow = [];
  for (const id of ui.wantedAthletes) {
    const view = athlete(id);
    // Asking the edge for an athlete who is not linked would end the socket (4403) for
    // every card: that one card says so instead, and the others work.
    if (coach && ui.roster && !linked.has(id)) view.error = "Not one of your athletes (or no such athlete)";
    else follow.push(id);
  }
  if (follow.length) ui.client.subscribe(follow.map((id) => `live:user:${id}`));
  if (!ui.wantedSession) for (const id of follow) discoverSession(athlete(id));
  const groupId = ids(params.get("group"))[0];
  if (groupId) startBoard(groupId, coach).catch((err) => ($("board-h").textContent = `Group ${groupId}: ${err.message}`));
  ui.picked = coach ? loadPicked() : null;
  // The athlete sees their own session; a coach who named athletes sees the first one,
  // a coach who did not sees the grid and picks.
  ui.focus = !coach ? ui.me.id : params.has("athletes") ? (follow[0] ?? null) : null;
  renderAll();
  const view = ui.athletes.get(ui.focus);
  if (view) loadProfile(view);
  loadProfilePrefs();
  if (ui.wantedSession) {
    api(`/sessions/${ui.wantedSession}`)
      .then((row) => {
        const view = athlete(row.user_id);
        if (!ui.client.channels.has(`live:user:${row.user_id}`)) ui.client.subscribe(`live:user:${row.user_id}`);
        if (ui.focus == null) ui.focus = view.id;
        adoptSession(view, row.id);
        renderAll();
        loadProfile(view);
      })
      .catch((err) => ($("detail-title").textContent = `Session ${ui.wantedSession}: ${err.message}`));
  }
}

// --- group leaderboard (?group=<id>) --------------------------------------------------------

/** Show the group's leaderboard: names from GET groups/{id}, the board from its channel
 * (the edge sends the stored full board first), the group's messages. */
async function startBoard(groupId, coach) {
  $("board").hidden = false;
  const group = await api(`/groups/${groupId}`);
  const names = new Map(group.members.map((m) => [m.athlete_id, m.name || m.athlete_id.slice(0, 8)]));
  $("board-h").textContent = `${group.name} — ${group.kind === "race" ? "race" : "class"}`;
  ui.board = new Leaderboard($("board"), { groupId, meId: ui.me.id, coach, kind: group.kind, names });
  ui.board.render();
  ui.client.subscribe(`live:group:${groupId}`);
  const history = await api(`/groups/${groupId}/messages?limit=20`);
  for (const m of history.messages) addGroupMessage(m);
  if (coach) {
    $("board-chat-form").hidden = false;
    $("board-chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("board-chat-input");
      const message = input.value.trim();
      input.value = "";
      if (message) api(`/groups/${groupId}/messages`, { method: "POST", body: JSON.stringify({ message }) }).catch((err) => console.warn("livecoach: group message", err.message));
    });
  }
}

function addGroupMessage(m) {
  const list = $("board-messages");
  if (list.querySelector(`[data-id="${m.id}"]`)) return;
  const li = document.createElement("li");
  li.dataset.id = m.id;
  li.textContent = m.message ?? m.text ?? "";
  list.append(li);
}

// --- start-up -------------------------------------------------------------------------------

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The ids (UUIDs, lower case as the server writes them) in a list typed by a user. */
function ids(text) {
  return String(text || "")
    .split(/[\s,]+/)
    .map((s) => s.toLowerCase())
    .filter((s) => UUID_RE.test(s));
}

function connect(token) {
  sessionStorage.setItem("livecoach.token", token);
  if (ui.client) {
    ui.client.setToken(token);
    if (ui.client.state === "stopped" || ui.client.state === "idle") ui.client.connect();
    return;
  }
  const opt = (name) => (params.has(name) ? Number(params.get(name)) : undefined);
  const options = { token, getToken: waitForToken };
  for (const [param, key] of [["backoff_base_ms", "backoffBaseMs"], ["backoff_max_ms", "backoffMaxMs"], ["heartbeat_ms", "heartbeatMs"]]) {
    const v = opt(param);
    if (Number.isFinite(v) && v > 0) options[key] = v;
  }
  ui.client = new LiveCoachClient(options);
  window.livecoach = { client: ui.client, ui, apiQueue };
  wire(ui.client);
  ui.client.connect();
  renderConn();
}

/** The client's token hook: on 4401, the user pastes a new token into the form. */
function waitForToken({ reason }) {
  if (reason === "expiring") return Promise.resolve(null);
  $("login-note").textContent = `The token was refused (${reason || "expired"}): paste a new one.`;
  $("login").hidden = false;
  return new Promise((resolve) => {
    ui.tokenWaiter = resolve;
  });
}

function init() {
  buildTiles();
  buildCharts();
  $("lap").addEventListener("click", pressLap);
  $("back").addEventListener("click", () => setFocus(null));
  $("picker-all").addEventListener("click", () => {
    ui.picked = null;
    savePicked();
    renderAthleteList();
  });
  $("picker-none").addEventListener("click", () => {
    ui.picked = new Set();
    savePicked();
    renderAthleteList();
  });
  // #token=... is never sent to the server (so never in an access log); the edge
  // redirects a ?token= here.
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const urlToken = hash.get("token");
  if (urlToken) {
    // Out of the address bar (history, screenshots, bookmarks); kept for this tab only.
    sessionStorage.setItem("livecoach.token", urlToken);
    hash.delete("token");
    const rest = params.toString();
    const frag = hash.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + (frag ? `#${frag}` : ""));
  }
  ui.wantedAthletes = ids(params.get("athletes"));
  ui.wantedSession = ids(params.get("session"))[0] ?? null;
  $("athletes").value = ui.wantedAthletes.join(", ");
  $("session").value = ui.wantedSession ?? "";
  $("pref-sound").checked = ui.prefs.sound;
  $("pref-vibration").checked = ui.prefs.vibration;
  for (const key of ["sound", "vibration"]) {
    $(`pref-${key}`).addEventListener("change", (e) => {
      ui.prefs[key] = e.target.checked;
      localStorage.setItem("livecoach.prefs", JSON.stringify(ui.prefs));
      if (key === "sound" && e.target.checked) beep("info"); // a user gesture unlocks audio
      saveProfilePref(key, e.target.checked);
    });
  }
  // Browsers start audio only after a gesture: unlock it on the first one.
  document.addEventListener("pointerdown", () => ui.audio?.resume?.(), { once: true });
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    if (!ui.me) {
      ui.wantedAthletes = ids($("athletes").value);
      ui.wantedSession = ids($("session").value)[0] ?? null;
    }
    $("login-note").textContent = "";
    if (ui.tokenWaiter) {
      const resolve = ui.tokenWaiter;
      ui.tokenWaiter = null;
      sessionStorage.setItem("livecoach.token", token);
      $("login").hidden = true;
      resolve(token);
      return;
    }
    connect(token);
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem("livecoach.token");
    ui.client?.close();
    location.replace(location.pathname);
  });
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-input");
    sendChat(input.value);
    input.value = "";
  });
  $("chat-input").addEventListener("input", onTypingInput);
  document.addEventListener("visibilitychange", () => {
    const view = ui.athletes.get(ui.focus);
    if (view && document.visibilityState === "visible") markRead(view);
  });
  setInterval(() => {
    renderConn();
    // Presence has a TTL: a watcher whose edge died stops counting without an event.
    const view = ui.athletes.get(ui.focus);
    if (view?.sessionId && ui.client?.state === "open") {
      api(`/sessions/${view.sessionId}/presence`)
        .then((p) => {
          applyWatchers(view, p.watchers);
          renderHeader();
        })
        .catch(() => {});
    }
  }, 15000);
  setInterval(renderConn, 1000);
  // Online states age out without an event: recheck them every 5 s.
  setInterval(() => {
    if (ui.me?.role !== "coach") return;
    for (const view of ui.athletes.values()) cardChanged(view);
    renderHeader();
  }, 5000);
  const token = sessionStorage.getItem("livecoach.token");
  if (token) connect(token);
}

init();
