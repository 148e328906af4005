// fcnx review: the page's only script (served locally, no framework). Every text from the run is set as
// textContent, never as markup. Boxes are [x, y, w, h] in the image's upright pixels (naturalWidth/Height).
"use strict";
const token = document.querySelector('meta[name="fcnx-token"]').content;
const instance = document.querySelector('meta[name="fcnx-instance"]').content;
const $ = (id) => document.getElementById(id);
// images by number within this server's run: the browser keeps them (the next one is fetched ahead)
const imageURL = (kind, index) => `/${kind}/${index}?i=${instance}`;
const STATE_NAME = { accept: "accepted", reject: "rejected", relabel: "relabelled" };
const REASON_KEYS = { "1": "wrong_label", "2": "not_category", "3": "unusable", "4": "crop" };
let meta = null, page = null, cursor = 0, done = [], heat = false, drag = null, preload = null;

function query(extra) {
  const q = new URLSearchParams({ sort: $("sort").value, state: $("state").value });
  if ($("label-filter").value) q.set("label", $("label-filter").value);
  if ($("not-found").checked) q.set("not_found", "1");
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function load(extra, at) {
  try {
    page = await getJSON("/api/page?" + query(extra));
  } catch (e) { say(e.message); return; }
  cursor = at === "last" ? Math.max(0, page.items.length - 1) : page.cursor;
  show();
}

function say(text) { $("message").textContent = text || ""; }
function item() { return page && page.items[cursor]; }
function stateOf(it) { return it.verdict && it.verdict.action ? STATE_NAME[it.verdict.action] : "undecided"; }

function showCounts(c) {
  $("counts").textContent = `${meta.total - c.undecided} of ${meta.total} decided (${c.accepted} accepted, ` +
    `${c.rejected} rejected, ${c.relabelled} relabelled${c.disputed ? `, ${c.disputed} disputed` : ""})`;
}

function place(el, box, size) {
  el.style.left = (100 * box[0] / size[0]) + "%";
  el.style.top = (100 * box[1] / size[1]) + "%";
  el.style.width = (100 * box[2] / size[0]) + "%";
  el.style.height = (100 * box[3] / size[1]) + "%";
}

function size() { const p = $("photo"); return [p.naturalWidth, p.naturalHeight]; }
function shownBox(it) { return (it.verdict && it.verdict.box) || it.box; }

function drawBoxes() {
  const it = item(), s = size();
  const overlays = $("overlays");
  overlays.replaceChildren();
  if (!it || !s[0]) return;
  const kinds = Object.entries(it.overlays);
  if (it.suspect && it.box_kind !== "other class") kinds.push([`${it.suspect.other} (suspect)`, it.suspect.box]);
  for (const [kind, box] of kinds) {
    const div = document.createElement("div"), tag = document.createElement("span");
    tag.textContent = kind;
    div.append(tag);
    place(div, box, s);
    overlays.append(div);
  }
  const box = $("box");
  box.hidden = !shownBox(it);
  if (shownBox(it)) place(box, shownBox(it), s);
  box.classList.toggle("adjusted", Boolean(it.verdict && it.verdict.box));
}

function show() {
  const strip = $("strip");
  strip.replaceChildren();
  $("pager").textContent = page ? `page ${page.page + 1} of ${page.pages} (${page.total} images)` : "";
  showCounts(page.counts);
  page.items.forEach((it, k) => {
    const b = document.createElement("button");
    b.textContent = `${it.index + 1}`;
    b.title = it.file;
    b.className = stateOf(it) + (k === cursor ? " current" : "");
    b.addEventListener("click", () => { cursor = k; show(); });
    strip.append(b);
  });
  const it = item();
  $("frame").hidden = !it;
  if (!it) { $("file").textContent = "nothing to show with these filters"; return; }
  strip.children[cursor].scrollIntoView({ block: "nearest", inline: "nearest" });
  $("file").textContent = `#${it.index + 1} ${it.file}`;
  $("label").textContent = it.label === null ? "(none)" : it.label;
  $("found").textContent = it.found === false ? "found=false: no net finds the label" : "";
  $("found").className = it.found === false ? "bad" : "";
  const v = it.verdict, st = stateOf(it);
  let text = st;
  if (v && v.action === "reject") text += ` (${v.reason})`;
  if (v && v.action === "relabel") text += ` to ${v.label}`;
  if (v && v.box) text += `, box adjusted to [${v.box.map((n) => Math.round(n)).join(", ")}]`;
  if (v && v.reviewer) text += ` by ${v.reviewer}`;
  $("verdict").textContent = text;
  $("verdict").className = st;
  $("dispute").hidden = !it.disagreement;
  if (it.disagreement) {
    $("dispute").textContent = "reviewers disagree: " +
      Object.entries(it.disagreement).map(([who, what]) => `${who}: ${what}`).join("; ");
  }
  const guesses = $("guesses");
  guesses.replaceChildren();
  for (const g of it.guesses) {
    const li = document.createElement("li");
    li.textContent = `${g.class}: ${g.score.toFixed(2)} (${g.votes} votes)`;
    guesses.append(li);
  }
  for (const g of it.image_guesses) {
    const li = document.createElement("li");
    li.textContent = `${g.class}: ${g.score.toFixed(2)} (${g.votes} votes, whole image)`;
    li.className = "image";
    guesses.append(li);
  }
  $("suspect").hidden = !it.suspect;
  if (it.suspect) {
    const s = it.suspect;
    $("suspect").textContent = `suspect: the nets see ${s.other} (${s.votes} vote(s), p=${s.confidence.toFixed(2)}` +
      (s.gap === null ? ")" : `, gap ${s.gap.toFixed(2)})`);
  }
  $("kinds").textContent = `box: ${it.box_kind}` + (it.confidence === null ? "" : `, confidence ${it.confidence.toFixed(2)}`) +
    (it.heatmap ? "; h: heatmap" : "");
  $("image-error").hidden = true;
  const photo = $("photo");
  if (photo.dataset.index !== String(it.index)) {
    photo.dataset.index = String(it.index);
    photo.src = imageURL("image", it.index);
  }
  const ahead = page.items[cursor + 1];
  if (ahead) { preload = new Image(); preload.src = imageURL("image", ahead.index); }
  heat = heat && it.heatmap;
  $("heat").hidden = !heat;
  if (heat) $("heat").src = imageURL("heatmap", it.index);
  drawBoxes();
}

async function decide(action, fields) {
  const it = item();
  if (!it) return;
  const response = await fetch("/api/decide", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Fcnx-Token": token },
    body: JSON.stringify({ index: it.index, action, ...fields }),
  });
  const body = await response.json();
  if (!response.ok) { say(body.error); return false; }
  say("");
  const k = page.items.findIndex((x) => x.index === body.item.index);
  if (k >= 0) page.items[k] = body.item;
  page.counts = body.counts;
  if (action !== "undo") done.push(it.index);
  return true;
}

