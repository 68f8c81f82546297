// The dashboard page: polls /api/state and renders it. Every value comes from
// the run (service attributes, reasons, worker errors), so text is only ever
// set with textContent, never parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const pools = new Map(); // job -> {root, plot, decisions, ...}
  const tip = document.getElementById("tip");
  let lastOK = 0;

  // Exposed for the browser test and for curious operators' consoles.
  window.nightshift = { pools, polls: 0 };

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") e.textContent = v;
        else if (k === "class") e.className = v;
        else e.setAttribute(k, v);
      }
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function cls(kind, v) {
    return kind + "-" + String(v || "").replace(/[^a-z_]/gi, "");
  }

  function fmtTime(t) {
    const d = new Date(t);
    return d.toLocaleTimeString([], { hour12: false });
  }

  async function poll() {
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const res = await fetch("api/state", { headers, cache: "no-store" });
      if (!res.ok) throw new Error(res.status + " " + (await res.text()).trim());
      render(await res.json());
      lastOK = Date.now();
      window.nightshift.polls++;
      setLive("live, updated " + fmtTime(lastOK), false);
    } catch (e) {
      setLive("not updating: " + e.message, true);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function setLive(text, stale) {
    const l = document.getElementById("live");
    l.textContent = text;
    l.classList.toggle("stale", stale);
  }

  function render(snap) {
    const st = snap.status;
    const notes = document.getElementById("notes");
    notes.replaceChildren();
    if (snap.error) notes.append(el("div", { text: "status unavailable: " + snap.error }));
    if (!st) return;
    document.getElementById("run").textContent = st.run;
    document.title = "Nightshift " + st.run;
    document.getElementById("runmeta").textContent = "state " + st.state + " · plan " + st.plan;
    for (const n of st.notes || []) notes.append(el("div", { text: n }));
    renderLevels(st.levels || []);
    const views = new Map((snap.pools || []).map((p) => [p.job, p]));
    const seen = new Set();
    for (const job of st.jobs || []) {
      seen.add(job.name);
      renderPool(job, views.get(job.name));
    }
    for (const [name, p] of pools) {
      if (!seen.has(name)) {
        if (p.plot) p.plot.destroy();
        p.root.remove();
        pools.delete(name);
      }
    }
  }

  function renderLevels(levels) {
    const body = document.querySelector("#levels tbody");
    const rows = [];
    for (const l of levels) {
      for (const s of l.services || []) {
        let detail = s.error || "";
        if (s.state === "down" && s.last_exit) detail = s.last_exit;
        if (s.pid) detail = (s.alive ? "pid " : "dead pid ") + s.pid + (detail ? " · " + detail : "");
        rows.push(el("tr", { "data-service": s.name },
          el("td", { class: "num", text: String(l.level) }),
          el("td", { text: s.name }),
          el("td", { class: cls("state", s.state), text: s.state }),
          el("td", { text: s.host || "" }),
          el("td", { class: "num", text: String(s.restarts || 0) }),
          el("td", { class: "detail", text: detail })));
      }
    }
    body.replaceChildren(...rows);
  }

  function poolView(name) {
    let p = pools.get(name);
    if (p) return p;
    const summary = el("div", { class: "summary" });
    const workers = el("tbody");
    const plotBox = el("div", { class: "plot" });
    const decisions = el("ul", { class: "decisions" });
    const root = el("section", { class: "pool", "data-job": name },
      el("h2", { text: "Pool " + name }),
      summary,
      el("div", { class: "grid" },
        el("div", null,
          el("table", { class: "workers" },
            el("thead", null, el("tr", null,
              ...["Worker", "State", "Health", "Host", "Heartbeat", "Restarts", "Work"].map((h) => el("th", { text: h })))),
            workers),
          el("h3", { text: "Decisions", style: "margin-top:0.8em" }),
          decisions),
        plotBox));
    document.getElementById("pools").append(root);
    p = { root, summary, workers, plotBox, decisionsEl: decisions, plot: null, decisions: [], points: 0 };
    pools.set(name, p);
    return p;
  }

  // blockedText says why a pool's launches are held and what to check.
  function blockedText(b) {
    const why = b.cause === "no_heartbeat"
      ? "blocked: " + b.failed_launches + " workers in a row never sent a heartbeat (last: " + b.last_cause + ")"
      : "blocked after " + b.failed_launches + " failed launches (last: " + b.last_cause + ")";
    return b.check ? why + "; " + b.check : why;
  }

  function renderPool(job, view) {
    const p = poolView(job.name);
    const counts = Object.entries(job.counts || {}).sort().map(([k, v]) => k + " " + v).join(", ");
    const depth = job.queue_depth == null ? "n/a" : String(job.queue_depth);
    p.summary.replaceChildren(...[
      "engine ", el("b", { text: job.engine }),
      " · desired ", el("b", { class: "desired", text: String(job.desired) }),
      " · queue ", el("b", { text: depth }),
      counts ? " · " + counts : "",
      job.frozen ? el("b", { class: "blocked", text: " · FROZEN" }) : null,
      job.blocked ? el("div", { class: "blocked", text: blockedText(job.blocked) }) : null,
    ].filter((c) => c != null && c !== ""));

    const rows = (job.workers || []).map((w) => {
      const hb = w.heartbeat_age_s == null ? "–" : w.heartbeat_age_s.toFixed(1) + " s ago";
      return el("tr", { "data-worker": w.id, "data-state": w.state, "data-health": w.health },
        el("td", { text: w.id }),
        el("td", { class: cls("state", w.state), text: w.state }),
        el("td", { class: cls("health", w.health), text: w.health }),
        el("td", { text: w.host || "" }),
        el("td", { class: "num", text: hb }),
        el("td", { class: "num", text: String(w.restarts || 0) }),
        el("td", { text: w.draining_since ? "draining" : (w.busy ? "busy" : "idle") }));
    });
    p.workers.replaceChildren(...rows);

    if (!view) return;
    p.decisions = view.decisions || [];
    p.decisionsEl.replaceChildren(...p.decisions.slice(0, 30).map((d) => {
      const li = el("li", null, el("time", { datetime: d.time, text: fmtTime(d.time) }), d.reason);
      if (d.error) li.append(el("span", { class: "act err", text: "error: " + d.error }));
      for (const a of d.actions || []) {
        let what = a.type;
        if (a.ids && a.ids.length) what += " " + a.ids.join(", ");
        else if (a.count) what += " " + a.count;
        if (a.reason) what += ": " + a.reason;
        li.append(el("span", { class: "act", text: what }));
      }
      return li;
    }));
    if (view.error) p.decisionsEl.prepend(el("li", { class: "err", text: view.error }));
    drawPlot(p, view.series);
  }

  function drawPlot(p, s) {
    const data = [s.t, s.desired, s.running, s.queue];
    p.points = s.t.length;
    p.plotBox.dataset.points = String(p.points);
    if (!p.plot) {
      const width = Math.max(360, p.plotBox.clientWidth || 480);
      p.plot = new uPlot({
        width, height: 240,
        // Workers and messages differ by orders of magnitude: each has
        // its own axis, or a backlog of 200 flattens a pool of 6.
        scales: {
          x: { time: true },
          y: { range: (u, min, max) => [0, Math.max(4, max + 1)] },
          q: { range: (u, min, max) => [0, Math.max(10, max == null ? 0 : max * 1.1)] },
        },
        series: [
          {},
          { label: "desired", stroke: "#7c3aed", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
          { label: "running", stroke: "#15803d", width: 2, fill: "rgba(21,128,61,0.08)", paths: uPlot.paths.stepped({ align: 1 }) },
          { label: "queue depth", stroke: "#2563eb", width: 1.5, dash: [5, 4], spanGaps: false, scale: "q" },
        ],
        axes: [{}, { label: "workers", size: 50, scale: "y" },
          { label: "queue depth", size: 50, scale: "q", side: 1, grid: { show: false }, stroke: "#2563eb" }],
        hooks: { draw: [(u) => markDecisions(u, p)] },
      }, data, p.plotBox);
    } else {
      p.plot.setData(data);
    }
  }

  // markDecisions puts one marker per decision that acted (launched,
  // terminated, drained) on the plot's time axis; hovering one shows its
  // time and reason. Holds stay in the list beside the plot: marking each
  // would bury the changes under them.
  function markDecisions(u, p) {
    for (const m of u.over.querySelectorAll(".dmark")) m.remove();
    const [lo, hi] = [u.scales.x.min, u.scales.x.max];
    for (const d of p.decisions) {
      if (d.t < lo || d.t > hi || !(d.actions && d.actions.length)) continue;
      const m = el("div", { class: "dmark", "data-reason": d.reason });
      m.style.left = u.valToPos(d.t, "x") + "px";
      m.addEventListener("mouseenter", (ev) => showTip(ev, d));
      m.addEventListener("mousemove", (ev) => placeTip(ev));
      m.addEventListener("mouseleave", () => { tip.hidden = true; });
      u.over.append(m);
    }
  }

  function showTip(ev, d) {
    tip.replaceChildren(el("time", { text: fmtTime(d.time) }), d.reason);
    if (d.error) tip.append(el("div", { text: "error: " + d.error }));
    tip.hidden = false;
    placeTip(ev);
  }

  function placeTip(ev) {
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = ev.clientY + 14 + "px";
  }

  poll();
})();
