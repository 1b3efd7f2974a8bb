// melody studio: the page's logic, plain JavaScript with no libraries and no build step.
// The server engraves the score (verovio SVG); this file draws the piano roll, plays the notes with a small
// WebAudio synth (primer: soft triangle on the left, continuation: brighter filtered sawtooth on the right) and
// keeps what you like. `window.studio.lastSchedule` lists what the last Play scheduled, one entry per note.
"use strict";

const studio = {
  models: [],
  maxUploadBytes: 0,
  primerId: null,
  outputs: [],
  lastSchedule: [],
  audio: null,
  voices: [],
  playhead: null,
};
window.studio = studio;

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const roundQpm = (qpm) => Math.round(qpm * 10) / 10;  // a tempo read from MIDI ticks: 109.99990833 -> 110

function showMessage(text, kind) {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind || "";
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {  // no answer at all: the server stopped (Ctrl-C), or the network is down
    throw new Error("the studio is not answering: is melody_studio still running? Start it again and reload the page");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`the studio answered ${response.status} without a message`);
  }
  if (!response.ok || body.error) {
    throw new Error(body.error || `the studio answered ${response.status}`);
  }
  return body;
}

// --- models

async function loadModels() {
  const body = await api("/api/models");
  studio.models = body.models;
  studio.maxUploadBytes = body.max_upload_bytes;
  const select = $("model");
  select.replaceChildren(...body.models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.name;
    return option;
  }));
  showModelDetail();
}

function showModelDetail() {
  const model = studio.models.find((m) => m.id === $("model").value);
  $("model-detail").textContent = model ? model.detail : "";
}

// --- primer

// a refused file leaves the primer before it in place, and says so
function keptPrimerNote() {
  return studio.primerId ? ` (the primer before it, ${$("primer-name").textContent}, stays)` : "";
}

async function uploadPrimer(file) {
  $("primer-file").value = "";
  if (file.size > studio.maxUploadBytes) {
    showMessage(`${file.name}: ${file.size} bytes is over the ${studio.maxUploadBytes} byte limit for a primer`
                + keptPrimerNote(), "error");
    return;
  }
  showMessage(`Reading ${file.name}…`);
  const query = new URLSearchParams({ name: file.name, model: $("model").value });
  try {
    const body = await api(`/api/primer?${query}`, {
      method: "POST",
      headers: { "X-Melody-Studio": "1", "Content-Type": "application/octet-stream" },
      body: file,
    });
    studio.primerId = body.primer_id;
    const p = body.primer;
    $("primer-name").textContent = body.name;
    $("primer-summary").textContent =
      `${p.time_signature.join("/")}, ${p.key}, ${roundQpm(p.qpm)} qpm, ${p.bars} bars, ${p.num_notes} notes`;
    $("primer-info").hidden = false;
    $("time-signature").value = p.time_signature.join("/");  // the file's meter: what the outputs will be in
    showMessage(body.warnings.join("\n"), body.warnings.length ? "warning" : "");
  } catch (e) {
    showMessage(e.message + keptPrimerNote(), "error");
  }
}

function clearPrimer() {
  studio.primerId = null;
  $("primer-info").hidden = true;
  $("primer-file").value = "";
}

// --- generate

