// ModsNet web app: one page, hash routes, plain DOM. Data comes from the query service's HTTP API (/api, described
// at /api/openapi.json); charts are plotly.js, served by the same service from the pinned `plotly` package.

const main = document.getElementById("main");
const statusBox = document.getElementById("status");
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("modsnet-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("modsnet-token", tokenInput.value.trim()));

// What the browser tests read: how long the last search took to show after the API answered.
window.modsnet = { lastRender: null };

// ------------------------------------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function headers(extra = {}) {
  const token = tokenInput.value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

const fmt = (v, digits = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
function seconds(v) {
  if (!v) return "–";
  return v < 0.01 ? `${(v * 1000).toFixed(2)} ms` : v < 100 ? `${v.toFixed(2)} s` : `${Math.round(v)} s`;
}
function bytes(v) {
  if (!v) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
const enc = encodeURIComponent;
const modelHref = (lib, id) => `#/library/${enc(lib)}/model/${enc(id)}`;
const datasetHref = (lib, id) => `#/library/${enc(lib)}/dataset/${enc(id)}`;

function announce(text) { statusBox.textContent = text; }

function errorBox(error) { return h("p", { class: "error", role: "alert" }, String(error.message || error)); }

function table(caption, head, rows, numeric = []) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : null }, c)))))));
}

// plotly.js arrives with `defer`: a chart waits for it (the page is painted before).
function plotlyReady() {
  return new Promise((resolve) => {
    if (window.Plotly) return resolve(window.Plotly);
    window.addEventListener("load", () => resolve(window.Plotly), { once: true });
  });
}

function figure(id, caption) {
  // The chart is interactive (zoom, pan, the mode bar), so it is a labelled figure, not an image.
  return h("figure", { "aria-labelledby": `${id}-caption` },
    h("div", { id, class: "chart" }),
    h("figcaption", { id: `${id}-caption` }, caption));
}

async function plot(id, traces, layout = {}) {
  const Plotly = await plotlyReady();
  const el = document.getElementById(id);
  if (!el || !Plotly) return;
  await Plotly.newPlot(el, traces, {
    margin: { l: 60, r: 20, t: 20, b: 60 },
    font: { family: "system-ui, sans-serif", size: 12, color: "#1b1f24" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    ...layout,
  }, { responsive: true, displaylogo: false });
  el.style.minHeight = "0";  // the placeholder height held the layout until the chart came
  el.dataset.rendered = "true";
}

function field(id, label, input, hint) {
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null);
}

async function libraries() {
  return (await api("/api/libraries")).libraries;
}

// ------------------------------------------------------------------------------------------------ search

const searchState = { files: null, folder: "", last: null };

async function filesOfEntry(entry, prefix) {
  // A dropped folder: read it recursively, keeping each file's path inside it (subfolders are the labels).
  if (entry.isFile) {
    const file = await new Promise((ok, fail) => entry.file(ok, fail));
    return [{ file, path: prefix + entry.name }];
  }
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) break;
    for (const child of batch) out.push(...(await filesOfEntry(child, `${prefix}${entry.name}/`)));
  }
  return out;
}

function chooseFiles(list, folder) {
  searchState.files = list;
  searchState.folder = folder;
  const chosen = document.getElementById("chosen");
  const total = list.reduce((s, f) => s + f.file.size, 0);
  chosen.textContent = folder
    ? `Folder ${folder}: ${list.length} files, ${bytes(total)}`
    : `${list[0].file.name}, ${bytes(total)}`;
  document.getElementById("go").disabled = false;
  announce(chosen.textContent);
}

// The objectives a search may rank by (modsnet.data.profiles.OBJECTIVE_NAMES), as the form offers them.
const OBJECTIVES = [
  ["score", "best predicted score"],
  ["per-train-seconds", "score per training second"],
  ["per-inference-seconds", "score per inference second"],
  ["per-memory", "score per MB of memory"],
  ["pareto", "Pareto front of score against a cost"],
];
const PARETO_COSTS = [["inference-seconds", "inference time"], ["train-seconds", "training time"], ["memory", "memory"]];
// An API cost name and the field of `cost` it names (the trade-off chart's axis).
const COST_FIELD = { "train-seconds": "train_seconds", "inference-seconds": "inference_seconds", memory: "memory_bytes" };

function limitsText(c) {
  const parts = [];
  if (c.max_train_seconds) parts.push(`training ≤ ${limitSeconds(c.max_train_seconds)}`);
  if (c.max_inference_seconds) parts.push(`inference ≤ ${limitSeconds(c.max_inference_seconds)}`);
  if (c.max_memory_bytes) parts.push(`memory ≤ ${megabytes(c.max_memory_bytes)}`);
  return parts.join(", ") || "no limits";
}

function limitSeconds(v) {
  // A limit in the largest unit it fills, as `modsnet profiles` prints it (10 ms, 1 min, 24 h).
  for (const [unit, size] of [["h", 3600], ["min", 60], ["s", 1]]) if (v >= size) return `${+(v / size).toPrecision(3)} ${unit}`;
  return `${+(v * 1000).toPrecision(3)} ms`;
}

function megabytes(v) {
  // Profiles and limits are set in decimal units (50 MB is 50e6 bytes), as the CLI prints them.
  return v >= 1e9 ? `${+(v / 1e9).toPrecision(3)} GB` : `${+(v / 1e6).toPrecision(3)} MB`;
}

