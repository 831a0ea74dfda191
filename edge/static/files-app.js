// Voxbridge Files page: subtitle and audio files to translated subtitles through the job API
// (`POST /v1/jobs`, `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/result?lang=`). Files are uploaded
// one at a time (every free worker takes one as it arrives) and all jobs are followed at once.
// Pure logic lives in jobs.js and protocol.js.
import { FALLBACK_LANGUAGES, apiUrl, findLanguage, languageName, orderLanguages } from './protocol.js';
import { fetchLanguages, filterTargetList, renderTargetList } from './pickers.js';
import {
  describeJob,
  isFinished,
  jobFields,
  jobHeaders,
  pickFiles,
  pollDelayMs,
  resultLinks,
  submitError,
  zipLinks,
} from './jobs.js';

const API_KEY_STORAGE = 'voxbridge.apiKey';
const TARGETS_STORAGE = 'voxbridge.fileTargets';
const LANGUAGES_TIMEOUT_MS = 4000;

const $ = (id) => document.getElementById(id);
const els = {
  form: $('files-form'),
  files: $('files'),
  dropZone: $('drop-zone'),
  picked: $('picked'),
  source: $('source'),
  targetList: $('target-list'),
  targetFilter: $('target-filter'),
  targetsSummary: $('targets-summary'),
  format: $('format'),
  apiKey: $('api-key'),
  submit: $('submit'),
  notice: $('form-notice'),
  jobs: $('jobs'),
  jobsEmpty: $('jobs-empty'),
  downloadAll: $('download-all'),
};

let languages = FALLBACK_LANGUAGES;
let chosen = []; // File objects picked or dropped
let selectedTargets = [];
let following = 0; // jobs being polled
// Test and debugging hook: every job the page follows, by row.
const vb = (window.voxbridgeFiles = { jobs: [] });

try {
  els.apiKey.value = localStorage.getItem(API_KEY_STORAGE) || '';
  selectedTargets = JSON.parse(localStorage.getItem(TARGETS_STORAGE) || '[]');
} catch {
  /* storage unavailable */
}
const fromQuery = new URLSearchParams(location.search).get('targets');
if (fromQuery) selectedTargets = fromQuery.split(',').map((t) => t.trim()).filter(Boolean);

async function loadLanguages() {
  languages = (await fetchLanguages(location.href, LANGUAGES_TIMEOUT_MS)) || languages;
}

function renderPickers() {
  for (const l of [...languages].sort((a, b) => a.name.localeCompare(b.name))) {
    els.source.append(new Option(`${l.name} (${l.code})`, l.code));
  }
  selectedTargets = selectedTargets
    .map((t) => (findLanguage(t, languages) || { code: t }).code)
    .filter((t, i, all) => all.indexOf(t) === i);
  renderTargetList(els.targetList, orderLanguages(languages, selectedTargets), selectedTargets);
  updateTargets();
}

function applyFilter() {
  filterTargetList(els.targetList, els.targetFilter.value);
}

function updateTargets() {
  selectedTargets = [...els.targetList.querySelectorAll('input[name="target"]:checked')].map(
    (b) => b.value,
  );
  try {
    localStorage.setItem(TARGETS_STORAGE, JSON.stringify(selectedTargets));
  } catch {
    /* storage unavailable */
  }
  els.targetsSummary.textContent = selectedTargets.length
    ? `Selected: ${selectedTargets.map((c) => languageName(c, languages)).join(', ')}.`
    : 'No target language selected.';
  updateSubmit();
}

function setChosen(files) {
  const { taken, skipped } = pickFiles(files);
  chosen = taken;
  const parts = [];
  if (taken.length) parts.push(`${taken.length} file${taken.length === 1 ? '' : 's'}: ${taken.map((f) => f.name).join(', ')}.`);
  else parts.push('No file chosen.');
  if (skipped.length) parts.push(`Left out (not subtitles or audio): ${skipped.join(', ')}.`);
  els.picked.textContent = parts.join(' ');
  updateSubmit();
}

function updateSubmit() {
  const subtitles = chosen.some((f) => /\.(srt|vtt)$/i.test(f.name));
  els.submit.disabled = !chosen.length || (subtitles && !selectedTargets.length);
  els.submit.title = subtitles && !selectedTargets.length ? 'Subtitles need a language to translate into' : '';
}

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

/* ---------------- jobs ---------------- */

function jobRow(name) {
  const li = document.createElement('li');
  li.className = 'job';
  li.dataset.state = 'uploading';
  const title = document.createElement('div');
  title.className = 'job-name';
  title.textContent = name;
  const progress = document.createElement('progress');
  progress.max = 1;
  progress.setAttribute('aria-label', `Progress of ${name}`);
  const status = document.createElement('div');
  status.className = 'job-status';
  status.textContent = 'Waiting to upload…';
  const links = document.createElement('ul');
  links.hidden = true;
  li.append(title, progress, status, links);
  els.jobs.append(li);
  els.jobsEmpty.hidden = true;
  return { li, progress, status, links };
}

