// Unit tests for the page's pure logic. Run: node --test edge/static/tests/
import test from 'node:test';
import assert from 'node:assert/strict';

import {
  AudioQueue,
  FALLBACK_LANGUAGES,
  apiUrl,
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
  parseLanguages,
  parseQuery,
  splitFrames,
  startFrame,
} from '../protocol.js';
import { Chunker, Resampler, floatToS16le, levelOf, meterValue, s16leToInt16 } from '../pcm.js';

const SERVER_LANGS = [
  { code: 'en', flores: 'eng_Latn', name: 'English' },
  { code: 'vi', flores: 'vie_Latn', name: 'Vietnamese' },
  { code: 'fr', flores: 'fra_Latn', name: 'French' },
  { code: 'zh-Hans', flores: 'zho_Hans', name: 'Chinese (Simplified)' },
  { code: 'zh-Hant', flores: 'zho_Hant', name: 'Chinese (Traditional)' },
  { code: 'ace', flores: 'ace_Latn', name: 'Acehnese (Latin)' },
];

/* ---------------- languages and URLs ---------------- */

test('parseLanguages accepts the documented and the bare-array shapes', () => {
  assert.deepEqual(parseLanguages({ languages: SERVER_LANGS }), SERVER_LANGS);
  assert.deepEqual(parseLanguages(SERVER_LANGS), SERVER_LANGS);
  assert.deepEqual(parseLanguages(['en', 'vi']), [
    { code: 'en', name: 'en', flores: '' },
    { code: 'vi', name: 'vi', flores: '' },
  ]);
  assert.deepEqual(parseLanguages({ en: 'English' }), [{ code: 'en', name: 'English', flores: '' }]);
  assert.deepEqual(parseLanguages([{ bcp47: 'de', name: 'German' }]), [{ code: 'de', name: 'German', flores: '' }]);
  assert.equal(parseLanguages(null), null);
  assert.equal(parseLanguages({ languages: [] }), null);
  assert.equal(parseLanguages('nope'), null);
  assert.equal(parseLanguages([{}, 3, null]), null);
});

test('fallback list has the required languages', () => {
  assert.deepEqual(FALLBACK_LANGUAGES.map((l) => l.code), ['en', 'vi', 'fr', 'de', 'es', 'ja', 'zh']);
});

test('findLanguage matches API codes, FLORES codes and primary subtags', () => {
  assert.equal(findLanguage('vi', SERVER_LANGS).code, 'vi');
  assert.equal(findLanguage('vie_Latn', SERVER_LANGS).code, 'vi');
  assert.equal(findLanguage('VI', SERVER_LANGS).code, 'vi');
  assert.equal(findLanguage('zh', SERVER_LANGS).code, 'zh-Hans');
  assert.equal(findLanguage('zho_Hant', SERVER_LANGS).code, 'zh-Hant');
  assert.equal(findLanguage('xx', SERVER_LANGS), null);
  assert.equal(languageName('fra_Latn', SERVER_LANGS), 'French');
  assert.equal(languageName('xx', SERVER_LANGS), 'xx');
  assert.equal(langTag('vie_Latn', SERVER_LANGS), 'vi');
  assert.equal(langTag('ko', SERVER_LANGS), 'ko');
  assert.equal(langTag('kor_Hang', SERVER_LANGS), '');
});

test('orderLanguages puts selected, then common, then the rest by name', () => {
  const order = orderLanguages(SERVER_LANGS, ['fr']).map((l) => l.code);
  assert.equal(order[0], 'fr');
  assert.deepEqual(order.slice(1, 3), ['en', 'vi']);
  assert.equal(order.at(-1), 'ace');
});

