// The group leaderboard view (issue 20, docs/groups.md): the board the agents compute,
// kept from `leaderboard` frames of live:group:{id}. A full board replaces what the view
// has; a delta applies on top of board (from_seq ?? seq) - 1, else the view waits for
// the next full board (the edge sends one on subscribe and resume).
//
// The athlete sees the leader, their own row (highlighted) and the neighbours above and
// below (the edge sends a member's socket only that window: `window: true`, `size` the
// whole board's); the coach sees everyone, sorted by any column, alerts flagged.

const NEIGHBOURS = 2;

const fmt = (v, digits = 0) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");

function clock(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const s = Math.round(Math.abs(seconds));
  const text = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  return seconds < 0 ? `-${text}` : text;
}

/** The columns of each kind of group: [key, heading, cell text, sort value]. */
const COLUMNS = {
  race: [
    ["distance_m", "Distance (km)", (r) => fmt(r.distance_m / 1000, 2), (r) => r.distance_m],
    ["gap_m", "Gap (m)", (r) => (r.rank === 1 ? "leader" : fmt(r.gap_m)), (r) => r.gap_m],
    ["gap_s", "Gap (time)", (r) => (r.rank === 1 ? "" : clock(r.gap_s)), (r) => r.gap_s],
    ["finish_s", "Finish", (r) => clock(r.finish_s), (r) => r.finish_s],
  ],
  class: [
    ["pct_target", "% of target", (r) => fmt(r.pct_target), (r) => r.pct_target],
    ["time_in_zone_s", "In zone", (r) => clock(r.time_in_zone_s), (r) => r.time_in_zone_s],
    ["w_per_kg", "W/kg", (r) => fmt(r.w_per_kg, 1), (r) => r.w_per_kg],
    ["np_w", "NP (W)", (r) => fmt(r.np_w), (r) => r.np_w],
  ],
};

const STATUS = { active: "", paused: "paused", finished: "finished", left: "left", stopped: "stopped", no_data: "no data" };

export class Leaderboard {
  /**
   * @param {HTMLElement} root the board's section (holds #board-table parts)
   * @param {{groupId: string, meId: string, coach: boolean, kind: string, names: Map<string,string>}} opts
   */
  constructor(root, { groupId, meId, coach, kind, names }) {
    this.root = root;
    this.groupId = groupId;
    this.meId = meId;
    this.coach = coach;
    this.kind = kind === "class" ? "class" : "race";
    this.names = names;
    this.rows = new Map(); // athlete id -> row
    this.seq = -1; // the seq of the board the view has (-1: none yet)
    this.waiting = false; // a delta did not fit: wait for the next full board
    this.final = false;
    this.flagged = new Set(); // athletes with an alert raised (the coach's)
    this.sortKey = "rank";
    this.sortDir = 1;
    this.frames = 0; // leaderboard frames taken (tests read it)
  }

  /** A `leaderboard` frame; whether the view changed. */
  apply(ev) {
    if (!ev || ev.group_id !== this.groupId || !Array.isArray(ev.rows)) return false;
    this.frames += 1;
    if (ev.full) {
      // Always taken: after a worker's crash a seq may repeat, its first board is full.
      this.rows = new Map(ev.rows.map((r) => [r.athlete_id, r]));
      this.waiting = false;
    } else {
      if (this.seq < 0 || ev.seq <= this.seq) return false;
      const base = (typeof ev.from_seq === "number" ? ev.from_seq : ev.seq) - 1;
      if (base > this.seq) {
        this.waiting = true; // missed one: only a full board puts the view right
        this.render();
        return false;
      }
      for (const r of ev.rows) this.rows.set(r.athlete_id, r);
      for (const id of ev.removed || []) this.rows.delete(id);
    }
    this.seq = ev.seq;
    if (ev.kind === "race" || ev.kind === "class") this.kind = ev.kind;
    this.final = Boolean(ev.final);
    // A member's socket gets its window of the board: `size` is the whole board's.
    this.size = typeof ev.size === "number" ? ev.size : this.rows.size;
    this.render();
    return true;
  }