async function viewSearch() {
  const [libs, profiles] = await Promise.all([libraries(), api("/api/profiles").then((r) => r.profiles)])
    .catch((e) => { main.replaceChildren(errorBox(e)); throw e; });
  const librarySelect = h("select", {}, h("option", { value: "" }, "by the file's kind"),
    libs.map((l) => h("option", { value: l.name }, `${l.name} (${l.modality})`)));
  const fileInput = h("input", { type: "file", id: "file-input", accept: ".csv,.tsv,.parquet,.xlsx,.jsonl,.txt,.zip,.xrdml,.brml,.rasx,.raw,.xy" });
  const folderInput = h("input", { type: "file", id: "folder-input", webkitdirectory: true, multiple: true });
  fileInput.addEventListener("change", () => fileInput.files.length && chooseFiles([{ file: fileInput.files[0], path: fileInput.files[0].name }], ""));
  folderInput.addEventListener("change", () => {
    const files = [...folderInput.files];
    if (!files.length) return;
    const root = files[0].webkitRelativePath.split("/")[0];
    chooseFiles(files.map((f) => ({ file: f, path: f.webkitRelativePath.split("/").slice(1).join("/") })), root);
  });
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop a file or a folder here, or choose one:"),
    h("div", { class: "pickers" },
      fileInput, h("label", { for: "file-input" }, "Choose a file"),
      folderInput, h("label", { for: "folder-input" }, "Choose a folder")),
    h("p", { class: "chosen", id: "chosen" }, "Nothing chosen yet"));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entry = e.dataTransfer.items?.[0]?.webkitGetAsEntry?.();
    if (entry && entry.isDirectory) {
      const files = (await filesOfEntry(entry, "")).map((f) => ({ ...f, path: f.path.split("/").slice(1).join("/") }));
      chooseFiles(files, entry.name);
    } else if (e.dataTransfer.files.length) {
      const f = e.dataTransfer.files[0];
      chooseFiles([{ file: f, path: f.name }], "");
    }
  });
  const objective = h("select", {}, OBJECTIVES.map(([value, text]) => h("option", { value }, text)));
  const paretoCost = h("select", { disabled: true, "aria-describedby": "pareto-cost-hint" },
    PARETO_COSTS.map(([value, text]) => h("option", { value }, text)));
  objective.addEventListener("change", () => { paretoCost.disabled = objective.value !== "pareto"; });
  const profile = h("select", { "aria-describedby": "profile-hint" }, h("option", { value: "" }, "none"),
    profiles.map((p) => h("option", { value: p.name }, `${p.name}: ${p.description} (${limitsText(p)})`)));
  const chartCost = h("select", {},
    h("option", { value: "train_seconds" }, "score against training time"),
    h("option", { value: "inference_seconds" }, "score against inference time"),
    h("option", { value: "memory_bytes" }, "score against memory"));
  const form = h("form", { class: "grid", id: "search-form", "aria-labelledby": "search-title" },
    drop,
    field("library", "Library", librarySelect),
    field("k", "Models to return (k)", h("input", { type: "number", min: 1, max: 1000, value: 10 })),
    field("probe-budget", "Probe budget", h("input", { type: "number", min: 0, max: 1000, value: 5 }), "models measured on your data (0: none)"),
    field("target", "Target column", h("input", { type: "text", placeholder: "detected" })),
    field("max-train", "Max training seconds", h("input", { type: "number", min: 0, step: "any", placeholder: "no limit" })),
    field("max-inference", "Max inference seconds", h("input", { type: "number", min: 0, step: "any", placeholder: "no limit" })),
    field("max-memory", "Max memory (MB)", h("input", { type: "number", min: 0, step: "any", placeholder: "no limit" })),
    field("exclude", "Exclude models", h("input", { type: "text", placeholder: "id, id" })),
    field("objective", "Rank by (objective)", objective),
    field("pareto-cost", "Pareto cost", paretoCost, "with the Pareto objective"),
    field("profile", "Hardware profile", profile, "its limits combine with the max fields, the stricter winning"),
    field("tradeoff-cost", "Trade-off chart", chartCost),
    h("div", { class: "progress" },
      h("label", { for: "upload-progress", class: "visually-hidden" }, "Upload progress"),
      h("progress", { id: "upload-progress", max: 100, value: 0, hidden: true })),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "go", disabled: true }, "Search"), h("span", { id: "search-state" })));
  form.addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });
  chartCost.addEventListener("change", () => searchState.last && drawTradeoff(searchState.last));
  main.replaceChildren(h("h1", { id: "search-title" }, "Find the models for your data"), form, h("section", { id: "results", "aria-live": "polite" }));
  if (searchState.last) showResults(searchState.last);
}

function searchParams() {
  const v = (id) => document.getElementById(id).value.trim();
  const params = new URLSearchParams();
  const set = (k, value) => value !== "" && params.set(k, value);
  set("library", v("library"));
  set("k", v("k"));
  set("probe_budget", v("probe-budget"));
  set("target_column", v("target"));
  set("max_train_seconds", v("max-train"));
  set("max_inference_seconds", v("max-inference"));
  if (v("max-memory") !== "") params.set("max_memory_bytes", String(Number(v("max-memory")) * 1024 * 1024));
  set("exclude", v("exclude"));
  if (v("objective") !== "score") params.set("objective", v("objective"));
  if (v("objective") === "pareto") params.set("pareto_cost", v("pareto-cost"));
  set("profile", v("profile"));
  return params;
}

