// Samband operations dashboard: polls /api/overview, replays dead letters, traces events.
"use strict";

const POLL_MS = 2000;

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

// The operator's bearer token, kept for this tab only: every /api call needs one.
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("samband-token") || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem("samband-token", tokenInput.value));

function authorization() {
  return { Authorization: `Bearer ${tokenInput.value}` };
}

async function replay(subscription) {
  const status = document.getElementById("replay-result");
  const response = await fetch(`/api/subscriptions/${encodeURIComponent(subscription)}/replay`, {
    method: "POST", headers: authorization(),
  });
  const body = await response.json();
  status.textContent = response.ok
    ? `${subscription}: replayed ${body.replayed} of ${body.dead_letters} dead letters`
    : `${subscription}: replay refused (${body.error})`;
  refresh();
}

function renderSubscription(row, s) {
  row.dataset.subscription = s.id;
  cell(row, s.id);
  cell(row, s.reason ? `${s.state} (${s.reason})` : s.state, `state state-${s.state}`);
  cell(row, s.last_delivered);
  cell(row, s.retry_backlog, "num retry-backlog");
  cell(row, s.pending, "num pending");
  cell(row, `${s.dead_letters_unresolved} / ${s.dead_letters}`, "num dead-letters");
  const action = row.insertCell();
  if (s.dead_letters_unresolved > 0) {
    const button = document.createElement("button");
    button.textContent = "Replay dead letters";
    button.className = "replay";
    button.addEventListener("click", () => replay(s.id));
    action.appendChild(button);
  }
}

async function refresh() {
  try {
    const response = await fetch("/api/overview", { headers: authorization() });
    if (response.status === 401 || response.status === 403) {
      document.getElementById("updated").textContent = "enter a bearer token with scope operations:read";
      return;
    }
    const data = await response.json();
    if (!data.broker.reachable) {
      document.getElementById("updated").textContent = `broker unreachable: ${data.broker.problem}`;
      return;
    }
    fill("throughput", data.throughput, (row, t) => {
      row.dataset.topic = t.topic;
      cell(row, t.topic); cell(row, t.records, "num records"); cell(row, t.rate_per_second, "num rate");
    });
    fill("lag", data.lag, (row, l) => { cell(row, l.group); cell(row, l.topic); cell(row, l.lag, "num"); });
    fill("subscriptions", data.subscriptions, renderSubscription);
    document.getElementById("updated").textContent = `updated ${new Date(data.at * 1000).toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("updated").textContent = `update failed: ${error}`;
  }
}

document.getElementById("trace-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = document.getElementById("event-id").value.trim();
  const response = await fetch(`/api/trace/${encodeURIComponent(id)}`, { headers: authorization() });
  document.getElementById("trace").textContent = JSON.stringify(await response.json(), null, 2);
});

refresh();
setInterval(refresh, POLL_MS);
