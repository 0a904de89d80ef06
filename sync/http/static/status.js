// The status page: reads the admin API every 2 s with the token kept in this tab, and draws it.
// No library and no build step. Text from the API goes in through textContent only, never as
// markup: a channel's error message is data, not HTML.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "channel-sync-admin-token";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1570ef", "#dd2590", "#079455", "#dc6803", "#6938ef", "#0e9384", "#667085"];
const CHART = { width: 760, height: 240, left: 52, right: 12, top: 12, bottom: 28 };

let timer = null;

function $(id) {
  return document.getElementById(id);
}

// A token handed in the URL's fragment (`/#token=...`: never sent to any server) moves to this
// tab's storage, and the fragment leaves the address bar and the history.
function adoptFragmentToken() {
  const match = /^#token=(.+)$/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

async function api(path) {
  const answer = await fetch(path, {
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (answer.status === 401) {
    throw new Unauthorized("the daemon refused this token");
  }
  if (!answer.ok) {
    throw new Error(path + " answered " + answer.status);
  }
  return answer.json();
}

function cell(row, text, className, field) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  if (field) td.dataset.field = field;
  row.appendChild(td);
  return td;
}

function seconds(value) {
  if (value === null || value === undefined) return "-";
  if (value >= 100) return value.toFixed(0) + " s";
  if (value >= 1) return value.toFixed(1) + " s";
  return (value * 1000).toFixed(0) + " ms";
}

function duration(totalSeconds) {
  const s = Math.floor(totalSeconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(tr, emptyText);
    td.colSpan = columns;
    tbody.appendChild(tr);
  }
  return tbody;
}

function renderChannels(status, latency) {
  const tbody = fill($("channels").tBodies[0], status.channels, 11, "no channels configured");
  for (const ch of status.channels) {
    const lat = latency.channels[ch.name] || { count: 0, p50_s: null, p99_s: null };
    const tr = document.createElement("tr");
    tr.dataset.channel = ch.name;
    cell(tr, ch.name, null, "name");
    cell(tr, ch.kind, null, "kind");
    cell(tr, ch.state, "state-" + ch.state, "state");
    cell(tr, ch.lag_s === null ? "-" : ch.lag_s.toFixed(1) + " s", "num", "lag_s");
    cell(tr, ch.orders_today, "num", "orders_today");
    cell(tr, ch.jobs_pending, "num", "jobs_pending");
    cell(tr, ch.jobs_dead, "num", "jobs_dead");
    cell(tr, lat.count, "num", "pushes");
    cell(tr, seconds(lat.p50_s), "num", "p50");
    cell(tr, seconds(lat.p99_s), "num", "p99");
    cell(tr, ch.last_error || ch.last_dead_reason || "", "error", "last_error");
    tbody.appendChild(tr);
  }
}

function renderOrders(orders) {
  const tbody = fill($("orders").tBodies[0], orders.items, 7, "no orders yet");
  for (const order of orders.items) {
    const tr = document.createElement("tr");
    tr.dataset.orderId = order.id;
    cell(tr, order.id, "num", "id");
    cell(tr, order.channel, null, "channel");
    cell(tr, order.number || order.external_id, null, "number");
    cell(tr, order.status, null, "status");
    cell(tr, order.total === null ? "" : order.total + " " + order.currency, "num", "total");
    cell(tr, order.is_oversold ? "oversold" : "", order.is_oversold ? "oversold" : null, "oversold");
    cell(tr, clock(order.ingested_at), null, "ingested");
    tbody.appendChild(tr);
  }
}

function renderDeadJobs(jobs) {
  const tbody = fill($("dead-jobs").tBodies[0], jobs.items, 5, "none");
  for (const job of jobs.items) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    cell(tr, job.id, "num", "id");
    cell(tr, job.channel, null, "channel");
    cell(tr, job.kind, null, "kind");
    cell(tr, job.attempts, "num", "attempts");
    cell(tr, job.last_error, "error", "reason");
    tbody.appendChild(tr);
  }
}

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

// A round ceiling for the y axis: 1, 2 or 5 times a power of ten.
function niceCeiling(value) {
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function renderChart(latency, names) {
  const chart = $("latency-chart");
  const { width, height, left, right, top, bottom } = CHART;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const windowS = latency.window_s;
  let highest = 0;
  for (const name of names) {
    for (const b of (latency.channels[name] || { buckets: [] }).buckets) {
      highest = Math.max(highest, b.p50_s);
    }
  }
  const yMax = niceCeiling(Math.max(highest, 0.05));
  const x = (ageS) => left + plotW * (1 - ageS / windowS);
  const y = (valueS) => top + plotH * (1 - Math.min(valueS, yMax) / yMax);
  const parts = [];
  for (const fraction of [0, 0.5, 1]) {
    const v = yMax * fraction;
    parts.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    parts.push(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, seconds(v)));
  }
  for (let age = 0; age <= windowS; age += windowS / 5) {
    const label = age === 0 ? "now" : "-" + Math.round(age / 60) + " min";
    parts.push(svg("text", { x: x(age), y: height - 8, "text-anchor": "middle" }, label));
  }
  parts.push(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotH }));
  parts.push(
    svg("line", { class: "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH })
  );
  const legend = $("legend");
  legend.replaceChildren();
  names.forEach((name, index) => {
    const color = COLORS[index % COLORS.length];
    const buckets = (latency.channels[name] || { buckets: [] }).buckets;
    // A bucket is drawn at its middle; each gets a dot, so a lone one shows too.
    const at = buckets.map((b) => [x(b.age_s + latency.bucket_s / 2), y(b.p50_s)]);
    const points = at.map(([px, py]) => px.toFixed(1) + "," + py.toFixed(1)).join(" ");
    const line = svg("polyline", { points: points, stroke: color });
    line.dataset.channel = name;
    line.dataset.buckets = String(buckets.length);
    parts.push(line);
    for (const [px, py] of at) {
      parts.push(svg("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: 3, fill: color }));
    }
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.backgroundColor = color;
    item.append(swatch, name);
    legend.appendChild(item);
  });
  chart.replaceChildren(...parts);
}

function renderSummary(status) {
  const draining = status.draining ? " · draining" : "";
  $("summary").textContent =
    "database " + status.database + " · up " + duration(status.uptime_s) + draining;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function askForToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(timer);
  $("board").hidden = true;
  $("forget").hidden = true;
  $("token-form").hidden = false;
  $("summary").textContent = "not connected";
  showError(message);
  $("token").focus();
}

async function refresh() {
  try {
    const [status, latency, orders, dead] = await Promise.all([
      api("/api/status"),
      api("/api/latency"),
      api("/api/orders?limit=10"),
      api("/api/jobs?state=dead&limit=10"),
    ]);
    renderSummary(status);
    renderChannels(status, latency);
    renderChart(latency, status.channels.map((ch) => ch.name));
    renderOrders(orders);
    renderDeadJobs(dead);
    showError("");
    $("board").hidden = false;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } catch (error) {
    if (error instanceof Unauthorized) {
      askForToken(error.message + "; enter the admin token again.");
      return;
    }
    showError("Could not read the daemon: " + error.message + ". Retrying.");
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function start() {
  $("token-form").hidden = true;
  $("forget").hidden = false;
  clearTimeout(timer);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  adoptFragmentToken();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = $("token").value.trim();
    $("token").value = "";
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      start();
    }
  });
  $("forget").addEventListener("click", () => askForToken(""));
  if (token()) start();
  else askForToken("");
});
