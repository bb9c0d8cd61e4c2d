// rnnlab explorer: the runs, a run's records, and an inspector that shows the model
// reading one input step by step. Vanilla JavaScript, no build step, no network but
// this server's /api/ (docs/serve.md).
"use strict";

// -- small helpers ---------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

const pct = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(2)}%`);
const main = () => document.getElementById("main");
const titleCase = (s) => s.charAt(0).toUpperCase() + s.slice(1);

function modelText(run) {
  const cell = (run.cell || "?").toUpperCase();
  const bi = run.bidirectional ? "bi-" : "";
  const layers = run.layers > 1 ? ` × ${run.layers} layers` : "";
  return `${bi}${cell} ${run.hidden}${layers}`;
}

// -- colour scales ---------------------------------------------------------------------
// Diverging blue-white-red for signed states, white-to-ink for gates in [0, 1].
function diverging(v, scale) {
  const t = Math.max(-1, Math.min(1, v / (scale || 1)));
  const a = Math.abs(t);
  return t >= 0 ? [255 - 60 * a, 255 - 190 * a, 255 - 200 * a]
                : [255 - 210 * a, 255 - 140 * a, 255 - 40 * a];
}
function sequential(v) {
  const t = Math.max(0, Math.min(1, v));
  return [255 - 225 * t, 255 - 200 * t, 255 - 130 * t];
}
const rgb = (c) => `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`;

function valueRange(matrix) {
  let lo = Infinity, hi = -Infinity;
  for (const row of matrix) for (const v of row) {
    if (v === null) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// The 98th percentile of |v|: one runaway unit (an LSTM cell state of 17) must not
// wash every other unit out to white; values beyond it are drawn at full colour.
function robustScale(matrix) {
  const magnitudes = matrix.flat().filter((v) => v !== null).map(Math.abs).sort((a, b) => a - b);
  if (!magnitudes.length) return 1;
  return Math.max(magnitudes[Math.floor(0.98 * (magnitudes.length - 1))], 1e-6);
}

// -- heatmaps: steps down, units across ---------------------------------------------------
class Heatmap {
  constructor(title, matrix, kind, stepName) {
    this.matrix = matrix;  // steps x units
    const [lo] = valueRange(matrix);
    this.signed = lo < 0;
    this.scale = robustScale(matrix);
    const units = matrix[0] ? matrix[0].length : 0;
    this.cellW = Math.max(2, Math.min(16, Math.floor(360 / Math.max(units, 1))));
    this.cellH = Math.max(2, Math.min(16, Math.floor(340 / Math.max(matrix.length, 1))));
    this.canvas = el("canvas", {
      class: "heatmap", width: units * this.cellW, height: matrix.length * this.cellH,
      dataset: { kind, rows: String(matrix.length), units: String(units) },
      title: `${title}: ${matrix.length} ${stepName}s × ${units} units`,
    });
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    const [low, high] = valueRange(matrix);
    const legend = this.signed ? `colour ±${this.scale.toFixed(2)}, range ${low.toFixed(2)} … ${high.toFixed(2)}`
                               : `0 … 1`;
    this.box = el("div", { class: "heatmap-box" }, el("h3", { text: title }), this.canvas,
                  el("span", { class: "legend", text: `${units} units · ${legend}` }));
    this.base = null;
  }
  draw(current) {
    const ctx = this.canvas.getContext("2d");
    if (!this.base) {
      this.matrix.forEach((row, t) => row.forEach((v, u) => {
        ctx.fillStyle = rgb(this.signed ? diverging(v, this.scale) : sequential(v));
        ctx.fillRect(u * this.cellW, t * this.cellH, this.cellW, this.cellH);
      }));
      this.base = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    } else {
      ctx.putImageData(this.base, 0, 0);
    }
    if (current === undefined) return;
    ctx.fillStyle = "rgba(255,255,255,0.55)";  // steps not read yet
    ctx.fillRect(0, (current + 1) * this.cellH, this.canvas.width, this.canvas.height);
    ctx.strokeStyle = "#e8590c";
    ctx.lineWidth = 2;
    ctx.strokeRect(1, current * this.cellH + 1, this.canvas.width - 2, this.cellH - 1);
  }
  hover(e) {
    const u = Math.floor(e.offsetX / this.cellW), t = Math.floor(e.offsetY / this.cellH);
    const row = this.matrix[t];
    if (row && row[u] !== undefined) this.canvas.title = `step ${t + 1}, unit ${u}: ${row[u]}`;
  }
}

// -- line charts of the per-epoch metrics -------------------------------------------------
function lineChart(title, series, yLabel) {
  const width = 420, height = 220, pad = { l: 46, r: 12, t: 22, b: 30 };
  const canvas = el("canvas", { width, height, class: "chart" });
  const ctx = canvas.getContext("2d");
  const points = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const epochs = Math.max(...series.map((s) => s.values.length), 1);
  let lo = Math.min(...points), hi = Math.max(...points);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const x = (i) => pad.l + (epochs === 1 ? 0.5 : i / (epochs - 1)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - ((v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
  ctx.strokeStyle = "#dfe3ea"; ctx.fillStyle = "#6b7280"; ctx.font = "11px system-ui";
  for (let k = 0; k <= 4; k++) {
    const v = lo + (k / 4) * (hi - lo);
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(width - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(hi - lo < 0.1 ? 3 : 2), 4, y(v) + 4);
  }
  ctx.fillText(`epoch 1 … ${epochs}`, pad.l, height - 8);
  ctx.fillStyle = "#1d2330"; ctx.font = "600 12px system-ui";
  ctx.fillText(`${title}${yLabel ? " (" + yLabel + ")" : ""}`, pad.l, 14);
  series.forEach((s, n) => {
    ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 2;
    ctx.beginPath();
    s.values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
    s.values.forEach((v, i) => { ctx.beginPath(); ctx.arc(x(i), y(v), 2.5, 0, 7); ctx.fill(); });
    ctx.font = "11px system-ui";
    ctx.fillText(`— ${s.name}`, width - pad.r - 170 + 80 * n, height - 8);  // below the plot
  });
  return canvas;
}

// -- the runs page -----------------------------------------------------------------------
async function runsPage(task) {
  document.getElementById("crumbs").replaceChildren();
  const { runs } = await api("/api/runs");
  const tasks = [...new Set(runs.map((r) => r.task))];
  const shown = task ? runs.filter((r) => r.task === task) : runs;
  const chips = ["all", ...tasks].map((t) => el("button", {
    class: "chip" + ((t === "all" && !task) || t === task ? " on" : ""), text: t,
    dataset: { task: t }, onclick: () => { location.hash = t === "all" ? "#/" : `#/?task=${t}`; },
  }));
  const drawable = runs.filter((r) => r.input_kind === "image");  // robust runs come first
  const offer = drawable.length ? el("div", { class: "card" },
    el("strong", { text: "Draw a digit" }), " and watch a model read it row by row: ",
    el("select", { id: "draw-run", onchange: (e) => { location.hash = `#/run/${e.target.value}`; } },
       el("option", { text: "choose an MNIST run…", value: "" }),
       drawable.map((r) => el("option", { value: r.id, text: `${r.name} (${pct(r.value)})` })))) : null;
  const rows = shown.map((r) => el("tr", {
    dataset: { run: r.id, task: r.task }, onclick: () => { location.hash = `#/run/${r.id}`; } },
    el("td", {}, el("a", { href: `#/run/${r.id}`, text: r.name })),
    el("td", {}, r.task, r.input_kind ? el("span", { class: "tag", text: "inspect" }) : null),
    el("td", { text: modelText(r) }),
    el("td", { text: Object.entries(r.settings).map(([k, v]) => `${k} ${v}`).join(", ") }),
    el("td", { class: "num", title: r.metric, text: pct(r.value) }),
    el("td", { text: r.date })));
  main().replaceChildren(
    el("h1", { text: "Runs" }),
    el("p", { class: "muted", text: `${runs.length} finished runs. Choose one to see its curves ` +
      "and figures, and to watch its model read an input of yours." }),
    offer,
    el("div", { class: "filters" }, el("span", { class: "muted", text: "task:" }), chips),
    shown.length ? el("table", { class: "runs", id: "runs" },
      el("thead", {}, el("tr", {}, ["run", "task", "model", "settings"].map((h) => el("th", { text: h })),
         el("th", { class: "num", text: "test" }), el("th", { text: "finished" }))),
      el("tbody", {}, rows))
      : el("p", { class: "muted", text: "No finished runs here. Train one, e.g. " +
                  "rnnlab train mnist --epochs 2 --out runs/mnist" }));
}

