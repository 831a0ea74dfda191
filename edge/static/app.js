// Voxbridge browser client: microphone capture (AudioWorklet, 16 kHz s16le), the live
// WebSocket session with automatic resume, and the transcript/translation view.
// Protocol: docs/PROTOCOL.md. Pure logic lives in protocol.js and pcm.js.
import {
  AudioQueue,
  CHUNK_SAMPLES,
  FALLBACK_LANGUAGES,
  SAMPLE_RATE,
  applyEvent,
  backoffDelay,
  closeAction,
  createState,
  findLanguage,
  langTag,
  languageName,
  listenLink,
  liveUrl,
  orderLanguages,
  parseQuery,
  splitFrames,
  startFrame,
} from './protocol.js';
import { meterValue } from './pcm.js';
import { fetchLanguages, filterTargetList, renderTargetList } from './pickers.js';

const API_KEY_STORAGE = 'voxbridge.apiKey';
const SELECTION_STORAGE = 'voxbridge.selection';
const CONNECT_TIMEOUT_MS = 10000; // socket open + `ready`
const END_TIMEOUT_MS = 60000; // after `stop`, give up waiting for `end`
const LANGUAGES_TIMEOUT_MS = 4000;

const $ = (id) => document.getElementById(id);
const els = {
  source: $('source'),
  targets: $('targets'),
  targetList: $('target-list'),
  targetFilter: $('target-filter'),
  targetsSummary: $('targets-summary'),
  apiKey: $('api-key'),
  start: $('start'),
  stop: $('stop'),
  status: $('status'),
  level: $('level'),
  levelRow: $('level-row'),
  notice: $('notice'),
  share: $('share'),
  listenLink: $('listen-link'),
  copyLink: $('copy-link'),
  copyResult: $('copy-result'),
  transcript: $('transcript'),
  transcriptEmpty: $('transcript-empty'),
  tagline: $('tagline'),
};

const query = parseQuery(location.search);
const listenerMode = !!query.listen;

// Test and debugging hook: `state` is the live session state, `events` every server event
// received (including skipped duplicates), `stats` what was sent.
const vb = {
  state: createState(listenerMode ? 'listener' : 'speaker'),
  events: [],
  stats: { framesSent: 0, bytesSent: 0, bytesQueued: 0, bytesDropped: 0, chunks: 0, inputRate: null, resampling: null },
  languages: FALLBACK_LANGUAGES,
};
window.voxbridge = vb;

let languages = FALLBACK_LANGUAGES;
// The user's choice; initialised from the URL, then localStorage.
const selection = loadSelection();

// Connection bookkeeping (one session at a time).
const conn = {
  ws: null,
  ready: false, // `ready` received on the current socket
  attempt: 0, // consecutive failed connection attempts
  retryTimer: 0,
  timeoutTimer: 0,
  endTimer: 0,
  active: false, // a session is running (until ended/error)
  stopping: false, // user pressed stop
  stopSent: false, // `stop` sent on the current socket
  options: {},
};
const queue = new AudioQueue();
let capture = null; // {stream, ctx, node, source, sink}

/* ---------------- status and notices ---------------- */

const STATUS_TEXT = {
  idle: 'Ready: choose the languages and start the microphone.',
  microphone: 'Waiting for the microphone…',
  connecting: 'Connecting…',
  live: 'Live: speak now.',
  reconnecting: 'Reconnecting…',
  stopping: 'Finishing: waiting for the last words and translations…',
  ended: 'Session ended.',
  error: 'Error.',
};

function setStatus(state, message = '') {
  vb.state.status = state;
  vb.state.statusMessage = message;
  let text = STATUS_TEXT[state] || state;
  if (state === 'live' && listenerMode) text = 'Live: listening.';
  if (state === 'live' && vb.state.recogniser === 'waiting') {
    if (vb.state.recogniserLost) {
      text = `${text} The recogniser stopped: another one takes over, your words are kept.`;
    } else if (vb.state.recogniserUnresponsive) {
      text = `${text} The recogniser does not answer: it recovers or another one takes over, your words are kept.`;
    } else {
      text = `${text} Waiting for a recogniser: your words are kept and appear when one is free.`;
    }
  }
  if (message) text = state === 'error' ? `Error: ${message}` : `${text} ${message}`;
  els.status.textContent = text;
  els.status.dataset.state = state;
}

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

