// The lecture page: the lab world's trace as a growing sequence diagram, its mailboxes,
// its queue and its controls. Plain DOM, no framework, no build step. Every text from
// the world (a subject, a protocol line) goes in as text, never as HTML.
"use strict";

const MAX_DRAWN = 240; // rows kept on the page; older ones are folded into a count
const MAX_HELD = 5000; // rows kept back while paused; beyond, the oldest are folded
const MAX_GONE = 4000; // folded rows remembered, so a late update does not bring one back
const $ = (id) => document.getElementById(id);

// What a test or a benchmark reads of the page.
const page = { drawn: 0, folded: 0, held: 0, received: 0, events: 0, number: 0, batches: 0, paused: false,
               views: 0 };
window.lecture = page;

let lanes = []; // host names, in the order they first take part
const rowsById = new Map(); // row id -> its element on the page
let gone = new Set(); // ids of rows folded away
let incoming = []; // rows for the next frame
let held = []; // rows kept back while paused
let frame = 0;
let source = null;
let users = [];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function toast(text, bad = false) {
  const box = $("toast");
  box.textContent = text;
  box.className = bad ? "bad" : "";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, bad ? 6000 : 3500);
}

async function post(url, body) {
  try {
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify(body) });
    const reply = await response.json();
    if (reply.ok) toast(reply.said || "done");
    else toast(reply.error || `refused (${response.status})`, true);
    return reply;
  } catch (error) {
    toast(`the world did not answer: ${error}`, true);
    return { ok: false };
  }
}

// -- the diagram ------------------------------------------------------------------------
const at = (i) => ((i + 0.5) * 100) / lanes.length; // a lane's centre, in % of the lanes' width

function lane(name) {
  if (!lanes.includes(name)) {
    lanes.push(name);
    layoutLanes();
  }
}

function layoutLanes() {
  const header = $("lanes");
  const lines = $("lifelines");
  header.style.setProperty("--lane-width", `${100 / Math.max(lanes.length, 1)}%`);
  // a host name may break after its dots; "Albert's PC 1.2.3.100" at its space
  const breakable = (name) => (name.includes(" ") ? [name] : name.split(/(?<=[.])/).flatMap((p) => [p, el("wbr")]));
  header.replaceChildren(...lanes.map((name, i) => el("div", { className: "lane", style: `left:${at(i)}%` },
    ...breakable(name))));
  lines.replaceChildren(...lanes.map((_, i) => el("div", { style: `left:${at(i)}%` })));
  measure();
  for (const row of rowsById.values()) place(row);
}

// A position across the lanes (a fraction of their width), as CSS: the lanes leave the
// label column free on the right, but a text without a label, or a note, may run into it.
const across = (f) => `((100% - var(--label-width)) * ${f / 100})`;
const geometry = { lanes: 0, label: 0 }; // in pixels, measured when the lanes change, not per row

function measure() {
  geometry.lanes = $("lanes").clientWidth;
  geometry.label = $("scroller").clientWidth - geometry.lanes;
}

function place(row) {
  const d = row.data;
  const a = at(lanes.indexOf(d.from));
  const b = at(lanes.indexOf(d.to));
  if (d.note) {
    const box = row.firstChild;
    const right = (a / 100) * geometry.lanes > (1 - a / 100) * geometry.lanes + geometry.label; // the roomier side
    box.style.left = right ? "" : `calc(${across(a)} + .4rem)`;
    box.style.right = right ? `calc(100% - ${across(a)} + .4rem)` : "";
    box.style.maxWidth = right ? `calc(${across(a)} - .8rem)` : `calc(100% - ${across(a)} - .8rem)`;
    return;
  }
  const [arrow, text] = row.children;
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  arrow.className = `arrow ${b >= a ? "right" : "left"}`;
  arrow.style.left = `calc(${across(lo)})`;
  arrow.style.width = `calc(${across(hi - lo)})`;
  const right = lo > 50; // text over an arrow on the right ends where the arrow ends
  const end = d.label ? `(100% - var(--label-width))` : "100%";
  text.style.left = right ? "" : `calc(${across(lo)})`;
  text.style.right = right ? `calc(100% - ${across(hi)})` : "";
  text.style.maxWidth = right ? `calc(${across(hi)})` : `calc(${end} - ${across(lo)})`;
}

