// Live charts of a session: one uPlot chart per metric (heart rate, power, pace, W′
// balance) over the session's time, with the athlete's training zones as horizontal
// bands and the plan's targets as boxes over the intervals they applied to.
//
// uPlot (vendored: /static/vendor/uPlot.iife.min.js, a global `uPlot`) draws on a
// canvas and appends points without rebuilding anything, which is what a 1 Hz feed
// over hours needs (see docs/dashboard.md, "Charts"). Redraws are batched to one per
// animation frame per chart, and skipped while the chart is not shown.

/** At most this many points per chart are kept (2 h at 1 Hz); older ones are thinned. */
export const MAX_POINTS = 7200;

/** Zone bands, low to high: cool to hot, faint so the line stays readable. */
const ZONE_COLORS = [
  "rgba(88,166,255,0.10)",
  "rgba(63,185,80,0.12)",
  "rgba(210,153,34,0.12)",
  "rgba(240,136,62,0.14)",
  "rgba(248,81,73,0.14)",
  "rgba(219,97,162,0.14)",
  "rgba(163,113,247,0.14)",
];
const TARGET_FILL = "rgba(230,237,243,0.13)";
const TARGET_EDGE = "rgba(230,237,243,0.55)";

// Zone lower bounds as the agents compute them (agents/zones.py), in % of a reference.
const HR_MAX_PCT = [0, 60, 70, 80, 90];
const HR_LTHR_PCT = [0, 68, 83, 94, 105];
const POWER_COGGAN_PCT = [0, 55, 75, 90, 105, 120, 150];
const PACE_SPEED_PCT = [0, 80, 87, 95, 105, 119];

/** Zone bands [{lo, hi, name}] per chart from an athlete's thresholds (GET thresholds). */
export function zoneBands(profile) {
  const p = profile || {};
  const bands = (lower, top) =>
    lower.map((lo, i) => ({ lo, hi: i + 1 < lower.length ? lower[i + 1] : top, name: `Z${i + 1}` }));
  const out = {};
  const hrMax = p.hr_max ?? 190;
  const hrLower = (p.hr_zone_model === "lthr" ? HR_LTHR_PCT.map((x) => (x * (p.lthr ?? 170)) / 100) : HR_MAX_PCT.map((x) => (x * hrMax) / 100));
  out.heart_rate = bands(hrLower, Math.max(hrMax, hrLower[hrLower.length - 1] * 1.1));
  const ftp = p.ftp_w ?? 250;
  out.power = bands(POWER_COGGAN_PCT.map((x) => (x * ftp) / 100), ftp * 2.5);
  // Pace zones are speed zones (% of critical speed); drawn on the pace axis, whose
  // bound for a speed s is 1000 / s seconds per km (zone 1 reaches down to walking).
  const cs = 1000 / (p.threshold_pace_s_per_km ?? 300);
  const speedLower = PACE_SPEED_PCT.map((x) => (x * cs) / 100);
  out.pace = speedLower.map((lo, i) => {
    const hiSpeed = i + 1 < speedLower.length ? speedLower[i + 1] : cs * 2;
    return { lo: 1000 / hiSpeed, hi: lo > 0 ? 1000 / lo : 1200, name: `Z${i + 1}` };
  });
  out.speed = [];
  out.w_prime = [
    { lo: 0, hi: 25, name: "low" },
    { lo: 25, hi: 100, name: "" },
  ];
  return out;
}

function mmss(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "";
  const v = Math.max(0, Math.round(s));
  return `${Math.floor(v / 60)}:${String(v % 60).padStart(2, "0")}`;
}

/** Epoch seconds as the wall clock, "16:05" (seconds when the span is short: "16:05:30"). */
function clockOf(t) {
  const d = new Date(t * 1000);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  return d.getSeconds() ? `${hm}:${String(d.getSeconds()).padStart(2, "0")}` : hm;
}

