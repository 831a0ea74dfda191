// Language pickers shared by the live page (app.js) and the Files page (files-app.js): the
// server's language list, and the filterable checkbox list of target languages.
import { apiUrl, parseLanguages } from './protocol.js';

/** The server's languages (`GET v1/languages`, relative to the page), or null on any failure. */
export async function fetchLanguages(pageHref, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(apiUrl('v1/languages', pageHref), {
      signal: ctl.signal,
      headers: { accept: 'application/json' },
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return parseLanguages(await res.json());
  } catch (e) {
    console.warn('voxbridge: using the built-in language list:', e);
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** Fills `list` with one `name="target"` checkbox per language of `shown`, `selected` checked. */
export function renderTargetList(list, shown, selected) {
  list.textContent = '';
  for (const l of shown) {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'target';
    box.value = l.code;
    box.checked = selected.includes(l.code);
    label.dataset.search = `${l.name} ${l.code} ${l.flores}`.toLowerCase();
    label.append(box, document.createTextNode(` ${l.name}`));
    label.title = l.code;
    list.append(label);
  }
}

/** Hides the languages of `list` that do not match `query` (checked ones stay). */
export function filterTargetList(list, query) {
  const q = query.trim().toLowerCase();
  for (const label of list.children) {
    const box = label.querySelector('input');
    label.hidden = !!q && !label.dataset.search.includes(q) && !box.checked;
  }
}
