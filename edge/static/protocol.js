// Pure client logic for the live protocol (docs/PROTOCOL.md): session state and the event
// reducer, seq/cursor bookkeeping, close-code policy, reconnect backoff, the bounded audio
// queue, languages and URL handling. No DOM here, so node can test it.

export const FALLBACK_LANGUAGES = [
  { code: 'en', name: 'English', flores: 'eng_Latn' },
  { code: 'vi', name: 'Vietnamese', flores: 'vie_Latn' },
  { code: 'fr', name: 'French', flores: 'fra_Latn' },
  { code: 'de', name: 'German', flores: 'deu_Latn' },
  { code: 'es', name: 'Spanish', flores: 'spa_Latn' },
  { code: 'ja', name: 'Japanese', flores: 'jpn_Jpan' },
  { code: 'zh', name: 'Chinese', flores: 'zho_Hans' },
];

/** Languages shown first in the target list (by primary subtag). */
export const COMMON_LANGUAGES = ['en', 'vi', 'fr', 'de', 'es', 'ja', 'zh', 'ko', 'pt', 'it', 'ru', 'ar', 'hi'];

export const SAMPLE_RATE = 16000;
export const CHUNK_SAMPLES = 1600; // 100 ms at 16 kHz
export const DEFAULT_MAX_FRAME_BYTES = 16000;
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 8000;
export const MAX_BUFFERED_BYTES = SAMPLE_RATE * 2 * 10; // 10 s of audio

/**
 * Normalise a `/v1/languages` response. Accepts `{languages: [...]}`, a bare array, arrays of
 * strings, `{code: name}` maps and entries using `bcp47`/`id`/`language` for the code.
 * Returns `[{code, name, flores}]` or null when nothing usable is found.
 */
export function parseLanguages(json) {
  let list = json;
  if (list && !Array.isArray(list) && typeof list === 'object') {
    if (Array.isArray(list.languages)) list = list.languages;
    else if (Array.isArray(list.data)) list = list.data;
    else {
      list = Object.entries(list).map(([code, v]) =>
        typeof v === 'string' ? { code, name: v } : { code, ...(v && typeof v === 'object' ? v : {}) });
    }
  }
  if (!Array.isArray(list)) return null;
  const out = [];
  const seen = new Set();
  for (const item of list) {
    let entry = null;
    if (typeof item === 'string') entry = { code: item, name: item, flores: '' };
    else if (item && typeof item === 'object') {
      const code = item.code ?? item.bcp47 ?? item.id ?? item.language ?? item.flores;
      if (typeof code === 'string' && code) {
        entry = {
          code,
          name: typeof item.name === 'string' && item.name ? item.name : code,
          flores: typeof item.flores === 'string' ? item.flores : '',
        };
      }
    }
    if (entry && !seen.has(entry.code)) {
      seen.add(entry.code);
      out.push(entry);
    }
  }
  return out.length ? out : null;
}

const primary = (code) => String(code).toLowerCase().split(/[-_]/)[0];

/**
 * Find the language entry for a code as a user or the server may spell it: the exact API code
 * (`vi`, `zh-Hans`), a FLORES code (`vie_Latn`), or a bare primary subtag (`zh`). Returns the
 * entry or null.
 */
export function findLanguage(code, languages) {
  if (!code || !Array.isArray(languages)) return null;
  const c = String(code).trim();
  const lc = c.toLowerCase();
  return (
    languages.find((l) => l.code === c) ||
    languages.find((l) => l.code.toLowerCase() === lc) ||
    languages.find((l) => l.flores && l.flores.toLowerCase() === lc) ||
    languages.find((l) => primary(l.code) === lc) ||
    // `zho_Hans` style code not in the list: match ISO 639-3 prefix of the FLORES code
    (c.includes('_') ? languages.find((l) => l.flores && primary(l.flores) === primary(c)) : null) ||
    null
  );
}

/** Display name for a language code (falls back to the code itself). */
export function languageName(code, languages) {
  const l = findLanguage(code, languages);
  return l ? l.name : String(code ?? '');
}

/** A BCP-47 tag usable in a `lang` attribute, or '' when unknown. */
export function langTag(code, languages) {
  const l = findLanguage(code, languages);
  if (l) return l.code.includes('_') ? '' : l.code;
  return code && /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(code) ? code : '';
}