/** The kinds of chart: label, unit, colour, the target key of a plan interval. */
export const CHARTS = {
  heart_rate: { label: "Heart rate", unit: "bpm", color: "#f85149", target: "heart_rate_bpm" },
  power: { label: "Power", unit: "W", color: "#d29922", target: "power_w" },
  pace: { label: "Pace", unit: "min/km", color: "#58a6ff", target: "pace_s_per_km", invert: true, format: mmss },
  speed: { label: "Speed", unit: "km/h", color: "#58a6ff" },
  w_prime: { label: "W′ balance", unit: "%", color: "#a371f7", range: [0, 100] },
};

/** Seconds in each band [{name, s}]: the time from a point to the next (at most 5 s, or
 * the spacing of the history's buckets: a gap is not time spent), counted in the band
 * of the point's value. */
export function timeInZones(series, bands) {
  const out = bands.map((b) => ({ name: b.name, s: 0 }));
  const { xs, ys } = series;
  for (let i = 0; i + 1 < xs.length; i++) {
    const v = ys[i];
    if (v == null) continue;
    const dt = Math.min(Math.max(5, series.step), xs[i + 1] - xs[i]);
    let zone = bands.findIndex((b) => v >= Math.min(b.lo, b.hi) && v < Math.max(b.lo, b.hi));
    if (zone < 0) zone = v < Math.min(...bands.map((b) => Math.min(b.lo, b.hi))) ? 0 : bands.length - 1;
    if (bands.length) out[zone].s += dt;
  }
  return out;
}

/** One metric's points over a session, and the plan's targets over the same time. */
export class Series {
  constructor() {
    this.xs = [];
    this.ys = [];
    this.targets = []; // [{t0, t1, lo, hi, open}]
    this.step = 1; // seconds between points at most (history buckets, thinning)
  }

  /** The plan's target [lo, hi] from time t on (null: none); extends the current box. */
  target(t, range) {
    const last = this.targets[this.targets.length - 1];
    if (range && last && last.open && last.lo === range[0] && last.hi === range[1]) {
      last.t1 = Math.max(last.t1, t);
      return;
    }
    if (last && last.open) {
      last.t1 = Math.max(last.t1, t);
      last.open = false;
    }
    if (range) this.targets.push({ t0: t, t1: t, lo: range[0], hi: range[1], open: true });
  }

  /** Merge history: [[t (epoch s), value], ...]; live points already here are kept. */
  setHistory(points) {
    const merged = new Map(points.filter(([, v]) => Number.isFinite(v)));
    this.xs.forEach((t, i) => merged.set(t, this.ys[i]));
    const sorted = [...merged.entries()].sort((a, b) => a[0] - b[0]);
    this.xs = sorted.map(([t]) => t);
    this.ys = sorted.map(([, v]) => v);
    this._thin();
  }

  /** Append a live point (one not after the last is ignored: a replay). */
  push(t, v) {
    if (typeof t !== "number" || !Number.isFinite(t)) return false;
    const last = this.xs[this.xs.length - 1];
    if (last != null && t <= last) return false;
    this.xs.push(t);
    this.ys.push(typeof v === "number" && Number.isFinite(v) ? v : null);
    this._thin();
    return true;
  }

  get points() {
    return this.ys.filter((v) => v != null).length;
  }

  _thin() {
    if (this.xs.length <= MAX_POINTS) return;
    // Every other point of the older half: the shape stays, the memory is bounded.
    const half = Math.floor(this.xs.length / 2);
    const keep = (arr) => arr.slice(0, half).filter((_, i) => i % 2 === 0).concat(arr.slice(half));
    this.xs = keep(this.xs);
    this.ys = keep(this.ys);
    this.step *= 2;
  }
}

/** The four series of a session, by chart kind. */
export function sessionSeries() {
  return Object.fromEntries(Object.keys(CHARTS).map((k) => [k, new Series()]));
}

/** A chart on the page showing one Series at a time (the athlete picked). */
export class SessionChart {
  /**
   * @param {HTMLElement} el where the chart goes (sized by CSS; width followed)
   * @param {string} kind a key of CHARTS
   */
  constructor(el, kind) {
    this.el = el;
    this.kind = kind;
    this.spec = CHARTS[kind];
    this.series = new Series();
    this.bands = [];
    this.plot = null;
    this.dirty = false;
    this.frame = 0;
    this.draws = 0; // redraws done (the tests read it)
    if (typeof ResizeObserver === "function") {
      this.resize = new ResizeObserver(() => this._size());
      this.resize.observe(el);
    }
  }