function formatMs(ms) {
  const s = Math.round((ms || 0) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/* ---------------- languages and pickers ---------------- */

function loadSelection() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SELECTION_STORAGE) || '{}') || {};
  } catch {
    saved = {};
  }
  const fromUrl = query.source || query.targets.length;
  return {
    source: query.source || (!fromUrl && typeof saved.source === 'string' ? saved.source : 'auto'),
    targets: query.targets.length ? query.targets : (!fromUrl && Array.isArray(saved.targets) ? saved.targets : []),
  };
}

function saveSelection() {
  try {
    localStorage.setItem(SELECTION_STORAGE, JSON.stringify(selection));
  } catch {
    /* private mode */
  }
}

// Map a requested code (`zh`, `vie_Latn`) onto the list's own code (`zh-Hans`, `vi`).
function canonical(code) {
  if (code === 'auto') return code;
  const l = findLanguage(code, languages);
  return l ? l.code : code;
}

function renderPickers() {
  selection.source = canonical(selection.source);
  selection.targets = [...new Set(selection.targets.map(canonical))];

  const src = els.source;
  src.textContent = '';
  src.append(new Option('Detect automatically', 'auto'));
  for (const l of [...languages].sort((a, b) => a.name.localeCompare(b.name))) {
    src.append(new Option(`${l.name} (${l.code})`, l.code));
  }
  if (selection.source !== 'auto' && !findLanguage(selection.source, languages)) {
    src.append(new Option(selection.source, selection.source)); // unknown code from the URL
  }
  src.value = selection.source;

  const shown = orderLanguages(languages, selection.targets);
  for (const t of selection.targets) {
    if (!findLanguage(t, languages)) shown.unshift({ code: t, name: t, flores: '' });
  }
  renderTargetList(els.targetList, shown, selection.targets);
  applyFilter();
  updateTargetsSummary();
}

function applyFilter() {
  filterTargetList(els.targetList, els.targetFilter.value);
}

function updateTargetsSummary() {
  els.targetsSummary.textContent = selection.targets.length
    ? `Selected: ${selection.targets.map((c) => languageName(c, languages)).join(', ')}.`
    : 'No target language selected: transcript only.';
}

async function loadLanguages() {
  const parsed = await fetchLanguages(location.href, LANGUAGES_TIMEOUT_MS);
  if (parsed) languages = parsed;
  vb.languages = languages;
}

function setPickersDisabled(disabled) {
  document.body.classList.toggle('session-active', disabled);
  els.source.disabled = disabled;
  els.targets.disabled = disabled; // disables every control in the fieldset
  els.apiKey.disabled = disabled;
}

/* ---------------- transcript rendering ---------------- */

const segmentEls = new Map(); // segment id -> <li>

function nearBottom() {
  const doc = document.scrollingElement || document.documentElement;
  return doc.scrollHeight - (doc.scrollTop + window.innerHeight) < 120;
}

function joinPartial(stable, unstable) {
  if (stable && unstable && !/\s$/.test(stable) && !/^\s/.test(unstable)) return ' ';
  return '';
}

function translationOrder(seg) {
  const wanted = (vb.state.targets.length ? vb.state.targets : selection.targets).map(canonical);
  return Object.keys(seg.translations).sort((a, b) => {
    const ia = wanted.indexOf(canonical(a));
    const ib = wanted.indexOf(canonical(b));
    return (ia < 0 ? 1e9 : ia) - (ib < 0 ? 1e9 : ib) || a.localeCompare(b);
  });
}