/** Languages ordered for the target picker: selected, then common ones, then by name. */
export function orderLanguages(languages, selected = []) {
  const rank = (l) => {
    if (selected.includes(l.code)) return 0;
    const i = COMMON_LANGUAGES.indexOf(l.code) >= 0
      ? COMMON_LANGUAGES.indexOf(l.code)
      : COMMON_LANGUAGES.indexOf(primary(l.code));
    return i >= 0 && !l.code.includes('-') ? 1 + i / 100 : i >= 0 ? 1.5 : 2;
  };
  return [...languages].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}

/** Parse the page query: `?source=en&targets=vi,fr`, `?listen=TOKEN`. */
export function parseQuery(search) {
  const p = new URLSearchParams(search || '');
  const targets = [];
  for (const t of p.getAll('targets').concat(p.getAll('target'))) {
    for (const c of t.split(',')) if (c.trim() && !targets.includes(c.trim())) targets.push(c.trim());
  }
  return {
    source: p.get('source') || null,
    targets,
    listen: p.get('listen') || null,
  };
}

/**
 * Base URL for the API, relative to the page: the page's directory, or its parent when the
 * page was opened as `/static/index.html` (the edge serves the files under both).
 */
export function apiBase(pageHref) {
  const u = new URL('./', pageHref);
  if (u.pathname.endsWith('/static/')) u.pathname = u.pathname.slice(0, -'static/'.length);
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** URL of an API path (`v1/languages`) relative to the page. */
export function apiUrl(path, pageHref) {
  return new URL(path, apiBase(pageHref)).toString();
}

/** `ws(s)://host/<dir>/v1/live` derived from the page URL (relative to the page). */
export function liveUrl(pageHref) {
  const u = new URL('v1/live', apiBase(pageHref));
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** The listen link for a listen token, relative to the page URL. */
export function listenLink(pageHref, token) {
  const u = new URL(pageHref);
  u.search = '?listen=' + encodeURIComponent(token);
  u.hash = '';
  return u.toString();
}

/** Reconnect delay for the n-th consecutive attempt (0-based): 0.5 s doubling to 8 s. */
export function backoffDelay(attempt) {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt));
}

/** Error codes after which reconnecting cannot help. */
export const TERMINAL_ERRORS = new Set([
  'unauthorized',
  'too_many_sessions',
  'unknown_language',
  'session_too_long',
]);

/**
 * What to do when the socket closed. `state` is the session state (was `end` seen, was there a
 * terminal fatal error, is there a token to resume with). Returns
 * `{reconnect: bool, status: 'ended'|'error'|'reconnecting', message}`.
 */
export function closeAction(code, reason, state) {
  const why = reason ? `${code} ${reason}` : String(code);
  if (state.ended || code === 1000) {
    return { reconnect: false, status: 'ended', message: state.ended ? '' : `connection closed (${why})` };
  }
  if (state.fatal && TERMINAL_ERRORS.has(state.fatal.code)) {
    return { reconnect: false, status: 'error', message: `${state.fatal.code}: ${state.fatal.message}` };
  }
  if (code === 1008) {
    return { reconnect: false, status: 'error', message: `refused by the server (${why})` };
  }
  if (code === 1013) {
    return { reconnect: true, status: 'reconnecting', message: 'connection too slow: the server dropped it (1013)' };
  }
  if (code === 1001) {
    return { reconnect: true, status: 'reconnecting', message: 'server is restarting (1001)' };
  }
  return { reconnect: true, status: 'reconnecting', message: `connection lost (${why})` };
}

/** Split a PCM buffer into frames of at most `maxBytes` (rounded down to whole samples). */
export function splitFrames(buffer, maxBytes) {
  const max = Math.max(2, (maxBytes || DEFAULT_MAX_FRAME_BYTES) & ~1);
  if (buffer.byteLength <= max) return [buffer];
  const out = [];
  for (let i = 0; i < buffer.byteLength; i += max) out.push(buffer.slice(i, Math.min(i + max, buffer.byteLength)));
  return out;
}

/** Bounded FIFO of audio frames kept while the socket is down; drops the oldest beyond maxBytes. */
export class AudioQueue {
  constructor(maxBytes = MAX_BUFFERED_BYTES) {
    this.maxBytes = maxBytes;
    this.frames = [];
    this.bytes = 0;
    this.dropped = 0; // bytes dropped so far
  }