function rowClass(d) {
  return ["row", d.protocol, d.note ? "note" : "line", d.failure ? "failure" : "", d.student ? "student" : ""]
    .filter(Boolean).join(" ");
}

function makeRow(d) {
  const drawing = d.note ? [el("div", { className: "box", title: d.detail || d.text }, d.text)]
    : [el("div", { className: "arrow" }), el("div", { className: "text", title: d.text }, d.text)];
  const row = el("div", { className: rowClass(d), dataset: { id: d.id } }, ...drawing,
                 el("div", { className: "label" }, d.label));
  row.data = d;
  d.lanes.forEach(lane);
  place(row);
  return row;
}

function update(row, d) {
  row.data = d;
  row.className = rowClass(d);
  const text = row.querySelector(d.note ? ".box" : ".text");
  text.textContent = d.text;
  text.title = d.detail || d.text;
  row.lastChild.textContent = d.label;
}

function fold(count) {
  page.folded += count;
}

function take(rows) {
  page.received += rows.length;
  if (page.paused) {
    held.push(...rows);
    if (held.length > MAX_HELD) fold(held.splice(0, held.length - MAX_HELD).length);
    showStatus();
    return;
  }
  incoming.push(...rows);
  schedule();
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(drawFrame);
}

function forget(id) {
  gone.add(id);
  if (gone.size > MAX_GONE) gone = new Set([...gone].slice(-MAX_GONE / 2));
}

// Once a frame, whatever came: a hundred messages a second is thousands of lines, and
// only the last MAX_DRAWN rows can stay, so the rest are counted, never made.
function drawFrame() {
  frame = 0;
  const todo = incoming;
  incoming = [];
  const fresh = new Set(todo.filter((d) => !rowsById.has(d.id) && !gone.has(d.id)).map((d) => d.id));
  let skip = Math.max(fresh.size - MAX_DRAWN, 0);
  const scroller = $("scroller");
  const stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  const made = document.createDocumentFragment();
  for (const d of todo) {
    const old = rowsById.get(d.id);
    if (old) {
      update(old, d);
    } else if (!gone.has(d.id)) {
      if (skip > 0) {
        skip -= 1;
        forget(d.id);
        fold(1);
        continue;
      }
      const row = makeRow(d);
      if (todo.length < 20) row.classList.add("fresh");
      rowsById.set(d.id, row);
      made.append(row);
      page.drawn += 1;
    }
  }
  const rows = $("rows");
  rows.append(made);
  while (rowsById.size > MAX_DRAWN) {
    const first = rows.firstElementChild;
    rowsById.delete(first.data.id);
    forget(first.data.id);
    first.remove();
    fold(1);
  }
  $("empty").hidden = rowsById.size > 0;
  if (stick) scroller.scrollTop = scroller.scrollHeight;
  showStatus();
}

function showStatus() {
  page.held = held.length;
  const folded = $("folded");
  folded.hidden = page.folded === 0;
  folded.textContent = `⋯ ${page.folded.toLocaleString()} earlier rows folded (the page keeps the last ${MAX_DRAWN})`;
  const pause = $("pause");
  pause.textContent = page.paused ? `Resume (${held.length} waiting)` : "Pause";
  pause.setAttribute("aria-pressed", String(page.paused));
  $("step").disabled = !page.paused || held.length === 0;
  $("status").textContent = page.paused
    ? `paused: ${held.length.toLocaleString()} waiting`
    : `${page.events.toLocaleString()} events · ${rowsById.size} rows shown`;
}

function pause() {
  page.paused = !page.paused;
  if (!page.paused) {
    incoming.push(...held);
    held = [];
    schedule();
  }
  showStatus();
}

function step() {
  if (held.length === 0) return;
  incoming.push(held.shift());
  drawFrame();
}

function clearView() {
  for (const row of rowsById.values()) forget(row.data.id);
  rowsById.clear();
  $("rows").replaceChildren();
  lanes = [];
  layoutLanes();
  held = [];
  incoming = [];
  page.folded = 0;
  $("empty").hidden = false;
  showStatus();
}

// -- the mailboxes ------------------------------------------------------------------------
const chosen = { box: "", message: "" };
const rawSources = new Map(); // message name -> its source, while shown
const openSources = new Set(); // the messages whose source is shown
let lastBoxes = [];