function upload(url, body, onProgress) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [k, val] of Object.entries(headers())) xhr.setRequestHeader(k, val);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = { error: `${xhr.status} ${xhr.statusText}` }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(xhr.status === 429 ? `${body.error} (retry after ${xhr.getResponseHeader("Retry-After")} s)` : body.error));
    };
    xhr.onerror = () => reject(new Error("the query service could not be reached"));
    xhr.send(body);
  });
}

async function runSearch() {
  const { files, folder } = searchState;
  if (!files) return;
  const params = searchParams();
  let body;
  if (folder) {
    body = new FormData();
    for (const f of files) body.append("file", f.file, f.path);
    params.set("filename", folder);
  } else {
    body = files[0].file;
    params.set("filename", files[0].file.name);
  }
  const bar = document.getElementById("upload-progress");
  const state = document.getElementById("search-state");
  const button = document.getElementById("go");
  bar.hidden = false;
  bar.value = 0;
  button.disabled = true;
  state.textContent = "Uploading…";
  announce("Uploading");
  try {
    const answer = await upload(`/api/search?${params}`, body, (share) => {
      bar.value = Math.round(share * 100);
      if (share >= 1) state.textContent = "Uploaded; reading the data, probing and ranking…";
    });
    const answered = performance.now();
    state.textContent = "";
    searchState.last = answer;
    showResults(answer);
    window.modsnet.lastRender = performance.now() - answered;
    announce(`${answer.models.length} models ranked`);
  } catch (error) {
    state.replaceChildren(errorBox(error));
    announce(`Search failed: ${error.message}`);
  } finally {
    bar.value = 100;
    button.disabled = false;
  }
}

function intervalSvg(score, sd, lo, hi) {
  // The predicted score with its 80% interval (±1.28 sd), on the scale of this answer's scores.
  const w = 120, span = hi - lo || 1;
  const x = (v) => Math.max(0, Math.min(w, ((v - lo) / span) * w));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "interval");
  svg.setAttribute("width", w);
  svg.setAttribute("height", 14);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `80% interval ${fmt(score - 1.28 * sd)} to ${fmt(score + 1.28 * sd)}`);
  const line = document.createElementNS(svg.namespaceURI, "rect");
  line.setAttribute("x", x(score - 1.28 * sd)); line.setAttribute("y", 5);
  line.setAttribute("width", Math.max(1, x(score + 1.28 * sd) - x(score - 1.28 * sd))); line.setAttribute("height", 4);
  line.setAttribute("fill", "#7aa7d6");
  const dot = document.createElementNS(svg.namespaceURI, "circle");
  dot.setAttribute("cx", x(score)); dot.setAttribute("cy", 7); dot.setAttribute("r", 4); dot.setAttribute("fill", "#0b5cad");
  svg.append(line, dot);
  return svg;
}

function paretoFront(points, higherIsBetter) {
  // Cheapest first; a point is on the front when no cheaper-or-equal point scores at least as well.
  const sorted = [...points].sort((a, b) => a.cost - b.cost || (higherIsBetter ? b.score - a.score : a.score - b.score));
  const front = [];
  let best = higherIsBetter ? -Infinity : Infinity;
  for (const p of sorted) {
    if (higherIsBetter ? p.score > best : p.score < best) { front.push(p); best = p.score; }
  }
  return front;
}

function scoreOf(m) {
  return m.probe && m.probe.probe === "score" && m.probe.value !== null ? m.probe.value : m.predicted_score;
}

