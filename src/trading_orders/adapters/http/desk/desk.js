// The desk: shows the newest orders of the order log and follows GET /events.
// Every URL is relative to the page, so nothing is asked of any other origin
// and the desk works behind a path prefix too. Data from the service is put
// into the page as text (textContent), never as HTML: names come from clients.
"use strict";

const SHOWN_ORDERS = 200; // rows the blotter keeps; older ones fall off
const FIRST_PAGE = 100; // orders read from GET /orders on load
const WINDOW_SECONDS = 300; // the chart's span
const BUCKET_SECONDS = 10; // one bar of the chart
const HEALTH_EVERY_MS = 5000;
const POSITIONS_DEBOUNCE_MS = 300;
const REOPEN_AFTER_MS = 2000;
const ANNOUNCE_EVERY_MS = 1500;
const CHART_EVERY_MS = 1000;

const desk = {
  filters: { user: "", strategy: "" },
  lastSequence: 0, // the newest sequence shown or read: where the stream resumes
  orders: new Map(), // sequence -> order: the rows shown, one per sequence
  recent: [], // {at, accepted} of every order seen within the chart's window
  stream: null,
  load: 0, // counts loads, so the answers of a load that a newer one replaced are dropped
  timers: { positions: 0, reopen: 0, announce: 0 },
  unannounced: [],
};

const byId = (id) => document.getElementById(id);

class NeedsKey extends Error {}

function withFilters(extra) {
  const query = new URLSearchParams(extra);
  for (const [name, value] of Object.entries(desk.filters)) {
    if (value) query.set(name, value);
  }
  return query.toString();
}

// What an error answer says: the problem's detail (RFC 9457), else its status.
async function problemText(answer) {
  try {
    const problem = await answer.json();
    if (typeof problem.detail === "string") return `${answer.status} ${problem.title}: ${problem.detail}`;
  } catch (error) {
    // Not JSON (a proxy's page): the status alone.
  }
  return `HTTP ${answer.status}`;
}

async function getJson(path) {
  const answer = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (answer.status === 401) throw new NeedsKey(path);
  if (!answer.ok) throw new Error(`${path}: ${await problemText(answer)}`);
  return answer.json();
}

// ``text`` with a place to break after each underscore: INSTRUMENT_NOT_IN_STRATEGY may take two
// lines in a narrow column rather than widen the table past the window.
function breakable(text) {
  const parts = document.createDocumentFragment();
  text.split("_").forEach((part, index, all) => {
    parts.append(index < all.length - 1 ? `${part}_` : part);
    if (index < all.length - 1) parts.append(document.createElement("wbr"));
  });
  return parts;
}

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}

// Colour and text: the badge says ACCEPTED or REJECTED, with a mark, whatever the colours look like.
function statusBadge(status) {
  const accepted = status === "ACCEPTED";
  return element("span", `${accepted ? "✓" : "✗"} ${status}`, `status ${accepted ? "accepted" : "rejected"}`);
}

function setState(id, text, kind) {
  const shown = byId(id);
  shown.textContent = text;
  shown.className = `state ${kind}`;
}

// --- the blotter ---------------------------------------------------------

function reasonText(reason) {
  const shown = element("span", undefined, "reason");
  shown.append(breakable(reason));
  return shown;
}

function orderRow(order) {
  const row = document.createElement("tr");
  row.dataset.sequence = String(order.sequence);
  row.append(
    element("td", String(order.sequence), "number"),
    element("td", order.received_at.slice(11, 23)),
    element("td", order.strategy),
    element("td", order.instrument),
    element("td", order.position),
  );
  const result = element("td");
  result.append(statusBadge(order.RESPONSE));
  if (order.reason) result.append(" ", reasonText(order.reason));
  const decisions = element("td");
  const list = element("ul", undefined, "decisions");
  for (const decision of order.decisions) {
    const item = element("li");
    item.dataset.user = decision.user;
    item.dataset.status = decision.status;
    item.append(element("span", `${decision.user}: `), statusBadge(decision.status));
    if (decision.reason) item.append(" ", reasonText(decision.reason));
    list.append(item);
  }
  decisions.append(list);
  row.append(result, decisions);
  return row;
}

function noteSequence(sequence) {
  if (sequence > desk.lastSequence) {
    desk.lastSequence = sequence;
    byId("last-sequence").textContent = String(sequence);
  }
}

