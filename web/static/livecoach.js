// livecoach.js: the browser client of the livecoach edge (/api/v1/live/ws).
//
// Dependency-free ES module. What it does for the application:
//   - authenticates with a first {"type":"auth","token"} frame (browsers cannot set
//     headers on a WebSocket), refreshes the token in-band before it expires;
//   - keeps a set of channels (live:session:{id}, live:user:{id}) and, per channel and
//     partition, the offset of the last event seen; after a reconnect it sends one
//     `resume` with those cursors, so the edge replays exactly what was missed;
//   - reconnects with capped exponential backoff and full jitter; 4429 backs off longer,
//     4401 asks for a new token, 4403 stops;
//   - sends an application ping on an interval and treats a silent socket as dead;
//   - queues outgoing frames (message, typing, read, ack_alert, metrics_update) while
//     offline and sends them, in order, after the resume; frames sent but not answered
//     when a socket dies are sent again first (messages carry a client_message_id, so a
//     retry is stored once);
//   - emits typed events: metrics_update, alert, message, session_event, typing,
//     read_receipt, presence, resumed, ack, error, welcome, pong (an alert once per id,
//     though a crashed worker publishes it again), plus the client's own
//     state, open, close, reconnecting, auth_required, queue, stopped and event (every
//     server frame).
//
// Usage:
//   import { LiveCoachClient } from "/static/livecoach.js";
//   const client = new LiveCoachClient({ token, getToken: async () => fetchNewToken() });
//   client.on("metrics_update", (ev) => render(ev.metrics));
//   client.subscribe("live:user:42");
//   client.connect();
//   client.sendMessage(7, "easy now");

export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  IDLE: 4408,
  TOO_SLOW: 4410,
  RATE_LIMITED: 4429,
});

/** Frames the client answers for (the edge replies `ack` or `error` with `ref`). */
const ACKED = new Set(["message", "read", "ack_alert", "metrics_update", "auth"]);
/** Frames kept in the offline queue. */
/** Alert ids remembered to drop a repeat (a worker's re-publication after a crash). */
const ALERT_IDS_KEPT = 5000;
const QUEUEABLE = new Set(["message", "typing", "read", "ack_alert", "metrics_update"]);

const DEFAULTS = {
  path: "/api/v1/live/ws",
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  rateLimitedMs: 15000, // floor of the delay after a 4429
  welcomeTimeoutMs: 10000,
  heartbeatMs: 15000, // application ping interval (at most the edge's heartbeat_s)
  pongTimeoutMs: 0, // no frame this long after a ping: a dead socket; 0: heartbeat + 5 s
  maxQueue: 1000,
  typingTtlMs: 5000, // a queued typing frame older than this is dropped
  refreshBeforeS: 60, // refresh the token this long before it expires
};

/** "3:120" -> [3, 120]; null if malformed. */
export function parseCursor(text) {
  if (typeof text !== "string") return null;
  const m = /^(\d{1,4}):(-1|\d{1,19})$/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Capped exponential backoff with full jitter: uniform in [floor, min(cap, base * 2^n)]. */
export function backoffDelay(attempt, { baseMs, maxMs, floorMs = 0, random = Math.random }) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  // With a floor (4429), jitter still spreads the clients: [floor, max(ceiling, 2 floor)].
  const lo = floorMs;
  const hi = Math.max(ceiling, floorMs * 2);
  return Math.round(lo + random() * (hi - lo));
}

