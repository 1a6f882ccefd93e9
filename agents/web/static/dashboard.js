// Samband operations dashboard: polls /api/overview, draws its history as SVG charts, replays dead
// letters and traces events. No framework and no build step: what the worker serves is what runs.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#3b6fd4", "#16794a", "#c77700", "#8e44ad", "#b3261e", "#1a8c9c", "#5b6475"];
const BAD_STATES = new Set(["failing", "suspended", "disabled"]);

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const item of rows) render(body.insertRow(), item);
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function short(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e4) return `${Math.round(value / 1e3)}k`;
  if (value >= 100) return String(Math.round(value));
  return String(Math.round(value * 10) / 10);
}

// A line chart of series [{name, points: [[epoch seconds, value or null], ...]}] into an <svg>.
function lineChart(element, series) {
  const width = element.clientWidth || 600, height = element.clientHeight || 190;
  const left = 44, right = 8, top = 8, bottom = 34;
  element.setAttribute("viewBox", `0 0 ${width} ${height}`);
  element.replaceChildren();
  const points = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
  if (points.length === 0) {
    svg("text", { x: left, y: height / 2 }, element).textContent = "no samples yet";
    return;
  }
  const times = points.map((p) => p[0]);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const top_value = Math.max(1, ...points.map((p) => p[1])) * 1.1;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - v / top_value) * (height - top - bottom);
  for (const fraction of [0, 0.5, 1]) {
    const value = top_value * fraction;
    svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }, element);
    svg("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end" }, element).textContent = short(value);
  }
  for (const t of [t0, t1]) {
    const label = svg("text", { x: x(t), y: height - bottom + 13, "text-anchor": t === t0 ? "start" : "end" }, element);
    label.textContent = new Date(t * 1000).toLocaleTimeString();
  }
  let legend = left;
  series.forEach((s, n) => {
    const colour = COLOURS[n % COLOURS.length];
    const drawn = s.points.filter((p) => p[1] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    const line = svg("polyline", { points: drawn.join(" "), class: "series", stroke: colour }, element);
    if (n % 2) line.setAttribute("stroke-dasharray", "6 3"); // lines that run together stay visible
    line.dataset.series = s.name;
    svg("rect", { x: legend, y: height - 11, width: 10, height: 3, fill: colour }, element);
    const text = svg("text", { x: legend + 14, y: height - 7 }, element);
    text.textContent = s.name;
    legend += 24 + s.name.length * 6.5;
  });
}

function sparkline(delivered, failed) {
  const element = svg("svg", { class: "spark", viewBox: "0 0 120 24", preserveAspectRatio: "none" });
  const top_value = Math.max(1, ...delivered, ...failed);
  const draw = (values, colour) => {
    if (values.length === 0) return;
    const step = values.length > 1 ? 120 / (values.length - 1) : 0;
    const points = values.map((v, n) => `${(n * step).toFixed(1)},${(22 - (v / top_value) * 20).toFixed(1)}`);
    svg("polyline", { points: points.join(" "), stroke: colour }, element);
  };
  draw(delivered, "#16794a");
  draw(failed, "#b3261e");
  return element;
}

// The operator's bearer token, kept for this tab only: every /api call needs one.
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("samband-token") || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem("samband-token", tokenInput.value));

function authorization() {
  return { Authorization: `Bearer ${tokenInput.value}` };
}

async function replay(url, what) {
  const status = document.getElementById("replay-result");
  const response = await fetch(url, { method: "POST", headers: authorization() });
  const body = await response.json();
  if (!response.ok) status.textContent = `${what}: replay refused (${body.error})`;
  else if (body.dead_letters !== undefined) status.textContent = `${what}: replayed ${body.replayed} of ${body.dead_letters} dead letters`;
  else status.textContent = `${what}: replayed ${body.replayed}${body.said.length ? ` (${body.said.join("; ")})` : ""}`;
  refresh();
}

