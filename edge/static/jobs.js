// Pure logic of the Files page (files.html): which files it takes, the form it posts to
// `POST /v1/jobs`, and how it shows a job (`GET /v1/jobs/{id}`). No DOM here: tested with
// `node --test edge/static/tests/`.
import { apiUrl } from './protocol.js';

/** Subtitle file extensions, and the audio ones `voxctl transcribe` takes. */
export const SUBTITLE_EXTENSIONS = ['srt', 'vtt'];
export const AUDIO_EXTENSIONS = ['wav', 'mp3', 'flac', 'ogg', 'oga', 'opus', 'webm', 'm4a', 'mp4', 'aac'];

/** `srt`, `wav`, … (lower case) or '' for a name without an extension. */
export function extensionOf(name) {
  const m = /\.([^./\\]+)$/.exec(String(name || ''));
  return m ? m[1].toLowerCase() : '';
}

/** 'subtitles', 'audio' or null (a file the page does not take) for a file name. */
export function fileKind(name) {
  const ext = extensionOf(name);
  if (SUBTITLE_EXTENSIONS.includes(ext)) return 'subtitles';
  if (AUDIO_EXTENSIONS.includes(ext)) return 'audio';
  return null;
}

/**
 * The files to submit out of a selection or a drop: those of a kind the server takes (a
 * dropped folder's hidden files, `._film.srt` and the like, are skipped), and the rest named
 * so the page can say why they were left out.
 */
export function pickFiles(files) {
  const taken = [];
  const skipped = [];
  for (const f of files) {
    const name = f && f.name ? String(f.name) : '';
    if (!name || name.startsWith('.')) continue;
    if (fileKind(name)) taken.push(f);
    else skipped.push(name);
  }
  return { taken, skipped };
}

/**
 * The form fields of one submission (without the file): `to` (comma-separated targets), `from`
 * (omitted for `auto`: subtitles are then read as English, audio detected), `format` (omitted
 * for the input's own) and `kind` from the extension.
 */
export function jobFields(fileName, { targets = [], source = 'auto', format = '' } = {}) {
  const fields = [];
  const kind = fileKind(fileName);
  if (kind) fields.push(['kind', kind]);
  if (targets.length) fields.push(['to', targets.join(',')]);
  if (source && source !== 'auto') fields.push(['from', source]);
  if (format === 'srt' || format === 'vtt') fields.push(['format', format]);
  return fields;
}

/** Request headers for the job routes (`Authorization` when there is an API key). */
export function jobHeaders(apiKey) {
  const headers = { accept: 'application/json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  return headers;
}

/**
 * How long a job's poller waits between two `GET /v1/jobs/{id}`: a second, stretched so that all
 * `following` jobs together ask at most `perSecond` times a second (a dropped folder of 200
 * files must not send the server 200 requests a second).
 */
export function pollDelayMs(following, perSecond = 10) {
  return Math.max(1000, Math.ceil((1000 * Math.max(1, following)) / perSecond));
}

/** Whether a job view (`GET /v1/jobs/{id}`) is in an end state. */
export function isFinished(view) {
  return !!view && (view.state === 'succeeded' || view.state === 'failed');
}

/** One line about a job for people: state, progress, the server's message or error. */
export function describeJob(view) {
  if (!view) return 'Uploading…';
  const pct = Math.round(Math.max(0, Math.min(1, Number(view.progress) || 0)) * 100);
  switch (view.state) {
    case 'queued':
      return view.message ? `Queued: ${view.message}` : 'Queued, waiting for a worker';
    case 'running':
      return `${view.message || 'Working'} (${pct} %)`;
    case 'succeeded':
      return view.deduplicated ? 'Done (this file was translated before)' : 'Done';
    case 'failed': {
      const e = view.error || {};
      return `Failed: [${e.code || 'unknown'}] ${e.message || view.message || ''}`.trim();
    }
    default:
      return String(view.state || '');
  }
}

/**
 * The download links of a finished job: `{ href, fileName, label }` per result, the transcript
 * first. A link cannot carry a header, so the API key goes in `?api_key=`.
 */
export function resultLinks(view, pageHref, apiKey = '') {
  if (!view || view.state !== 'succeeded' || !Array.isArray(view.results)) return [];
  const results = [...view.results].sort((a, b) => Number(!!b.transcript) - Number(!!a.transcript));
  return results.map((r) => {
    const url = new URL(apiUrl(String(r.url || '').replace(/^\//, ''), pageHref));
    if (apiKey) url.searchParams.set('api_key', apiKey);
    const what = r.transcript ? 'transcript' : 'translation';
    const overlong = r.overlong_cues ? `, ${r.overlong_cues} long cues kept whole` : '';
    return {
      href: url.toString(),
      fileName: r.file_name,
      label: `${r.file_name} (${what}, ${r.lang}, ${r.cues} cues${overlong})`,
    };
  });
}

/** Jobs in one `results.zip` link (the server takes up to 1000; links stay short). */
export const ZIP_JOBS_PER_LINK = 200;

/**
 * "Download all" links for the succeeded jobs `ids`: one `v1/jobs/results.zip?ids=…` link per
 * `perLink` jobs, with the API key in the query (a link carries no header). None for fewer than
 * two jobs (the job's own links do).
 */
export function zipLinks(ids, pageHref, apiKey = '', perLink = ZIP_JOBS_PER_LINK) {
  if (!Array.isArray(ids) || ids.length < 2) return [];
  const parts = Math.ceil(ids.length / perLink);
  const links = [];
  for (let i = 0; i < parts; i += 1) {
    const chunk = ids.slice(i * perLink, (i + 1) * perLink);
    const url = new URL(apiUrl('v1/jobs/results.zip', pageHref));
    url.searchParams.set('ids', chunk.join(','));
    if (apiKey) url.searchParams.set('api_key', apiKey);
    const what = `${chunk.length} files' results`;
    links.push({
      href: url.toString(),
      fileName: parts > 1 ? `voxbridge-results-${i + 1}.zip` : 'voxbridge-results.zip',
      label: parts > 1 ? `Download all (.zip, part ${i + 1} of ${parts}: ${what})` : `Download all (.zip: ${what})`,
    });
  }
  return links;
}

/** The error of a refused submission (`{"error": {"code", "message"}}`), or the HTTP status. */
export function submitError(status, body) {
  const e = body && body.error;
  if (e && typeof e === 'object' && e.code === 'unauthorized') {
    return `[unauthorized] ${e.message || ''} — enter this server's API key in the form`;
  }
  if (e && typeof e === 'object') return `[${e.code || status}] ${e.message || ''}`.trim();
  if (typeof e === 'string') return e;
  return `HTTP ${status}`;
}