function highlight(text, names) {
  const wanted = names.filter(Boolean).sort((a, b) => b.length - a.length);
  if (wanted.length === 0) return [text];
  const escaped = wanted.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const parts = text.split(new RegExp(`(${escaped.join("|")})`, "g"));
  return parts.map((part, i) => (i % 2 ? el("mark", {}, part) : part));
}

function showMessage(box, message) {
  const parts = [el("table", { className: "headers" },
    ...message.headers.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value))))];
  const hops = message.hops;
  if (hops.length) {
    const first = hops[0].sender_info.includes(hops[0].sender) ? hops[0].sender_info
      : `${hops[0].sender} ${hops[0].sender_info}`.trim();
    const path = [first, ...hops.map((h) => h.receiver), `${box.address}'s INBOX`];
    parts.push(el("h2", {}, "The relay path: Received, read bottom-up"),
      el("p", { className: "path" }, path.join(" → ")),
      el("p", { className: "hint" }, "Each relay adds its Received line on top: the bottom one is hop 1."),
      el("ol", { className: "hops", reversed: true },
        ...[...hops].reverse().map((hop, i) => el("li", {},
          el("span", { className: "n" }, `hop ${hops.length - i}: `), ...highlight(`Received: ${hop.raw}`, hop.names)))));
  }
  // whether the source is shown lives here, not in the DOM: the panel is redrawn as mail comes
  const shown = openSources.has(message.name);
  const raw = el("pre", { className: "raw", hidden: !shown }, rawSources.get(message.name) || "loading…");
  const button = el("button", { type: "button" }, shown ? "Hide the raw source" : "Show the raw source");
  button.addEventListener("click", async () => {
    if (openSources.delete(message.name)) {
      rawSources.delete(message.name);
    } else {
      openSources.add(message.name);
      renderMailboxes(lastBoxes);
      const query = new URLSearchParams({ address: box.address, name: message.name });
      const response = await fetch(`/api/message?${query}`);
      rawSources.set(message.name, await response.text());
    }
    renderMailboxes(lastBoxes);
  });
  parts.push(el("p", {}, button), raw);
  return el("div", { id: "message" }, ...parts);
}

function renderMailboxes(boxes) {
  lastBoxes = boxes;
  if (!chosen.box) chosen.box = (boxes.find((b) => b.address === "betty@brilliant.com") || boxes[0] || {}).address;
  const box = boxes.find((b) => b.address === chosen.box) || boxes[0];
  if (!box) return;
  const select = el("select", { id: "box", "aria-label": "Mailbox" },
    ...boxes.map((b) => el("option", { value: b.address, selected: b.address === box.address },
      `${b.address} (${b.count})`)));
  select.addEventListener("change", () => {
    chosen.box = select.value;
    chosen.message = "";
    renderMailboxes(boxes);
  });
  const message = box.messages.find((m) => m.name === chosen.message) || box.messages[0];
  const list = el("ul", { className: "messages", id: "inbox" }, ...box.messages.map((m) => {
    const item = el("li", { "aria-current": String(m === message), title: m.subject },
      el("b", {}, m.subject), " ", el("span", { className: "who" }, m.sender));
    item.addEventListener("click", () => {
      chosen.message = m.name;
      renderMailboxes(boxes);
    });
    return item;
  }));
  const older = box.count - box.messages.length;
  $("mailboxes").replaceChildren(...[el("label", {}, "Mailbox ", select),
    box.count ? list : el("p", { className: "hint" }, "Empty: no mail yet."),
    older > 0 ? el("p", { className: "hint" }, `… and ${older.toLocaleString()} older`) : null,
    message ? showMessage(box, message) : null].filter(Boolean));
}

// -- the queue ----------------------------------------------------------------------------
let waiting = [];

function renderQueue(entries) {
  const now = performance.now();
  waiting = entries.map((w) => ({ ...w, due: now + w.retry_in * 1000 }));
  $("queue-count").textContent = entries.length ? `(${entries.length})` : "";
  if (!entries.length) {
    $("queue").replaceChildren(el("p", { className: "hint" },
      "Nothing waits: every message was delivered or bounced."));
    return;
  }
  $("queue").replaceChildren(...waiting.map((w) => el("div", { className: "waiting" },
    el("div", {}, el("b", {}, w.queue_id), ` on ${w.host}, from <${w.from}>, tried ${w.attempts}×`),
    ...w.recipients.map((r) => el("div", {}, `to <${r.address}>: `, el("span", { className: "why" }, r.why))),
    el("div", { className: "when", dataset: { queue: w.queue_id } }))));
  tick();
}