function replayButton(label, url, what) {
  const button = document.createElement("button");
  button.textContent = label;
  button.className = "replay";
  button.addEventListener("click", () => replay(url, what));
  return button;
}

function renderSubscription(row, s, samples) {
  row.dataset.subscription = s.id;
  cell(row, s.id);
  cell(row, s.reason ? `${s.state} (${s.reason})` : s.state, `state state-${s.state}`);
  cell(row, s.last_delivered);
  cell(row, s.consecutive_failures, "num failures");
  cell(row, s.retry_backlog, "num retry-backlog");
  cell(row, s.pending, "num pending");
  cell(row, `${s.dead_letters_unresolved} / ${s.dead_letters}`, "num dead-letters");
  const attempts = samples.map((sample) => sample.subscriptions[s.id] || { delivered: 0, failed: 0 });
  const spark = row.insertCell();
  spark.className = "sparkline";
  spark.dataset.delivered = String(attempts.reduce((sum, a) => sum + a.delivered, 0));
  spark.appendChild(sparkline(attempts.map((a) => a.delivered), attempts.map((a) => a.failed)));
  const action = row.insertCell();
  if (s.dead_letters_unresolved > 0) {
    action.appendChild(replayButton("Replay dead letters", `/api/subscriptions/${encodeURIComponent(s.id)}/replay`, s.id));
  }
}

let deadLetters = { stages: [], recent: [], problems: [], window_s: 0 };