function defaultUrl(path) {
  const loc = globalThis.location;
  if (!loc) throw new Error("LiveCoachClient: give `url` outside a browser");
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

function absoluteUrl(url) {
  if (/^wss?:\/\//.test(url)) return url;
  const loc = globalThis.location;
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${url.startsWith("/") ? "" : "/"}${url}`;
}

export class LiveCoachClient {
  /**
   * @param {object} opts
   * @param {string} [opts.url]  ws(s):// URL or a path; default: this page's host + /api/v1/live/ws
   * @param {string} [opts.token]  the JWT
   * @param {() => Promise<string|null>} [opts.getToken]  a fresh token (on 4401 and before expiry)
   */
  constructor(opts = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    this.url = opts.url ? absoluteUrl(opts.url) : defaultUrl(this.opts.path);
    this.token = opts.token || null;
    this.getToken = opts.getToken || null;
    this.WebSocketImpl = opts.WebSocketImpl || globalThis.WebSocket;
    this.random = opts.random || Math.random;

    this.state = "idle"; // idle | connecting | open | waiting | stopped
    this.ws = null;
    this.welcome = null;
    this.attempt = 0;
    this.connects = 0; // sockets that reached `welcome`
    this.lastClose = null; // {code, reason}
    this.nextRetryAt = null;

    /** channel name -> Map(partition -> last offset seen); null until first known. */
    this.channels = new Map();
    /** frame id -> {frame, resolve, reject, sentAt} of frames sent, not yet answered. */
    this.inflight = new Map();
    /** frames waiting for a socket, in order: {frame, resolve, reject, queuedAt}. */
    this.queue = [];
    /** resume frame id -> {channel name -> cursor list sent}, until `resumed` per channel. */
    this.pendingResume = new Map();
    this._resumeFailing = false; // a resume failed: keep backing off until one succeeds

    this._seq = 0;
    /** ids of the alerts emitted, oldest first (a Set keeps insertion order). */
    this._alertIds = new Set();
    this._listeners = new Map();
    this._timers = { retry: null, ping: null, welcome: null, refresh: null };
    this._lastFrameAt = 0;
    this._pingAt = 0;
    this._awaitingToken = false; // after a 4401, until getToken answers
    this._onOnline = () => {
      if (this.state === "waiting" && !this._awaitingToken) this._reconnectNow();
      else this.probe();
    };
    this._onVisible = () => {
      if (globalThis.document?.visibilityState !== "visible") return;
      this._onOnline();
    };
  }

  // --- events ---------------------------------------------------------------------------

  /** Listen to `type`; returns a function that removes the listener. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, data) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(data);
      } catch (err) {
        console.error(`livecoach: a "${type}" listener failed`, err);
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state, queued: this.queue.length, retryAt: this.nextRetryAt });
  }

  // --- lifecycle ------------------------------------------------------------------------

  connect() {
    if (this.state === "connecting" || this.state === "open") return;
    globalThis.addEventListener?.("online", this._onOnline); // idempotent
    globalThis.document?.addEventListener?.("visibilitychange", this._onVisible);
    this._clearTimer("retry");
    this._open();
  }

  /** Close for good (the queue is kept: connect() again sends it). */
  close() {
    this._setState("stopped");
    this._clearAllTimers();
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.document?.removeEventListener?.("visibilitychange", this._onVisible);
    if (this.ws) {
      const ws = this.ws;
      this._detach(ws);
      try {
        ws.close(CLOSE.NORMAL, "client closed");
      } catch (_) {
        /* already closing */
      }
    }
    this.ws = null;
  }

  /** Replace the token (used by the next connect, and sent in-band if open). */
  setToken(token) {
    this.token = token;
    if (this.state === "open" && token) this._sendNow({ type: "auth", token }, true).catch(() => {});
  }

  /** Drop the socket as a network failure would (tests, "reconnect now" buttons). */
  dropConnection() {
    if (!this.ws) return;
    const ws = this.ws;
    this._detach(ws);
    try {
      ws.close(4000, "dropped by the client");
    } catch (_) {
      /* ignore */
    }
    this._onClosed({ code: CLOSE.ABNORMAL, reason: "dropped by the client" });
  }

  _open() {
    if (!this.token) {
      this._setState("stopped");
      this._emit("auth_required", { reason: "no token" });
      return;
    }
    this._setState("connecting");
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      this._onClosed({ code: CLOSE.ABNORMAL, reason: String(err) });
      return;
    }
    this.ws = ws;
    this.welcome = null;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._lastFrameAt = Date.now();
      ws.send(JSON.stringify({ type: "auth", token: this.token }));
    };
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this._lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch (_) {
        return;
      }
      if (frame && typeof frame === "object") this._onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this._detach(ws);
      this._onClosed({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    };
    ws.onerror = () => {
      /* onclose follows */
    };
    this._timers.welcome = setTimeout(() => {
      if (this.ws === ws && !this.welcome) this.dropConnection();
    }, this.opts.welcomeTimeoutMs);
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this.ws === ws) this.ws = null;
  }

  _onClosed({ code, reason }) {
    this._clearTimer("ping");
    this._clearTimer("welcome");
    this._clearTimer("refresh");
    this.ws = null;
    const hadWelcome = !!this.welcome;
    this.welcome = null;
    this.lastClose = { code, reason };
    // Frames sent but not answered go back to the head of the queue, in order.
    const unanswered = [...this.inflight.values()].filter((e) => e.frame.type !== "auth");
    for (const e of this.inflight.values()) {
      if (e.frame.type === "auth") e.reject(Object.assign(new Error("socket closed"), { code }));
    }
    this.inflight.clear();
    this.pendingResume.clear();
    if (unanswered.length) {
      unanswered.sort((a, b) => a.seq - b.seq);
      this.queue.unshift(...unanswered);
    }
    this._emit("close", { code, reason, hadWelcome, queued: this.queue.length });
    if (this.state === "stopped") return;

    if (code === CLOSE.FORBIDDEN) {
      this._stop("forbidden", { code, reason });
      return;
    }
    if (code === CLOSE.UNAUTHORIZED) {
      this._renewToken(reason);
      return;
    }
    const floorMs = code === CLOSE.RATE_LIMITED ? this.opts.rateLimitedMs : 0;
    this._scheduleReconnect(floorMs);
  }

  _stop(why, detail) {
    this._clearAllTimers();
    this._setState("stopped");
    this._emit("stopped", { why, ...detail });
  }

  async _renewToken(reason) {
    if (!this.getToken) {
      this._stop("unauthorized", { code: CLOSE.UNAUTHORIZED, reason });
      this._emit("auth_required", { reason });
      return;
    }
    this.nextRetryAt = null; // waiting for a token, not for a timer
    this._awaitingToken = true;
    this._setState("waiting");
    let token = null;
    try {
      token = await this.getToken({ reason });
    } catch (err) {
      token = null;
    } finally {
      this._awaitingToken = false;
    }
    if (this.state === "stopped") return;
    if (!token) {
      this._stop("unauthorized", { code: CLOSE.UNAUTHORIZED, reason });
      this._emit("auth_required", { reason });
      return;
    }
    const repeated = token === this.token;
    this.token = token;
    // The same token again would be refused again: back off as after any failure.
    this._scheduleReconnect(repeated ? this.opts.backoffBaseMs : 0);
  }

  _scheduleReconnect(floorMs = 0) {
    const delay = backoffDelay(this.attempt, {
      baseMs: this.opts.backoffBaseMs,
      maxMs: this.opts.backoffMaxMs,
      floorMs,
      random: this.random,
    });
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    this._setState("waiting");
    this._emit("reconnecting", { attempt: this.attempt, delayMs: delay, lastClose: this.lastClose });
    this._clearTimer("retry");
    this._timers.retry = setTimeout(() => this._reconnectNow(), delay);
  }

  _reconnectNow() {
    this._clearTimer("retry");
    this.nextRetryAt = null;
    if (this.state === "stopped" || this.state === "open" || this.state === "connecting") return;
    this._open();
  }

  _clearTimer(name) {
    const t = this._timers[name];
    if (t) {
      clearTimeout(t);
      clearInterval(t);
    }
    this._timers[name] = null;
  }

  _clearAllTimers() {
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
  }

  // --- after welcome --------------------------------------------------------------------

  _onWelcome(frame) {
    this._clearTimer("welcome");
    this.welcome = frame;
    if (!this._resumeFailing) this.attempt = 0;
    this.connects += 1;
    this._setState("open");
    // 1. the channels: resume those with cursors, subscribe the others
    const cursors = {};
    const fresh = [];
    for (const [name, parts] of this.channels) {
      if (parts && parts.size) cursors[name] = [...parts].map(([p, o]) => `${p}:${o}`);
      else fresh.push(name);
    }
    const resumed = Object.keys(cursors);
    if (resumed.length) this._sendResume(cursors);
    else this._resumeFailing = false;
    if (fresh.length) this._sendNow({ type: "subscribe", channels: fresh }, false);
    // 2. heartbeat and token refresh
    this._startHeartbeat();
    this._scheduleRefresh(frame.expires_at);
    this._emit("open", { welcome: frame, reconnect: this.connects > 1, resuming: resumed });
    // 3. the offline queue, in order (after the resume: the edge handles frames in order)
    this._flushQueue();
  }

  _sendResume(cursors) {
    const id = this._nextId();
    this.pendingResume.set(id, new Map(Object.entries(cursors)));
    this._sendNow({ type: "resume", id, cursors }, false);
  }

  _startHeartbeat() {
    this._clearTimer("ping");
    this._pingAt = 0;
    const edgeMs = (this.welcome?.heartbeat_s ?? 15) * 1000;
    const every = Math.max(250, Math.min(this.opts.heartbeatMs, edgeMs));
    const timeout = this.opts.pongTimeoutMs || every + 5000;
    // Judged from the last ping, not from wall-clock silence: a background tab whose
    // timers are throttled must not take a quiet, healthy socket for a dead one.
    this._timers.ping = setInterval(() => {
      if (!this.ws || this.state !== "open") return;
      if (this._pingAt && this._lastFrameAt < this._pingAt) {
        // no pong, no event since the ping: dead, whatever the socket says
        if (Date.now() - this._pingAt > timeout) this.dropConnection();
        return;
      }
      this.probe();
    }, every);
  }

  /** Ping now (after a wake-up, or when the network comes back): a dead socket shows. */
  probe() {
    if (!this.ws || this.state !== "open") return;
    this._pingAt = Date.now();
    this._sendNow({ type: "ping", id: this._nextId() }, false);
  }

  _scheduleRefresh(expiresAt) {
    this._clearTimer("refresh");
    // ISO 8601 on the wire; a number (epoch seconds) is still understood.
    if (typeof expiresAt === "string") expiresAt = Date.parse(expiresAt) / 1000;
    if (!this.getToken || typeof expiresAt !== "number" || Number.isNaN(expiresAt)) return;
    const inMs = (expiresAt - this.opts.refreshBeforeS) * 1000 - Date.now();
    this._timers.refresh = setTimeout(
      async () => {
        try {
          const token = await this.getToken({ reason: "expiring" });
          if (token && token !== this.token) {
            this.token = token;
            const ack = await this._sendNow({ type: "auth", token }, true);
            this._scheduleRefresh(ack.expires_at);
          }
        } catch (err) {
          this._emit("error", { code: "token_refresh_failed", message: String(err) });
        }
      },
      Math.max(1000, Math.min(inMs, 2 ** 31 - 1)),
    );
  }

  _flushQueue() {
    const now = Date.now();
    while (this.queue.length && this.state === "open" && this.ws) {
      const entry = this.queue.shift();
      if (entry.frame.type === "typing" && now - entry.queuedAt > this.opts.typingTtlMs) {
        entry.resolve({ dropped: "stale typing" });
        continue;
      }
      this._transmit(entry);
    }
    this._emit("queue", { queued: this.queue.length });
  }

  // --- frames in ------------------------------------------------------------------------

  _onFrame(frame) {
    const type = frame.type;
    if (type === "welcome") {
      this._onWelcome(frame);
      this._emit("welcome", frame);
      this._emit("event", frame);
      return;
    }
    if (typeof frame.offset === "string") {
      if (!this._advance(frame)) return; // already seen (a replay overlapping live)
    }
    // An alert published again by a worker that crashed has the same id at a new
    // offset; an edge that restarted may replay it: shown once.
    if (type === "alert" && !this._firstAlert(frame)) return;
    if (type === "ack") this._onAck(frame);
    else if (type === "error") this._onError(frame);
    else if (type === "resumed") this._onResumed(frame);
    this._emit("event", frame);
    this._emit(type, frame);
  }

  /** Whether this alert's id is new (the last ALERT_IDS_KEPT ids are remembered). */
  _firstAlert(frame) {
    const id = frame.alert && frame.alert.id;
    if (typeof id !== "string" && typeof id !== "number") return true;
    const key = String(id);
    if (this._alertIds.has(key)) return false;
    this._alertIds.add(key);
    if (this._alertIds.size > ALERT_IDS_KEPT) {
      this._alertIds.delete(this._alertIds.values().next().value);
    }
    return true;
  }

  /** Move the cursors of the frame's channels; false if every one had seen it. */
  _advance(frame) {
    const pos = parseCursor(frame.offset);
    if (!pos) return true;
    const [p, o] = pos;
    const names = Array.isArray(frame.channels) ? frame.channels : [frame.channel];
    let tracked = 0;
    let fresh = false;
    for (const name of names) {
      if (!this.channels.has(name)) continue;
      tracked += 1;
      let parts = this.channels.get(name);
      if (!parts) {
        parts = new Map();
        this.channels.set(name, parts);
      }
      const last = parts.has(p) ? parts.get(p) : -Infinity;
      if (o > last) {
        parts.set(p, o);
        fresh = true;
      }
    }
    return tracked === 0 || fresh;
  }

  _mergeCursor(name, list) {
    if (!this.channels.has(name) || !Array.isArray(list)) return;
    let parts = this.channels.get(name);
    if (!parts) {
      parts = new Map();
      this.channels.set(name, parts);
    }
    for (const text of list) {
      const pos = parseCursor(text);
      if (!pos) continue;
      const [p, o] = pos;
      if (!parts.has(p) || parts.get(p) < o) parts.set(p, o);
    }
  }

  _onAck(frame) {
    if (frame.op === "subscribe" && frame.channel) this._mergeCursor(frame.channel, frame.cursor);
    const entry = frame.ref != null ? this.inflight.get(frame.ref) : undefined;
    if (entry) {
      this.inflight.delete(frame.ref);
      entry.resolve(frame);
    }
  }

  _onError(frame) {
    if (frame.code === "access_revoked" && typeof frame.channel === "string") {
      // The edge ended this subscription (a coach link removed, a role changed): it is
      // not resumed on the next connection. (The frame itself is emitted as "error".)
      this.channels.delete(frame.channel);
    }
    const ref = frame.ref;
    if (ref != null && this.pendingResume.has(ref)) this._onResumeFailed(frame, ref);
    const entry = ref != null ? this.inflight.get(ref) : undefined;
    if (entry) {
      this.inflight.delete(ref);
      const err = Object.assign(new Error(frame.message || frame.code), { frame });
      entry.reject(err);
    }
  }

  _onResumeFailed(frame, ref) {
    const sent = this.pendingResume.get(ref); // name -> cursors sent
    this.pendingResume.delete(ref);
    const code = frame.code;
    if (code === "forbidden") return; // the edge closes with 4403
    if (code === "not_found") {
      // One session that is gone fails the whole resume: resume the others one by one
      // (from the cursors sent), and forget a lone channel that is gone.
      if (sent.size > 1) {
        for (const [name, cursor] of sent) this._sendResume({ [name]: cursor });
      } else {
        for (const name of sent.keys()) this.channels.delete(name);
      }
      return;
    }
    if (code === "rate_limited") {
      // The user's replay budget is spent (resumes replayed too much lately): the
      // channels were not registered; ask again on this socket when the edge says.
      const ws = this.ws;
      const waitMs = Math.max(100, (Number(frame.retry_after_s) || 1) * 1000);
      setTimeout(() => {
        if (this.ws === ws && this.state === "open") this._sendResume(Object.fromEntries(sent));
      }, waitMs);
      return;
    }
    if (code === "invalid" || code === "missing_field") {
      // Cursors the edge cannot read: start these channels afresh (a gap, said so).
      for (const name of sent.keys()) if (this.channels.has(name)) this.channels.set(name, null);
      this._emit("error", { code: "resume_refused", message: frame.message, channels: [...sent.keys()] });
      this._sendNow({ type: "subscribe", channels: [...sent.keys()] }, false);
      return;
    }
    // The edge failed (unavailable, internal): live events it released after the failed
    // replay may have moved the cursors past the gap. Go back to the cursors sent and
    // start over on a new socket, backing off: replaying twice beats missing events.
    for (const [name, cursor] of sent) {
      if (!this.channels.has(name)) continue;
      const parts = new Map();
      for (const text of cursor) {
        const pos = parseCursor(text);
        if (pos) parts.set(pos[0], pos[1]);
      }
      this.channels.set(name, parts);
    }
    this._resumeFailing = true;
    this._emit("error", { code: "resume_failed", message: frame.message, channels: [...sent.keys()] });
    this.dropConnection();
  }

  _onResumed(frame) {
    this._resumeFailing = false;
    if (frame.channel) {
      this._mergeCursor(frame.channel, frame.cursor);
      for (const [id, sent] of this.pendingResume) {
        sent.delete(frame.channel);
        if (sent.size === 0) this.pendingResume.delete(id);
      }
    }
  }

  // --- frames out -----------------------------------------------------------------------

  _nextId() {
    this._seq += 1;
    return `c${this._seq}`;
  }

  /** Send now if open (else fail); `answered`: wait for the ack or error with our id. */
  _sendNow(frame, answered) {
    if (!this.ws || this.state !== "open") return Promise.reject(new Error("not connected"));
    if (answered && frame.id == null) frame.id = this._nextId();
    const entry = { frame, seq: this._seq, queuedAt: Date.now() };
    const promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    promise.catch(() => {});
    if (answered) this.inflight.set(frame.id, entry);
    try {
      this.ws.send(JSON.stringify(frame));
    } catch (err) {
      this.inflight.delete(frame.id);
      entry.reject(err);
      return promise;
    }
    if (!answered) entry.resolve({ sent: true });
    return promise;
  }

  _transmit(entry) {
    const { frame } = entry;
    const answered = ACKED.has(frame.type);
    if (answered) this.inflight.set(frame.id, entry);
    try {
      this.ws.send(JSON.stringify(frame));
    } catch (err) {
      this.inflight.delete(frame.id);
      this.queue.unshift(entry);
      return;
    }
    if (!answered) entry.resolve({ sent: true });
  }

  /**
   * Send a frame; while offline it waits in the queue (typing, message, read, ack_alert,
   * metrics_update) and goes out in order after the next resume. Resolves with the
   * edge's `ack` (or {sent:true} for frames without one), rejects with its `error`.
   */
  send(frame) {
    const f = { ...frame };
    if (f.id == null) f.id = this._nextId();
    const entry = { frame: f, seq: this._seq, queuedAt: Date.now() };
    const promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    promise.catch(() => {});
    if (this.state === "open" && this.ws) {
      if (this.queue.length === 0) this._transmit(entry);
      else {
        this.queue.push(entry);
        this._flushQueue();
      }
      return promise;
    }
    if (!QUEUEABLE.has(f.type)) {
      entry.reject(new Error(`not connected; ${f.type} frames are not queued`));
      return promise;
    }
    if (f.type === "typing") {
      // Only the latest typing state per session is worth sending later.
      const i = this.queue.findIndex(
        (e) => e.frame.type === "typing" && e.frame.session_id === f.session_id,
      );
      if (i >= 0) this.queue.splice(i, 1)[0].resolve({ dropped: "superseded" });
    }
    this.queue.push(entry);
    while (this.queue.length > this.opts.maxQueue) {
      const i = this.queue.findIndex((e) => e.frame.type === "typing" || e.frame.type === "metrics_update");
      const dropped = this.queue.splice(i >= 0 ? i : 0, 1)[0];
      dropped.reject(new Error("offline queue full"));
      this._emit("error", { code: "queue_full", message: "offline queue full", frame: dropped.frame });
    }
    this._emit("queue", { queued: this.queue.length });
    return promise;
  }

  // --- the application's API ------------------------------------------------------------

  /** Follow a channel from now on (or, after a reconnect, from where it was left). */
  subscribe(...names) {
    const added = [];
    for (const name of names.flat()) {
      if (this.channels.has(name)) continue;
      this.channels.set(name, null);
      added.push(name);
    }
    if (added.length && this.state === "open") {
      this._sendNow({ type: "subscribe", channels: added }, false);
    }
    return added;
  }

  unsubscribe(...names) {
    const removed = names.flat().filter((n) => this.channels.delete(n));
    if (removed.length && this.state === "open") {
      this._sendNow({ type: "unsubscribe", channels: removed }, false);
    }
    return removed;
  }

  /** The cursors per channel, as the edge's resume takes them. */
  cursors() {
    const out = {};
    for (const [name, parts] of this.channels) {
      out[name] = parts ? [...parts].map(([p, o]) => `${p}:${o}`) : [];
    }
    return out;
  }

  /** A chat message (``message``, for ``recipientId``: by default the session's coach
   * for the athlete's messages, else the athlete). */
  sendMessage(sessionId, text, clientMessageId, recipientId) {
    const cmid = clientMessageId || LiveCoachClient.newClientId();
    const frame = { type: "message", session_id: sessionId, message: text, client_message_id: cmid };
    if (recipientId) frame.recipient_id = String(recipientId);
    const promise = this.send(frame);
    promise.clientMessageId = cmid;
    return promise;
  }

  typing(sessionId, typing = true) {
    return this.send({ type: "typing", session_id: sessionId, typing: !!typing });
  }

  markRead(sessionId, upToId) {
    return this.send({ type: "read", session_id: sessionId, up_to_id: upToId });
  }

  ackAlert(alertId) {
    return this.send({ type: "ack_alert", alert_id: String(alertId) });
  }

  /** Device samples: `{metrics: {heart_rate, power, pace, ...}, t}` or `{samples: [...]}`. */
  sendMetrics(sessionId, body) {
    return this.send({ type: "metrics_update", session_id: sessionId, ...body });
  }

  static newClientId() {
    const c = globalThis.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    return `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  }
}

export default LiveCoachClient;