function tick() {
  const now = performance.now();
  for (const w of waiting) {
    const when = document.querySelector(`.when[data-queue="${w.queue_id}"]`);
    if (!when) continue;
    const left = (w.due - now) / 1000;
    when.textContent = left > 0.05 ? `next try in ${left.toFixed(1)} s` : "trying again now";
  }
}

// -- hosts and DNS ------------------------------------------------------------------------
function renderHosts(controls) {
  const table = $("behaviours");
  for (const [host, behaviour] of Object.entries(controls.behaviours)) {
    let select = table.querySelector(`select[data-host="${host}"]`);
    if (!select) {
      select = el("select", { dataset: { host }, "aria-label": `behaviour of ${host}` },
        ...controls.choices.behaviour.map((b) => el("option", { value: b }, b)));
      select.addEventListener("change", () => post("/api/behave", { host, behaviour: select.value }));
      table.append(el("tr", { dataset: { host } }, el("td", {}, host), el("td", {}, select)));
    }
    if (document.activeElement !== select) select.value = behaviour;
    select.closest("tr").className = behaviour === "normal" ? "" : "misbehaving";
  }
  const faults = Object.entries(controls.faults);
  $("faults").replaceChildren(...faults.map(([name, fault]) => el("li", {}, `${name}: ${fault}`)));
}

function renderViews(views) {
  page.views += 1;
  renderMailboxes(views.mailboxes);
  renderQueue(views.queue);
  renderHosts(views.controls);
}

// -- wiring -------------------------------------------------------------------------------
function connect(after) {
  if (source) source.close();
  source = new EventSource(`/api/events?after=${after}`);
  source.addEventListener("rows", (message) => {
    const batch = JSON.parse(message.data);
    page.number = Number(message.lastEventId);
    page.batches += 1;
    page.events = batch.events;
    fold(batch.folded);
    take(batch.rows);
  });
  source.addEventListener("views", (message) => {
    page.number = Number(message.lastEventId);
    renderViews(JSON.parse(message.data));
  });
  source.addEventListener("reset", () => start()); // too far behind: start again from a snapshot
}

async function start() {
  const response = await fetch("/api/state");
  const state = await response.json();
  users = state.users;
  $("compose-from").replaceChildren(...users.map((u) => el("option", { value: u.address,
    selected: u.address === state.story.from }, u.address)));
  renderViews(state.views);
  page.events = state.feed.events;
  fold(state.feed.folded);
  take(state.feed.rows);
  page.number = state.feed.number;
  connect(state.feed.number);
}

function showPanel(name) {
  for (const tab of document.querySelectorAll("nav button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.panel === name));
    $(tab.dataset.panel).hidden = tab.dataset.panel !== name;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("dinner").addEventListener("click", () => post("/api/send", { story: "dinner" }));
  $("pause").addEventListener("click", pause);
  $("step").addEventListener("click", step);
  $("clear").addEventListener("click", clearView);
  for (const tab of document.querySelectorAll("nav button")) {
    tab.addEventListener("click", () => showPanel(tab.dataset.panel));
  }
  $("fault-form").addEventListener("submit", (event) => {
    event.preventDefault();
    post("/api/dns-fault", { name: $("fault-name").value.trim(), fault: event.submitter.value });
  });
  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    post("/api/send", { from: $("compose-from").value, to: $("compose-to").value,
                        subject: $("compose-subject").value, body: $("compose-body").value });
  });
  document.addEventListener("keydown", (event) => { // a presenter's clicker sends these
    if (event.target.closest("input, textarea, select")) return;
    if (event.key === " " || event.key === "p") { event.preventDefault(); pause(); }
    if (event.key === "ArrowRight" || event.key === "n") step();
  });
  window.addEventListener("resize", layoutLanes);
  setInterval(tick, 200);
  showStatus();
  start().catch((error) => toast(`cannot reach the world: ${error}`, true));
});