test('parseQuery reads source, targets and listen', () => {
  assert.deepEqual(parseQuery('?source=en&targets=vi,fr'), { source: 'en', targets: ['vi', 'fr'], listen: null });
  assert.deepEqual(parseQuery('?targets=vi&targets=fr,vi'), { source: null, targets: ['vi', 'fr'], listen: null });
  assert.deepEqual(parseQuery('?listen=abc.def'), { source: null, targets: [], listen: 'abc.def' });
  assert.deepEqual(parseQuery(''), { source: null, targets: [], listen: null });
});

test('liveUrl and listenLink derive from the page URL', () => {
  assert.equal(liveUrl('http://h:8080/'), 'ws://h:8080/v1/live');
  assert.equal(liveUrl('https://example.com/?source=en#x'), 'wss://example.com/v1/live');
  assert.equal(liveUrl('https://example.com/index.html'), 'wss://example.com/v1/live');
  assert.equal(liveUrl('http://h/static/index.html?x=1'), 'ws://h/v1/live');
  assert.equal(apiUrl('v1/languages', 'http://h/static/index.html'), 'http://h/v1/languages');
  assert.equal(apiUrl('v1/languages', 'http://h/?source=en'), 'http://h/v1/languages');
  assert.equal(listenLink('https://example.com/?source=en&targets=vi', 'S.t_-'), 'https://example.com/?listen=S.t_-');
});

/* ---------------- reconnect policy ---------------- */

test('backoff doubles from 0.5 s to 8 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map(backoffDelay), [500, 1000, 2000, 4000, 8000, 8000, 8000]);
});

test('closeAction: reconnect on unexpected closes only', () => {
  const st = createState();
  assert.equal(closeAction(1000, '', st).reconnect, false);
  assert.equal(closeAction(1000, '', st).status, 'ended');
  assert.equal(closeAction(1008, 'unauthorized', st).reconnect, false);
  assert.equal(closeAction(1008, 'unauthorized', st).status, 'error');
  for (const code of [1001, 1006, 1011, 1013, 4000]) assert.equal(closeAction(code, '', st).reconnect, true, String(code));
  assert.match(closeAction(1013, 'send queue full', st).message, /too slow/);
  // after `end`, nothing to resume
  applyEvent(st, { type: 'end', seq: 5, cursor: '5.1.1', reason: 'stop', final_count: 1, audio_ms: 100 });
  assert.equal(closeAction(1006, '', st).reconnect, false);
  // terminal fatal error
  const st2 = createState();
  applyEvent(st2, { type: 'error', seq: 2, code: 'unknown_language', message: 'xx', fatal: true });
  assert.equal(closeAction(1011, '', st2).reconnect, false);
  assert.match(closeAction(1011, '', st2).message, /unknown_language: xx/);
  // a transient fatal error still allows a resume
  const st3 = createState();
  applyEvent(st3, { type: 'error', seq: 2, code: 'unavailable', message: 'nats', fatal: true });
  assert.equal(closeAction(1011, '', st3).reconnect, true);
});

/* ---------------- start frames ---------------- */

test('startFrame: new session, resume, listen', () => {
  const st = createState();
  assert.deepEqual(startFrame(st, { source: 'en', targets: ['vi', 'fr'], apiKey: 'k' }), {
    type: 'start', source: 'en', targets: ['vi', 'fr'], api_key: 'k',
  });
  assert.deepEqual(startFrame(st, { source: '', targets: [] }), { type: 'start', source: 'auto', targets: [] });
  applyEvent(st, ready({ seq: 1, cursor: '1.0.0' }));
  // nothing processed after `ready`: resume without a cursor (= from the start)
  assert.deepEqual(startFrame(st, { source: 'en', targets: ['vi'] }), { type: 'start', resume_token: 'RT' });
  applyEvent(st, { type: 'transcript.final', seq: 2, cursor: '2.5.0', segment_id: 'A', index: 0, text: 'Hi.' });
  assert.deepEqual(startFrame(st, { apiKey: 'k' }), { type: 'start', resume_token: 'RT', cursor: '2.5.0', api_key: 'k' });

  const ls = createState('listener');
  assert.deepEqual(startFrame(ls, { listenToken: 'LT' }), { type: 'listen', listen_token: 'LT' });
  applyEvent(ls, { type: 'transcript.final', seq: 4, cursor: '4.2.0', segment_id: 'A', index: 0, text: 'Hi.' });
  assert.deepEqual(startFrame(ls, { listenToken: 'LT' }), { type: 'listen', listen_token: 'LT', cursor: '4.2.0' });
});

