"use strict";
// The page of `jaxstyle serve`: plain DOM, no framework, nothing from other origins.
const $ = (id) => document.getElementById(id);
const files = { content: null, style: null };
let current = null, source = null, losses = [];

function setFile(kind, blob, name) {
  files[kind] = new File([blob], name || kind, { type: blob.type });
  $(kind + "-thumb").src = URL.createObjectURL(blob);
}

for (const kind of ["content", "style"]) {
  $(kind).addEventListener("change", (e) => { if (e.target.files[0]) setFile(kind, e.target.files[0], e.target.files[0].name); });
  const drop = $(kind + "-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) setFile(kind, e.dataTransfer.files[0], e.dataTransfer.files[0].name);
  });
}

document.querySelectorAll("[data-sample]").forEach((b) => b.addEventListener("click", async () => {
  const r = await fetch("/static/samples/" + b.dataset.sample);
  setFile(b.dataset.kind, await r.blob(), b.dataset.sample);
}));

$("job-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("message").textContent = "";
  if (!files.content || !files.style) { $("message").textContent = "choose a content and a style image"; return; }
  const form = new FormData();
  form.append("content", files.content);
  form.append("style", files.style);
  for (const name of ["preset", "size", "steps", "optimizer"]) if ($(name).value) form.append(name, $(name).value);
  const r = await fetch("/api/jobs", { method: "POST", body: form });
  const body = await r.json();
  if (!r.ok) { $("message").textContent = body.error; return; }
  watch(body.id);
  refreshQueue();
});

function drawCurve() {
  const line = $("curve-line");
  if (losses.length < 2) { line.setAttribute("points", ""); return; }
  const logs = losses.map((v) => Math.log10(Math.max(v, 1e-12)));
  const lo = Math.min(...logs), hi = Math.max(...logs), span = hi - lo || 1;
  line.setAttribute("points", logs.map((v, i) =>
    `${(200 * i / (logs.length - 1)).toFixed(1)},${(98 - 96 * (v - lo) / span).toFixed(1)}`).join(" "));
}

function show(job) {
  $("job-id").textContent = job.id.slice(0, 8);
  $("job-status").textContent = job.status + (job.error ? " (" + job.error + ")" : "");
  $("job-step").textContent = `${job.step}/${job.steps}` + (job.batch_size > 1 ? ` · batch of ${job.batch_size}` : "");
  if (job.losses && job.losses.total !== undefined && job.step > 0) {
    losses.push(job.losses.total); drawCurve();
  }
  if (job.step > 0 || job.status === "done") {
    $("preview").src = `/api/jobs/${job.id}/preview?step=${job.step}&t=${Date.now()}`;
  }
  $("cancel").hidden = ["done", "failed", "cancelled"].includes(job.status);
  if (job.status === "done") {
    $("download").href = `/api/jobs/${job.id}/result`;
    $("download").hidden = false;
  }
}

function watch(id) {
  if (source) source.close();
  current = id; losses = [];
  $("current").hidden = false; $("download").hidden = true; $("preview").removeAttribute("src"); drawCurve();
  source = new EventSource(`/api/jobs/${id}/events`);
  source.addEventListener("progress", (e) => {
    const job = JSON.parse(e.data);
    show(job);
    if (["done", "failed", "cancelled"].includes(job.status)) { source.close(); refreshQueue(); }
  });
}

$("cancel").addEventListener("click", async () => {
  if (current) await fetch(`/api/jobs/${current}`, { method: "DELETE" });
  refreshQueue();
});

async function refreshQueue() {
  const r = await fetch("/api/jobs");
  if (!r.ok) return;
  const tbody = $("queue").querySelector("tbody");
  tbody.replaceChildren(...(await r.json()).jobs.map((job) => {
    const tr = document.createElement("tr");
    for (const text of [job.id.slice(0, 8), job.status, `${job.step}/${job.steps}`, String(job.batch_size || "")]) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    tr.addEventListener("click", () => watch(job.id));
    return tr;
  }));
}
refreshQueue();
setInterval(refreshQueue, 3000);