function showResults(answer) {
  const results = document.getElementById("results");
  if (!results) return;
  const lib = answer.library;
  const scores = answer.models.flatMap((m) => [m.predicted_score - 1.28 * (m.uncertainty || 0), m.predicted_score + 1.28 * (m.uncertainty || 0)]);
  const lo = Math.min(...scores), hi = Math.max(...scores);
  const objective = answer.objective || { name: "score", cost: "", label: "score" };
  // The column the objective ranks by: the value per cost, or front membership; none for the plain score.
  const perCost = { "per-train-seconds": "score per training s", "per-inference-seconds": "score per inference s", "per-memory": "score per MB" }[objective.name];
  const objectiveHead = perCost || (objective.name === "pareto" ? "Pareto front" : null);
  const objectiveCell = (m) => (perCost
    ? (m.objective_value === null ? "–" : Number(m.objective_value).toPrecision(4))
    : m.on_front ? h("span", { class: "badge front" }, "on front") : h("span", { class: "muted" }, "–"));
  const rows = answer.models.map((m) => [
    String(m.rank),
    h("a", { href: modelHref(lib, m.model_id) }, m.model_id),
    h("span", {}, fmt(m.predicted_score), " ± ", fmt(m.uncertainty)),
    intervalSvg(m.predicted_score, m.uncertainty || 0, lo, hi),
    ...(objectiveHead ? [objectiveCell(m)] : []),
    m.probe
      ? h("span", {}, h("span", { class: "badge", title: m.probe.detail }, m.probe.probe === "score" ? "measured" : "probed"), " ", fmt(m.probe.value))
      : h("span", { class: "badge pred" }, "predicted"),
    seconds(m.cost.train_seconds),
    seconds(m.cost.inference_seconds),
    bytes(m.cost.memory_bytes),
    m.evidence.length
      ? h("details", { class: "evidence" }, h("summary", {}, `${m.evidence.length} similar datasets`),
        h("ul", {}, m.evidence.map((e) => h("li", {},
          h("a", { href: datasetHref(lib, e.dataset_id) }, e.dataset_id), ` scored ${fmt(e.score)} (similarity ${fmt(e.similarity, 2)})`))))
      : h("span", { class: "muted" }, "–"),
    m.metadata.artifact
      ? h("button", { type: "button", class: "secondary", onclick: () => download(lib, m.model_id), "aria-label": `Download ${m.model_id}` }, "Download")
      : h("span", { class: "muted" }, "no artifact"),
  ]);
  const d = answer.dataset;
  const rec = answer.recommendation;
  // Parts an answer lacks (no recommendation, no removals) are null and left out, not written as "null".
  results.replaceChildren(...[
    h("h2", {}, `Top ${answer.models.length} of ${lib} for ${d.filename}`),
    h("p", { class: "muted", id: "answer-summary" },
      `${d.modality}, ${d.rows} rows/items`, d.target_column ? `, target ${d.target_column}` : "",
      d.classes ? `, ${d.classes} classes` : "", `. Estimator ${answer.estimator} (${answer.path}), `,
      `graph version `, h("strong", { id: "graph-version" }, String(answer.graph_version)),
      `, ${answer.probes_used} probes used`, answer.probing_note ? ` (probing stopped early: ${answer.probing_note})` : "",
      answer.excluded_by_constraints ? `, ${answer.excluded_by_constraints} models excluded by the constraints` : "", "."),
    rec ? h("p", { class: "recommend" }, h("strong", {}, "Recommended: "), h("a", { href: modelHref(lib, rec.model_id) }, rec.model_id), ` — ${rec.reason}`) : null,
    objective.name !== "score" || answer.profile
      ? h("p", { id: "objective-summary" },
        objective.name !== "score" ? `Ranked by ${objectiveSentence(objective)}. ` : "",
        answer.profile ? `Hardware profile ${answer.profile}: ${limitsText(answer.constraints || {})}.` : "")
      : null,
    table(`Ranked models (${answer.metric}${answer.higher_is_better ? ", higher is better" : ", lower is better"}); bars: 80% interval`,
      ["#", "model", "predicted ± sd", "interval", ...(objectiveHead ? [objectiveHead] : []), "measured", "train", "inference", "memory", "evidence", ""],
      rows, objectiveHead ? [0, 4, 6, 7, 8] : [0, 5, 6, 7]),
    removalsList(answer),
    figure("scores-chart", "Predicted score of each model with its 80% interval; green: measured by a probe on your data"),
    figure("tradeoff-chart", objective.name === "pareto"
      ? "Cost against score; the highlighted line is the service's Pareto front (nothing cheaper scores better) when the chart's cost is the objective's"
      : "Cost against score; the Pareto front (nothing cheaper scores better) is the highlighted line"),
    feedbackForm(answer),
  ].filter(Boolean));
  // A Pareto answer's chart starts on the objective's cost, where the server's front applies.
  const chartCost = document.getElementById("tradeoff-cost");
  if (objective.name === "pareto" && chartCost && COST_FIELD[objective.cost]) chartCost.value = COST_FIELD[objective.cost];
  // Charts after the table is on screen: the table is the answer, the charts explain it.
  requestAnimationFrame(() => { drawScores(answer); drawTradeoff(answer); });
}

function drawScores(answer) {
  const ms = answer.models;
  plot("scores-chart", [
    {
      type: "scatter", mode: "markers", name: "predicted", x: ms.map((m) => m.predicted_score), y: ms.map((m) => m.model_id),
      error_x: { type: "data", array: ms.map((m) => 1.28 * (m.uncertainty || 0)), color: "#7aa7d6", thickness: 3 },
      marker: { color: "#0b5cad", size: 9 },
    },
    {
      type: "scatter", mode: "markers", name: "measured", x: ms.filter((m) => m.probe && m.probe.probe === "score").map((m) => m.probe.value),
      y: ms.filter((m) => m.probe && m.probe.probe === "score").map((m) => m.model_id), marker: { color: "#146c2e", symbol: "diamond", size: 11 },
    },
  ], { yaxis: { autorange: "reversed", automargin: true }, xaxis: { title: { text: answer.metric } }, height: 120 + 26 * ms.length, legend: { orientation: "h" } });
}

function objectiveSentence(objective) {
  const per = { "per-train-seconds": "training second", "per-inference-seconds": "inference second", "per-memory": "MB of memory" }[objective.name];
  if (per) return `predicted score per ${per}, highest first (costs under ${objective.name === "per-memory" ? "1 MB" : "1 ms"} count as ${objective.name === "per-memory" ? "1 MB" : "1 ms"})`;
  if (objective.name === "pareto") return `the Pareto front of predicted score against ${objective.cost.replace("-", " ")}, front members first`;
  return "best predicted score";
}

function removalsList(answer) {
  // One sentence per limit (or the objective) that kept models out: what it removed and what that cost.
  const removals = answer.removals || [];
  if (!removals.length) return null;
  return h("section", { id: "removals", "aria-labelledby": "removals-title" },
    h("h3", { id: "removals-title" }, "Left out of the answer"),
    h("ul", {}, removals.map((r) => h("li", {}, removalSentence(r, answer.constraints || {})))));
}