/* ---------------- the reducer ---------------- */

function ready(extra = {}) {
  return {
    type: 'ready', session_id: 'S', seq: 1, cursor: '1.0.0', resume_token: 'RT', listen_token: 'LT',
    source: 'en', targets: ['vi', 'fr'], sample_rate_hz: 16000, max_frame_bytes: 16000, resumed: false,
    role: 'speaker', ...extra,
  };
}

test('partials grow, finals replace them, translations attach by segment_id', () => {
  const st = createState();
  assert.equal(applyEvent(st, ready()).kind, 'ready');
  assert.equal(st.resumeToken, 'RT');
  assert.equal(st.listenToken, 'LT');
  assert.equal(st.maxFrameBytes, 16000);
  assert.deepEqual(st.targets, ['vi', 'fr']);

  let r = applyEvent(st, { type: 'transcript.partial', seq: 2, cursor: 'c2', segment_id: 'A', revision: 1, stable: '', unstable: 'And so', start_ms: 0, end_ms: 500 });
  assert.deepEqual(r, { applied: true, kind: 'partial', segmentId: 'A' });
  applyEvent(st, { type: 'transcript.partial', seq: 3, cursor: 'c3', segment_id: 'A', revision: 2, stable: 'And so', unstable: 'my fellow', start_ms: 0, end_ms: 900 });
  let seg = st.segments[0];
  assert.equal(seg.stable, 'And so');
  assert.equal(seg.unstable, 'my fellow');
  assert.equal(seg.final, false);

  // an older revision is ignored
  r = applyEvent(st, { type: 'transcript.partial', seq: 4, cursor: 'c4', segment_id: 'A', revision: 1, stable: 'And', unstable: 'x' });
  assert.equal(r.applied, false);
  assert.equal(seg.stable, 'And so');
  assert.equal(st.lastSeq, 4, 'a stale partial still counts as processed');

  r = applyEvent(st, { type: 'transcript.final', seq: 5, cursor: 'c5', segment_id: 'A', index: 0, text: 'And so, my fellow Americans.', lang: 'eng_Latn', start_ms: 0, end_ms: 2000, words: [] });
  assert.equal(r.kind, 'final');
  seg = st.segments[0];
  assert.equal(seg.final, true);
  assert.equal(seg.text, 'And so, my fellow Americans.');
  assert.equal(seg.stable, '');
  assert.equal(seg.unstable, '');
  assert.equal(seg.lang, 'eng_Latn');
  assert.equal(st.finalCount, 1);

  // a late partial for a finalised segment does not resurrect it
  r = applyEvent(st, { type: 'transcript.partial', seq: 6, cursor: 'c6', segment_id: 'A', revision: 3, stable: 'And so', unstable: 'zzz' });
  assert.equal(r.applied, false);
  assert.equal(st.segments[0].final, true);

  r = applyEvent(st, { type: 'translation', seq: 7, cursor: 'c7', segment_id: 'A', index: 0, target: 'vie_Latn', text: 'Và vì vậy', cached: false });
  assert.deepEqual(r, { applied: true, kind: 'translation', segmentId: 'A', target: 'vie_Latn' });
  applyEvent(st, { type: 'translation', seq: 8, cursor: 'c8', segment_id: 'A', index: 0, target: 'fra_Latn', text: 'Et donc', cached: true });
  assert.deepEqual(Object.keys(st.segments[0].translations), ['vie_Latn', 'fra_Latn']);
  assert.equal(st.segments[0].translations.fra_Latn.cached, true);

  // next segment
  applyEvent(st, { type: 'transcript.partial', seq: 9, cursor: 'c9', segment_id: 'B', revision: 1, stable: 'ask', unstable: 'not' });
  assert.equal(st.segments.length, 2);
  assert.equal(st.segmentPos.B, 1);
  assert.equal(st.cursor, 'c9');
  assert.equal(st.lastSeq, 9);
  assert.doesNotThrow(() => JSON.stringify(st));
});