  push(frame) {
    this.frames.push(frame);
    this.bytes += frame.byteLength;
    while (this.bytes > this.maxBytes && this.frames.length) {
      const old = this.frames.shift();
      this.bytes -= old.byteLength;
      this.dropped += old.byteLength;
    }
  }

  /** Remove and return every queued frame, oldest first. */
  drain() {
    const frames = this.frames;
    this.frames = [];
    this.bytes = 0;
    return frames;
  }

  clear() {
    this.frames = [];
    this.bytes = 0;
  }
}

/** Fresh session state (plain data, JSON-serialisable: exposed as `window.voxbridge.state`). */
export function createState(role = 'speaker') {
  return {
    role,
    status: 'idle',
    statusMessage: '',
    sessionId: null,
    resumeToken: null,
    listenToken: null,
    source: null,
    targets: [],
    maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
    resumed: false,
    lastSeq: 0, // seq of the last event processed
    cursor: null, // cursor of the last event processed
    connections: 0, // number of `ready` events seen
    readySeq: null, // seq of the latest `ready`
    segments: [], // [{id, stable, unstable, revision, final, text, lang, index, startMs, endMs, translations}]
    segmentPos: {}, // segment id -> position in `segments`
    finalCount: 0,
    recogniser: null, // null (not told yet), 'waiting' (no recogniser has the session yet) or 'recognising'
    recogniserLost: false, // waiting because the session's recogniser stopped (another one resumes it)
    recogniserUnresponsive: false, // waiting because it does not answer (it recovers, or another resumes)
    lastError: null, // last error event {code, message, fatal}
    fatal: null, // last fatal error event
    ended: false,
    end: null, // the `end` event
  };
}

function segmentFor(state, id, create = true) {
  const key = String(id);
  let pos = state.segmentPos[key];
  if (pos === undefined) {
    if (!create) return null;
    pos = state.segments.length;
    state.segments.push({
      id: key,
      stable: '',
      unstable: '',
      revision: -1,
      final: false,
      text: '',
      lang: null,
      index: null,
      startMs: null,
      endMs: null,
      translations: {}, // target -> {text, index, cached}
    });
    state.segmentPos[key] = pos;
  }
  return state.segments[pos];
}

/**
 * Apply one server event to the state. Returns `{applied, segmentId?, kind}` where `applied`
 * is false for events skipped as duplicates (seq <= last processed seq) or malformed.
 *
 * `ready` is special (PROTOCOL.md: numbered but never replayed; a resumed connection gets a
 * new one before the replay): it is always applied and never moves lastSeq/cursor, so the
 * replayed events that follow it are not mistaken for duplicates whatever number the server
 * gives it. (Resuming right after a `ready` therefore sends no cursor, i.e. "from the start",
 * which is exactly "after nothing processed".)
 */