function renderSegment(id) {
  const seg = vb.state.segments[vb.state.segmentPos[id]];
  if (!seg) return;
  const stick = nearBottom();
  let li = segmentEls.get(id);
  if (!li) {
    li = document.createElement('li');
    li.className = 'segment';
    li.dataset.segmentId = id;
    els.transcript.append(li);
    segmentEls.set(id, li);
    els.transcriptEmpty.hidden = true;
  }

  let partial = li.querySelector(':scope > .partial');
  let final = li.querySelector(':scope > .final');
  if (seg.final) {
    if (partial) partial.remove();
    if (!final) {
      final = document.createElement('p');
      final.className = 'final';
      final.dataset.segmentId = id;
      li.prepend(final);
    }
    const tag = langTag(seg.lang, languages);
    if (tag) final.lang = tag;
    else final.removeAttribute('lang');
    if (seg.index != null) final.dataset.index = String(seg.index);
    final.textContent = seg.text;
  } else {
    if (!partial) {
      partial = document.createElement('p');
      partial.className = 'partial';
      // Partials change several times a second; screen readers get the final instead.
      partial.setAttribute('aria-hidden', 'true');
      const stable = document.createElement('span');
      stable.className = 'stable';
      const gap = document.createTextNode('');
      const unstable = document.createElement('span');
      unstable.className = 'unstable';
      partial.append(stable, gap, unstable);
      li.prepend(partial);
    }
    const [stable, gap, unstable] = partial.childNodes;
    stable.textContent = seg.stable;
    gap.textContent = joinPartial(seg.stable, seg.unstable);
    unstable.textContent = seg.unstable;
  }

  const targets = translationOrder(seg);
  if (targets.length) {
    let ul = li.querySelector(':scope > .translations');
    if (!ul) {
      ul = document.createElement('ul');
      ul.className = 'translations';
      li.append(ul);
    }
    for (const target of targets) {
      const code = canonical(target);
      let item = [...ul.children].find((c) => c.dataset.rawTarget === target);
      if (!item) {
        item = document.createElement('li');
        item.className = 'translation';
        item.dataset.target = code;
        item.dataset.rawTarget = target;
        item.dataset.segmentId = id;
        const tag = langTag(target, languages);
        if (tag) item.lang = tag;
        const label = document.createElement('span');
        label.className = 'target-label';
        label.lang = document.documentElement.lang || 'en';
        label.textContent = languageName(target, languages);
        const text = document.createElement('span');
        text.className = 'text';
        item.append(label, text);
      }
      ul.append(item); // (re)append keeps the order
      item.querySelector('.text').textContent = seg.translations[target].text;
    }
  }
  if (stick) li.scrollIntoView({ block: 'end' });
}

function clearTranscript() {
  segmentEls.clear();
  els.transcript.textContent = '';
  els.transcriptEmpty.hidden = false;
}

/* ---------------- sharing ---------------- */

function showShare() {
  const token = vb.state.listenToken;
  if (!token || listenerMode) return;
  const href = listenLink(location.href, token);
  els.listenLink.href = href;
  els.listenLink.textContent = href;
  els.share.hidden = false;
}

els.copyLink.addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(els.listenLink.href);
    els.copyResult.textContent = 'Copied.';
  } catch {
    // Clipboard API unavailable (http, permissions): select the link text instead.
    const range = document.createRange();
    range.selectNodeContents(els.listenLink);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    els.copyResult.textContent = 'Press Ctrl+C (or long-press) to copy.';
  }
});

/* ---------------- audio capture ---------------- */