test('events with seq <= the last processed seq are ignored', () => {
  const st = createState();
  applyEvent(st, ready());
  applyEvent(st, { type: 'transcript.final', seq: 2, cursor: 'c2', segment_id: 'A', index: 0, text: 'One.' });
  applyEvent(st, { type: 'translation', seq: 3, cursor: 'c3', segment_id: 'A', index: 0, target: 'vi', text: 'Một.' });
  const dup = applyEvent(st, { type: 'translation', seq: 3, cursor: 'c3', segment_id: 'A', index: 0, target: 'vi', text: 'DUP' });
  assert.deepEqual(dup, { applied: false, kind: 'duplicate' });
  assert.equal(applyEvent(st, { type: 'transcript.final', seq: 2, cursor: 'c2', segment_id: 'A', index: 0, text: 'X' }).applied, false);
  assert.equal(st.segments[0].text, 'One.');
  assert.equal(st.segments[0].translations.vi.text, 'Một.');
  assert.equal(st.finalCount, 1);
  assert.equal(st.cursor, 'c3');
});

test('resume: a new ready never moves seq/cursor, so the replay after it is applied', () => {
  const st = createState();
  applyEvent(st, ready());
  applyEvent(st, { type: 'transcript.final', seq: 2, cursor: '2.1.0', segment_id: 'A', index: 0, text: 'One.' });
  // connection drops; events 3..4 were lost in flight. Resumed ready (whatever its seq) ...
  for (const readySeq of [5, 3, 2]) {
    const s = structuredClone(st);
    assert.equal(applyEvent(s, ready({ seq: readySeq, cursor: 'r', resumed: true, resume_token: 'RT2' })).applied, true);
    assert.equal(s.resumed, true);
    assert.equal(s.resumeToken, 'RT2');
    assert.equal(s.lastSeq, 2);
    assert.equal(s.cursor, '2.1.0');
    // ... then the replay of 3, 4
    assert.equal(applyEvent(s, { type: 'translation', seq: 3, cursor: '3.1.1', segment_id: 'A', target: 'vi', text: 'Một.' }).applied, true);
    assert.equal(applyEvent(s, { type: 'transcript.final', seq: 4, cursor: '4.2.1', segment_id: 'B', index: 1, text: 'Two.' }).applied, true);
    assert.equal(s.finalCount, 2);
    assert.equal(s.cursor, '4.2.1');
    assert.deepEqual(startFrame(s, {}), { type: 'start', resume_token: 'RT2', cursor: '4.2.1' });
  }
});

test('an error without a usable seq is still applied and moves nothing', () => {
  const st = createState('listener');
  const r = applyEvent(st, { type: 'error', seq: 0, cursor: '', code: 'unauthorized', message: 'bad listen token', fatal: true });
  assert.equal(r.applied, true);
  assert.equal(st.fatal.code, 'unauthorized');
  assert.equal(st.lastSeq, 0);
  assert.equal(st.cursor, null);
  assert.equal(applyEvent(st, { type: 'error', code: 'x', message: 'no seq' }).applied, true);
  assert.equal(closeAction(1008, 'unauthorized', st).message, 'unauthorized: bad listen token');
});

