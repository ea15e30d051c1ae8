// The kinetoscope web page: the same /v1/videos API the openai SDK uses, from a form.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 500;
let historyAfter = null;   // cursor of the next page of past videos
let shown = null;          // id of the video in the result panel
const objectUrls = { result: [], history: [] };  // blob URLs, freed when their panel is redrawn

// ------------------------------------------------------------------ API
function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(`/v1${path}`, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not an OpenAI error body */ }
    throw new Error(message);
  }
  return response;
}

const getJson = async (path, options) => (await api(path, options)).json();

// ------------------------------------------------------------------ form
function showFieldsFor(mode) {
  for (const element of document.querySelectorAll("[data-modes]")) {
    element.hidden = !element.dataset.modes.split(" ").includes(mode);
  }
}

// Suggestions from the model's capabilities; any other value it can make may be typed in.
function suggest(input, list, values, initial) {
  list.replaceChildren(...values.map((v) => new Option(v, v)));
  if (!input.value) input.value = initial;
}

async function loadCapabilities() {
  const caps = await getJson("/videos/capabilities");
  $("model").textContent = `model ${caps.model}`;
  $("size").title = `${caps.size_rule}`;
  $("seconds").title = `up to ${caps.max_seconds} s at ${caps.fps} fps`;
  suggest($("size"), $("sizes"), caps.sizes, caps.default_size);
  suggest($("seconds"), $("durations"), caps.seconds, caps.default_seconds);
  for (const [name, value] of Object.entries(caps.defaults)) $(name).placeholder = String(value);
}

function appendExtras(form) {
  const extras = { seed: "seed", steps: "steps", guidance: "guidance", negative_prompt: "negative-prompt" };
  for (const [name, id] of Object.entries(extras)) {
    if ($(id).value !== "") form.append(name, $(id).value);
  }
}

// A source video: an upload when one is chosen, else the finished video picked in the list.
function appendVideo(form, name, selectId, fileId) {
  const file = fileId && $(fileId).files[0];
  if (file) form.append(name, file);
  else if ($(selectId).value) form.append(`${name}[id]`, $(selectId).value);
  else throw new Error(`Choose a finished video or upload one for "${name}".`);
}

function buildRequest(mode) {
  const form = new FormData();
  form.append("prompt", $("prompt").value);
  appendExtras(form);
  if (["text", "image", "loop"].includes(mode)) {
    form.append("size", $("size").value);
    form.append("seconds", $("seconds").value);
    if (mode === "loop") form.append("loop", "true");
    if (mode === "image") {
      const image = $("image").files[0];
      if (!image) throw new Error("Choose an image to animate.");
      form.append("input_reference", image);
      form.append("image_frame", $("image-frame").value || "0");
    }
    return ["/videos", form];
  }
  if (mode === "remix") {
    if (!$("source").value) throw new Error("Choose a finished video to remix.");
    if ($("strength").value !== "") form.append("strength", $("strength").value);
    return [`/videos/${$("source").value}/remix`, form];
  }
  appendVideo(form, "video", "source", "source-file");
  if (mode === "edit") {
    if ($("strength").value !== "") form.append("strength", $("strength").value);
    return ["/videos/edits", form];
  }
  form.append("seconds", $("seconds").value);
  if (mode === "extend") {
    form.append("direction", $("direction").value);
    return ["/videos/extensions", form];
  }
  appendVideo(form, "video_b", "source-b", "source-b-file");
  return ["/videos/connections", form];
}

async function submit(event) {
  event.preventDefault();
  $("form-error").textContent = "";
  $("submit").disabled = true;
  try {
    const [path, body] = buildRequest($("mode").value);
    const video = await getJson(path, { method: "POST", body });
    await follow(video);
  } catch (error) {
    $("form-error").textContent = error.message;
  } finally {
    $("submit").disabled = false;
  }
}