  /** An alert of a member (delivered to the coach on the group's channel). */
  flag(athleteId) {
    if (!athleteId) return;
    this.flagged.add(athleteId);
    this.render();
  }

  sortBy(key) {
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.render();
  }

  /** The rows by rank (the unranked last), or by the coach's chosen column. */
  ordered() {
    const byRank = [...this.rows.values()].sort(
      (a, b) => (a.rank ?? Infinity) - (b.rank ?? Infinity) || this.name(a).localeCompare(this.name(b)),
    );
    if (!this.coach || this.sortKey === "rank") return this.sortDir === 1 ? byRank : byRank.reverse();
    if (this.sortKey === "name") {
      return byRank.sort((a, b) => this.sortDir * this.name(a).localeCompare(this.name(b)));
    }
    const col = COLUMNS[this.kind].find((c) => c[0] === this.sortKey);
    const key = this.sortKey === "alerts" ? (r) => this.alerts(r) : col ? col[3] : (r) => r.rank;
    return byRank.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      if (typeof x !== "number" || !Number.isFinite(x)) return 1; // no data last, either way
      if (typeof y !== "number" || !Number.isFinite(y)) return -1;
      return this.sortDir * (x - y);
    });
  }

  /** What the athlete sees: the leader, then their neighbours and themselves. */
  visible() {
    const all = this.ordered();
    if (this.coach) return all;
    const at = all.findIndex((r) => r.athlete_id === this.meId);
    if (at < 0) return all.slice(0, 1 + 2 * NEIGHBOURS);
    const shown = all.slice(Math.max(0, at - NEIGHBOURS), at + NEIGHBOURS + 1);
    if (shown[0] !== all[0]) shown.unshift(all[0]);
    return shown;
  }

  name(r) {
    return this.names.get(r.athlete_id) || r.athlete_id.slice(0, 8);
  }

  alerts(r) {
    return (r.alerts_open || 0) + (this.flagged.has(r.athlete_id) && !r.alerts_open ? 1 : 0);
  }

  render() {
    const doc = this.root.ownerDocument;
    const head = this.root.querySelector("thead");
    const body = this.root.querySelector("tbody");
    const cols = COLUMNS[this.kind];
    const headings = [["rank", "Rank"], ["name", "Athlete"], ...cols.map((c) => [c[0], c[1]]), ["status", "Status"]];
    if (this.coach) headings.push(["alerts", "Alerts"]);
    const tr = doc.createElement("tr");
    for (const [key, label] of headings) {
      const th = doc.createElement("th");
      th.scope = "col";
      if (this.coach && key !== "status") {
        const button = doc.createElement("button");
        button.type = "button";
        button.className = "link";
        button.textContent = label;
        button.addEventListener("click", () => this.sortBy(key));
        th.append(button);
        if (this.sortKey === key) th.setAttribute("aria-sort", this.sortDir === 1 ? "ascending" : "descending");
      } else {
        th.textContent = label;
      }
      tr.append(th);
    }
    head.replaceChildren(tr);
    const rows = [];
    for (const r of this.visible()) {
      const row = doc.createElement("tr");
      row.dataset.athlete = r.athlete_id;
      if (r.athlete_id === this.meId) {
        row.classList.add("me");
        row.setAttribute("aria-current", "true");
      }
      const alerts = this.alerts(r);
      if (alerts > 0) row.classList.add("alerted");
      const cells = [r.rank ?? "–", this.name(r), ...cols.map((c) => c[2](r)), STATUS[r.status] ?? r.status];
      if (this.coach) cells.push(alerts > 0 ? `⚠ ${alerts}` : "");
      for (const text of cells) {
        const td = doc.createElement("td");
        td.textContent = String(text);
        row.append(td);
      }
      rows.push(row);
    }
    body.replaceChildren(...rows);
    const state = this.root.querySelector("[data-board-state]");
    if (state) {
      state.textContent = this.waiting
        ? "catching up…"
        : this.final
          ? "final standings"
          : this.seq < 0
            ? "waiting for the first board…"
            : `${this.size ?? this.rows.size} athletes`;
    }
  }
}