export function applyEvent(state, ev) {
  if (!ev || typeof ev !== 'object' || typeof ev.type !== 'string') return { applied: false, kind: 'invalid' };
  const seq = typeof ev.seq === 'number' ? ev.seq : Number.NaN;

  if (ev.type === 'ready') {
    state.connections += 1;
    state.sessionId = ev.session_id ?? state.sessionId;
    state.resumeToken = ev.resume_token ?? state.resumeToken;
    state.listenToken = ev.listen_token ?? state.listenToken;
    if (ev.source !== undefined) state.source = ev.source;
    if (Array.isArray(ev.targets)) state.targets = ev.targets;
    if (typeof ev.max_frame_bytes === 'number' && ev.max_frame_bytes >= 2) state.maxFrameBytes = ev.max_frame_bytes;
    if (ev.role) state.role = ev.role;
    state.resumed = !!ev.resumed;
    state.readySeq = Number.isFinite(seq) ? seq : null;
    return { applied: true, kind: 'ready' };
  }

  // Events are numbered from 1; one without a usable seq (e.g. an error sent before the
  // session exists) is applied but does not move the seq/cursor bookkeeping.
  const numbered = Number.isFinite(seq) && seq >= 1;
  if (numbered && seq <= state.lastSeq) return { applied: false, kind: 'duplicate' };
  if (numbered) {
    state.lastSeq = seq;
    if (ev.cursor != null && ev.cursor !== '') state.cursor = ev.cursor;
  }

  switch (ev.type) {
    case 'transcript.partial': {
      if (ev.segment_id == null) return { applied: false, kind: 'invalid' };
      const seg = segmentFor(state, ev.segment_id);
      if (seg.final) return { applied: false, kind: 'stale', segmentId: seg.id };
      const rev = typeof ev.revision === 'number' ? ev.revision : seg.revision + 1;
      if (rev < seg.revision) return { applied: false, kind: 'stale', segmentId: seg.id };
      seg.revision = rev;
      seg.stable = typeof ev.stable === 'string' ? ev.stable : seg.stable;
      seg.unstable = typeof ev.unstable === 'string' ? ev.unstable : '';
      if (seg.startMs == null && typeof ev.start_ms === 'number') seg.startMs = ev.start_ms;
      if (typeof ev.end_ms === 'number') seg.endMs = ev.end_ms;
      return { applied: true, kind: 'partial', segmentId: seg.id };
    }
    case 'transcript.final': {
      if (ev.segment_id == null) return { applied: false, kind: 'invalid' };
      const seg = segmentFor(state, ev.segment_id);
      if (!seg.final) state.finalCount += 1;
      seg.final = true;
      seg.text = typeof ev.text === 'string' ? ev.text : `${seg.stable}${seg.unstable}`;
      seg.stable = '';
      seg.unstable = '';
      seg.lang = ev.lang ?? null;
      seg.index = typeof ev.index === 'number' ? ev.index : seg.index;
      if (typeof ev.start_ms === 'number') seg.startMs = ev.start_ms;
      if (typeof ev.end_ms === 'number') seg.endMs = ev.end_ms;
      return { applied: true, kind: 'final', segmentId: seg.id };
    }
    case 'translation': {
      if (ev.segment_id == null || ev.target == null) return { applied: false, kind: 'invalid' };
      const seg = segmentFor(state, ev.segment_id);
      seg.translations[String(ev.target)] = {
        text: typeof ev.text === 'string' ? ev.text : '',
        index: ev.index ?? null,
        cached: !!ev.cached,
      };
      return { applied: true, kind: 'translation', segmentId: seg.id, target: String(ev.target) };
    }
    case 'error': {
      const err = { code: String(ev.code ?? 'error'), message: String(ev.message ?? ''), fatal: !!ev.fatal };
      state.lastError = err;
      if (err.fatal) state.fatal = err;
      return { applied: true, kind: 'error' };
    }
    case 'status':
      // `waiting` until a recogniser claims the session, then `recognising`; `waiting` again
      // with reason `recogniser_lost` when its process stopped, or `recogniser_unresponsive`
      // when it stopped answering, until it recovers or another one resumes the session
      // (`recognising`, with `resumed_from_ms` > 0 after a takeover).
      if (ev.state !== 'waiting' && ev.state !== 'recognising') return { applied: false, kind: 'invalid' };
      state.recogniser = ev.state;
      state.recogniserLost = ev.state === 'waiting' && ev.reason === 'recogniser_lost';
      state.recogniserUnresponsive = ev.state === 'waiting' && ev.reason === 'recogniser_unresponsive';
      return { applied: true, kind: 'status' };
    case 'end':
      state.ended = true;
      state.end = { reason: ev.reason ?? null, finalCount: ev.final_count ?? null, audioMs: ev.audio_ms ?? null };
      return { applied: true, kind: 'end' };
    default:
      return { applied: true, kind: 'unknown' };
  }
}

/** The first frame to send on a (re)connection. */
export function startFrame(state, { source, targets, apiKey, listenToken } = {}) {
  if (listenToken || state.role === 'listener') {
    const f = { type: 'listen', listen_token: listenToken || state.listenToken };
    if (state.cursor != null) f.cursor = state.cursor;
    return f;
  }
  if (state.resumeToken) {
    const f = { type: 'start', resume_token: state.resumeToken };
    if (state.cursor != null) f.cursor = state.cursor;
    // The resume token authenticates the session; the key is sent again in case the edge
    // checks keys on every connection.
    if (apiKey) f.api_key = apiKey;
    return f;
  }
  const f = { type: 'start', source: source || 'auto', targets: Array.isArray(targets) ? targets : [] };
  if (apiKey) f.api_key = apiKey;
  return f;
}