const LIMIT_WORDS = {
  "max-train-seconds": ["training time", (c) => limitSeconds(c.max_train_seconds)],
  "max-inference-seconds": ["inference time", (c) => limitSeconds(c.max_inference_seconds)],
  "max-memory-bytes": ["memory", (c) => megabytes(c.max_memory_bytes)],
};

function removalSentence(r, constraints) {
  // Limits and exclusions read as a sentence built from the record's fields; the rest (no recorded cost, the
  // objective's own cut) keep the service's one line.
  const count = `${r.removed} model${r.removed === 1 ? "" : "s"}`;
  const who = r.source === "request" ? "Your" : r.source.startsWith("profile ") ? `The ${r.source.slice(8)} profile's` : `${r.source}'s`;
  let head;
  if (LIMIT_WORDS[r.reason]) {
    const [what, value] = LIMIT_WORDS[r.reason];
    head = `${who} limit on ${what} (≤ ${value(constraints)}) left out ${count}`;
  } else if (r.reason === "exclude") head = `${who} exclusions left out ${count}`;
  else if (r.reason === "require-metadata") head = `${who} required metadata left out ${count}`;
  else return r.explanation.charAt(0).toUpperCase() + r.explanation.slice(1) + (r.explanation.endsWith(".") ? "" : ".");
  const named = r.model_ids.length ? ` (${r.model_ids.join(", ")}${r.model_ids.length < r.removed ? ", …" : ""})` : "";
  const best = r.best_score === null ? "" : `: the best of them was predicted to score ${fmt(r.best_score)}`;
  const better = r.better
    ? `, and ${r.better === r.removed && r.removed > 1 ? "all" : r.better} of them ${r.better === 1 ? "was" : "were"} predicted to beat the top pick`
    : ", and none was predicted to beat the top pick";
  return `${head}${named}${best}${best ? better : ""}.`;
}

function drawTradeoff(answer) {
  const key = document.getElementById("tradeoff-cost")?.value || "train_seconds";
  const label = { train_seconds: "training seconds", inference_seconds: "inference seconds", memory_bytes: "memory (bytes)" }[key];
  const points = answer.models.map((m) => ({ id: m.model_id, cost: m.cost[key], score: scoreOf(m), onFront: m.on_front }));
  // The service computed the front for a Pareto answer on its cost; any other axis gets the page's own front.
  const serverFront = answer.objective?.name === "pareto" && COST_FIELD[answer.objective.cost] === key;
  const front = serverFront
    ? points.filter((p) => p.onFront).sort((a, b) => a.cost - b.cost)
    : paretoFront(points, answer.higher_is_better);
  const onFront = new Set(front.map((p) => p.id));
  const positive = points.every((p) => p.cost > 0);
  plot("tradeoff-chart", [
    { type: "scatter", mode: "markers", name: "models", x: points.map((p) => p.cost), y: points.map((p) => p.score), text: points.map((p) => p.id),
      marker: { size: 9, color: points.map((p) => (onFront.has(p.id) ? "#a4161a" : "#7a8594")) }, hovertemplate: "%{text}<br>%{x}<br>%{y:.3f}<extra></extra>" },
    { type: "scatter", mode: "lines+markers", name: "Pareto front", x: front.map((p) => p.cost), y: front.map((p) => p.score), text: front.map((p) => p.id),
      line: { color: "#a4161a", width: 2, shape: "hv" }, marker: { size: 11, color: "#a4161a" } },
  ], { xaxis: { title: { text: label }, type: positive ? "log" : "linear" }, yaxis: { title: { text: answer.metric } }, height: 380, legend: { orientation: "h" } });
}

async function download(library, modelId) {
  const status = document.getElementById("search-state") || statusBox;
  try {
    const response = await fetch(`/api/libraries/${enc(library)}/models/${enc(modelId)}/artifact`, { headers: headers() });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || modelId;
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    announce(`Downloaded ${name}`);
  } catch (error) {
    status.replaceChildren(errorBox(error));
    announce(`Download failed: ${error.message}`);
  }
}

function feedbackForm(answer) {
  const select = h("select", {}, answer.models.map((m) => h("option", { value: m.model_id }, m.model_id)));
  const score = h("input", { type: "number", step: "any", required: true });
  const seconds = h("input", { type: "number", step: "any", min: 0, placeholder: "optional" });
  const result = h("p", { id: "feedback-result", role: "status" });
  const form = h("form", { class: "grid", id: "feedback-form", "aria-labelledby": "feedback-title" },
    field("feedback-model", "Model you ran", select),
    field("feedback-score", `Score you measured (${answer.metric})`, score),
    field("feedback-seconds", "Its training seconds", seconds),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Report score")),
    h("div", { class: "actions" }, result));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { query_id: answer.query_id, model_id: select.value, score: Number(score.value) };
    if (seconds.value !== "") body.cost = { train_seconds: Number(seconds.value) };
    try {
      const before = answer.graph_version;
      const stored = await api("/api/feedback", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      answer.graph_version = stored.graph_version;
      document.getElementById("graph-version").textContent = String(stored.graph_version);
      result.className = "ok";
      result.replaceChildren(`Stored as ${stored.dataset_id}: graph version ${before} → `, h("strong", { id: "new-graph-version" }, String(stored.graph_version)),
        stored.quarantined ? ` (held for review: ${stored.quarantine_reason})` : "; the estimator learns from it on its next request.");
    } catch (error) {
      result.className = "";
      result.replaceChildren(errorBox(error));
    }
  });
  return h("section", {}, h("h2", { id: "feedback-title" }, "Report the score you measured"), form);
}