async function startCapture() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this browser cannot capture audio here (a secure https:// page is needed)');
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: false,
  });
  let ctx = null;
  let source = null;
  try {
    // Chromium resamples the microphone into a 16 kHz context itself.
    ctx = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: 'interactive' });
    source = ctx.createMediaStreamSource(stream);
  } catch (e) {
    // Firefox refuses to connect a mic to a context at another rate: use the device rate and
    // let the worklet resample.
    if (ctx) ctx.close().catch(() => {});
    ctx = new AudioContext({ latencyHint: 'interactive' });
    source = ctx.createMediaStreamSource(stream);
  }
  try {
    await ctx.audioWorklet.addModule(new URL('capture-worklet.js', import.meta.url));
    const node = new AudioWorkletNode(ctx, 'voxbridge-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { chunkSamples: CHUNK_SAMPLES },
    });
    // A muted sink keeps the worklet pulled by the graph in every browser.
    const sink = ctx.createGain();
    sink.gain.value = 0;
    source.connect(node);
    node.connect(sink);
    sink.connect(ctx.destination);
    node.port.onmessage = onWorkletMessage;
    if (ctx.state !== 'running') await ctx.resume();
    for (const track of stream.getAudioTracks()) {
      track.addEventListener('ended', () => {
        if (capture && capture.stream === stream && conn.active && !conn.stopping) {
          showNotice('The microphone stopped.');
          stopSession();
        }
      });
    }
    capture = { stream, ctx, node, source, sink, flushed: null };
    vb.stats.inputRate = ctx.sampleRate;
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close().catch(() => {});
    throw e;
  }
}

function onWorkletMessage(e) {
  const m = e.data || {};
  if (m.type === 'chunk') {
    vb.stats.chunks += 1;
    els.level.value = meterValue(m.rms);
    sendAudio(m.pcm);
  } else if (m.type === 'started') {
    vb.stats.resampling = m.resampling;
  } else if (m.type === 'flushed' && capture && capture.flushed) {
    capture.flushed();
  }
}

// Ask the worklet for its last partial chunk, then release the microphone.
async function stopCapture({ flush }) {
  const c = capture;
  if (!c) return;
  capture = null;
  if (flush) {
    capture = c; // keep routing the final chunks
    await new Promise((resolve) => {
      c.flushed = resolve;
      c.node.port.postMessage({ type: 'flush' });
      setTimeout(resolve, 500);
    });
    capture = null;
  }
  c.node.port.onmessage = null;
  c.stream.getTracks().forEach((t) => t.stop());
  try {
    c.source.disconnect();
    c.node.disconnect();
  } catch {
    /* already disconnected */
  }
  c.ctx.close().catch(() => {});
  els.level.value = 0;
}

/* ---------------- the live connection ---------------- */

function socketOpen() {
  return conn.ws && conn.ws.readyState === WebSocket.OPEN && conn.ready;
}

function sendFrames(pcm) {
  for (const frame of splitFrames(pcm, vb.state.maxFrameBytes)) {
    conn.ws.send(frame);
    vb.stats.framesSent += 1;
    vb.stats.bytesSent += frame.byteLength;
  }
}

function sendAudio(pcm) {
  if (vb.state.role === 'listener' || conn.stopSent) return;
  if (socketOpen() && queue.frames.length === 0) {
    sendFrames(pcm);
  } else {
    const before = queue.dropped;
    queue.push(pcm);
    vb.stats.bytesQueued = queue.bytes;
    vb.stats.bytesDropped += queue.dropped - before;
    if (socketOpen()) flushQueue();
  }
}

function flushQueue() {
  for (const pcm of queue.drain()) sendFrames(pcm);
  vb.stats.bytesQueued = 0;
}

function sendStop() {
  if (!socketOpen() || conn.stopSent) return;
  flushQueue();
  conn.ws.send(JSON.stringify({ type: 'stop' }));
  conn.stopSent = true;
  clearTimeout(conn.endTimer);
  conn.endTimer = setTimeout(() => {
    if (!conn.active) return;
    // No `end`: stop waiting rather than hang.
    finish('ended', 'The server did not confirm the end.');
    if (conn.ws) conn.ws.close(1000, 'client gave up waiting for end');
  }, END_TIMEOUT_MS);
}

