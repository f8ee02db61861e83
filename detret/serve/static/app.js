// The search page of `detret serve`: plain JavaScript, no library, no network beyond this server.
// Boxes are kept in pixels of the photo (the API's box_xyxy) and drawn scaled to its displayed size.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, garments: [], selected: -1, box: null, drag: null };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function scale() {
  const img = $("photo");
  return img.naturalWidth ? img.clientWidth / img.naturalWidth : 1;
}

function placeBox(el, box) {
  const s = scale();
  el.style.left = `${box[0] * s}px`;
  el.style.top = `${box[1] * s}px`;
  el.style.width = `${(box[2] - box[0]) * s}px`;
  el.style.height = `${(box[3] - box[1]) * s}px`;
}

function drawGarments() {
  document.querySelectorAll("#stage .garment").forEach((el) => el.remove());
  const list = $("garments");
  list.innerHTML = "";
  state.garments.forEach((g, i) => {
    const box = document.createElement("div");
    box.className = "garment" + (i === state.selected ? " selected" : "");
    box.dataset.index = i;
    box.dataset.category = g.category;
    const tag = document.createElement("span");
    tag.textContent = `${g.category} · ${g.rule}`;
    box.appendChild(tag);
    placeBox(box, g.box_xyxy);
    box.addEventListener("click", () => selectGarment(i));
    $("stage").appendChild(box);
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "garment-button" + (i === state.selected ? " selected" : "");
    button.textContent = `${g.category} (${g.results.length})`;
    button.addEventListener("click", () => selectGarment(i));
    item.appendChild(button);
    list.appendChild(item);
  });
  if (state.box) {
    placeBox($("drag-box"), state.box);
    $("drag-box").hidden = false;
  }
}

function selectGarment(i) {
  state.selected = i;
  const g = state.garments[i];
  $("category").value = g.category;
  drawGarments();
  showResults(g);
}

// A product link only when it is an http(s) URL: the server refuses others, and the page checks again
// (a catalogue written by an older detret may hold javascript: or data: URLs).
function safeUrl(text) {
  if (!text) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

function showResults(garment) {
  const grid = $("results");
  grid.innerHTML = "";
  $("results-title").textContent = garment
    ? `Results · ${garment.category} (${garment.rule})` : "Results";
  if (!garment) return;
  if (!garment.results.length) {
    grid.textContent = "No product of this category in the catalogue.";
    return;
  }
  for (const r of garment.results) {
    const card = document.createElement("div");
    card.className = "result";
    card.dataset.product = r.product;
    const img = document.createElement("img");
    img.src = r.photo_url;
    img.alt = `product ${r.product}`;
    img.loading = "lazy";
    const link = safeUrl(r.url);
    const product = document.createElement(link ? "a" : "div");
    product.className = "product";
    product.textContent = r.title ? `${r.product} · ${r.title}` : r.product;
    if (link) {
      product.href = link;
      product.rel = "noopener noreferrer";
    }
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `#${r.rank} · score ${r.score.toFixed(3)}`;
    card.append(img, product, score);
    grid.appendChild(card);
  }
}

async function search() {
  if (!state.file) return;
  showError("");
  const form = new FormData();
  form.append("photo", state.file);
  const category = $("category").value;
  if (category) form.append("category", category);
  if (state.box && category) form.append("box", state.box.map((v) => v.toFixed(1)).join(","));
  form.append("k", $("k").value || "20");
  $("search").disabled = true;
  document.body.dataset.busy = "1";
  try {
    const response = await fetch("/api/search", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
    if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
    state.garments = body.garments;
    state.selected = body.garments.length ? 0 : -1;
    drawGarments();
    showResults(body.garments[0]);
    if (!body.garments.length) {
      showError(category ? "" : "No garment found automatically: drag a box around one, pick its category, then Search.");
    }
    $("timings").textContent = `server: ${Math.round(body.timings_ms.total)} ms`;
  } catch (err) {
    state.garments = [];
    drawGarments();
    showResults(null);
    showError(err.message);
  } finally {
    $("search").disabled = false;
    delete document.body.dataset.busy;
    document.body.dataset.searched = String(Number(document.body.dataset.searched || 0) + 1);
  }
}

function choose(file) {
  if (!file) return;
  state.file = file;
  state.box = null;
  $("category").value = "";  // a new photo: shop the look first
  state.garments = [];
  $("drag-box").hidden = true;
  $("clear-box").hidden = true;
  const img = $("photo");
  img.onload = () => { $("stage").hidden = false; drawGarments(); search(); };
  img.onerror = () => { $("stage").hidden = true; search(); };  // the server says what is wrong with the file
  img.src = URL.createObjectURL(file);
  $("search").disabled = false;
}

function photoPoint(e) {
  const rect = $("photo").getBoundingClientRect();
  const s = scale();
  const x = Math.min(Math.max(e.clientX - rect.left, 0), rect.width) / s;
  const y = Math.min(Math.max(e.clientY - rect.top, 0), rect.height) / s;
  return [x, y];
}

function setupDragging() {
  const stage = $("stage");
  // A drag anywhere on the photo (garment boxes included) draws the user's box; a click on a garment,
  // which moves less than 4 px, selects that garment instead.
  stage.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    state.drag = photoPoint(e);
  });
  window.addEventListener("mousemove", (e) => {
    if (!state.drag) return;
    const [x, y] = photoPoint(e);
    const [x0, y0] = state.drag;
    state.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
    placeBox($("drag-box"), state.box);
    $("drag-box").hidden = false;
  });
  window.addEventListener("mouseup", () => {
    if (!state.drag) return;
    state.drag = null;
    if (!state.box || state.box[2] - state.box[0] < 4 || state.box[3] - state.box[1] < 4) {
      state.box = null;
      $("drag-box").hidden = true;
      return;
    }
    $("clear-box").hidden = false;
    showError($("category").value ? "" : "Pick the category of the garment in your box, then Search.");
  });
  $("clear-box").addEventListener("click", () => {
    state.box = null;
    $("drag-box").hidden = true;
    $("clear-box").hidden = true;
  });
}

function setupInputs() {
  $("photo-input").addEventListener("change", (e) => {
    choose(e.target.files[0]);
    e.target.value = "";  // so that choosing the same file again searches again
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
  $("search").addEventListener("click", search);
  window.addEventListener("resize", drawGarments);
}

async function loadSummary() {
  try {
    const response = await fetch("/api/catalogue");
    const summary = await response.json();
    $("summary").textContent = `${summary.products} products, ${summary.photos} photos · model ` +
      `${summary.model.identity.slice(0, 12)} (run ${summary.model.run})`;
    for (const category of Object.keys(summary.categories)) {
      const option = document.createElement("option");
      option.value = category;
      option.textContent = category;
      $("category").appendChild(option);
    }
  } catch (err) {
    showError(`cannot read the catalogue: ${err.message}`);
  }
  document.body.dataset.ready = "1";
}

setupInputs();
setupDragging();
loadSummary();