async function verdict(action, fields) {
  if (await decide(action, fields)) await next();
}

async function next() {
  if (cursor + 1 < page.items.length) { cursor += 1; show(); return; }
  if ($("state").value === "undecided") await load({ resume: "1" });
  else if (page.page + 1 < page.pages) await load({ page: page.page + 1 });
  else show();
}

async function previous() {
  if (cursor > 0) { cursor -= 1; show(); return; }
  if (page.page > 0) await load({ page: page.page - 1 }, "last");
}

async function undo() {
  const target = done.length ? done.pop() : item() && item().index;
  if (target === undefined) return;
  if (!page.items.some((x) => x.index === target)) await load({ at: target });
  cursor = Math.max(0, page.items.findIndex((x) => x.index === target));
  await decide("undo", {});
  show();
}

async function guess() {
  const it = item();
  const other = it && [...it.guesses, ...it.image_guesses].find((g) => g.class !== it.label);
  if (other) await verdict("relabel", { label: other.class });
  else say("the ensemble guesses no other class");
}

// ---- relabel to any class: type-ahead over the dataset's classes
let matchIndex = 0;
function matches() {
  const text = $("relabel").value.trim().toLowerCase();
  if (!text) return [];
  const starts = meta.classes.filter((c) => c.toLowerCase().startsWith(text));
  const inside = meta.classes.filter((c) => !c.toLowerCase().startsWith(text) && c.toLowerCase().includes(text));
  return starts.concat(inside).slice(0, 8);
}
function showMatches() {
  const list = $("matches");
  list.replaceChildren();
  matches().forEach((name, k) => {
    const li = document.createElement("li");
    li.textContent = name;
    if (k === matchIndex) li.className = "sel";
    li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(name); });
    list.append(li);
  });
}
function pick(name) {
  $("relabel").value = "";
  $("relabel").blur();
  showMatches();
  once(() => verdict("relabel", { label: name }));
}
$("relabel").addEventListener("input", () => { matchIndex = 0; showMatches(); });
$("relabel").addEventListener("keydown", (e) => {
  const found = matches();
  if (e.key === "ArrowDown") { matchIndex = Math.min(matchIndex + 1, found.length - 1); showMatches(); }
  else if (e.key === "ArrowUp") { matchIndex = Math.max(matchIndex - 1, 0); showMatches(); }
  else if (e.key === "Enter" && found.length) pick(found[matchIndex]);
  else if (e.key === "Escape") { $("relabel").value = ""; $("relabel").blur(); showMatches(); }
  else return;
  e.preventDefault();
});