function options(select, values) {
  const chosen = select.value;
  select.replaceChildren(new Option("all", ""), ...values.map((v) => new Option(v, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

function renderDeadLetters() {
  const stage = document.getElementById("filter-stage"), reason = document.getElementById("filter-reason");
  options(stage, deadLetters.stages.filter((s) => s.total > 0).map((s) => s.stage));
  options(reason, [...new Set(deadLetters.recent.map((d) => d.reason))].sort());
  document.getElementById("dead-letter-window").textContent = `last ${Math.round(deadLetters.window_s / 60)} min`;
  const problems = document.getElementById("dead-letter-problems");
  problems.replaceChildren(...deadLetters.problems.map((p) => Object.assign(document.createElement("li"), { textContent: p })));
  fill("dead-letter-stages", deadLetters.stages, (row, s) => {
    row.dataset.stage = s.stage;
    cell(row, s.stage);
    cell(row, s.total, "num total");
    cell(row, s.reasons.slice(0, 3).map((r) => `${r.reason} ${r.count}`).join(", "));
  });
  const shown = deadLetters.recent.filter((d) => (!stage.value || d.stage === stage.value) && (!reason.value || d.reason === reason.value));
  fill("dead-letters", shown, (row, d) => {
    row.dataset.deadLetter = d.id;
    cell(row, d.id); cell(row, d.time); cell(row, d.stage); cell(row, d.reason, "reason");
    cell(row, d.subscription); cell(row, d.event_id);
    const action = row.insertCell();
    if (d.stage === "deliver") action.appendChild(replayButton("Replay", `/api/dead-letters/${encodeURIComponent(d.id)}/replay`, d.id));
  });
}
document.getElementById("filter-stage").addEventListener("change", renderDeadLetters);
document.getElementById("filter-reason").addEventListener("change", renderDeadLetters);

function renderHealth(data) {
  const reasons = [...deadLetters.problems];
  for (const s of data.subscriptions) if (BAD_STATES.has(s.state)) reasons.push(`${s.id}: ${s.state}`);
  setHealth(reasons);
}

function setHealth(reasons) {
  const badge = document.getElementById("health");
  badge.textContent = reasons.length ? "UNHEALTHY" : "HEALTHY";
  badge.className = `badge ${reasons.length ? "unhealthy" : "healthy"}`;
  badge.title = reasons.join("\n");
}

function renderCharts(history) {
  const samples = history.samples;
  const span = history.span_s >= 3600 ? `${Math.round(history.span_s / 360) / 10} h` : `${Math.round(history.span_s / 60)} min`;
  for (const label of document.querySelectorAll(".span")) label.textContent = `last ${span}`;
  const series = (names, pick) => names.map((name) => ({ name, points: samples.map((s) => [s.at, pick(s, name)]) }));
  const stages = ["source", "ingest", "route", "deliver"];
  lineChart(document.getElementById("chart-throughput"), series(stages, (s, name) => s.stages[name] ?? null));
  const groups = [...new Set(samples.flatMap((s) => Object.keys(s.lag)))].sort();
  const label = (group) => group.split("-").pop();
  lineChart(document.getElementById("chart-lag"), groups.map((g) => ({ name: label(g), points: samples.map((s) => [s.at, s.lag[g] ?? null]) })));
  lineChart(document.getElementById("chart-latency"), series(["p50", "p99"], (s, name) => s.latency_ms[name] ?? null));
}

async function refresh() {
  try {
    const response = await fetch("/api/overview", { headers: authorization() });
    if (response.status === 401 || response.status === 403) {
      document.getElementById("updated").textContent = "enter a bearer token with scope operations:read";
      return;
    }
    const data = await response.json();
    if (data.history) renderCharts(data.history);
    if (!data.broker.reachable) {
      document.getElementById("updated").textContent = `broker unreachable: ${data.broker.problem}`;
      setHealth([`broker unreachable: ${data.broker.problem}`]);
      return;
    }
    deadLetters = data.dead_letters;
    fill("throughput", data.throughput, (row, t) => {
      row.dataset.topic = t.topic;
      cell(row, t.topic); cell(row, t.records, "num records"); cell(row, t.rate_per_second, "num rate");
    });
    fill("lag", data.lag, (row, l) => { cell(row, l.group); cell(row, l.topic); cell(row, l.lag, "num"); });
    fill("subscriptions", data.subscriptions, (row, s) => renderSubscription(row, s, data.history.samples));
    fill("backfills", data.backfills, (row, b) => {
      row.dataset.subscription = b.subscription;
      cell(row, b.subscription); cell(row, b.since); cell(row, b.routed, "num routed"); cell(row, b.total, "num");
      cell(row, `${b.finished}/${b.partitions}`, "num"); cell(row, b.done ? "done" : "running", "state");
    });
    renderDeadLetters();
    renderHealth(data);
    document.getElementById("updated").textContent = `updated ${new Date(data.at * 1000).toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("updated").textContent = `update failed: ${error}`;
  }
}

function step(text, at, cls) {
  const item = document.createElement("li");
  if (cls) item.className = cls;
  const time = document.createElement("time");
  time.textContent = at;
  item.append(time, text);
  return item;
}

document.getElementById("trace-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = document.getElementById("event-id").value.trim();
  const response = await fetch(`/api/trace/${encodeURIComponent(id)}`, { headers: authorization() });
  const trace = await response.json();
  document.getElementById("trace").textContent = JSON.stringify(trace, null, 2);
  const timeline = document.getElementById("trace-timeline"), outcome = document.getElementById("trace-outcome");
  if (!response.ok) {
    timeline.replaceChildren(step(trace.found === false ? "not found in the bus's topics" : `refused (${trace.error})`, id, "bad"));
    outcome.replaceChildren();
    return;
  }
  timeline.replaceChildren(...trace.timeline.map((s) => step(s.step, s.at,
    /delivered$/.test(s.step) ? "good" : /dead-lettered|rejected|retry/.test(s.step) ? "bad" : "")));
  outcome.replaceChildren(...trace.deliveries.map((d) => {
    const item = document.createElement("li");
    item.dataset.subscription = d.subscription;
    item.className = `outcome outcome-${d.status}`;
    item.textContent = `${d.subscription}: ${d.status} after ${d.attempts} attempt(s)${d.replays ? `, ${d.replays} replay(s)` : ""}`;
    return item;
  }));
});

refresh();
setInterval(refresh, POLL_MS);