// -- a run's page ----------------------------------------------------------------------------
async function runPage(id) {
  const details = await api(`/api/runs/${encodeURIComponent(id)}`);
  const run = details.run;
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/", text: "all runs" }));
  const summary = details.summary || {};
  const parts = [
    el("h1", { text: run.name }),
    el("p", { class: "muted" }, `${run.task} · ${modelText(run)} · ${run.metric} `,
       el("strong", { text: pct(run.value) }), ` · best epoch ${summary.best_epoch ?? "–"} of `,
       `${summary.epochs ?? "–"} · finished ${run.date}`),
  ];
  const inspectorBox = el("section", { id: "inspector", class: "card" });
  if (details.inspector) parts.push(inspectorBox);
  else if (details.inspector_problem) {
    parts.push(el("p", { class: "error", text: `No inspector: ${details.inspector_problem}` }));
  }
  parts.push(el("h2", { text: "Training curves" }), curves(details.metrics));
  if (details.figures.length) {
    parts.push(el("h2", { text: "Figures" }), el("div", { class: "figures" },
      details.figures.map((f) => el("figure", {}, el("img", { src: f.url, alt: f.name, loading: "lazy" }),
                                    el("figcaption", { text: f.name })))));
  }
  parts.push(el("h2", { text: "Settings" }), settingsList(details.config));
  main().replaceChildren(...parts);
  document.body.dataset.inspected = "0";  // inspections on this run's page
  if (details.inspector) new Inspector(inspectorBox, run, details.inspector).mount();
}