// ------------------------------------------------------------------------------------------------ libraries

async function viewLibraries() {
  const libs = await libraries();
  main.replaceChildren(h("h1", {}, "Libraries"),
    table("Imported libraries; density: share of (model, dataset) pairs with a recorded score",
      ["library", "modality", "metric", "models", "datasets", "interactions", "density", "graph version"],
      libs.map((l) => [h("a", { href: `#/library/${enc(l.name)}` }, l.name), l.modality, l.metric, l.models, l.datasets, l.interactions,
        `${(100 * l.density).toFixed(1)}%`, l.graph_version]), [3, 4, 5, 6, 7]));
}

function cards(items) {
  return h("div", { class: "cards" }, items.map(([n, what]) => h("div", { class: "card" }, h("span", { class: "n" }, n), h("span", { class: "what" }, what))));
}

async function viewLibrary(name) {
  const [lib, matrix] = await Promise.all([api(`/api/libraries/${enc(name)}`), api(`/api/libraries/${enc(name)}/matrix`)]);
  const meanOf = (row) => { const v = row.filter((x) => x !== null); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null; };
  main.replaceChildren(
    h("h1", {}, `Library ${lib.name}`),
    h("p", { class: "muted" }, lib.description),
    cards([[lib.models, "models"], [lib.datasets, "datasets"], [lib.interactions, "interactions"], [`${(100 * lib.density).toFixed(1)}%`, "density"], [lib.graph_version, "graph version"]]),
    h("p", {}, h("a", { href: `#/eval/${enc(lib.name)}` }, "Evaluation of this library")),
    figure("matrix-chart", `Score matrix (${lib.metric}): models best first (rows), datasets easiest first (columns); drag to zoom, double-click to reset`),
    h("div", { class: "row2" },
      table("Models, best mean z-score first", ["model", "mean score"],
        matrix.models.slice(0, 200).map((m, i) => [h("a", { href: modelHref(name, m) }, m), fmt(meanOf(matrix.scores[i]))]), [1]),
      table("Datasets, easiest first", ["dataset", "mean score"],
        matrix.datasets.slice(0, 200).map((d, j) => [h("a", { href: datasetHref(name, d) }, d), fmt(meanOf(matrix.scores.map((r) => r[j])))]), [1])));
  plot("matrix-chart", [{
    type: "heatmap", z: matrix.scores, x: matrix.datasets, y: matrix.models, colorscale: "Viridis", hoverongaps: false,
    colorbar: { title: { text: lib.metric } }, hovertemplate: "%{y} on %{x}: %{z:.3f}<extra></extra>",
  }], { height: Math.min(900, 200 + 4 * matrix.models.length), xaxis: { showticklabels: false, title: { text: `${matrix.datasets.length} datasets` } },
    yaxis: { showticklabels: matrix.models.length <= 60, autorange: "reversed", title: { text: `${matrix.models.length} models` } } });
}