test('errors and end', () => {
  const st = createState();
  applyEvent(st, ready());
  applyEvent(st, { type: 'error', seq: 2, cursor: 'c2', code: 'bad_frame', message: 'odd length', fatal: false });
  assert.deepEqual(st.lastError, { code: 'bad_frame', message: 'odd length', fatal: false });
  assert.equal(st.fatal, null);
  applyEvent(st, { type: 'end', seq: 3, cursor: 'c3', reason: 'stop', final_count: 0, audio_ms: 1500 });
  assert.equal(st.ended, true);
  assert.deepEqual(st.end, { reason: 'stop', finalCount: 0, audioMs: 1500 });
  assert.equal(applyEvent(st, { nope: 1 }).applied, false);
  assert.equal(applyEvent(st, { type: 'future.thing', seq: 4 }).kind, 'unknown');
});

test('status: waiting for a recogniser, then recognising', () => {
  const st = createState();
  applyEvent(st, ready());
  assert.equal(st.recogniser, null);
  assert.deepEqual(applyEvent(st, { type: 'status', seq: 2, cursor: 'c2', state: 'waiting' }), { applied: true, kind: 'status' });
  assert.equal(st.recogniser, 'waiting');
  applyEvent(st, { type: 'status', seq: 3, cursor: 'c3', state: 'recognising', resumed_from_ms: 0, delivery: 1 });
  assert.equal(st.recogniser, 'recognising');
  assert.equal(applyEvent(st, { type: 'status', seq: 4, cursor: 'c4', state: 'sleeping' }).applied, false);
  assert.equal(st.recogniser, 'recognising');
  assert.equal(st.recogniserLost, false);
  // Its process stopped: waiting again, for a known reason, until another one resumes.
  applyEvent(st, { type: 'status', seq: 5, cursor: 'c5', state: 'waiting', reason: 'recogniser_lost', delivery: 1 });
  assert.equal(st.recogniser, 'waiting');
  assert.equal(st.recogniserLost, true);
  applyEvent(st, { type: 'status', seq: 6, cursor: 'c6', state: 'recognising', resumed_from_ms: 3900, delivery: 2 });
  assert.equal(st.recogniser, 'recognising');
  assert.equal(st.recogniserLost, false);
  // It stops answering (stopped, cut off), then answers again.
  applyEvent(st, { type: 'status', seq: 7, cursor: 'c7', state: 'waiting', reason: 'recogniser_unresponsive', delivery: 2 });
  assert.equal(st.recogniser, 'waiting');
  assert.equal(st.recogniserUnresponsive, true);
  assert.equal(st.recogniserLost, false);
  applyEvent(st, { type: 'status', seq: 8, cursor: 'c8', state: 'recognising', resumed_from_ms: 3900, delivery: 2 });
  assert.equal(st.recogniser, 'recognising');
  assert.equal(st.recogniserUnresponsive, false);
});

/* ---------------- audio framing ---------------- */

test('AudioQueue keeps at most maxBytes, dropping the oldest', () => {
  const q = new AudioQueue(10000);
  for (let i = 0; i < 5; i++) q.push(new Uint8Array(3200).fill(i).buffer);
  assert.equal(q.bytes, 9600);
  assert.equal(q.dropped, 6400);
  const frames = q.drain();
  assert.deepEqual(frames.map((f) => new Uint8Array(f)[0]), [2, 3, 4]);
  assert.equal(q.bytes, 0);
  assert.equal(new AudioQueue().maxBytes, 320000); // 10 s of 16 kHz s16
});

test('splitFrames respects max_frame_bytes and whole samples', () => {
  const buf = new Uint8Array(3200).buffer;
  assert.equal(splitFrames(buf, 16000).length, 1);
  assert.equal(splitFrames(buf, 16000)[0], buf);
  const parts = splitFrames(buf, 1001);
  assert.ok(parts.every((p) => p.byteLength <= 1000 && p.byteLength % 2 === 0));
  assert.equal(parts.reduce((n, p) => n + p.byteLength, 0), 3200);
});