function showJob(row, view, apiKey) {
  row.li.dataset.state = view ? view.state : 'uploading';
  if (view && view.id) row.li.dataset.job = view.id;
  row.status.textContent = describeJob(view);
  if (view && view.state === 'succeeded') row.progress.value = 1;
  else if (view && view.state === 'running') row.progress.value = Number(view.progress) || 0;
  else row.progress.removeAttribute('value'); // indeterminate
  if (view && view.state === 'failed') row.progress.hidden = true;
  const links = resultLinks(view, location.href, apiKey);
  if (links.length) showLinks(row.links, links);
}

/** `{ href, fileName, label }` download links as the items of `list` (hidden when none). */
function showLinks(list, links) {
  list.textContent = '';
  for (const l of links) {
    const a = document.createElement('a');
    a.href = l.href;
    a.download = l.fileName;
    a.textContent = l.label;
    const item = document.createElement('li');
    item.append(a);
    list.append(item);
  }
  list.hidden = !links.length;
}

async function submitOne(file, options, apiKey) {
  const form = new FormData();
  for (const [k, v] of jobFields(file.name, options)) form.append(k, v);
  form.append('file', file, file.name);
  const res = await fetch(apiUrl('v1/jobs', location.href), {
    method: 'POST',
    body: form,
    headers: jobHeaders(apiKey),
  });
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) throw new Error(submitError(res.status, body));
  return body;
}

async function follow(row, view, apiKey) {
  const job = { id: view.id, view };
  vb.jobs.push(job);
  showJob(row, view, apiKey);
  let failures = 0;
  following += 1;
  while (!isFinished(job.view)) {
    await new Promise((r) => setTimeout(r, pollDelayMs(following)));
    try {
      const res = await fetch(apiUrl(`v1/jobs/${encodeURIComponent(view.id)}`, location.href), {
        headers: jobHeaders(apiKey),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      job.view = await res.json();
      failures = 0;
      showJob(row, job.view, apiKey);
    } catch (e) {
      // The server or the network went away for a moment: keep asking, and say so.
      failures += 1;
      if (failures >= 3) row.status.textContent = `${describeJob(job.view)} — server unreachable, retrying (${e.message})`;
    }
  }
  following -= 1;
  showDownloadAll(apiKey);
}

/** "Download all" once two or more jobs have succeeded. */
function showDownloadAll(apiKey) {
  const ids = vb.jobs.filter((j) => j.view && j.view.state === 'succeeded').map((j) => j.id);
  showLinks(els.downloadAll, zipLinks(ids, location.href, apiKey));
}

async function submitAll(e) {
  e.preventDefault();
  showNotice('');
  const apiKey = els.apiKey.value.trim();
  try {
    localStorage.setItem(API_KEY_STORAGE, apiKey);
  } catch {
    /* storage unavailable */
  }
  const options = { targets: [...selectedTargets], source: els.source.value, format: els.format.value };
  const files = chosen;
  chosen = [];
  els.files.value = '';
  setChosen([]);
  const rows = files.map((f) => [f, jobRow(f.name)]);
  // Show where the progress is (the heading takes focus, so a screen reader goes there too).
  const heading = document.getElementById('jobs-heading');
  heading.focus();
  heading.scrollIntoView({ block: 'start' });
  const followed = [];
  // One upload at a time: the first file is being translated while the next one uploads.
  for (const [file, row] of rows) {
    row.status.textContent = 'Uploading…';
    try {
      const view = await submitOne(file, options, apiKey);
      followed.push(follow(row, view, apiKey));
    } catch (err) {
      row.li.dataset.state = 'failed';
      row.progress.hidden = true;
      row.status.textContent = `Not submitted: ${err.message}`;
    }
  }
  await Promise.all(followed);
}

els.files.addEventListener('change', () => setChosen([...els.files.files]));
els.targetList.addEventListener('change', updateTargets);
els.targetFilter.addEventListener('input', applyFilter);
els.form.addEventListener('submit', submitAll);

// Drag and drop: files, or a folder's files and its subfolders' (through the entries API;
// hidden folders are skipped as hidden files are).
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items]
    .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const out = [];
  const fileOf = (entry) => new Promise((resolve) => entry.file(resolve, () => resolve(null)));
  const readAll = (reader) =>
    new Promise((resolve) => {
      const all = [];
      const next = () =>
        reader.readEntries((batch) => (batch.length ? (all.push(...batch), next()) : resolve(all)), () => resolve(all));
      next();
    });
  const walk = async (entry, top) => {
    if (!top && entry.name.startsWith('.')) return;
    if (entry.isFile) out.push(await fileOf(entry));
    else if (entry.isDirectory) {
      for (const child of await readAll(entry.createReader())) await walk(child, false);
    }
  };
  for (const entry of entries) await walk(entry, true);
  return out.filter(Boolean);
}

for (const type of ['dragenter', 'dragover']) {
  els.dropZone.addEventListener(type, (e) => {
    e.preventDefault();
    els.dropZone.classList.add('dragging');
  });
}
els.dropZone.addEventListener('dragleave', () => els.dropZone.classList.remove('dragging'));
els.dropZone.addEventListener('drop', async (e) => {
  e.preventDefault();
  els.dropZone.classList.remove('dragging');
  setChosen(await droppedFiles(e.dataTransfer));
});

loadLanguages().then(() => {
  renderPickers();
  document.body.dataset.ready = 'true';
});