function curves(metrics) {
  if (!metrics || !metrics.length) return el("p", { class: "muted", text: "No per-epoch metrics." });
  const col = (k) => metrics.map((m) => (m[k] === undefined ? null : m[k]));
  const acc = (k) => col(k).map((v) => (v === null ? null : 100 * v));
  return el("div", { class: "row" },
    lineChart("loss", [{ name: "train", values: col("train_loss"), color: "#2f5fd0" },
                       { name: "validation", values: col("valid_loss"), color: "#e8590c" }]),
    lineChart("accuracy", [{ name: "train", values: acc("train_accuracy"), color: "#2f5fd0" },
                           { name: "validation", values: acc("valid_accuracy"), color: "#e8590c" }], "%"));
}

function settingsList(config) {
  const entries = [];
  for (const group of ["model", "train", "task_config"]) {
    for (const [k, v] of Object.entries(config[group] || {})) entries.push([`${group}.${k}`, v]);
  }
  return el("dl", { class: "settings" },
            entries.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: JSON.stringify(v) })]));
}

// -- the inspector -----------------------------------------------------------------------------
class Inspector {
  constructor(box, run, info) {
    this.box = box; this.run = run; this.info = info;
    this.result = null; this.step = 0; this.heatmaps = []; this.timer = null;
  }