test('floatToS16le clamps and is little-endian', () => {
  const out = floatToS16le(new Float32Array([0, 1, -1, 2, -2, 0.5, -0.5, Number.NaN]));
  assert.equal(out.byteLength, 16);
  const b = new Uint8Array(out);
  assert.deepEqual([b[2], b[3]], [0xff, 0x7f]); // 32767 LE
  assert.deepEqual(Array.from(s16leToInt16(out)), [0, 32767, -32768, 32767, -32768, 16384, -16384, 0]);
});

test('Chunker emits fixed 1600-sample chunks', () => {
  const c = new Chunker(1600);
  let chunks = [];
  for (let i = 0; i < 30; i++) chunks = chunks.concat(c.push(new Float32Array(128).fill(i)));
  assert.equal(chunks.length, 2); // 3840 samples
  assert.ok(chunks.every((ch) => ch.length === 1600));
  assert.equal(chunks[1][0], 1600 / 128 | 0); // continuity: sample 1600 came from block 12
  assert.equal(c.flush().length, 3840 - 3200);
  assert.equal(c.flush().length, 0);
});

test('levelOf / meterValue', () => {
  const { peak, rms } = levelOf(new Float32Array([0.5, -0.5]));
  assert.equal(peak, 0.5);
  assert.equal(rms, 0.5);
  assert.equal(meterValue(0), 0);
  assert.equal(meterValue(1), 1);
  assert.ok(Math.abs(meterValue(0.001) - 0) < 1e-9); // -60 dBFS
});

/* ---------------- resampler ---------------- */

function tone(freq, rate, seconds, amp = 0.5) {
  const n = Math.round(rate * seconds);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate);
  return a;
}

function resampleAll(x, inRate, block = 128) {
  const r = new Resampler(inRate, 16000);
  const parts = [];
  for (let i = 0; i < x.length; i += block) parts.push(r.process(x.subarray(i, i + block)));
  parts.push(r.flush());
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function rmsDb(a, skip = 200) {
  let s = 0;
  for (let i = skip; i < a.length - skip; i++) s += a[i] * a[i];
  return 20 * Math.log10(Math.sqrt(s / (a.length - 2 * skip)) / (0.5 / Math.SQRT2));
}

for (const inRate of [48000, 44100, 22050]) {
  test(`Resampler ${inRate} -> 16000: length, passband, stopband`, () => {
    const y = resampleAll(tone(1000, inRate, 1), inRate);
    assert.equal(y.length, 16000);
    assert.ok(Math.abs(rmsDb(y)) < 0.1, `1 kHz gain ${rmsDb(y)} dB`);
    assert.ok(Math.abs(rmsDb(resampleAll(tone(5000, inRate, 1), inRate))) < 0.2, '5 kHz passes');
    if (inRate / 2 > 10000) {
      // 10 kHz would alias to 6 kHz with naive decimation; it must be suppressed.
      const alias = rmsDb(resampleAll(tone(10000, inRate, 1), inRate));
      assert.ok(alias < -60, `10 kHz alias at ${alias} dB`);
    }
  });
}

test('Resampler output is independent of the block size, and in phase', () => {
  const x = tone(440, 48000, 0.5);
  const a = resampleAll(x, 48000, 128);
  const b = resampleAll(x, 48000, 999);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `sample ${i}`);
  // output n corresponds to input 3n: compare with the analytic 440 Hz tone at 16 kHz
  const ref = tone(440, 16000, 0.5);
  let err = 0;
  for (let i = 200; i < ref.length - 200; i++) err = Math.max(err, Math.abs(a[i] - ref[i]));
  assert.ok(err < 1e-3, `max deviation ${err}`);
});

test('Resampler passes 16 kHz through unchanged', () => {
  const r = new Resampler(16000, 16000);
  const x = new Float32Array([0.1, 0.2, 0.3]);
  assert.deepEqual(Array.from(r.process(x)), Array.from(x));
  assert.equal(r.flush().length, 0);
});
