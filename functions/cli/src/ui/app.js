// The operator page: six views over the API, with the operator's token. Plain DOM, no
// framework, no network but this server. Text from the server is only ever set as text.
"use strict";

const state = { token: sessionStorage.getItem("flowgate-token") || "", liveTimer: null, workflows: new Set() };

// Workflow codes the page has seen (in requests, letters and backfills), offered as
// suggestions where a code is asked for.
function sawWorkflows(codes) {
  for (const code of codes) if (code && !state.workflows.has(code)) state.workflows.add(code);
  const list = document.getElementById("known-workflows");
  list.replaceChildren(...[...state.workflows].sort().map((code) => el("option", { value: code })));
}

// ---- calling the API -------------------------------------------------------------------

class Unreachable extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (e) {
    showUnreachable(true);
    throw new Unreachable("the server cannot be reached");
  }
  showUnreachable(false);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  showDenied(response.status === 401 || response.status === 403 ? body : null);
  if (!response.ok) {
    const detail = (body && (body.detail || body.title)) || `HTTP ${response.status}`;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showUnreachable(on) {
  const banner = document.getElementById("unreachable");
  banner.textContent = on
    ? `Cannot reach the Flowgate server at ${location.origin}. Is “flowgate serve” running? ` +
      "The page keeps trying; nothing you entered is lost."
    : "";
  banner.hidden = !on;
}

function showDenied(problem) {
  const banner = document.getElementById("denied");
  banner.hidden = !problem;
  banner.textContent = problem
    ? `The server refused the token: ${problem.detail || problem.title}. Enter a token above.`
    : "";
}

// ---- small DOM helpers -----------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function show(id, ...nodes) {
  const target = document.getElementById(id);
  target.replaceChildren(...nodes);
}

function failure(error) {
  return el("p", { class: "error", role: "status", text: `Could not load: ${error.message}` });
}

function when(iso) {
  return iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

// A stage's time to the millisecond, and how long after the first stage it came.
function stageTime(iso, first) {
  const at = new Date(iso);
  const after = at - new Date(first);
  const since = after < 1000 ? `+${after} ms` : `+${(after / 1000).toFixed(1)} s`;
  return `${at.toISOString().replace("T", " ")} (${since})`;
}

function table(headers, rows) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))))
  );
}

// ---- tabs (arrow keys move between them, as the ARIA tabs pattern says) ---------------

function selectTab(tab, focus) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  location.hash = tab.id.replace("tab-", "");
  clearInterval(state.liveTimer);
  if (tab.id === "tab-live") {
    refreshLive();
    state.liveTimer = setInterval(refreshLive, 2000);
  }
  if (tab.id === "tab-dlq") refreshDlq();
  if (tab.id === "tab-audit") refreshAudit();
  if (tab.id === "tab-runs") showRuns(document.getElementById("runs-workflow").value.trim());
  if (tab.id === "tab-schedules") {
    showSchedules(document.getElementById("schedules-workflow").value.trim());
    refreshBackfills();
  }
}

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      selectTab(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
  const start = document.getElementById(`tab-${location.hash.slice(1)}`) || tabs[0];
  selectTab(start, false);
}

// ---- find a request ----------------------------------------------------------------------

async function find(q) {
  show("find-result", el("p", { text: "Looking…" }));
  try {
    const found = await api(`/v1/find?q=${encodeURIComponent(q)}`);
    sawWorkflows([found.request.workflow]);
    show("find-result", requestView(found));
  } catch (e) {
    show("find-result", e.status === 404 ? el("p", { text: `Nothing of yours is called “${q}”.` }) : failure(e));
  }
}

function requestView(found) {
  const r = found.request;
  const facts = el(
    "dl",
    { class: "facts" },
    ...[
      ["Matched", found.matched.replace("_", " ")],
      ["Status", r.status],
      ["Request", r.request_id],
      ["Instance", r.instance_id],
      ["Workflow", r.workflow],
      ["Trace", (r.history || []).map((e) => e.trace_id).find(Boolean) || "—"],
      ["Accepted", when(r.accepted_at)],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "—" })])
  );
  const history = r.history || [];
  const steps = history.map((e) =>
    el(
      "li",
      { class: `stage stage-${e.event}` },
      el("time", { datetime: e.at, text: stageTime(e.at, history[0].at) }),
      el("strong", { text: e.event }),
      el("span", { text: e.detail || "" })
    )
  );
  return el(
    "article",
    { "aria-label": `Request ${r.request_id}` },
    facts,
    el("h3", { text: "Timeline" }),
    el("ol", { class: "timeline" }, ...steps)
  );
}