function connect() {
  clearTimeout(conn.retryTimer);
  conn.retryTimer = 0;
  let ws;
  try {
    ws = new WebSocket(liveUrl(location.href));
  } catch (e) {
    finish('error', `cannot open the connection: ${e.message}`);
    return;
  }
  ws.binaryType = 'arraybuffer';
  conn.ws = ws;
  conn.ready = false;
  conn.stopSent = false;
  if (conn.attempt === 0 && vb.state.connections === 0) setStatus('connecting');

  clearTimeout(conn.timeoutTimer);
  conn.timeoutTimer = setTimeout(() => {
    if (conn.ws === ws && !conn.ready) ws.close(4000, 'timeout'); // -> onclose -> retry
  }, CONNECT_TIMEOUT_MS);

  ws.onopen = () => {
    if (conn.ws !== ws) return;
    ws.send(JSON.stringify(startFrame(vb.state, conn.options)));
  };
  ws.onmessage = (e) => {
    if (conn.ws !== ws || typeof e.data !== 'string') return;
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      console.warn('voxbridge: ignoring a frame that is not JSON');
      return;
    }
    handleEvent(ev);
  };
  ws.onclose = (e) => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    conn.ready = false;
    clearTimeout(conn.timeoutTimer);
    onClose(e.code, e.reason);
  };
}

function handleEvent(ev) {
  vb.events.push(ev);
  const r = applyEvent(vb.state, ev);
  if (!r.applied) return;
  switch (r.kind) {
    case 'ready':
      conn.ready = true;
      conn.attempt = 0;
      clearTimeout(conn.timeoutTimer);
      showShare();
      if (vb.state.ended) break;
      if (conn.stopping) {
        setStatus('stopping');
        sendStop(); // flushes the queue first
      } else {
        setStatus('live', vb.state.resumed ? '(resumed)' : '');
        flushQueue();
      }
      if (vb.state.resumed) setTimeout(() => showNotice(''), 3000);
      break;
    case 'partial':
    case 'final':
    case 'translation':
      renderSegment(r.segmentId);
      break;
    case 'status':
      if (vb.state.status === 'live') setStatus('live', vb.state.statusMessage);
      break;
    case 'error': {
      const err = vb.state.lastError;
      if (err.code === 'session_ended') {
        // Resuming a session that already ended: its events are replayed, no more audio.
        conn.stopping = true;
        stopCapture({ flush: false });
        showNotice('This session had already ended; showing what was said.');
      } else if (err.fatal) {
        setStatus('error', `${err.code}: ${err.message}`);
      } else {
        showNotice(`Server: ${err.code}: ${err.message}`);
      }
      break;
    }
    case 'end': {
      const end = vb.state.end;
      const parts = [];
      if (end.finalCount != null) parts.push(`${end.finalCount} sentence${end.finalCount === 1 ? '' : 's'}`);
      if (end.audioMs != null) parts.push(`${formatMs(end.audioMs)} of audio`);
      if (end.reason) parts.push(`reason: ${end.reason}`);
      finish('ended', parts.length ? `(${parts.join(', ')})` : '');
      break;
    }
    default:
      break;
  }
}

function onClose(code, reason) {
  if (!conn.active) return;
  const st = vb.state;
  if (st.lastError && st.lastError.code === 'session_ended' && !st.ended) {
    finish('ended', '');
    return;
  }
  const action = closeAction(code, reason, st);
  if (!action.reconnect) {
    if (st.ended) finish('ended', vb.state.statusMessage);
    else finish(action.status, action.message);
    return;
  }
  if (!st.resumeToken && st.role !== 'listener' && conn.stopping) {
    // Stopped before the session ever started: nothing to finish.
    finish('ended', '(stopped before the session started)');
    return;
  }
  const delay = backoffDelay(conn.attempt);
  conn.attempt += 1;
  setStatus('reconnecting', `${action.message}; retrying in ${(delay / 1000).toFixed(1)} s.`);
  if (code === 1013) showNotice('The connection was too slow to keep up; reconnecting and resuming.');
  conn.retryTimer = setTimeout(connect, delay);
}