function numberOrNull(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function requestBody() {
  const low = $("pitch-low").value.trim();
  const high = $("pitch-high").value.trim();
  return {
    model: $("model").value,
    primer_id: studio.primerId,
    primer_text: studio.primerId ? "" : $("primer-text").value,
    time_signature: $("time-signature").value,
    qpm: numberOrNull("qpm"),
    num_bars: numberOrNull("num-bars"),
    num_outputs: numberOrNull("num-outputs"),
    seed: numberOrNull("seed"),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    repetition: Number($("repetition").value),
    scale: $("scale").value,
    pitch_range: low || high ? `${low || 0}:${high || 127}` : "",
  };
}

async function generate() {
  const button = $("generate");
  button.disabled = true;
  showMessage("Generating…");
  const request = requestBody();
  try {
    const body = await api("/api/generate", {
      method: "POST",
      headers: { "X-Melody-Studio": "1", "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    stop();
    studio.outputs = body.outputs.map((out, i) => ({ ...out, job: body.job, number: i + 1 }));
    $("outputs").replaceChildren(...studio.outputs.map(outputCard));
    const from = request.primer_id ? ` continuing ${$("primer-name").textContent}`
      : request.primer_text.trim() ? " continuing the typed melody" : " from nothing";
    const done = `${body.outputs.length} output${body.outputs.length === 1 ? "" : "s"}${from}, seed ${body.seed}.`;
    // the loaded file is the primer: typed notes (and the meter box) wait until it is cleared
    const unused = request.primer_id && $("primer-text").value.trim()
      ? [`the typed primer was not used: the file ${$("primer-name").textContent} is the primer (✕ clears it)`] : [];
    const notes = [...unused, ...body.warnings];
    showMessage([done, ...notes].join("\n"), notes.length ? "warning" : "");
  } catch (e) {
    showMessage(e.message, "error");
  } finally {
    button.disabled = false;
  }
}

// --- one output: score, piano roll, play, keep, downloads

function outputCard(out) {
  const card = $("output-template").content.firstElementChild.cloneNode(true);
  card.id = `output-${out.number}`;
  card.querySelector("h3").textContent = `Output ${out.number}`;
  card.querySelector(".meta").textContent =
    `seed ${out.seed} · ${out.total_bars} bars · ${out.time_signature.join("/")} · ${out.key} · ${roundQpm(out.qpm)} qpm`;
  const score = card.querySelector(".score");
  if (out.svg) {
    score.innerHTML = out.svg;  // engraved by the studio's own verovio from our MusicXML
  } else {
    score.innerHTML = "";
    const missing = document.createElement("p");
    missing.className = "missing";
    missing.textContent = out.score_error || "no sheet music";
    score.appendChild(missing);
  }
  card.querySelector(".roll").appendChild(pianoRoll(out));
  for (const link of card.querySelectorAll("a.download")) {
    const kind = link.dataset.kind;
    link.href = out.downloads[kind];
    link.download = out.files[kind].replace("melody_", `melody_${out.job.slice(0, 6)}_`);
  }
  card.querySelector(".play").addEventListener("click", () => play(out, card));
  card.querySelector(".stop").addEventListener("click", stop);
  card.querySelector(".keep").addEventListener("click", () => keep(out, card));
  return card;
}

function pianoRoll(out) {
  const stepWidth = Math.max(1.2, Math.min(4, 900 / out.total_steps));
  const rowHeight = 6;
  const pitches = out.notes.map((n) => n.pitch);
  const low = (pitches.length ? Math.min(...pitches) : 60) - 2;
  const high = (pitches.length ? Math.max(...pitches) : 72) + 2;
  const width = Math.ceil(out.total_steps * stepWidth) + 2;
  const height = (high - low + 1) * rowHeight;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const add = (tag, attrs) => {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) element.setAttribute(k, v);
    svg.appendChild(element);
    return element;
  };
  for (let p = low; p <= high; p++) {
    if ([1, 3, 6, 8, 10].includes(p % 12)) {
      add("rect", { x: 0, y: (high - p) * rowHeight, width, height: rowHeight, fill: "#f0f1f3" });
    }
  }
  for (let step = 0; step <= out.total_steps; step += out.steps_per_bar) {
    add("line", { x1: step * stepWidth, x2: step * stepWidth, y1: 0, y2: height, stroke: "#9aa5b1", "stroke-width": 0.8 });
  }
  out.notes.forEach((n, i) => {
    const rect = add("rect", {
      x: n.start_step * stepWidth, y: (high - n.pitch) * rowHeight + 0.5,
      width: Math.max(1, n.duration_steps * stepWidth - 1), height: rowHeight - 1, rx: 1,
      class: `note-rect ${n.primer ? "primer" : "continuation"}`,
    });
    rect.dataset.note = i;
  });
  if (out.primer_steps > 0) {
    add("line", { x1: out.primer_steps * stepWidth, x2: out.primer_steps * stepWidth, y1: 0, y2: height,
      stroke: "#c44e52", "stroke-dasharray": "4 3", "stroke-width": 1.5 });
  }
  return svg;
}

function keep(out, card) {
  if (document.getElementById(`kept-${out.job}-${out.number}`)) return;
  const kept = outputCard(out);
  kept.id = `kept-${out.job}-${out.number}`;
  kept.classList.add("kept");
  const button = kept.querySelector(".keep");
  button.textContent = "✕ Remove";
  button.replaceWith(button.cloneNode(true));
  kept.querySelector(".keep").addEventListener("click", () => kept.remove());
  const shelf = $("kept");
  shelf.querySelector(".empty")?.remove();
  shelf.prepend(kept);
  card.querySelector(".keep").textContent = "★ Kept";
}

// --- sound: one oscillator per note, scheduled ahead on the AudioContext's clock

function frequency(pitch) {
  return 440 * Math.pow(2, (pitch - 69) / 12);
}

function voice(ctx, note, when) {
  const primer = note.primer;
  const osc = ctx.createOscillator();
  osc.type = primer ? "triangle" : "sawtooth";
  osc.frequency.value = frequency(note.pitch);
  const filter = ctx.createBiquadFilter();
  filter.type = "lowpass";
  filter.frequency.value = primer ? 1800 : 2600;
  const gain = ctx.createGain();
  const length = Math.max(0.03, note.end_s - note.start_s);
  const peak = primer ? 0.22 : 0.12;
  gain.gain.setValueAtTime(0, when);
  gain.gain.linearRampToValueAtTime(peak, when + 0.01);
  gain.gain.setValueAtTime(peak, when + Math.max(0.011, length - 0.04));
  gain.gain.linearRampToValueAtTime(0, when + length);
  let last = gain;
  if (ctx.createStereoPanner) {
    const pan = ctx.createStereoPanner();
    pan.pan.value = primer ? -0.35 : 0.35;
    gain.connect(pan);
    last = pan;
  }
  osc.connect(filter).connect(gain);
  last.connect(ctx.destination);
  osc.start(when);
  osc.stop(when + length + 0.02);
  return osc;
}

function play(out, card) {
  stop();
  if (!studio.audio) {
    const Context = window.AudioContext || window.webkitAudioContext;
    studio.audio = new Context();
  }
  const ctx = studio.audio;
  if (ctx.state === "suspended") ctx.resume();
  const start = ctx.currentTime + 0.12;
  studio.lastSchedule = out.notes.map((n) => ({
    pitch: n.pitch, start_s: n.start_s, end_s: n.end_s, part: n.primer ? "primer" : "continuation", at: start + n.start_s,
  }));
  studio.voices = out.notes.map((n) => voice(ctx, n, start + n.start_s));
  follow(card, out, start);
}

function follow(card, out, start) {
  const rects = card.querySelectorAll(".note-rect");
  const ctx = studio.audio;
  const end = out.notes.length ? out.notes[out.notes.length - 1].end_s : 0;
  const tick = () => {
    const t = ctx.currentTime - start;
    rects.forEach((r, i) => r.classList.toggle("sounding", out.notes[i].start_s <= t && t < out.notes[i].end_s));
    if (t <= end && studio.playhead === tick) requestAnimationFrame(tick);
    else rects.forEach((r) => r.classList.remove("sounding"));
  };
  studio.playhead = tick;
  requestAnimationFrame(tick);
}

function stop() {
  for (const osc of studio.voices) {
    try { osc.stop(); } catch (e) { /* already stopped */ }
  }
  studio.voices = [];
  studio.playhead = null;
}

// --- wiring

function bindSlider(id, digits) {
  const input = $(id);
  const show = () => { $(`${id}-value`).textContent = Number(input.value).toFixed(digits); };
  input.addEventListener("input", show);
  show();
}

function init() {
  bindSlider("temperature", 2);
  bindSlider("top-p", 2);
  bindSlider("repetition", 1);
  $("model").addEventListener("change", showModelDetail);
  $("generate").addEventListener("click", generate);
  $("primer-clear").addEventListener("click", clearPrimer);
  $("primer-file").addEventListener("change", (e) => { if (e.target.files[0]) uploadPrimer(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) uploadPrimer(e.dataTransfer.files[0]);
  });
  loadModels().catch((e) => showMessage(e.message, "error"));
  // kept melodies live in this page and the studio's temporary folder: ask before a reload or a close loses them
  window.addEventListener("beforeunload", (e) => {
    if ($("kept").querySelector("article.output")) {
      e.preventDefault();
      e.returnValue = "";
    }
  });
}

document.addEventListener("DOMContentLoaded", init);