// ------------------------------------------------------------------ result panel
async function follow(video) {
  shown = video.id;
  $("result").hidden = false;
  $("result-title").textContent = video.prompt;
  $("player").hidden = true;
  $("downloads").hidden = true;
  while (shown === video.id) {
    $("progress").value = video.progress;
    $("status").textContent = `${video.status} · ${video.progress}% · ${video.size} · ${video.seconds} s · ${video.id}`;
    if (video.status === "completed") return show(video);
    if (video.status === "failed") {
      $("status").textContent = `failed: ${video.error ? video.error.message : "unknown reason"}`;
      return refreshHistory();
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    video = await getJson(`/videos/${video.id}`);
  }
}

// Content goes through fetch (not a plain src=) so that the API key header is sent.
async function contentUrl(id, variant, panel) {
  const blob = await (await api(`/videos/${id}/content?variant=${variant}`)).blob();
  const url = URL.createObjectURL(blob);
  objectUrls[panel].push(url);
  return url;
}

function freeUrls(panel) {
  objectUrls[panel].splice(0).forEach((url) => URL.revokeObjectURL(url));
}

async function show(video) {
  freeUrls("result");
  $("progress").value = 100;
  for (const variant of ["video", "thumbnail", "spritesheet"]) {
    const link = $(`download-${variant}`);
    link.href = await contentUrl(video.id, variant, "result");
    link.download = `${video.id}.${{ video: "mp4", thumbnail: "webp", spritesheet: "jpg" }[variant]}`;
  }
  $("player").src = $("download-video").href;
  $("player").hidden = false;
  $("downloads").hidden = false;
  await refreshHistory();
  $("source").value = video.id;  // ready to extend, edit or remix what was just shown
}

// ------------------------------------------------------------------ past videos
function historyItem(video) {
  const item = document.createElement("li");
  item.dataset.id = video.id;
  item.dataset.status = video.status;
  const prompt = document.createElement("div");
  prompt.className = "prompt";
  prompt.textContent = video.prompt;
  const meta = document.createElement("div");
  meta.className = "muted";
  meta.textContent = `${video.status} · ${video.size} · ${video.seconds} s · ${new Date(video.created_at * 1000).toLocaleString()}`;
  item.append(prompt, meta);
  if (video.status === "completed") {
    const thumb = document.createElement("img");
    thumb.alt = "";
    contentUrl(video.id, "thumbnail", "history").then((url) => { thumb.src = url; }, () => thumb.remove());
    item.prepend(thumb);
  }
  item.addEventListener("click", () => follow(video));
  return item;
}

async function loadHistory(reset) {
  const query = new URLSearchParams({ order: "desc", limit: "12" });
  if (!reset && historyAfter) query.set("after", historyAfter);
  const page = await getJson(`/videos?${query}`);
  if (reset) {
    freeUrls("history");
    $("history").replaceChildren();
  }
  $("history").append(...page.data.map(historyItem));
  historyAfter = page.last_id;
  $("more").hidden = !page.has_more;
  if (reset) fillSources(page.data.filter((v) => v.status === "completed"));
}

function fillSources(completed) {
  for (const id of ["source", "source-b"]) {
    const keep = $(id).value;
    $(id).replaceChildren(new Option("(choose a finished video)", ""),
      ...completed.map((v) => new Option(`${v.prompt.slice(0, 40)} (${v.size}, ${v.seconds} s)`, v.id, false, v.id === keep)));
  }
}

const refreshHistory = () => loadHistory(true).catch((error) => { $("form-error").textContent = error.message; });

// ------------------------------------------------------------------ start
$("api-key").value = localStorage.getItem("kinetoscope-api-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("kinetoscope-api-key", $("api-key").value.trim());
  start();
});
$("mode").addEventListener("change", () => showFieldsFor($("mode").value));
$("create").addEventListener("submit", submit);
$("more").addEventListener("click", () => loadHistory(false));
showFieldsFor($("mode").value);

async function start() {
  try {
    await loadCapabilities();
    await loadHistory(true);
  } catch (error) {
    $("form-error").textContent = error.message;
  }
}
start();