// Retry at once when the browser comes back online.
window.addEventListener('online', () => {
  if (conn.active && conn.retryTimer) connect();
});

function finish(status, message) {
  conn.active = false;
  conn.stopping = false;
  clearTimeout(conn.retryTimer);
  clearTimeout(conn.timeoutTimer);
  clearTimeout(conn.endTimer);
  conn.retryTimer = 0;
  queue.clear();
  stopCapture({ flush: false });
  setStatus(status, message);
  if (!listenerMode) {
    els.start.disabled = false;
    els.stop.disabled = true;
    setPickersDisabled(false);
  }
}

/* ---------------- start / stop ---------------- */

async function startSession() {
  if (conn.active) return;
  const apiKey = els.apiKey.value.trim();
  try {
    if (apiKey) localStorage.setItem(API_KEY_STORAGE, apiKey);
    else localStorage.removeItem(API_KEY_STORAGE);
  } catch {
    /* storage unavailable */
  }
  saveSelection();

  vb.state = createState('speaker');
  vb.events = [];
  vb.stats = { framesSent: 0, bytesSent: 0, bytesQueued: 0, bytesDropped: 0, chunks: 0, inputRate: null, resampling: null };
  queue.clear();
  clearTranscript();
  showNotice('');
  els.share.hidden = true;

  conn.active = true;
  conn.stopping = false;
  conn.attempt = 0;
  conn.options = { source: selection.source, targets: [...selection.targets], apiKey };
  els.start.disabled = true;
  setPickersDisabled(true);
  setStatus('microphone');
  try {
    await startCapture();
  } catch (e) {
    const why = e && e.name === 'NotAllowedError' ? 'microphone permission denied' : `microphone: ${e.message || e}`;
    finish('error', why);
    return;
  }
  if (!conn.active) return; // stopped meanwhile
  els.stop.disabled = false;
  connect();
}

async function stopSession() {
  if (!conn.active || conn.stopping) return;
  conn.stopping = true;
  els.stop.disabled = true;
  setStatus('stopping');
  await stopCapture({ flush: true }); // last partial chunk goes to sendAudio/queue
  if (!conn.active) return;
  if (socketOpen()) sendStop();
  else if (!conn.ws && !conn.retryTimer) finish('ended', '');
  // otherwise `stop` is sent once the (re)connection is ready
}

function startListening() {
  vb.state = createState('listener');
  conn.active = true;
  conn.options = { listenToken: query.listen };
  connect();
}

/* ---------------- init ---------------- */

function init() {
  if (listenerMode) {
    document.body.classList.add('listener');
    els.tagline.textContent = 'Following a shared session';
    els.levelRow.hidden = true;
    document.title = 'Voxbridge: listening';
    loadLanguages(); // only for names of translation labels
    startListening();
    return;
  }
  try {
    els.apiKey.value = localStorage.getItem(API_KEY_STORAGE) || '';
  } catch {
    /* storage unavailable */
  }
  renderPickers();
  setStatus('idle');
  els.start.disabled = false;

  els.source.addEventListener('change', () => {
    selection.source = els.source.value;
    saveSelection();
  });
  els.targetList.addEventListener('change', (e) => {
    const box = e.target;
    if (!box || box.name !== 'target') return;
    const set = new Set(selection.targets);
    if (box.checked) set.add(box.value);
    else set.delete(box.value);
    selection.targets = [...els.targetList.querySelectorAll('input[name="target"]')]
      .map((b) => b.value)
      .filter((v) => set.has(v));
    updateTargetsSummary();
    saveSelection();
  });
  els.targetFilter.addEventListener('input', applyFilter);
  els.targetFilter.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') e.preventDefault(); // don't submit the form
  });
  $('setup-form').addEventListener('submit', (e) => e.preventDefault());
  els.start.addEventListener('click', startSession);
  els.stop.addEventListener('click', stopSession);

  loadLanguages().then(() => {
    if (!conn.active) renderPickers();
  });
}

init();