// Adds one order unless its sequence is already shown; true when it was added.
function addOrder(order, live) {
  if (desk.orders.has(order.sequence)) return false;
  desk.orders.set(order.sequence, order);
  noteSequence(order.sequence);
  desk.recent.push({ at: Date.parse(order.received_at), accepted: order.RESPONSE === "ACCEPTED" });
  const body = byId("blotter").tBodies[0];
  const row = orderRow(order);
  // Newest first; an order older than some shown (a replay) goes in its place.
  const later = [...body.rows].find((shown) => Number(shown.dataset.sequence) < order.sequence);
  body.insertBefore(row, later ?? null);
  if (live) row.classList.add("fresh");
  while (desk.orders.size > SHOWN_ORDERS) {
    const oldest = Math.min(...desk.orders.keys());
    desk.orders.delete(oldest);
    body.querySelector(`tr[data-sequence="${oldest}"]`)?.remove();
  }
  byId("blotter-empty").hidden = desk.orders.size > 0;
  return true;
}

function announce(order) {
  desk.unannounced.push(order);
  if (desk.timers.announce) return;
  // At most one announcement every so often: a busy desk must not drown a screen reader.
  desk.timers.announce = setTimeout(() => {
    const latest = desk.unannounced.at(-1);
    const count = desk.unannounced.length;
    desk.unannounced = [];
    desk.timers.announce = 0;
    const what = `${latest.strategy} ${latest.instrument} ${latest.position} ${latest.RESPONSE}`;
    byId("announcer").textContent = count === 1 ? `New order ${latest.sequence}: ${what}` :
      `${count} new orders; the latest, ${latest.sequence}: ${what}`;
  }, ANNOUNCE_EVERY_MS);
}

// --- rejection reasons, the chart ---------------------------------------

// Counted per order, one way for every reason: an order counts once for each reason any of its
// decisions was rejected for (UNKNOWN_STRATEGY rejects the order itself, with no decision).
function reasonCounts(orders) {
  const counts = new Map();
  for (const order of orders) {
    const reasons = new Set([order.reason, ...order.decisions.map((decision) => decision.reason)]);
    for (const reason of reasons) {
      if (reason) counts.set(reason, (counts.get(reason) ?? 0) + 1);
    }
  }
  return counts;
}

function drawReasons() {
  const counts = reasonCounts(desk.orders.values());
  const body = byId("reasons").tBodies[0];
  body.replaceChildren(
    ...[...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([reason, count]) => {
      const row = element("tr");
      row.dataset.reason = reason;
      const name = element("td");
      name.append(breakable(reason));
      row.append(name, element("td", String(count), "number"));
      return row;
    }),
  );
  byId("reasons-empty").hidden = counts.size > 0;
}

// The smallest of 1, 2 or 5 times a power of ten at or above ``value``: the chart's scale moves
// in a few round steps, not with every order.
function roundScale(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value - 1e-9);
}

// What the chart shows of ``recent`` at time ``now``. Its bars are whole 10 s of the clock, not
// 10 s counted back from now, so the same orders make the same bars, and the same scale, at every
// redraw; the window is the last 30 of them, the newest still filling.
function chartFigures(recent, now) {
  const bucketMs = BUCKET_SECONDS * 1000;
  const count = WINDOW_SECONDS / BUCKET_SECONDS;
  const first = Math.floor(now / bucketMs) - count + 1;
  const buckets = Array.from({ length: count }, () => ({ orders: 0, accepted: 0 }));
  for (const seen of recent) {
    const index = Math.floor(seen.at / bucketMs) - first;
    if (index < 0 || index >= count) continue;
    buckets[index].orders += 1;
    if (seen.accepted) buckets[index].accepted += 1;
  }
  const busiest = Math.max(...buckets.map((bucket) => bucket.orders)) / BUCKET_SECONDS;
  const total = buckets.reduce((sum, bucket) => sum + bucket.orders, 0);
  const accepted = buckets.reduce((sum, bucket) => sum + bucket.accepted, 0);
  // The share accepted of each bar with orders: a dot each, joined only where bars are side by
  // side, so a few scattered orders are a few dots rather than one stray stroke across the gaps.
  const dots = buckets.flatMap((bucket, index) =>
    bucket.orders ? [{ index, share: bucket.accepted / bucket.orders }] : []);
  const joined = dots.slice(1).flatMap((dot, at) => (dot.index === dots[at].index + 1 ? [[dots[at], dot]] : []));
  return {
    buckets, dots, joined, total, accepted, busiest,
    start: first * bucketMs,
    mean: total / WINDOW_SECONDS,
    scale: roundScale(Math.max(busiest, 0.1)),
  };
}