function metaList(entries) {
  return h("dl", { class: "meta" }, entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function viewModel(library, modelId) {
  const m = await api(`/api/libraries/${enc(library)}/models/${enc(modelId)}`);
  main.replaceChildren(
    h("h1", {}, `Model ${m.model_id}`),
    h("p", {}, h("a", { href: `#/library/${enc(library)}` }, `Library ${library}`)),
    cards([[m.interactions, "datasets scored"], [fmt(m.mean_score), "mean score"], [m.median_rank === null ? "–" : String(m.median_rank), "median rank"],
      [seconds(m.cost.train_seconds), "training"], [seconds(m.cost.inference_seconds), "inference"], [bytes(m.cost.memory_bytes), "memory"]]),
    m.has_artifact ? h("p", {}, h("button", { type: "button", onclick: () => download(library, m.model_id) }, "Download artifact")) : null,
    h("h2", {}, "Metadata"), metaList(Object.entries(m.metadata)),
    figure("model-chart", "Its recorded score on each dataset, best first"),
    table("Scores across datasets", ["dataset", "score", "models on it"], m.scores.map((s) => [h("a", { href: datasetHref(library, s.dataset_id) }, s.dataset_id), fmt(s.score), s.models_on_dataset]), [1, 2]));
  plot("model-chart", [{ type: "bar", x: m.scores.map((s) => s.dataset_id), y: m.scores.map((s) => s.score), marker: { color: "#0b5cad" } }],
    { xaxis: { showticklabels: m.scores.length <= 40, automargin: true }, yaxis: { title: { text: "score" } }, height: 360 });
}

async function viewDataset(library, datasetId) {
  const d = await api(`/api/libraries/${enc(library)}/datasets/${enc(datasetId)}`);
  main.replaceChildren(
    h("h1", {}, `Dataset ${d.dataset_id}`),
    h("p", {}, h("a", { href: `#/library/${enc(library)}` }, `Library ${library}`)),
    cards([[d.interactions, "models scored"], [Object.keys(d.features).length, "features"]]),
    h("h2", {}, "Metadata"), metaList(Object.entries(d.metadata)),
    figure("dataset-chart", "Its best models by recorded score"),
    table("Best models", ["model", "score"], d.best_models.map((b) => [h("a", { href: modelHref(library, b.model_id) }, b.model_id), fmt(b.score)]), [1]),
    h("h2", {}, "Nearest datasets"),
    table("Nearest datasets and why they are near", ["dataset", "distance", "shared models", "score correlation", "why"],
      d.nearest.map((n) => [h("a", { href: datasetHref(library, n.dataset_id) }, n.dataset_id), fmt(n.distance), n.shared_models, fmt(n.score_correlation, 2), n.why]), [1, 2, 3]),
    h("h2", {}, "Features"), metaList(Object.entries(d.features).map(([k, v]) => [k, fmt(v, 4)])));
  plot("dataset-chart", [{ type: "bar", orientation: "h", y: d.best_models.map((b) => b.model_id), x: d.best_models.map((b) => b.score), marker: { color: "#146c2e" } }],
    { yaxis: { autorange: "reversed", automargin: true }, height: 120 + 28 * d.best_models.length });
}

// ------------------------------------------------------------------------------------------------ evaluation

async function viewEvaluation(name) {
  const libs = await libraries();
  const select = h("select", {}, libs.map((l) => h("option", { value: l.name, selected: l.name === name }, l.name)));
  select.addEventListener("change", () => { location.hash = `#/eval/${enc(select.value)}`; });
  main.replaceChildren(h("h1", {}, "Evaluation"), h("form", { class: "grid" }, field("eval-library", "Library", select)), h("section", { id: "eval-body" }));
  const chosen = name || libs[0]?.name;
  if (!chosen) return;
  const body = document.getElementById("eval-body");
  let report;
  try {
    report = await api(`/api/libraries/${enc(chosen)}/evaluation`);
  } catch (error) {
    body.replaceChildren(errorBox(error));
    return;
  }
  const methods = report.methods.filter((m) => Object.keys(m.per_target).length);
  const targetSelect = h("select", {}, report.targets.map((t) => h("option", { value: t }, t)));
  targetSelect.addEventListener("change", () => drawPredictedActual(methods, targetSelect.value));
  const metrics = ["pearson", "spearman", "weighted_tau", "regret@1"];
  const calibrated = methods.filter((m) => m.mean.coverage80 !== null && m.mean.coverage80 !== undefined);
  body.replaceChildren(...[
    h("p", { class: "muted" }, `${report.targets.length} targets, leave-one-dataset-out, ${report.with_probes ? `with probes (budget ${report.probe_budget})` : "cold start"}.`),
    table("Mean over targets per method", ["method", "targets", ...metrics, "seconds"],
      methods.map((m) => [m.method, m.targets, ...metrics.map((k) => fmt(m.mean[k])), fmt(m.seconds, 1)]), [1, 2, 3, 4, 5, 6]),
    figure("eval-mean-chart", "Mean Pearson, Spearman and weighted Kendall τ per method (higher is better)"),
    figure("eval-target-chart", "Pearson correlation per target and method"),
    h("form", { class: "grid", id: "eval-target-form" }, field("eval-target", "Target for predicted against actual", targetSelect)),
    figure("eval-scatter-chart", "Predicted against actual score of every model on the chosen target, per estimator (the diagonal: perfect); bars: the 80% interval"),
    calibrated.length ? figure("eval-calibration-chart", "Calibration: share of true scores inside the 80% interval (the line: 0.8, perfect calibration), and the predicted top 5's error") : null,
    report.decisions ? figure("eval-decisions-chart", "Regret of the best measured model after B measurements (lower is better)") : null,
  ].filter(Boolean));
  plot("eval-mean-chart", ["pearson", "spearman", "weighted_tau"].map((k) => ({ type: "bar", name: k, x: methods.map((m) => m.method), y: methods.map((m) => m.mean[k]) })),
    { barmode: "group", height: 360, legend: { orientation: "h" } });
  const targets = report.targets;
  plot("eval-target-chart", methods.map((m) => ({ type: "bar", name: m.method, x: targets, y: targets.map((t) => m.per_target[t]?.pearson ?? null) })),
    { barmode: "group", height: 400, xaxis: { automargin: true }, legend: { orientation: "h" } });
  drawPredictedActual(methods, targets[0]);
  if (calibrated.length) {
    plot("eval-calibration-chart", [
      { type: "bar", name: "coverage of the 80% interval", x: calibrated.map((m) => m.method), y: calibrated.map((m) => m.mean.coverage80) },
      { type: "bar", name: "top-5 mean absolute error", x: calibrated.map((m) => m.method), y: calibrated.map((m) => m.mean.top5_mae) },
    ], { barmode: "group", height: 340, shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0.8, y1: 0.8, line: { dash: "dash", color: "#a4161a" } }], legend: { orientation: "h" } });
  }
  if (report.decisions) {
    const budgets = report.decisions.budgets;
    // A strategy's mean may cover fewer targets than popular-B's (TransferGraph's LogME probes are no measurement):
    // each point says over how many.
    const counts = report.decisions.targets || {};
    plot("eval-decisions-chart", Object.entries(report.decisions.mean).map(([strategy, byBudget]) => ({
      type: "scatter", mode: "lines+markers", name: strategy, x: budgets, y: budgets.map((b) => byBudget[String(b)]),
      text: budgets.map((b) => (counts[strategy] ? `${counts[strategy][String(b)]} targets` : "")),
    })), { height: 340, xaxis: { title: { text: "measurements B" } }, yaxis: { title: { text: "mean regret" } }, legend: { orientation: "h" } });
  }
}

