// Unit tests for the Files page's pure logic. Run: node --test edge/static/tests/
import test from 'node:test';
import assert from 'node:assert/strict';

import {
  describeJob,
  extensionOf,
  fileKind,
  isFinished,
  jobFields,
  jobHeaders,
  pickFiles,
  pollDelayMs,
  resultLinks,
  submitError,
  zipLinks,
} from '../jobs.js';

test('file kinds come from the extension, in any case', () => {
  assert.equal(extensionOf('Film.SRT'), 'srt');
  assert.equal(extensionOf('archive.tar.gz'), 'gz');
  assert.equal(extensionOf('README'), '');
  assert.equal(extensionOf('dir.d/file'), '');
  assert.equal(fileKind('a.vtt'), 'subtitles');
  assert.equal(fileKind('voice note.OPUS'), 'audio');
  assert.equal(fileKind('notes.txt'), null);
});

test('a selection keeps subtitles and audio, skips hidden files and names the rest', () => {
  const files = ['ep01.srt', '._ep01.srt', 'talk.m4a', 'notes.txt', '.DS_Store', 'cover.jpg'].map((name) => ({ name }));
  const { taken, skipped } = pickFiles(files);
  assert.deepEqual(taken.map((f) => f.name), ['ep01.srt', 'talk.m4a']);
  assert.deepEqual(skipped, ['notes.txt', 'cover.jpg']);
});

test('the form fields of a submission', () => {
  assert.deepEqual(jobFields('film.srt', { targets: ['vi', 'fr'], source: 'auto', format: '' }), [
    ['kind', 'subtitles'],
    ['to', 'vi,fr'],
  ]);
  assert.deepEqual(jobFields('talk.wav', { targets: [], source: 'en', format: 'vtt' }), [
    ['kind', 'audio'],
    ['from', 'en'],
    ['format', 'vtt'],
  ]);
  assert.deepEqual(jobFields('x.srt', { format: 'docx' }), [['kind', 'subtitles']]);
  assert.deepEqual(jobHeaders(''), { accept: 'application/json' });
  assert.deepEqual(jobHeaders('k1'), { accept: 'application/json', authorization: 'Bearer k1' });
});

test('a job is described for people', () => {
  assert.equal(describeJob(null), 'Uploading…');
  assert.equal(describeJob({ state: 'queued' }), 'Queued, waiting for a worker');
  assert.equal(describeJob({ state: 'running', progress: 0.426, message: 'translating' }), 'translating (43 %)');
  assert.equal(describeJob({ state: 'running', progress: 7 }), 'Working (100 %)');
  assert.equal(describeJob({ state: 'succeeded', deduplicated: true }), 'Done (this file was translated before)');
  assert.equal(
    describeJob({ state: 'failed', error: { code: 'invalid_subtitles', message: 'line 1: not a subtitle file' } }),
    'Failed: [invalid_subtitles] line 1: not a subtitle file',
  );
  assert.equal(isFinished({ state: 'running' }), false);
  assert.equal(isFinished({ state: 'failed' }), true);
  assert.equal(isFinished(null), false);
});

test('result links are relative to the page, transcript first, with the key in the query', () => {
  const view = {
    id: '01J',
    state: 'succeeded',
    results: [
      { lang: 'vi', transcript: false, file_name: 'talk.vi.srt', cues: 3, overlong_cues: 1, url: '/v1/jobs/01J/result?lang=vi' },
      { lang: 'en', transcript: true, file_name: 'talk.en.srt', cues: 3, overlong_cues: 0, url: '/v1/jobs/01J/result?lang=en' },
    ],
  };
  const links = resultLinks(view, 'http://host:8080/files.html');
  assert.deepEqual(
    links.map((l) => [l.href, l.fileName]),
    [
      ['http://host:8080/v1/jobs/01J/result?lang=en', 'talk.en.srt'],
      ['http://host:8080/v1/jobs/01J/result?lang=vi', 'talk.vi.srt'],
    ],
  );
  assert.equal(links[1].label, 'talk.vi.srt (translation, vi, 3 cues, 1 long cues kept whole)');
  // Opened as /static/files.html, behind a key.
  const [first] = resultLinks(view, 'https://example.org/vox/static/files.html', 'k&1');
  assert.equal(first.href, 'https://example.org/vox/v1/jobs/01J/result?lang=en&api_key=k%261');
  assert.deepEqual(resultLinks({ ...view, state: 'running' }, 'http://h/'), []);
});

test('a refused submission says why', () => {
  assert.equal(submitError(413, { error: { code: 'file_too_large', message: 'the file is 3 bytes' } }), '[file_too_large] the file is 3 bytes');
  assert.equal(submitError(401, { error: 'unauthorized' }), 'unauthorized');
  assert.equal(
    submitError(401, { error: { code: 'unauthorized', message: 'unknown API key' } }),
    "[unauthorized] unknown API key — enter this server's API key in the form",
  );
  assert.equal(submitError(502, null), 'HTTP 502');
});

test('all the jobs of a big folder poll at most ten times a second together', () => {
  assert.equal(pollDelayMs(1), 1000);
  assert.equal(pollDelayMs(10), 1000);
  assert.equal(pollDelayMs(25), 2500);
  assert.equal(pollDelayMs(200), 20000);
  assert.equal(pollDelayMs(0), 1000);
});

test('download-all links take the succeeded jobs, a few hundred per archive', () => {
  assert.deepEqual(zipLinks(['A'], 'http://h/files'), []);
  const [one] = zipLinks(['A', 'B'], 'http://h/files', 'k');
  assert.equal(one.href, 'http://h/v1/jobs/results.zip?ids=A%2CB&api_key=k');
  assert.equal(one.fileName, 'voxbridge-results.zip');
  assert.equal(one.label, "Download all (.zip: 2 files' results)");
  const ids = Array.from({ length: 450 }, (_, i) => `J${i}`);
  const parts = zipLinks(ids, 'http://h/static/files.html');
  assert.equal(parts.length, 3);
  assert.equal(new URL(parts[2].href).searchParams.get('ids').split(',').length, 50);
  assert.equal(parts[0].label, "Download all (.zip, part 1 of 3: 200 files' results)");
  assert.ok(parts[0].href.startsWith('http://h/v1/jobs/results.zip?'));
});