function drawChart(now = Date.now()) {
  const figures = chartFigures(desk.recent, now);
  desk.recent = desk.recent.filter((seen) => seen.at >= figures.start);
  const canvas = byId("rate-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 480;
  const height = canvas.clientHeight || 140;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const pen = canvas.getContext("2d");
  pen.scale(ratio, ratio);
  pen.clearRect(0, 0, width, height);
  const top = 6;
  const plot = height - top - 6;
  const step = width / figures.buckets.length;
  pen.fillStyle = "#6c8fb3";
  figures.buckets.forEach((bucket, index) => {
    const bar = (bucket.orders / BUCKET_SECONDS / figures.scale) * plot;
    pen.fillRect(index * step + 1, top + plot - bar, step - 2, bar);
  });
  const at = (dot) => [dot.index * step + step / 2, top + plot - dot.share * plot];
  pen.strokeStyle = "#0b6b2e";
  pen.fillStyle = "#0b6b2e";
  pen.lineWidth = 2;
  for (const [from, to] of figures.joined) {
    pen.beginPath();
    pen.moveTo(...at(from));
    pen.lineTo(...at(to));
    pen.stroke();
  }
  for (const dot of figures.dots) {
    pen.beginPath();
    pen.arc(...at(dot), 3, 0, 2 * Math.PI);
    pen.fill();
  }
  const minutes = WINDOW_SECONDS / 60;
  byId("rate-scale").textContent = `${figures.scale} orders/s`;
  byId("rate-summary").textContent = figures.total === 0 ? `No orders in the last ${minutes} minutes.` :
    `Last ${minutes} minutes: ${figures.total} orders, ${figures.mean.toFixed(2)} orders/s on average, ` +
    `${figures.busiest.toFixed(2)} orders/s in the busiest ${BUCKET_SECONDS} s, ` +
    `${Math.round((100 * figures.accepted) / figures.total)}% accepted.`;
}

// --- positions ----------------------------------------------------------

async function refreshPositions() {
  const load = desk.load;
  const { positions } = await getJson(`positions?${withFilters({})}`);
  if (load !== desk.load) return;
  const held = new Map(); // "user\u0000strategy" -> [user, strategy, instruments]
  for (const position of positions) {
    const key = `${position.user}\u0000${position.strategy}`;
    if (!held.has(key)) held.set(key, [position.user, position.strategy, []]);
    held.get(key)[2].push(position.instrument);
  }
  const rows = [...held.values()].sort((a, b) => a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]));
  byId("positions").tBodies[0].replaceChildren(
    ...rows.map(([user, strategy, instruments]) => {
      const row = element("tr");
      row.dataset.user = user;
      row.dataset.strategy = strategy;
      row.append(
        element("td", user),
        element("td", strategy),
        element("td", String(instruments.length), "number"),
        element("td", instruments.sort().join(", ")),
      );
      return row;
    }),
  );
  byId("positions-empty").hidden = rows.length > 0;
}

// Many orders in a burst ask for one read of the positions, not one each.
function positionsSoon() {
  clearTimeout(desk.timers.positions);
  desk.timers.positions = setTimeout(() => refreshPositions().catch(onFailure), POSITIONS_DEBOUNCE_MS);
}

// --- the stream ---------------------------------------------------------

function closeStream() {
  clearTimeout(desk.timers.reopen);
  if (desk.stream) desk.stream.close();
  desk.stream = null;
}

function openStream(after) {
  closeStream();
  // No key in the URL: with an API key set, the session cookie goes along by itself.
  const stream = new EventSource(`events?${withFilters({ after: String(after) })}`);
  desk.stream = stream;
  stream.addEventListener("open", () => setState("stream", "live", "ok"));
  stream.addEventListener("order", (event) => {
    const order = JSON.parse(event.data);
    if (!addOrder(order, true)) return;
    announce(order);
    drawReasons();
    drawChart();
    positionsSoon();
  });
  // A control changed (here or on any desk): the controls panel reads them again.
  stream.addEventListener("control", (event) => {
    noteSequence(Number(event.lastEventId));
    document.dispatchEvent(new CustomEvent("desk:control", { detail: JSON.parse(event.data) }));
    positionsSoon();
  });
  // A filter kept none of the orders read: the stream has still moved on.
  stream.addEventListener("progress", (event) => noteSequence(Number(event.lastEventId)));
  // This reader fell behind: the service ends the stream and says where to go on.
  stream.addEventListener("resume", (event) => {
    const { after: resumeAt } = JSON.parse(event.data);
    closeStream();
    setState("stream", "catching up", "unknown");
    openStream(resumeAt);
  });
  stream.addEventListener("error", () => {
    if (desk.stream !== stream) return;
    setState("stream", "reconnecting…", "bad");
    // CONNECTING: the browser retries by itself, sending Last-Event-ID, the
    // last sequence it got. CLOSED: it gave up (an answer other than 200),
    // so the desk finds out why and opens a new one.
    if (stream.readyState === EventSource.CLOSED) {
      desk.timers.reopen = setTimeout(() => reopen().catch(onFailure), REOPEN_AFTER_MS);
    }
  });
}

async function reopen() {
  const session = await getJson("desk/session");
  if (!session.active) throw new NeedsKey("desk/session");
  // The desk never loaded (the service was down when the page opened): load it now.
  if (byId("desk").hidden) return openDesk(session);
  const { orders } = await getJson("orders?limit=1");
  const newest = orders.length ? orders[0].sequence : 0;
  // A log shorter than what was shown is another log (an in-memory store restarted): start over.
  if (newest < desk.lastSequence) return loadDesk();
  openStream(desk.lastSequence);
}

