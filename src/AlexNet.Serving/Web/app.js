// The page of `alexnet serve`: no build step, no CDN; everything comes from this server's API.
"use strict";
const $ = (id) => document.getElementById(id);
let model = null;

function showError(message) {
  const e = $("error");
  e.textContent = message;
  e.hidden = !message;
}

async function json(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

async function loadModel() {
  try {
    model = await json(await fetch("/api/model"));
    $("model").textContent = `${model.summary} — ${model.checkpoint}`;
    if (model.run) follow(model.run);
  } catch (e) {
    $("model").textContent = "";
    showError(`The model card could not be read: ${e.message}`);
  }
}

async function classify(file) {
  showError("");
  if (!file) return;
  $("query").src = URL.createObjectURL(file);
  const form = () => { const f = new FormData(); f.append("image", file); return f; };
  try {
    const views = $("views").value;
    const p = await json(await fetch(`/api/predict?top=5&views=${views}`, { method: "POST", body: form() }));
    const bars = $("bars");
    bars.replaceChildren(...p.top.map((c) => {
      const li = document.createElement("li");
      li.dataset.index = c.index;
      const label = document.createElement("div");
      label.className = "bar-label";
      const name = document.createElement("span"); name.className = "name"; name.textContent = c.name;
      const pct = document.createElement("span"); pct.className = "probability"; pct.textContent = (100 * c.probability).toFixed(2) + "%";
      label.append(name, pct);
      const bar = document.createElement("div"); bar.className = "bar"; bar.style.width = (100 * c.probability).toFixed(1) + "%";
      li.append(label, bar);
      return li;
    }));
    $("timing").textContent = `${p.views} view(s), ${p.milliseconds.toFixed(1)} ms on the server`;
    $("result").hidden = false;
    if (model && model.neighbours) {
      const n = await json(await fetch("/api/neighbors?k=8", { method: "POST", body: form() }));
      $("neighbours").replaceChildren(...n.neighbours.map((h) => {
        const f = document.createElement("figure");
        const img = document.createElement("img"); img.src = h.image; img.alt = h.name; img.loading = "eager";
        const cap = document.createElement("figcaption"); cap.textContent = `${h.name} (${h.distance.toFixed(1)})`;
        f.append(img, cap);
        return f;
      }));
      $("neighbours-method").textContent = `${n.method}, ${n.milliseconds.toFixed(1)} ms`;
      $("neighbours-card").hidden = false;
    }
  } catch (e) {
    showError(e.message);
  }
}

// Live curves of a training run: the server pushes each line of metrics.jsonl as an event.
function follow(run) {
  $("run-card").hidden = false;
  $("run-name").textContent = run;
  const steps = [], epochs = [];
  const source = new EventSource(`/api/runs/${encodeURIComponent(run)}/events`);
  source.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.reset) { steps.length = 0; epochs.length = 0; }
    else if (m.kind === "epoch") epochs.push(m);
    else if (m.kind === "step") steps.push(m);
    draw(steps, epochs);
    $("run-status").textContent = `${steps.length} logged steps, ${epochs.length} epochs`;
  };
  source.onerror = () => { $("run-status").textContent = "the run's stream closed; reconnecting…"; };
}

function draw(steps, epochs) {
  const c = $("curves"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pad = 36, w = c.width - 2 * pad, h = c.height - 2 * pad;
  const xs = steps.map((s) => s.step);
  const maxX = Math.max(1, ...xs, ...epochs.map((e) => e.step || 0));
  const losses = steps.map((s) => s.loss).filter((v) => Number.isFinite(v));
  const maxLoss = Math.max(1e-9, ...losses);
  g.strokeStyle = "#999"; g.strokeRect(pad, pad, w, h);
  g.fillStyle = "#666"; g.font = "12px sans-serif";
  g.fillText("loss (green), validation top-1 error (red); step →", pad, pad - 10);
  g.strokeStyle = "#2a6"; g.beginPath();
  steps.forEach((s, i) => { const x = pad + w * s.step / maxX, y = pad + h * (1 - s.loss / maxLoss); i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke();
  g.strokeStyle = "#b00020"; g.beginPath();
  epochs.filter((e) => Number.isFinite(e.valTop1Error)).forEach((e, i) => {
    const x = pad + w * (e.step || 0) / maxX, y = pad + h * (1 - e.valTop1Error);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); classify(e.dataTransfer.files[0]); });
$("file").addEventListener("change", (e) => classify(e.target.files[0]));
loadModel();