// ---- live charts ---------------------------------------------------------------------------

async function refreshLive() {
  try {
    const live = await api("/v1/stats/live");
    drawLive(live);
  } catch (e) {
    if (!(e instanceof Unreachable)) show("live-summary", document.createTextNode(`Could not load: ${e.message}`));
  }
}

function drawLive(live) {
  const last = live.counts.slice(-60);
  const sum = (k) => last.reduce((a, p) => a + p[k], 0);
  const lag = live.lag[live.lag.length - 1];
  const summary = live.tracked
    ? `Last minute: ${sum("accepted")} accepted, ${sum("created")} created, ${sum("dead")} dead-lettered.` +
      (lag ? ` Lag p50 ${fmtSecs(lag.p50)}, p99 ${fmtSecs(lag.p99)}.` : " No creations in the window.")
    : "This server charts at most its first 1,024 tenants; yours is not among them.";
  show("live-summary", document.createTextNode(summary));
  const xs = live.counts.map((p) => p.t);
  show(
    "chart-counts",
    lineChart(xs, [
      { name: "accepted", values: live.counts.map((p) => p.accepted) },
      { name: "created", values: live.counts.map((p) => p.created) },
      { name: "dead", values: live.counts.map((p) => p.dead) },
    ], live.now, (v) => String(Math.round(v)))
  );
  show(
    "chart-lag",
    lineChart(live.lag.map((p) => p.t), [
      { name: "p50", values: live.lag.map((p) => p.p50) },
      { name: "p99", values: live.lag.map((p) => p.p99) },
    ], live.now, fmtSecs)
  );
}

