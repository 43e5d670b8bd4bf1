// The desk's controls panel: the states and limits in force, and a form that halts, reduces,
// resumes or flattens a user or strategy after saying exactly what will and will not happen.
// It reads GET /controls when the desk opens and whenever the stream brings a control event
// (desk.js dispatches "desk:control"), so a change made anywhere shows here within a second.
// A change made with the desk's session carries the session's change token (X-Desk-Token):
// the cookie alone, which any page's request would carry, is refused.
"use strict";

const controls = {
  changeToken: null, // from GET /desk/session; null when the service has no API key
  pending: null, // the request the review shows, sent on Confirm
};

const controlsById = (id) => document.getElementById(id);

function controlsCell(text, className) {
  const cell = document.createElement("td");
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

function scopeText(user, strategy) {
  if (user === null && strategy === null) return "the desk";
  if (user === null) return `strategy ${strategy}`;
  if (strategy === null) return `user ${user}`;
  return `user ${user}'s strategy ${strategy}`;
}

function sinceText(at) {
  return String(at).replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
}

function limitText(limit) {
  if (limit.max_open_positions !== null && limit.max_open_positions !== undefined) {
    return `at most ${limit.max_open_positions} open position(s)`;
  }
  return `at most ${limit.max_orders_per_second} orders/s, bursts of ${limit.burst}`;
}

function drawControls(inForce) {
  const states = controlsById("control-states").tBodies[0];
  states.replaceChildren(
    ...inForce.states.map((s) => {
      const row = document.createElement("tr");
      row.append(
        controlsCell(scopeText(s.user, s.strategy)),
        controlsCell(s.state, `state-${s.state}`),
        controlsCell(s.reason || "–", "reason"),
        controlsCell(sinceText(s.at)),
      );
      return row;
    }),
  );
  controlsById("control-states-empty").hidden = inForce.states.length > 0;
  const limits = controlsById("control-limits").tBodies[0];
  limits.replaceChildren(
    ...inForce.limits.map((limit) => {
      const row = document.createElement("tr");
      row.append(controlsCell(scopeText(limit.user, limit.strategy)), controlsCell(limitText(limit)),
        controlsCell(sinceText(limit.at)));
      return row;
    }),
  );
  controlsById("control-limits-empty").hidden = inForce.limits.length > 0;
}

async function loadControls() {
  const answer = await fetch("controls", { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (answer.ok) drawControls(await answer.json());
}

async function loadControlChoices() {
  const read = async (path) => {
    const answer = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    return answer.ok ? answer.json() : null;
  };
  const [users, strategies] = await Promise.all([read("users"), read("strategies")]);
  const fill = (select, names) => {
    const chosen = select.value;
    select.replaceChildren(select.options[0]);
    for (const name of names) select.append(new Option(name, name));
    select.value = names.includes(chosen) ? chosen : "";
  };
  if (users) fill(controlsById("control-user"), users.users.map((u) => u.user));
  if (strategies) fill(controlsById("control-strategy"), strategies.strategies.map((s) => s.strategy));
}

// What the chosen action will do and will not do, in words, before anything is sent.
function review(user, strategy, action, reason) {
  const scope = scopeText(user, strategy);
  const body = { user, strategy, reason };
  if (action === "HALTED") {
    return {
      path: "controls/state", method: "PUT", body: { ...body, state: "HALTED" },
      text: `Halt ${scope}: every order for it is refused (TRADING_HALTED) until someone resumes it. ` +
        "A halt closes no position.",
    };
  }
  if (action === "REDUCING") {
    return {
      path: "controls/state", method: "PUT", body: { ...body, state: "REDUCING" },
      text: `Reduce only, ${scope}: BUYs are refused (REDUCE_ONLY), SELLs still close positions. ` +
        "Nothing is closed now.",
    };
  }
  if (action === "ACTIVE") {
    return {
      path: "controls/state", method: "PUT", body: { ...body, state: "ACTIVE" },
      text: `Resume ${scope}: its orders are decided by the rules again. Resuming reopens nothing that was ` +
        "flattened, and a state set on another scope (the desk, a strategy, a user) still applies.",
    };
  }
  const state = action === "flatten" ? null : action.replace("flatten-", "");
  const then = state === null ? "Its state is not changed: a flatten does not halt." :
    `In the same step ${scope} becomes ${state}, so no BUY slips in.`;
  return {
    path: "controls/flatten", method: "POST", body: { ...body, state },
    text: `Flatten ${scope}: every open position in it is closed now, as a SELL would close it, ` +
      `with a trade recorded for each. ${then}`,
  };
}

function showReview(event) {
  event.preventDefault();
  const user = controlsById("control-user").value || null;
  const strategy = controlsById("control-strategy").value || null;
  const reason = controlsById("control-reason").value.trim();
  controls.pending = review(user, strategy, controlsById("control-action").value, reason);
  controlsById("control-review-text").textContent = controls.pending.text;
  controlsById("control-review").hidden = false;
  controlsById("control-result").textContent = "";
  controlsById("control-confirm").focus();
}

function cancelReview() {
  controls.pending = null;
  controlsById("control-review").hidden = true;
}

async function confirmChange() {
  const pending = controls.pending;
  if (!pending) return;
  cancelReview();
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (controls.changeToken) headers["X-Desk-Token"] = controls.changeToken;
  const answer = await fetch(pending.path, {
    method: pending.method, headers, credentials: "same-origin", body: JSON.stringify(pending.body),
  });
  const said = await answer.json().catch(() => ({}));
  const result = controlsById("control-result");
  if (!answer.ok) {
    result.textContent = `Not changed: ${answer.status} ${said.detail || said.title || ""}`;
    return;
  }
  const closed = said.action === "flatten" ? `, ${said.closed.length} position(s) closed` : "";
  result.textContent = `Recorded as #${said.sequence}${closed}.`;
  controlsById("control-reason").value = "";
  await loadControls();
}

document.addEventListener("desk:open", (event) => {
  controls.changeToken = event.detail.change_token || null;
  loadControlChoices().catch(() => {});
  loadControls().catch(() => {});
});
document.addEventListener("desk:control", () => loadControls().catch(() => {}));
document.addEventListener("DOMContentLoaded", () => {
  controlsById("control-form").addEventListener("submit", showReview);
  controlsById("control-cancel").addEventListener("click", cancelReview);
  controlsById("control-confirm").addEventListener("click", () => confirmChange().catch((error) => {
    controlsById("control-result").textContent = `Not changed: ${error}`;
  }));
});