// ---- keys: one action at a time, in the order pressed (a key pressed while the last one is being written waits)
let queue = Promise.resolve();
function once(action) {
  queue = queue.then(action).catch((e) => say(e.message));
}
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.ctrlKey || e.metaKey || e.altKey) {
    return;
  }
  const k = e.key;
  if (k === "a") once(() => verdict("accept", {}));
  else if (k in REASON_KEYS) once(() => verdict("reject", { reason: REASON_KEYS[k] }));
  else if (k === "g") once(guess);
  else if (k === "l" || k === "/") $("relabel").focus();
  else if (k === "u") once(undo);
  else if (k === "j" || k === "ArrowRight") once(next);
  else if (k === "k" || k === "ArrowLeft") once(previous);
  else if (k === "h") { heat = !heat && Boolean(item() && item().heatmap); show(); }
  else if (k === "PageDown" && page.page + 1 < page.pages) once(() => load({ page: page.page + 1 }));
  else if (k === "PageUp" && page.page > 0) once(() => load({ page: page.page - 1 }));
  else return;
  e.preventDefault();
});

// ---- the box: drag a corner or an edge; the box is sent on release, in upright original pixels
$("box").addEventListener("pointerdown", (e) => {
  const handle = e.target.dataset.h;
  const it = item();
  if (!handle || !it) return;
  e.preventDefault();
  e.target.setPointerCapture(e.pointerId);
  const [x, y, w, h] = shownBox(it);
  drag = { handle, x0: e.clientX, y0: e.clientY, box: [x, y, x + w, y + h], now: [x, y, x + w, y + h] };
});
$("box").addEventListener("pointermove", (e) => {
  if (!drag) return;
  const rect = $("photo").getBoundingClientRect(), [W, H] = size();
  const dx = (e.clientX - drag.x0) * W / rect.width, dy = (e.clientY - drag.y0) * H / rect.height;
  const b = drag.box.slice(), h = drag.handle;
  if (h.includes("w")) b[0] = Math.min(Math.max(0, b[0] + dx), b[2] - 1);
  if (h.includes("e")) b[2] = Math.max(Math.min(W, b[2] + dx), b[0] + 1);
  if (h.includes("n")) b[1] = Math.min(Math.max(0, b[1] + dy), b[3] - 1);
  if (h.includes("s")) b[3] = Math.max(Math.min(H, b[3] + dy), b[1] + 1);
  drag.now = b;
  place($("box"), [b[0], b[1], b[2] - b[0], b[3] - b[1]], [W, H]);
});
$("box").addEventListener("pointerup", async () => {
  if (!drag) return;
  const b = drag.now.map(Math.round);
  const moved = b.some((v, k) => v !== Math.round(drag.box[k]));
  drag = null;
  if (moved) await decide("box", { box: [b[0], b[1], b[2] - b[0], b[3] - b[1]] });
  show();
});

$("photo").addEventListener("load", drawBoxes);
$("photo").addEventListener("error", () => {
  $("image-error").hidden = false;
  $("image-error").textContent = "this image cannot be shown (moved or deleted?)";
});
window.addEventListener("resize", drawBoxes);
// a filter changed: the first undecided image it shows; the keys go back to the page
for (const id of ["sort", "state", "not-found", "label-filter"]) {
  $(id).addEventListener("change", (e) => { e.target.blur(); load({ resume: "1" }); });
}

(async () => {
  meta = await getJSON("/api/meta");
  const list = $("classes");
  for (const name of meta.classes) {
    const option = document.createElement("option");
    option.value = name;
    list.append(option);
  }
  await load({ resume: "1" });
})();