// --- loading, filters, the key -------------------------------------------

function clearData() {
  closeStream();
  desk.orders.clear();
  desk.recent = [];
  desk.lastSequence = 0;
  byId("last-sequence").textContent = "–";
  byId("blotter").tBodies[0].replaceChildren();
  byId("positions").tBodies[0].replaceChildren();
  byId("reasons").tBodies[0].replaceChildren();
  byId("blotter-empty").hidden = false;
  byId("positions-empty").hidden = false;
  byId("reasons-empty").hidden = false;
}

async function loadDesk() {
  const load = ++desk.load;
  clearData();
  setState("stream", "loading…", "unknown");
  const filtered = Object.values(desk.filters).some(Boolean);
  // With a filter, the page below may hold nothing recent: resume from the
  // log's newest sequence, read first, so no order logged meanwhile is missed.
  const logEnd = filtered ? await getJson("orders?limit=1") : { orders: [] };
  const page = await getJson(`orders?${withFilters({ limit: String(FIRST_PAGE) })}`);
  if (load !== desk.load) return;
  for (const order of page.orders) addOrder(order, false);
  const after = Math.max(desk.lastSequence, logEnd.orders.length ? logEnd.orders[0].sequence : 0);
  noteSequence(after);
  drawReasons();
  drawChart();
  openStream(after);
  await refreshPositions();
}

function fillChoices(select, names) {
  const chosen = select.value;
  select.replaceChildren(select.options[0]);
  for (const name of names) select.append(new Option(name, name));
  select.value = names.includes(chosen) ? chosen : "";
}

async function loadChoices() {
  const [{ users }, { strategies }] = await Promise.all([getJson("users"), getJson("strategies")]);
  fillChoices(byId("filter-user"), users.map((u) => u.user));
  fillChoices(byId("filter-strategy"), strategies.map((s) => s.strategy));
}

function showLogin() {
  clearData();
  desk.load += 1;
  setState("stream", "not connected", "unknown");
  byId("desk").hidden = true;
  byId("logout").hidden = true;
  byId("login").hidden = false;
  byId("api-key").focus();
}

async function openDesk(session) {
  byId("login").hidden = true;
  byId("desk").hidden = false;
  byId("logout").hidden = !session.key_required;
  // The controls panel (controls.js) needs the session's change token and the names.
  document.dispatchEvent(new CustomEvent("desk:open", { detail: session }));
  await loadChoices();
  await loadDesk();
}

function onFailure(error) {
  if (error instanceof NeedsKey) {
    showLogin();
    return;
  }
  // The stream reconnects by itself; a failed read is retried by the next event or poll.
  setState("stream", "reconnecting…", "bad");
  if (!desk.stream || desk.stream.readyState === EventSource.CLOSED) {
    clearTimeout(desk.timers.reopen);
    desk.timers.reopen = setTimeout(() => reopen().catch(onFailure), REOPEN_AFTER_MS);
  }
}

async function logIn(event) {
  event.preventDefault();
  const field = byId("api-key");
  const answer = await fetch("desk/session", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ api_key: field.value }),
  });
  field.value = "";
  if (!answer.ok) {
    byId("login-error").textContent = answer.status === 401 ? "That is not the API key." :
      `The service answered ${await problemText(answer)}.`;
    field.focus();
    return;
  }
  byId("login-error").textContent = "";
  await openDesk(await answer.json());
}

async function logOut() {
  await fetch("desk/session", { method: "DELETE", credentials: "same-origin" });
  showLogin();
}

async function pollHealth() {
  try {
    const answer = await fetch("health", { headers: { Accept: "application/json" }, cache: "no-store" });
    const { status } = await answer.json();
    setState("health", status, answer.ok ? "ok" : "bad");
  } catch {
    setState("health", "unreachable", "bad");
  }
}

function changeFilters() {
  desk.filters = { user: byId("filter-user").value, strategy: byId("filter-strategy").value };
  loadDesk().catch(onFailure);
}

async function boot() {
  byId("login-form").addEventListener("submit", (event) => logIn(event).catch(onFailure));
  byId("logout").addEventListener("click", () => logOut().catch(onFailure));
  byId("filter-user").addEventListener("change", changeFilters);
  byId("filter-strategy").addEventListener("change", changeFilters);
  pollHealth();
  setInterval(pollHealth, HEALTH_EVERY_MS);
  // The window slides even when no order comes.
  setInterval(() => drawChart(), CHART_EVERY_MS);
  const session = await getJson("desk/session");
  if (session.active) await openDesk(session);
  else showLogin();
}

boot().catch(onFailure);