  mount() {
    const info = this.info;
    const gates = info.gates.length ? `gates ${info.gates.join(", ")}` : "no gates";
    this.inputArea = el("div", { class: "col", id: "input-area" });
    this.outputArea = el("div", { id: "output-area" });
    this.errorLine = el("p", { class: "error", id: "inspect-error" });
    this.box.replaceChildren(
      el("h2", { text: `Inspector: watch the ${info.cell.toUpperCase()} read, ${info.step_name} by ${info.step_name}` }),
      el("p", { class: "muted", text: `${info.layers} layer(s), ${info.directions === 2 ? "both directions" : "one direction"}, ` +
        `${info.hidden} units, ${gates}.` }),
      el("details", {}, el("summary", { text: "the cell's equations" }),
         el("pre", { class: "equations", text: info.equations })),
      el("div", { class: "row" }, this.inputArea, this.outputArea), this.errorLine);
    const widgets = { image: () => this.imageInput(), digits: () => this.digitsInput(),
                      bits: () => this.bitsInput() };
    widgets[info.input_kind]();
  }

  async send(body, headers) {
    this.errorLine.textContent = "";
    try {
      const result = await api(`/api/runs/${this.run.id}/inspect`, { method: "POST", body, headers });
      this.show(result);
    } catch (err) {
      this.errorLine.textContent = err.message;
    }
  }

  sendJson(payload) {
    this.send(JSON.stringify(payload), { "Content-Type": "application/json" });
  }