function drawPredictedActual(methods, target) {
  // Only the estimators predict in the library's metric (they also give an sd); baselines rank by other scales.
  const withPredictions = methods.filter((m) => m.predictions && m.predictions[target] && m.predictions[target].sd);
  const all = withPredictions.flatMap((m) => [...m.predictions[target].true, ...m.predictions[target].predicted]).filter((v) => v !== null);
  const lo = Math.min(...all), hi = Math.max(...all);
  plot("eval-scatter-chart", [
    ...withPredictions.map((m) => {
      const p = m.predictions[target];
      return {
        type: "scatter", mode: "markers", name: m.method, x: p.true, y: p.predicted, text: p.models,
        error_y: p.sd ? { type: "data", array: p.sd.map((s) => (s === null ? 0 : 1.28 * s)), thickness: 1 } : undefined,
        hovertemplate: "%{text}<br>actual %{x:.3f}<br>predicted %{y:.3f}<extra>" + m.method + "</extra>",
      };
    }),
    { type: "scatter", mode: "lines", name: "perfect", x: [lo, hi], y: [lo, hi], line: { dash: "dot", color: "#4a5360" } },
  ], { height: 420, xaxis: { title: { text: `actual score on ${target}` } }, yaxis: { title: { text: "predicted" } }, legend: { orientation: "h" } });
}

// ------------------------------------------------------------------------------------------------ XRD

async function viewXrd() {
  const libs = (await libraries()).filter((l) => l.modality === "xrd");
  if (!libs.length) { main.replaceChildren(h("h1", {}, "XRD peaks"), h("p", {}, "No XRD library is imported.")); return; }
  const libSelect = h("select", {}, libs.map((l) => h("option", { value: l.name }, l.name)));
  const finder = h("select", {});
  const fill = async () => {
    const matrix = await api(`/api/libraries/${enc(libSelect.value)}/matrix`);
    finder.replaceChildren(...matrix.models.map((m) => h("option", { value: m }, m)));
  };
  libSelect.addEventListener("change", fill);
  const file = h("input", { type: "file", accept: ".xrdml,.brml,.rasx,.raw,.xy,.zip" });
  const state = h("span", { id: "xrd-state" });
  const form = h("form", { class: "grid", id: "xrd-form", "aria-labelledby": "xrd-title" },
    field("xrd-library", "Library", libSelect), field("xrd-finder", "Peak finder (best first)", finder), field("xrd-file", "Scan", file),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Find peaks"), state));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files.length) { state.replaceChildren(errorBox(new Error("choose a scan first"))); return; }
    state.textContent = "Finding peaks…";
    const params = new URLSearchParams({ library: libSelect.value, model_id: finder.value, filename: file.files[0].name });
    try {
      const result = await upload(`/api/xrd/peaks?${params}`, file.files[0], () => {});
      state.textContent = "";
      showPeaks(result);
    } catch (error) {
      state.replaceChildren(errorBox(error));
    }
  });
  main.replaceChildren(h("h1", { id: "xrd-title" }, "XRD peaks"), form, h("section", { id: "xrd-result" }));
  await fill();
}

function showPeaks(result) {
  const section = document.getElementById("xrd-result");
  section.replaceChildren(h("h2", {}, `${result.model_id} on ${result.filename}`),
    ...result.scans.map((s, i) => figure(`xrd-chart-${i}`, `Scan ${i + 1}: ${s.peaks.length} peaks found${s.wavelength ? ` (wavelength ${s.wavelength} Å)` : ""}; drag to zoom, double-click to reset`)),
    table("Peaks of scan 1", ["2θ (deg)", "intensity"], (result.scans[0]?.peaks || []).map((p) => [fmt(p.two_theta), fmt(p.intensity, 1)]), [0, 1]));
  result.scans.forEach((s, i) => plot(`xrd-chart-${i}`, [
    { type: "scatter", mode: "lines", name: "scan", x: s.two_theta, y: s.intensity, line: { color: "#0b5cad", width: 1 } },
    { type: "scatter", mode: "markers", name: "peaks", x: s.peaks.map((p) => p.two_theta), y: s.peaks.map((p) => p.intensity), marker: { color: "#a4161a", size: 8, symbol: "triangle-down" } },
  ], { height: 380, xaxis: { title: { text: "2θ (degrees)" } }, yaxis: { title: { text: "intensity" } }, legend: { orientation: "h" } }));
}

// ------------------------------------------------------------------------------------------------ routing

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts[0] || "search";
  for (const a of document.querySelectorAll("nav a")) {
    const current = a.dataset.nav === page || (a.dataset.nav === "libraries" && page === "library");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (page === "search") await viewSearch();
    else if (page === "libraries") await viewLibraries();
    else if (page === "library" && parts[2] === "model") await viewModel(parts[1], parts.slice(3).join("/"));
    else if (page === "library" && parts[2] === "dataset") await viewDataset(parts[1], parts.slice(3).join("/"));
    else if (page === "library") await viewLibrary(parts[1]);
    else if (page === "eval") await viewEvaluation(parts[1]);
    else if (page === "xrd") await viewXrd();
    else main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/search" }, "Search")));
  } catch (error) {
    main.replaceChildren(h("h1", {}, "Something went wrong"), errorBox(error));
  }
  document.title = `ModsNet: ${main.querySelector("h1")?.textContent || ""}`;
}

window.addEventListener("hashchange", () => { route(); main.focus(); });
route();