  /** Show another kind of chart here (a ride's speed where a run's pace is). */
  setKind(kind) {
    if (kind === this.kind) return;
    this.kind = kind;
    this.spec = CHARTS[kind];
    this.plot?.destroy();
    this.plot = null;
    this.update();
  }

  /** Show another Series (or the same one, changed): redrawn at the next frame. */
  show(series) {
    this.series = series;
    this.update();
  }

  /** Zone bands [{lo, hi}] in the chart's unit. */
  setBands(bands) {
    this.bands = bands || [];
    this.update();
  }

  update() {
    this.dirty = true;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flush();
    });
  }

  /** Redraw now if anything changed and the chart is on screen. */
  flush() {
    if (!this.dirty || !this.el.isConnected || this.el.offsetParent === null) return;
    this.dirty = false;
    this._make();
    if (!this.plot) return;
    this._size();
    this.plot.setData([this.series.xs, this.series.ys]);
    this.draws += 1;
  }

  destroy() {
    this.resize?.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.plot?.destroy();
    this.plot = null;
  }

  _make() {
    const Plot = window.uPlot;
    if (!Plot || this.plot) return;
    const spec = this.spec;
    const width = Math.max(200, this.el.clientWidth || 300);
    const height = Math.max(90, this.el.clientHeight || 150);
    const fmt = spec.format || ((v) => (v == null ? "" : String(Math.round(v))));
    this.plot = new Plot(
      {
        width,
        height,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true },
          y: {
            dir: spec.invert ? -1 : 1,
            range: (u, min, max) => this._range(min, max),
          },
        },
        axes: [
          {
            stroke: "#8b98a8",
            grid: { stroke: "#2a3442", width: 1 },
            ticks: { stroke: "#2a3442" },
            values: (u, vals) => vals.map(clockOf),
          },
          {
            stroke: "#8b98a8",
            grid: { stroke: "#2a3442", width: 1 },
            ticks: { stroke: "#2a3442" },
            size: 48,
            values: (u, vals) => vals.map(fmt),
          },
        ],
        series: [{}, { label: spec.label, stroke: spec.color, width: 2, spanGaps: false, points: { show: false } }],
        hooks: { drawClear: [(u) => this._drawBands(u)] },
      },
      [this.series.xs, this.series.ys],
      this.el,
    );
  }

  _range(min, max) {
    if (this.spec.range) return this.spec.range;
    if (min == null || max == null || !Number.isFinite(min)) return [0, 1];
    let lo = min;
    let hi = max;
    for (const t of this.series.targets) {
      lo = Math.min(lo, t.lo);
      hi = Math.max(hi, t.hi);
    }
    const pad = Math.max(5, (hi - lo) * 0.1);
    return [Math.max(0, lo - pad), hi + pad];
  }

  _drawBands(u) {
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    this.bands.forEach((b, i) => {
      const y0 = u.valToPos(b.lo, "y", true);
      const y1 = u.valToPos(b.hi, "y", true);
      ctx.fillStyle = ZONE_COLORS[i % ZONE_COLORS.length];
      ctx.fillRect(left, Math.min(y0, y1), width, Math.abs(y1 - y0));
    });
    for (const t of this.series.targets) {
      const x0 = u.valToPos(t.t0, "x", true);
      const x1 = u.valToPos(t.t1, "x", true);
      const y0 = u.valToPos(t.lo, "y", true);
      const y1 = u.valToPos(t.hi, "y", true);
      ctx.fillStyle = TARGET_FILL;
      ctx.fillRect(x0, Math.min(y0, y1), Math.max(1, x1 - x0), Math.abs(y1 - y0));
      ctx.strokeStyle = TARGET_EDGE;
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(x0, Math.min(y0, y1), Math.max(1, x1 - x0), Math.abs(y1 - y0));
    }
    ctx.restore();
  }

  _size() {
    if (!this.plot) return;
    const width = Math.max(200, this.el.clientWidth);
    const height = Math.max(90, this.el.clientHeight || 150);
    if (width !== this.plot.width || height !== this.plot.height) this.plot.setSize({ width, height });
  }
}