  // -- MNIST: draw or drop ------------------------------------------------------------
  imageInput() {
    const size = 280;
    const canvas = el("canvas", { id: "draw", class: "draw", width: size, height: size });
    const ctx = canvas.getContext("2d");
    const strokes = [];
    let current = null;
    const paint = () => {
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
      if (this.dropped) ctx.drawImage(this.dropped, 0, 0, size, size);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 18; ctx.lineCap = "round"; ctx.lineJoin = "round";
      for (const s of strokes) {
        ctx.beginPath();
        s.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
        ctx.stroke();
      }
    };
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * (size / r.width), (e.clientY - r.top) * (size / r.height)];
    };
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId); current = [at(e)]; strokes.push(current); paint();
    });
    canvas.addEventListener("pointermove", (e) => { if (current) { current.push(at(e)); paint(); } });
    const finish = () => { if (current) { current = null; this.sendCanvas(canvas); } };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    const sendFile = (file) => {
      if (!file) return;
      const form = new FormData();
      form.append("file", file, file.name);
      this.send(form);
      const img = new Image();
      img.onload = () => { this.dropped = img; strokes.length = 0; paint(); };
      img.src = URL.createObjectURL(file);
    };
    canvas.addEventListener("dragover", (e) => { e.preventDefault(); canvas.classList.add("dragging"); });
    canvas.addEventListener("dragleave", () => canvas.classList.remove("dragging"));
    canvas.addEventListener("drop", (e) => {
      e.preventDefault(); canvas.classList.remove("dragging");
      sendFile(e.dataTransfer.files[0]);
    });
    const clear = () => { strokes.length = 0; this.dropped = null; paint(); this.clearOutput(); };
    const undo = () => {
      strokes.pop(); paint();
      if (strokes.length || this.dropped) this.sendCanvas(canvas); else this.clearOutput();
    };
    paint();
    this.pixelCanvas = el("canvas", { id: "pixels", class: "pixels", width: 224, height: 224 });
    this.inputArea.append(
      el("h3", { text: "draw a digit (mouse or touch), or drop an image file on it" }), canvas,
      el("div", { class: "row" },
         el("button", { id: "clear", text: "Clear", onclick: clear }),
         el("button", { id: "undo", text: "Undo", onclick: undo }),
         el("input", { id: "file", type: "file", accept: "image/*",
                       onchange: (e) => sendFile(e.target.files[0]) })),
      el("h3", { text: "what the model sees: 28 × 28, as rnnlab predict prepares it" }),
      this.pixelCanvas);
  }

  sendCanvas(canvas) {
    canvas.toBlob((blob) => {
      const form = new FormData();
      form.append("file", blob, "drawing.png");
      this.send(form);
    }, "image/png");
  }

  drawPixels() {
    const canvas = this.pixelCanvas;
    if (!canvas || !this.result) return;
    const ctx = canvas.getContext("2d"), pixels = this.result.input.pixels, cell = 8;
    pixels.forEach((row, r) => row.forEach((v, c) => {
      ctx.fillStyle = `rgb(${v},${v},${v})`; ctx.fillRect(c * cell, r * cell, cell, cell);
    }));
    ctx.fillStyle = "rgba(40,60,120,0.45)";  // rows not read yet
    ctx.fillRect(0, (this.step + 1) * cell, canvas.width, canvas.height);
    ctx.strokeStyle = "#e8590c"; ctx.lineWidth = 2;
    ctx.strokeRect(1, this.step * cell + 1, canvas.width - 2, cell - 1);
  }

  // -- recall: a digit sequence -------------------------------------------------------
  digitsInput() {
    const info = this.info;
    const field = el("input", { id: "digits", type: "text", value: "3 1 4 1 5 9 2",
                                placeholder: "digits, e.g. 3 1 4 1 5" });
    const read = () => this.sendJson({ digits: field.value });
    field.addEventListener("keydown", (e) => { if (e.key === "Enter") read(); });
    this.inputArea.append(
      el("h3", { text: `type ${info.min_length}–${info.max_length} digits (trained lengths); ` +
                       `the model answers the digit at position K = ${info.k} (zero-based)` }),
      el("div", { class: "row" }, field, el("button", { id: "read", class: "primary", text: "Read", onclick: read })),
      this.tokens = el("div", { class: "tokens", id: "tokens" }));
    read();
  }

  drawTokens() {
    if (!this.tokens || !this.result) return;
    const { digits, k } = this.result.input;
    this.tokens.replaceChildren(...digits.map((d, i) => el("div", {
      class: "token" + (i === k ? " k" : "") + (i === this.step ? " current" : ""), text: String(d),
      title: i === k ? "position K: the digit to recall" : `position ${i}` })));
  }

  // -- addition: two numbers ------------------------------------------------------------
  bitsInput() {
    const a = el("input", { id: "a", type: "text", value: "1011" });
    const b = el("input", { id: "b", type: "text", value: "0110" });
    const base = el("select", { id: "base" }, el("option", { value: "2", text: "binary" }),
                    el("option", { value: "10", text: "decimal" }));
    const add = () => this.sendJson({ a: a.value.trim(), b: b.value.trim(), base: Number(base.value) });
    for (const f of [a, b]) f.addEventListener("keydown", (e) => { if (e.key === "Enter") add(); });
    this.inputArea.append(
      el("h3", { text: `two numbers, most significant digit first; trained on ${this.info.train_lengths} bits` }),
      el("div", { class: "row" }, a, el("span", { text: "+" }), b, base,
         el("button", { id: "add", class: "primary", text: "Add", onclick: add })));
    add();
  }

  bitTable() {
    const r = this.result, T = r.steps, s = this.step, input = r.input, p = r.probabilities;
    const model = r.prediction.bits, unit = r.carry_unit;
    const head = el("tr", {}, el("th", { text: "step (LSB first)" }),
      Array.from({ length: T }, (_, t) => el("th", { class: t === s ? "current" : "", text: String(t + 1) })));
    const line = (name, values, cls) => el("tr", {}, el("th", { text: name }),
      values.map((v, t) => el("td", { class: [t === s ? "current" : "", cls ? cls(t) : ""].join(" "), text: v })));
    const rows = [head, line("a", input.a_bits), line("b", input.b_bits),
      line("true sum bit", input.sum_bits),
      line("model's bit", model, (t) => (model[t] === input.sum_bits[t] ? "right" : "wrong")),
      line("P(bit = 1)", p.map((v) => v.toFixed(2))),
      line("true carry out", input.carry)];
    if (unit && unit.values) {
      const scale = Math.max(...unit.values.map(Math.abs), 1e-6);
      const row = line(`unit ${unit.unit} (${unit.state}, r = ${unit.correlation})`,
                       unit.values.map((v) => v.toFixed(2)));
      [...row.querySelectorAll("td")].forEach((td, t) => {
        td.style.background = rgb(diverging(unit.values[t], scale));
      });
      rows.push(row);
    }
    return el("table", { class: "bits", id: "bits", dataset: { steps: String(T) } }, rows);
  }

  // -- what every inspector shows -------------------------------------------------------
  clearOutput() { this.result = null; this.outputArea.replaceChildren(); if (this.pixelCanvas) {
    const ctx = this.pixelCanvas.getContext("2d"); ctx.clearRect(0, 0, 224, 224); } }

  show(result) {
    this.result = result;
    this.step = result.steps - 1;  // start at the end: the model's answer
    const stepName = this.info.step_name;
    this.slider = el("input", { id: "step", type: "range", min: "1", max: String(result.steps),
                                value: String(result.steps), oninput: (e) => this.goTo(Number(e.target.value) - 1) });
    this.stepLabel = el("span", { id: "step-label" });
    this.playButton = el("button", { id: "play", text: "▶ play", onclick: () => this.play() });
    this.answerBox = el("div", { id: "answer", class: "col" });
    this.heatmaps = [];
    const maps = el("div", { class: "heatmaps", id: "heatmaps" });
    result.layers.forEach((layer, i) => {
      const where = result.layers.length > 1 ? ` · layer ${layer.layer + 1} ${layer.direction}` : "";
      const add = (title, matrix, kind) => {
        const map = new Heatmap(`${title}${where}`, matrix, kind, stepName);
        this.heatmaps.push(map); maps.append(map.box);
      };
      add("hidden state h", result.hidden[i], "hidden");
      if (result.cell) add("cell state c", result.cell[i], "cell");
      for (const [name, values] of Object.entries(result.gates)) add(`gate: ${name}`, values[i], `gate-${name}`);
    });
    const notes = result.notes.length ? el("p", { class: "notes", text: result.notes.join("; ") }) : null;
    this.outputArea.replaceChildren(...[
      el("div", { class: "stepper" }, this.playButton, this.slider, this.stepLabel), notes,
      el("div", { class: "row" }, this.answerBox, this.probabilityView()),
      el("h3", { text: `per ${stepName}: states and gates (${stepName}s down, units across; ` +
                       `blue < 0 < red, gates white 0 to dark 1)` }), maps].filter(Boolean));
    this.goTo(this.step);
    document.body.dataset.inspected = String(Number(document.body.dataset.inspected || 0) + 1);
  }

  probabilityView() {
    const r = this.result;
    if (r.task === "addition" || !r.classes) {
      this.probTable = null;
      return el("div", { class: "col" }, el("h3", { text: "the model adds, bit by bit" }), this.bitBox = el("div"));
    }
    const stepName = this.info.step_name;
    const labels = r.task === "recall" ? r.input.digits.map(String) : null;
    const rows = r.probabilities.map((probs, t) => {
      const best = probs.indexOf(Math.max(...probs));
      return el("tr", { dataset: { step: String(t) } },
        el("td", { class: "label", text: labels ? `${t + 1}: ${labels[t]}` : `${stepName} ${t + 1}` }),
        probs.map((v, c) => {
          const td = el("td", { text: c === best ? v.toFixed(2) : "", title: `${r.classes[c]}: ${v}` });
          td.style.background = rgb(sequential(v));
          if (v > 0.6) td.style.color = "#fff";
          return td;
        }));
    });
    this.probTable = el("table", { class: "probs", id: "probs" },
      el("thead", {}, el("tr", {}, el("th", { text: "" }), r.classes.map((c) => el("th", { text: c })))),
      el("tbody", {}, rows));
    return el("div", { class: "col" },
      el("h3", { text: `class probabilities after each ${stepName}: which ${stepName} made it sure` }),
      this.probTable);
  }

  answerView() {
    const r = this.result, stepName = this.info.step_name, t = this.step;
    if (r.task === "addition") {
      const p = r.prediction, right = p.correct;
      return [el("div", { class: "prediction", id: "prediction" },
        el("div", {}, el("span", { class: "big", text: p.model_sum_decimal }),
           el("span", { class: "verdict " + (right ? "right" : "wrong"),
                        text: right ? "right" : `wrong (${p.wrong_bits} bits)` })),
        el("div", { class: "muted", text: `${p.decimal[0]} + ${p.decimal[1]} = ${p.true_sum_decimal}; ` +
                                          `model ${p.model_sum}, true ${p.true_sum}` })),
        el("p", { class: "muted", text: `${stepName} ${t + 1} of ${r.steps}: P(sum bit = 1) = ` +
                                        `${r.probabilities[t].toFixed(3)}` })];
    }
    const probs = r.probabilities[t], order = probs.map((v, c) => [v, c]).sort((a, b) => b[0] - a[0]);
    const final = r.prediction;
    const truth = final.true !== undefined ? ` · the digit at K is ${final.true}` : "";
    return [el("div", { class: "prediction", id: "prediction" },
      el("span", { class: "big", text: final.name }),
      `${(100 * final.probability).toFixed(1)}% after all ${r.steps} ${stepName}s${truth}`),
      el("h3", { text: `after ${stepName} ${t + 1} of ${r.steps}` }),
      el("div", { class: "bars" }, order.slice(0, 5).flatMap(([v, c], i) => {
        const bar = el("div", { class: "bar" + (i === 0 ? " top" : "") });
        bar.style.width = `${Math.max(1, 160 * v)}px`;
        return [el("span", { text: r.classes[c] }), bar, el("span", { text: `${(100 * v).toFixed(1)}%` })];
      }))];
  }

  goTo(step) {
    const r = this.result;
    this.step = Math.max(0, Math.min(r.steps - 1, step));
    this.slider.value = String(this.step + 1);
    this.stepLabel.textContent = `${this.info.step_name} ${this.step + 1} of ${r.steps}`;
    this.stepLabel.dataset.step = String(this.step + 1);
    this.answerBox.replaceChildren(...this.answerView());
    if (this.probTable) {
      this.probTable.querySelectorAll("tbody tr").forEach((tr, t) => {
        tr.classList.toggle("current", t === this.step);
        tr.classList.toggle("future", t > this.step);
      });
    }
    if (this.bitBox) this.bitBox.replaceChildren(this.bitTable());
    for (const map of this.heatmaps) map.draw(this.step);
    this.drawPixels();
    this.drawTokens();
  }

  play() {
    if (this.timer) { clearInterval(this.timer); this.timer = null; this.playButton.textContent = "▶ play"; return; }
    this.goTo(0);
    this.playButton.textContent = "❚❚ pause";
    this.timer = setInterval(() => {
      if (!this.result || this.step >= this.result.steps - 1) { this.play(); return; }
      this.goTo(this.step + 1);
    }, 220);
  }
}

// -- routing -----------------------------------------------------------------------------------
async function route() {
  const hash = location.hash || "#/";
  document.body.dataset.page = "loading";
  try {
    if (hash.startsWith("#/run/")) await runPage(decodeURIComponent(hash.slice(6)));
    else await runsPage(new URLSearchParams(hash.split("?")[1] || "").get("task"));
    document.body.dataset.page = hash.startsWith("#/run/") ? "run" : "runs";
  } catch (err) {
    main().replaceChildren(el("h1", { text: "Not available" }), el("p", { class: "error", text: err.message }),
                           el("p", {}, el("a", { href: "#/", text: "all runs" })));
    document.body.dataset.page = "error";
  }
}
window.addEventListener("hashchange", route);
route();