function fmtSecs(s) {
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// One line per series over the 15-minute window ending at `now`.
function lineChart(ts, series, now, label) {
  const [w, h, left, bottom] = [720, 180, 56, 22];
  const from = now - 899;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const x = (t) => left + ((t - from) / 899) * (w - left - 8);
  const y = (v) => 8 + (1 - v / max) * (h - bottom - 8);
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", class: "plot" });
  const names = series.map((s) => s.name).join(", ");
  root.append(Object.assign(svg("title", {}), { textContent: `${names}; peak ${label(max)}` }));
  root.append(svg("line", { x1: left, y1: y(0), x2: w - 8, y2: y(0), class: "axis" }));
  for (const v of [max, max / 2]) {
    root.append(svg("line", { x1: left, y1: y(v), x2: w - 8, y2: y(v), class: "grid" }));
    root.append(Object.assign(svg("text", { x: left - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" }), { textContent: label(v) }));
  }
  for (const [t, text, anchor] of [[from, "−15 min", "start"], [now - 450, "−7.5 min", "middle"], [now, "now", "end"]]) {
    root.append(Object.assign(svg("text", { x: x(t), y: h - 4, class: "tick", "text-anchor": anchor }), { textContent: text }));
  }
  series.forEach((s, i) => {
    const points = s.values.map((v, j) => `${x(ts[j]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    if (s.values.length) root.append(svg("polyline", { points, class: `series s${i}` }));
    // Sparse series (the lag, one point per 10 s with creations) get a dot per point.
    if (s.values.length <= 90) {
      s.values.forEach((v, j) => root.append(svg("circle", { cx: x(ts[j]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: `dot s${i}` })));
    }
  });
  const legend = el("ul", { class: "legend" }, ...series.map((s, i) => el("li", { class: `s${i}`, text: s.name })));
  return el("div", {}, root, legend);
}

// ---- dead letters ---------------------------------------------------------------------------

async function refreshDlq() {
  show("dlq-result", el("p", { text: "Loading…" }));
  try {
    const letters = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const query = `/v1/dlq?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const body = await api(query);
      letters.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    sawWorkflows(letters.map((l) => l.workflow));
    show("dlq-result", dlqGroups(letters, Boolean(cursor)));
  } catch (e) {
    show("dlq-result", failure(e));
  }
}

function dlqGroups(letters, more) {
  if (!letters.length) return el("p", { text: "The dead-letter queue is empty." });
  const groups = new Map();
  for (const l of letters) {
    const key = `${l.error_kind}\u0000${l.workflow || ""}`;
    const g = groups.get(key) || { kind: l.error_kind, workflow: l.workflow, count: 0, oldest: l, sample: l.error };
    g.count += 1;
    if (l.dead_lettered_at < g.oldest.dead_lettered_at) g.oldest = l;
    groups.set(key, g);
  }
  const rows = [...groups.values()]
    .sort((a, b) => b.count - a.count)
    .map((g) => {
      const button = el("button", { type: "button", text: "Replay…" });
      button.addEventListener("click", () => planReplay(g));
      return [
        document.createTextNode(g.kind),
        document.createTextNode(g.workflow || "(unknown)"),
        document.createTextNode(String(g.count)),
        document.createTextNode(when(g.oldest.dead_lettered_at)),
        el("span", { class: "reason", text: g.sample }),
        button,
      ];
    });
  return el(
    "div",
    {},
    el("p", { text: `${letters.length}${more ? "+" : ""} letters.` }),
    table(["Reason kind", "Workflow", "Letters", "Oldest", "A reason", ""], rows)
  );
}

function replayFilter(group) {
  const filter = { error: group.kind };
  if (group.workflow) filter.workflow = group.workflow;
  return filter;
}

async function planReplay(group) {
  const panel = document.getElementById("replay");
  panel.hidden = false;
  panel.replaceChildren(el("p", { text: "Dry run…" }));
  try {
    const plan = await api("/v1/dlq/replay", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...replayFilter(group), dry_run: true }),
    });
    const confirm = el("button", { type: "button", class: "danger", text: `Confirm: replay ${plan.replayed}` });
    const cancel = el("button", { type: "button", text: "Cancel" });
    // The confirmation replays what the dry run counted, and no more: a letter that fails
    // again at once comes back to the queue, and must not be replayed twice in one go.
    const letters = plan.replayed + plan.skipped_created + plan.failed;
    confirm.addEventListener("click", () => replay(group, letters));
    cancel.addEventListener("click", () => {
      panel.hidden = true;
      panel.replaceChildren();
    });
    panel.replaceChildren(
      el("h3", { text: `Replay ${group.kind} letters of ${group.workflow || "any workflow"}?` }),
      el("p", {
        text: `Dry run: ${plan.replayed} would be re-sent, ${plan.skipped_created} already created would be removed, ${plan.failed} would fail. Nothing has changed yet.`,
      }),
      confirm,
      cancel
    );
    confirm.focus();
  } catch (e) {
    panel.replaceChildren(failure(e));
  }
}

async function replay(group, max) {
  const panel = document.getElementById("replay");
  panel.replaceChildren(el("p", { text: "Replaying…" }));
  try {
    const done = await api("/v1/dlq/replay", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...replayFilter(group), max, dry_run: false }),
    });
    panel.replaceChildren(
      el("p", { role: "status", text: `Replayed ${done.replayed}; removed ${done.skipped_created} already created; ${done.failed} failed.` })
    );
    refreshDlq();
  } catch (e) {
    panel.replaceChildren(failure(e));
  }
}

// ---- schedules and backfills --------------------------------------------------------------

// Every schedule of the tenant (the first 200), or one workflow's when a code is given.
async function showSchedules(workflow) {
  show("schedules-result", el("p", { text: "Loading…" }));
  const route = workflow ? `/v1/workflows/${encodeURIComponent(workflow)}/schedules` : "/v1/schedules";
  try {
    const body = await api(route);
    sawWorkflows(body.items.map((s) => s.workflow));
    if (!body.items.length) {
      return show("schedules-result", el("p", { text: workflow ? `${workflow} has no schedules.` : "No schedules yet." }));
    }
    const rows = body.items.map((s) => [
      document.createTextNode(s.workflow),
      document.createTextNode(s.id),
      document.createTextNode(s.cron ? `cron ${s.cron}` : s.rate || `at ${s.at}`),
      document.createTextNode(s.timezone || "UTC"),
      document.createTextNode(s.paused ? "paused" : "active"),
      document.createTextNode(s.next_fire_times.length ? s.next_fire_times.slice(0, 3).map(when).join(", ") : "never again"),
      document.createTextNode(when(s.last_fired)),
      el("span", { class: "reason", text: s.last_error || "" }),
    ]);
    const headers = ["Workflow", "Schedule", "When", "Time zone", "State", "Next fires", "Handled up to", "Last error"];
    show("schedules-result", table(headers, rows));
  } catch (e) {
    show("schedules-result", failure(e));
  }
}

async function refreshBackfills() {
  try {
    const body = await api("/v1/backfills");
    sawWorkflows(body.items.map((b) => b.workflow));
    if (!body.items.length) return show("backfills-result", el("p", { text: "No backfills yet." }));
    const rows = body.items.map((b) => {
      const done = b.created + b.skipped + b.dead;
      const bar = el("progress", { max: String(b.total), value: String(done), "aria-label": `${done} of ${b.total} dates settled` });
      return [
        document.createTextNode(b.id),
        document.createTextNode(b.workflow),
        document.createTextNode(b.state),
        el("span", {}, bar, document.createTextNode(` ${done}/${b.total}`)),
        document.createTextNode(`${b.created} created, ${b.skipped} skipped, ${b.dead} dead, ${b.in_flight} in flight`),
        document.createTextNode(when(b.created_at)),
      ];
    });
    show("backfills-result", table(["Backfill", "Workflow", "State", "Progress", "Dates", "Asked"], rows));
  } catch (e) {
    show("backfills-result", failure(e));
  }
}

// ---- runs --------------------------------------------------------------------------------

// Up to 100 of a workflow's instances in one status, newest first.
async function instancesIn(workflow, status) {
  const query = new URLSearchParams({ status, limit: "100" }).toString();
  return (await api(`/v1/workflows/${encodeURIComponent(workflow)}/instances?${query}`)).items;
}

function policyText(w) {
  const c = w.concurrency;
  const limit = c
    ? `at most ${c.limit} unfinished ${c.key ? `per ${c.key}` : "for the workflow"}; at the limit: ${c.on_limit.replace("_", " ")}`
    : w.execution_type
      ? `execution type ${w.execution_type}`
      : "no concurrency limit";
  return w.run_timeout ? `${limit}; runs time out after ${fmtSecs(w.run_timeout)}` : limit;
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
}

async function showRuns(workflow) {
  if (!workflow) return;
  show("runs-result", el("p", { text: "Loading…" }));
  try {
    const w = await api(`/v1/workflows/${encodeURIComponent(workflow)}`);
    sawWorkflows([workflow]);
    const open = [];
    for (const status of ["RUNNING", "DISPATCHED", "CREATED"]) open.push(...(await instancesIn(workflow, status)));
    const now = Date.now();
    const to = new Date(now + 60_000).toISOString();
    const from = new Date(now - 24 * 3_600_000).toISOString();
    const audit = await api(`/v1/audit?${new URLSearchParams({ from, to }).toString()}`);
    const counts = audit.by_workflow[workflow] || { waiting: 0, skipped: 0 };
    const c = w.concurrency;
    const keyOf = (i) => {
      if (!c || !c.key) return "the workflow";
      const value = c.key.split("/").slice(1).reduce((v, part) => (v == null ? v : v[part.replace(/~1/g, "/").replace(/~0/g, "~")]), i.params);
      return typeof value === "string" ? value : JSON.stringify(value);
    };
    const byKey = new Map();
    for (const i of open) byKey.set(keyOf(i), (byKey.get(keyOf(i)) || 0) + 1);
    const nodes = [
      el("p", { text: `${workflow}: ${policyText(w)}.` }),
      el("p", {
        role: "status",
        text: `${open.length} unfinished; ${counts.waiting} waiting and ${counts.skipped} skipped in the last day.`,
      }),
    ];
    if (byKey.size) {
      const limit = c ? c.limit : w.execution_type && w.execution_type !== "PARALLEL" ? 1 : null;
      nodes.push(el("h3", { text: "Against each limit" }));
      nodes.push(table(["Key", "Unfinished", "Limit"],
        [...byKey].map(([k, n]) => [k, String(n), limit == null ? "none" : String(limit)].map((v) => document.createTextNode(v)))));
      nodes.push(el("h3", { text: "Unfinished runs" }));
      nodes.push(table(["Instance", "Key", "Status", "Created", "Open for"],
        open.slice(0, 100).map((i) => [i.instance_id, keyOf(i), i.status, when(i.created_at),
          fmtSecs(Math.round((now - new Date(i.created_at)) / 1000))].map((v) => document.createTextNode(v)))));
    }
    if (counts.skipped) {
      nodes.push(el("p", { class: "reason",
        text: "Each skipped start keeps its reason (the limit it met, or the newer start that replaced it) in its history: find it by its id." }));
    }
    const rows = [];
    for (const status of ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"]) {
      const took = (await instancesIn(workflow, status)).map((i) => i.duration_ms).filter((d) => d != null).sort((a, b) => a - b);
      if (!took.length) continue;
      rows.push([status, String(took.length), `${quantile(took, 0.5)} ms`, `${quantile(took, 0.95)} ms`].map((v) => document.createTextNode(v)));
    }
    nodes.push(el("h3", { text: "How long runs take (the last 100 of each outcome)" }));
    nodes.push(rows.length ? table(["Outcome", "Runs", "Median", "95th percentile"], rows) : el("p", { text: "No run has ended yet." }));
    show("runs-result", ...nodes);
  } catch (e) {
    show("runs-result", e.status === 404 ? el("p", { text: `No workflow of yours is called “${workflow}”.` }) : failure(e));
  }
}

// ---- audit -------------------------------------------------------------------------------

async function refreshAudit() {
  const now = Date.now();
  // The window ends a minute ahead, so that a start of this very second is in it.
  const to = new Date(now + 60_000).toISOString();
  for (const [id, hours] of [["audit-hour", 1], ["audit-day", 24]]) {
    show(id, el("p", { text: "Counting…" }));
    const from = new Date(now - hours * 3_600_000).toISOString();
    const query = new URLSearchParams({ from, to }).toString();
    try {
      show(id, ...auditView(await api(`/v1/audit?${query}`)));
    } catch (e) {
      show(id, failure(e));
    }
  }
}

function auditView(audit) {
  sawWorkflows(Object.keys(audit.by_workflow));
  const row = (name, c) =>
    [name, c.accepted, c.created, c.dispatched, c.dead, c.in_flight, c.overdue, c.waiting ?? 0, c.skipped ?? 0].map((v) => document.createTextNode(String(v)));
  const rows = Object.entries(audit.by_workflow).map(([name, c]) => row(name, c));
  rows.push(row("all workflows", audit));
  const headers = ["Workflow", "Accepted", "Created", "Handed off", "Dead", "In flight", "Overdue", "Waiting", "Skipped"];
  const holds = audit.invariant.holds;
  const verdict = el("p", {
    class: holds && !audit.overdue ? "ok" : "error",
    role: "status",
    text: `${audit.invariant.equation}: ${holds ? "holds" : "DOES NOT HOLD"}` +
      (audit.overdue ? `; ${audit.overdue} overdue` : "") +
      (audit.instances_checked ? "" : " (statuses taken at their word)"),
  });
  const nodes = [verdict, table(headers, rows)];
  if (audit.overdue_requests.length) {
    nodes.push(el("h4", { text: "Overdue" }));
    nodes.push(table(["Request", "Workflow", "Since its last send"],
      audit.overdue_requests.map((o) => [o.request_id, o.workflow, fmtSecs(o.age_seconds)].map((v) => document.createTextNode(v)))));
  }
  for (const id of audit.unaccounted_requests) nodes.push(el("p", { class: "error", text: `Unaccounted: request ${id}` }));
  if (audit.note) nodes.push(el("p", { class: "reason", text: audit.note }));
  return nodes;
}

// ---- start -------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token").value = state.token;
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("flowgate-token", state.token);
    selectTab(document.querySelector('[aria-selected="true"]'), false);
  });
  document.getElementById("find-form").addEventListener("submit", (e) => {
    e.preventDefault();
    find(document.getElementById("find-q").value.trim());
  });
  document.getElementById("schedules-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showSchedules(document.getElementById("schedules-workflow").value.trim());
  });
  document.getElementById("runs-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showRuns(document.getElementById("runs-workflow").value.trim());
  });
  document.getElementById("dlq-refresh").addEventListener("click", refreshDlq);
  document.getElementById("backfills-refresh").addEventListener("click", refreshBackfills);
  document.getElementById("audit-refresh").addEventListener("click", refreshAudit);
  setUpTabs();
  // A heartbeat, so the page says at once when the server goes away (and when it is back).
  setInterval(() => api("/healthz").catch(() => {}), 5000);
});
