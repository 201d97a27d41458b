// Alerts in plain language: "Heart rate 138 bpm, above your 120 bpm ceiling for 40 s".
// Built from the alert's fields (rule, direction, current, threshold, and how long the
// condition had lasted when it fired); an alert of a rule not known here keeps the
// agents' own message, which is already a sentence.

function mmss(s) {
  const v = Math.max(0, Math.round(s));
  return `${Math.floor(v / 60)}:${String(v % 60).padStart(2, "0")}`;
}

/** "40 s", "2 min", "1 min 30 s" (null: nothing known). */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 1) return null;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return rest ? `${m} min ${rest} s` : `${m} min`;
}

const round = (v) => String(Math.round(v));

/**
 * The alert as a sentence.
 * @param {object} a {rule, metric, direction, current, threshold, started_at_s, fired_at_s, message}
 * @param {object} opts {own: true on the athlete's own page ("your"), else "the"}
 */
export function alertText(a, { own = true } = {}) {
  const your = own ? "your" : "the";
  const c = a.current;
  const th = a.threshold;
  const known = typeof c === "number" && typeof th === "number";
  const lasted = duration(
    typeof a.fired_at_s === "number" && typeof a.started_at_s === "number" ? a.fired_at_s - a.started_at_s : null,
  );
  const forHow = lasted ? ` for ${lasted}` : "";
  if (!known) return a.message || "Alert";
  const dir = a.direction || (c >= th ? "high" : "low");
  // A bound from the session's plan is the current interval's target range, not the
  // athlete's own ceiling or floor.
  const plan = a.bound === "plan";
  const whose = plan ? "the interval's" : your;
  const edge = (high) => (plan ? (high ? "target top" : "target bottom") : high ? "ceiling" : "floor");
  switch (a.rule) {
    case "heart_rate": {
      const high = dir === "high";
      return `Heart rate ${round(c)} bpm, ${high ? "above" : "below"} ${whose} ${round(th)} bpm ${edge(high)}${forHow}`;
    }
    case "power": {
      const high = dir === "high";
      return `Power ${round(c)} W, ${high ? "above" : "below"} ${whose} ${round(th)} W ${edge(high)}${forHow}`;
    }
    case "pace": {
      // Pace in s/km: slower is more seconds.
      const slow = dir === "slow" || (dir !== "fast" && c > th);
      return `Pace ${mmss(c)} /km, ${slow ? "slower" : "faster"} than ${whose} ${mmss(th)} /km ${plan ? "target" : "limit"}${forHow}`;
    }
    case "w_prime":
      return `W′ balance ${(c / 1000).toFixed(1)} kJ, under ${your} ${(th / 1000).toFixed(1)} kJ reserve: ease off to recover`;
    default:
      return a.message || "Alert";
  }
}
