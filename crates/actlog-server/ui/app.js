// actlog investigator console. Plain JavaScript, no build step, no
// dependency. Every producer string reaches the page as text (never as
// markup), and the server's Content-Security-Policy allows this file and
// same-origin data calls only.
'use strict';

const TOKEN_KEY = 'actlog.token';
// Each view renders into its own element; one still loading when the user
// moves on writes into a detached element, never into the next view.
const mainBox = document.getElementById('main');
const statusBox = document.getElementById('status');

// ------------------------------------------------------------ rendering

// Invisible and bidirectional formatting characters, and controls, are
// shown as [U+XXXX], as the evidence report shows them.
const HIDDEN = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]/g;

function shown(value) {
  const frag = document.createDocumentFragment();
  const s = value === null || value === undefined ? '' : String(value);
  let last = 0;
  for (const m of s.matchAll(HIDDEN)) {
    if (m.index > last) frag.append(s.slice(last, m.index));
    const mark = document.createElement('span');
    mark.className = 'inv';
    mark.textContent = '[U+' + m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + ']';
    mark.title = 'an invisible or bidirectional character';
    frag.append(mark);
    last = m.index + m[0].length;
  }
  if (last < s.length) frag.append(s.slice(last));
  return frag;
}

// el('a', {href: '#/x', class: 'c'}, 'text', child): text children are
// always text nodes.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : shown(k));
  }
  return e;
}

function link(href, text) { return el('a', { href }, text); }
function enc(s) { return encodeURIComponent(s); }
function say(text) { statusBox.textContent = text || ''; }
function fail(main, err) {
  say('');
  main.append(el('div', { class: 'error', role: 'alert' }, String(err && err.message || err)));
}

// A table of rows (arrays); `cell(value, i, row)` may return a node.
function table(columns, rows, cell) {
  const head = el('tr', {}, columns.map((c) => el('th', { scope: 'col' }, c)));
  const body = rows.map((r) => el('tr', {}, r.map((v, i) => {
    const c = cell ? cell(v, i, r) : null;
    return el('td', { class: typeof v === 'number' ? 'num' : null }, c !== null && c !== undefined ? c : v);
  })));
  return el('table', {}, el('thead', {}, head), el('tbody', {}, body));
}

// ------------------------------------------------------------ data calls

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + token() }, opts.headers || {});
  const resp = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body, cache: 'no-store' });
  if (!resp.ok) {
    let msg = resp.status + ' ' + resp.statusText;
    try { const e = await resp.json(); msg = e.error.code + ': ' + e.error.message; } catch (_) { /* not JSON */ }
    if (resp.status === 401) { sessionStorage.removeItem(TOKEN_KEY); }
    throw new Error(msg);
  }
  return opts.raw ? resp : (opts.text ? resp.text() : resp.json());
}

function sql(query, accept) {
  return api('/v1/sql', {
    method: 'POST', body: JSON.stringify({ sql: query }), raw: !!accept,
    headers: Object.assign({ 'Content-Type': 'application/json' }, accept ? { Accept: accept } : {}),
  });
}

function download(name, blob) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function csvOf(columns, rows) {
  const q = (v) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  return [columns, ...rows].map((r) => r.map(q).join(',')).join('\r\n') + '\r\n';
}

// ------------------------------------------------------------ hashing and proofs

const b64 = {
  dec(s) { const bin = atob(s); const out = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i); return out; },
};
function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(''); }
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
function same(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)); }
const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

// RFC 9162 section 2.1.3.2: the root an audit path leads to.
async function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) throw new Error('the leaf is past the tree size');
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Error('the audit path is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('the audit path is too short');
  return r;
}

// A signed checkpoint note: its size and root, and its signature checked
// with the log's verifier key (WebCrypto Ed25519).
async function verifyNote(note, verifierKey) {
  const lines = note.split('\n');
  const body = lines.slice(0, 3).join('\n') + '\n';
  // <name>+<hex key id>+<base64 key>: the base64 may hold '+' itself.
  const [name, keyHex, ...rest] = verifierKey.split('+');
  const keyBytes = b64.dec(rest.join('+')).slice(1);
  const prefix = '\u2014 ' + name + ' ';
  const sigLine = lines.find((l) => l.startsWith(prefix) && same(b64.dec(l.slice(prefix.length)).slice(0, 4), hexBytes(keyHex)));
  let signature = 'invalid: no signature by the log key';
  if (sigLine) {
    let key = null;
    try {
      key = await crypto.subtle.importKey('raw', keyBytes, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      signature = 'not checked: this browser cannot import the Ed25519 key (' + e.message + ')';
    }
    if (key) {
      const sig = b64.dec(sigLine.slice(prefix.length)).slice(4);
      signature = (await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, new TextEncoder().encode(body))) ? 'valid' : 'invalid';
    }
  }
  return { origin: lines[0], size: Number(lines[1]), root: b64.dec(lines[2]), signature };
}

// C2SP tlog-policy text: the witnesses (name -> cosigner vkey), the groups
// and the quorum.
function parsePolicy(text) {
  const witnesses = new Map();
  const groups = new Map();
  let quorum = 'none';
  for (const line of text.split('\n')) {
    const w = line.trim().split(/[ \t]+/).filter(Boolean);
    if (!w.length || w[0].startsWith('#')) continue;
    if (w[0] === 'witness') witnesses.set(w[1], w[2]);
    else if (w[0] === 'group') {
      const members = w.slice(3);
      groups.set(w[1], { k: w[2] === 'all' ? members.length : w[2] === 'any' ? 1 : Number(w[2]), members });
    } else if (w[0] === 'quorum') quorum = w[1];
  }
  return { witnesses, groups, quorum };
}

function quorumMet(policy, name, cosigned) {
  if (name === 'none') return true;
  const g = policy.groups.get(name);
  if (g) return g.members.filter((m) => quorumMet(policy, m, cosigned)).length >= g.k;
  return cosigned.has(name);
}

// The witnesses of the policy whose cosignature/v1 line on the note verifies
// (C2SP tlog-cosignature: key hash, 8-byte time, Ed25519 over
// "cosignature/v1\ntime <t>\n" and the checkpoint).
async function cosigners(note, policy) {
  const lines = note.split('\n');
  const body = lines.slice(0, 3).join('\n') + '\n';
  const out = new Set();
  for (const [name, vkey] of policy.witnesses) {
    const [keyName, keyHex, ...rest] = vkey.split('+');
    const raw = b64.dec(rest.join('+'));
    if (raw[0] !== 4 || raw.length !== 33) continue;
    let key;
    try { key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']); } catch (_) { continue; }
    const prefix = '\u2014 ' + keyName + ' ';
    for (const l of lines.filter((x) => x.startsWith(prefix))) {
      let blob;
      try { blob = b64.dec(l.slice(prefix.length)); } catch (_) { continue; }
      if (blob.length !== 76 || !same(blob.slice(0, 4), hexBytes(keyHex))) continue;
      const time = new DataView(blob.buffer, blob.byteOffset + 4, 8).getBigUint64(0).toString();
      const msg = new TextEncoder().encode('cosignature/v1\ntime ' + time + '\n' + body);
      if (await crypto.subtle.verify({ name: 'Ed25519' }, key, blob.slice(12), msg)) out.add(name);
    }
  }
  return out;
}

// The latest checkpoint, checked, and with a witness policy the latest
// witnessed one, its cosignatures checked against the policy's quorum.
// Kept 5 s (a bad one is fetched again).
let checkpointCache = null;
async function checkpoint() {
  if (checkpointCache && Date.now() - checkpointCache.at < 5000) return checkpointCache;
  const [log, note] = await Promise.all([api('/v1/log'), api('/v1/checkpoint', { text: true })]);
  const cp = Object.assign(await verifyNote(note, log.verifier_key), { at: Date.now(), note, log });
  if (log.witness_policy && log.witnessed_checkpoint) {
    const policy = parsePolicy(log.witness_policy);
    const w = await verifyNote(log.witnessed_checkpoint, log.verifier_key);
    const by = await cosigners(log.witnessed_checkpoint, policy);
    cp.witnessed = Object.assign(w, { cosigners: [...by].sort(), quorum: quorumMet(policy, policy.quorum, by), policyQuorum: policy.quorum });
  }
  const bad = cp.signature.startsWith('invalid') || (cp.witnessed && (cp.witnessed.signature.startsWith('invalid') || !cp.witnessed.quorum));
  checkpointCache = bad ? null : cp;
  return cp;
}

// RFC 9162 section 2.1.4.2: a consistency proof between two roots.
async function consistent(first, second, firstRoot, secondRoot, proof) {
  if (first > second) return false;
  if (first === second) return proof.length === 0 && same(firstRoot, secondRoot);
  if (first === 0) return proof.length === 0;
  let path = proof.slice();
  let m = first;
  while (m % 2 === 0) m /= 2;
  if (m === 1) path = [firstRoot, ...path]; // first is a power of two
  if (path.length === 0) return false;
  let fn = first - 1, sn = second - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && same(fr, firstRoot) && same(sr, secondRoot);
}

function hexBytes(h) { return Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16)); }

// Checks one event against the latest checkpoint, in the browser: its leaf
// bytes hash to the leaf hash, hold its seq and its payload's SHA-256, and
// the audit path from the server leads to the signed root.
async function checkEvent(seq) {
  const cp = await checkpoint();
  const ev = await api('/v1/events/' + seq);
  const leaf = b64.dec(ev.leaf);
  const problems = [];
  const lh = await leafHash(leaf);
  if (!same(lh, b64.dec(ev.leaf_hash))) problems.push('the leaf bytes do not hash to its leaf hash');
  const view = new DataView(leaf.buffer);
  const leafSeq = view.getUint32(2) * 2 ** 32 + view.getUint32(6);
  if (leafSeq !== seq) problems.push('the leaf holds seq ' + leafSeq);
  const payload = ev.envelope && typeof ev.envelope.payload === 'string' ? b64.dec(ev.envelope.payload) : null;
  if (!payload || !same(await sha256(payload), leaf.slice(50, 82))) problems.push('the payload is not the one the leaf commits to');
  const signer = await producerSignature(ev.envelope, leaf, payload, cp.log);
  if (signer.bad) problems.push(signer.text);
  const kind = signer.text;
  // The anchor: the witnessed checkpoint when it covers the seq, else the
  // latest one the log signed.
  const w = cp.witnessed;
  const anchor = w && seq < w.size ? w : cp;
  let proof = 'not yet in a checkpoint (tree size ' + cp.size + ')';
  let valid = problems.length === 0;
  if (cp.signature.startsWith('invalid')) problems.push('the latest checkpoint\'s signature is invalid');
  if (seq < anchor.size) {
    if (anchor === w && w.signature.startsWith('invalid')) problems.push('the witnessed checkpoint\'s signature is invalid');
    if (anchor === w && !w.quorum) {
      problems.push('the witnessed checkpoint\'s valid cosignatures (' + (w.cosigners.join(', ') || 'none') + ') do not meet the quorum ' + w.policyQuorum);
    }
    const p = await api('/v1/proofs/inclusion?seq=' + seq + '&tree_size=' + anchor.size);
    try {
      const root = await rootFromInclusion(seq, anchor.size, lh, p.hashes.map(b64.dec));
      if (!same(root, anchor.root)) problems.push('the audit path does not lead to the checkpoint root');
    } catch (e) { problems.push(e.message); }
    valid = problems.length === 0;
    const how = anchor === w ? ', cosigned by ' + w.cosigners.join(', ') + ' (quorum ' + w.policyQuorum + ' met)'
      : w ? ' (signed by the log; witnessed only up to ' + w.size + ')' : '';
    proof = valid ? 'inclusion proof valid at tree size ' + anchor.size + how : 'INVALID: ' + problems.join('; ');
  } else if (problems.length) {
    proof = 'INVALID: ' + problems.join('; ');
  }
  return { ev, valid, proof, kind, checkpoint: cp };
}

// The producer's DSSE signature, checked here: kind 1 with the registered
// key the leaf names (its SHA-256 is the leaf's producer_key_id), kind 3
// with the ledger's key. Kind 2 (OPA, Cerbos, AuthZEN, OTLP) has none.
// WebCrypto applies RFC 8032; the ledger's rule (docs/formats.md) also
// accepts a torsion R no honest signer makes, which would fail here.
const producerKeys = new Map();
async function producerSignature(env, leaf, payload, log) {
  const kind = leaf[1];
  if (kind === 2) return { text: 'token-authenticated: the source has no producer signature' };
  if (!payload || !env || !Array.isArray(env.signatures)) return { bad: true, text: 'the envelope has no signatures' };
  let pub, who;
  if (kind === 3) {
    const [name, , ...rest] = log.verifier_key.split('+');
    pub = b64.dec(rest.join('+')).slice(1);
    who = 'the ledger key ' + name;
  } else if (kind === 1) {
    const keyId = hex(leaf.slice(82, 114));
    if (!producerKeys.has(keyId)) {
      const r = await sql("SELECT public_key, name, pdp_id FROM producer_keys WHERE key_id = '" + keyId + "'");
      producerKeys.set(keyId, r.rows[0] || null);
    }
    const row = producerKeys.get(keyId);
    if (!row) return { bad: true, text: 'the leaf names a producer key the ledger does not list' };
    pub = b64.dec(row[0]);
    if (hex(await sha256(pub)) !== keyId) return { bad: true, text: 'the listed producer key is not the one the leaf names' };
    who = 'key ' + row[1] + ' of PDP ' + row[2];
  } else {
    return { bad: true, text: 'unknown leaf kind ' + kind };
  }
  const te = new TextEncoder();
  const type = te.encode(env.payloadType || '');
  const pae = concat(te.encode('DSSEv1 ' + type.length + ' '), type, te.encode(' ' + payload.length + ' '), payload);
  let key;
  try {
    key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    return { text: 'producer signature not checked: this browser cannot import the key (' + e.message + ')' };
  }
  for (const sig of env.signatures) {
    try {
      if (await crypto.subtle.verify({ name: 'Ed25519' }, key, b64.dec(sig.sig), pae)) {
        return { text: 'signed by ' + who + ' (verified in the browser)' };
      }
    } catch (_) { /* a malformed signature: try the next */ }
  }
  return { bad: true, text: 'no signature in the envelope verifies with ' + who };
}

// ------------------------------------------------------------ views

function windowDefault() {
  const to = new Date(Date.now() + 1000);
  const from = new Date(to.getTime() - 30 * 86400e3);
  return { from: from.toISOString().replace(/\.\d+Z$/, 'Z'), to: to.toISOString().replace(/\.\d+Z$/, 'Z') };
}

// A window ending just after the event at `seq`.
async function windowAround(seq, days = 30) {
  const ev = await api('/v1/events/' + seq);
  const t = new Date(ev.payload.event_time);
  const to = new Date(t.getTime() + 1000);
  return { from: new Date(t.getTime() - days * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z'), to: to.toISOString().replace(/\.\d+Z$/, 'Z') };
}

function params(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  return p.toString();
}

function viewLogin(main) {
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', 'aria-label': 'API token', size: 48 });
  const form = el('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try { await api('/v1/search?q=0'); route(); } catch (err) { sessionStorage.removeItem(TOKEN_KEY); fail(main, err); }
  } }, el('label', {}, 'A query or auditor token', input), el('button', { type: 'submit', id: 'login' }, 'Sign in'));
  main.replaceChildren(el('h2', {}, 'Sign in'), form,
    el('p', { class: 'muted' }, 'The token stays in this tab (sessionStorage) and is sent only to this server.'));
  input.focus();
}

const KIND_NAMES = { seq: 'seq', event_id: 'event id', opa_decision_id: 'OPA decision id', task_id: 'task', session_id: 'session', trace_id: 'trace', principal: 'principal', agent: 'agent', tool: 'tool' };

async function targetOf(c) {
  switch (c.kind) {
    case 'seq': case 'event_id': case 'opa_decision_id': return '#/chain/' + enc(c.event_id);
    case 'principal': return '#/principal/' + enc(c.value) + '?' + params(await windowAround(c.seq));
    case 'agent': return '#/agent/' + enc(c.value) + '?' + params(await windowAround(c.seq));
    default: {
      const filter = { task_id: 'task_id', session_id: 'session_id', trace_id: 'trace_id', tool: 'tool_name' }[c.kind];
      return '#/events?' + params(Object.assign(await windowAround(c.seq), { [filter]: c.value }));
    }
  }
}

async function viewSearch(main, q) {
  const input = el('input', { id: 'q', type: 'search', value: q || '', 'aria-label': 'Search',
    placeholder: 'seq, event id, task, session, trace, principal, agent, tool or OPA decision id' });
  const form = el('form', { class: 'row', role: 'search', onsubmit: (e) => { e.preventDefault(); location.hash = '#/?q=' + enc(input.value.trim()); } },
    input, el('button', { type: 'submit' }, 'Search'));
  main.replaceChildren(el('h2', {}, 'Search'), form);
  input.focus();
  if (!q) return;
  say('Searching…');
  const r = await api('/v1/search?q=' + enc(q));
  say('');
  if (r.results.length === 1) { const to = await targetOf(r.results[0]); if (main.isConnected) location.replace(to); return; }
  if (r.results.length === 0) { main.append(el('p', { id: 'results' }, 'Nothing matches ', el('code', {}, q), '.')); return; }
  const items = await Promise.all(r.results.map(async (c) => el('li', {},
    el('a', { href: await targetOf(c), class: 'candidate', 'data-kind': c.kind }, KIND_NAMES[c.kind] + ': ', c.value),
    el('span', { class: 'muted' }, ' · ' + c.events + ' events, latest seq ' + c.seq))));
  main.append(el('p', {}, 'The text names several things:'), el('ul', { id: 'results' }, items));
}

const FILTERS = ['effect', 'pdp_id', 'actor_id', 'principal_id', 'tool_name', 'policy_version', 'outcome_status', 'event_type', 'task_id', 'session_id', 'trace_id'];

async function viewEvents(main, p) {
  const w = p.get('from') && p.get('to') ? { from: p.get('from'), to: p.get('to') } : windowDefault();
  const filters = {};
  for (const f of FILTERS) if (p.get(f)) filters[f] = p.get(f);
  const before = p.get('before_seq');
  const from = el('input', { name: 'from', value: w.from, size: 22 });
  const to = el('input', { name: 'to', value: w.to, size: 22 });
  const go = (extra) => { location.hash = '#/events?' + params(Object.assign({ from: from.value.trim(), to: to.value.trim() }, filters, extra || {})); };
  main.replaceChildren(el('h2', {}, 'Events'),
    el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); go(); } },
      el('label', {}, 'From (UTC)', from), el('label', {}, 'To (UTC)', to), el('button', { type: 'submit' }, 'Show')));
  const chips = Object.entries(filters).map(([k, v]) => el('button', { type: 'button', class: 'chip', title: 'remove this filter',
    onclick: () => { delete filters[k]; go(); } }, k + ' = ', v, ' ✕'));
  if (chips.length) main.append(el('div', { class: 'chips' }, chips));
  say('Loading…');
  const r = await api('/v1/events?' + params(Object.assign({}, w, filters, { before_seq: before, limit: 100 })));
  say('');
  const days = r.decisions_per_day;
  const peak = Math.max(1, ...days.map((d) => d[1]));
  main.append(el('p', {}, r.total + ' events in the window. Denies per day:'),
    el('div', { class: 'spark', 'aria-label': 'denies per day', role: 'img' },
      days.map((d) => el('span', { title: d[0].slice(0, 10) + ': ' + d[1] + ' denies of ' + d[2], style: null, 'data-h': Math.round(40 * d[1] / peak) }))));
  for (const bar of main.querySelectorAll('.spark span')) bar.style.height = bar.dataset.h + 'px';
  const facets = Object.entries(r.facets).map(([col, values]) => el('div', {}, el('h3', {}, col),
    el('div', { class: 'chips' }, values.map(([v, n]) => el('button', { type: 'button', class: 'chip', onclick: () => go({ [col]: v }) }, v, ' (' + n + ')')))));
  main.append(el('div', { class: 'facets' }, facets));
  const csv = el('button', { type: 'button', class: 'secondary', id: 'events-csv',
    onclick: () => download('events.csv', new Blob([csvOf(r.columns, r.rows)], { type: 'text/csv' })) }, 'Download CSV');
  main.append(el('div', { class: 'row' }, csv,
    r.rows.length === 100 ? el('a', { href: '#/events?' + params(Object.assign({}, w, filters, { before_seq: r.rows[r.rows.length - 1][0] })) }, 'Older events →') : null));
  const evIdx = r.columns.indexOf('event_id');
  main.append(table(r.columns, r.rows, (v, i, row) => {
    const name = r.columns[i];
    if (name === 'seq') return link('#/chain/' + enc(row[evIdx]), String(v));
    if (name === 'effect' && v) return el('span', { class: 'effect-' + v }, v);
    if (name === 'principal_id' && v) return link('#/principal/' + enc(v) + '?' + params(w), v);
    if (name === 'actor_id' && v) return link('#/agent/' + enc(v) + '?' + params(w), v);
    return null;
  }));
}

async function viewChain(main, eventId) {
  main.replaceChildren(el('h2', {}, 'Chain of ', el('code', {}, eventId)));
  say('Loading the chain…');
  const c = await api('/v1/chains/' + enc(eventId));
  const nodes = [];
  const add = (kind, seq, ...text) => nodes.push({ kind, seq, text });
  if (c.principal) add('principal', c.principal.seq, c.principal.type + ' ', c.principal.id);
  for (const a of c.actors) add('agent', a.seq, 'depth ' + a.depth + ' · ', a.sub, ' (' + (a.sub_profile || '?') + ')');
  if (c.purpose) add('purpose', c.purpose.seq, c.purpose.scope || '', c.purpose.description ? ' — ' + c.purpose.description : '');
  const d = c.decision;
  if (d) add('tool', d.seq, (d.tool_name || d.resource_type || '') + ' ', d.resource_id || '', d.action ? ' · ' + d.action : '');
  if (c.policy) add('policy', c.policy.seq, c.policy.version || '', c.policy.decision_path ? ' · ' + c.policy.decision_path : '');
  if (d) add('decision', d.seq, d.effect || '', ' by ', d.pdp_id || '', d.risk_score !== null && d.risk_score !== undefined ? ' · risk ' + d.risk_score : '');
  for (const o of c.outcomes) add('outcome', o.seq, o.status || '', ' · ', o.event_id);
  if (!d && !c.outcomes.length) add('event', c.seq, eventId);
  const box = el('div', { class: 'chain', id: 'chain' });
  const cards = nodes.map((n, i) => {
    const mark = el('span', { class: 'proof', 'data-seq': n.seq }, 'checking…');
    const raw = el('pre', { hidden: true });
    const card = el('div', { class: 'node', 'data-kind': n.kind, 'data-seq': n.seq },
      el('span', { class: 'kind' }, n.kind), ...n.text.map((t) => el('span', {}, t)),
      el('span', { class: 'muted' }, ' · seq ' + n.seq), mark, el('div', { class: 'sig muted' }),
      el('button', { type: 'button', class: 'secondary', onclick: () => { raw.hidden = !raw.hidden; } }, 'Envelope and payload'), raw);
    box.append(card);
    if (i < nodes.length - 1) box.append(el('div', { class: 'arrow', 'aria-hidden': 'true' }, '↓'));
    return { n, card, mark, raw };
  });
  main.append(c.task_id ? el('p', {}, 'Task ', el('code', {}, c.task_id), ' · session ', el('code', {}, c.session_id || '-')) : null, box);
  say('Checking proofs in the browser…');
  const started = performance.now();
  const seqs = [...new Set(nodes.map((n) => n.seq))];
  const results = new Map(await Promise.all(seqs.map(async (s) => {
    try { return [s, await checkEvent(s)]; } catch (e) { return [s, { valid: false, proof: 'INVALID: ' + e.message, kind: '' }]; }
  })));
  const ms = Math.round(performance.now() - started);
  for (const { n, card, mark, raw } of cards) {
    const r = results.get(n.seq);
    card.classList.add(r.valid ? 'valid' : 'invalid');
    mark.className = 'proof ' + (r.valid ? 'valid' : 'invalid');
    mark.textContent = (r.valid ? '✓ ' : '✗ ') + r.proof;
    card.querySelector('.sig').textContent = r.kind;
    if (r.ev) raw.textContent = JSON.stringify({ envelope: r.ev.envelope, payload: r.ev.payload }, null, 2);
  }
  const cp = [...results.values()].map((r) => r.checkpoint).find(Boolean);
  main.append(el('p', { class: 'muted', id: 'chain-done', 'data-ms': ms },
    'Proofs checked in ' + ms + ' ms against checkpoint ' + (cp ? cp.size : '?') + ' (signature ' + (cp ? cp.signature : '?') + ')' +
      (cp && cp.witnessed ? ' and witnessed checkpoint ' + cp.witnessed.size + ' (cosigned by ' + (cp.witnessed.cosigners.join(', ') || 'nobody') + ').' : '.')));
  say('');
}

function windowForm(path, w) {
  const from = el('input', { name: 'from', value: w.from, size: 22 });
  const to = el('input', { name: 'to', value: w.to, size: 22 });
  return el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); location.hash = path + '?' + params({ from: from.value.trim(), to: to.value.trim() }); } },
    el('label', {}, 'From (UTC)', from), el('label', {}, 'To (UTC)', to), el('button', { type: 'submit' }, 'Show'));
}

function section(title, columns, rows, cell, attrs) {
  return el('section', attrs || {}, el('h3', {}, title), rows.length ? table(columns, rows, cell) : el('p', { class: 'muted' }, 'None in the window.'));
}

async function viewPrincipal(main, id, p) {
  const w = p.get('from') && p.get('to') ? { from: p.get('from'), to: p.get('to') } : windowDefault();
  main.replaceChildren(el('h2', {}, 'Principal ', el('code', {}, id)), windowForm('#/principal/' + enc(id), w));
  const r = await api('/v1/principals/' + enc(id) + '?' + params(w));
  const agentLink = (v, i) => (i === 0 && v ? link('#/agent/' + enc(v) + '?' + params(w), v) : null);
  const chainLink = (v, i, row) => (i === 0 ? link('#/chain/' + enc(row[row.length - 1]), String(v)) : null);
  const orphans = r.executed_without_decision;
  main.append(
    orphans.length ? el('p', { class: 'warn', role: 'alert' }, orphans.length + ' executions have no recorded decision.') : null,
    section('Executed without a decision', ['seq', 'time', 'agent', 'tool', 'decision_event_id', 'event_id'], orphans, chainLink, { id: 'orphans' }),
    section('Agents', ['agent', 'events', 'denies', 'last seen'], r.agents, agentLink),
    section('Tools', ['tool', 'effect', 'decisions'], r.tools),
    section('Outcomes', ['status', 'events'], r.outcomes),
    section('Denies', ['seq', 'time', 'agent', 'tool', 'event_id'], r.denies, chainLink));
}

async function viewAgent(main, id, p) {
  const w = p.get('from') && p.get('to') ? { from: p.get('from'), to: p.get('to') } : windowDefault();
  main.replaceChildren(el('h2', {}, 'Agent ', el('code', {}, id)), windowForm('#/agent/' + enc(id), w));
  const r = await api('/v1/agents/' + enc(id) + '?' + params(w));
  const principalLink = (v, i) => (i === 0 && v ? link('#/principal/' + enc(v) + '?' + params(w), v) : null);
  main.append(
    section('On whose authority', ['principal', 'events', 'last seen'], r.principals, principalLink),
    section('Delegations and lifecycle', ['seq', 'time', 'event', 'principal', 'subject agent', 'grant'], r.delegations),
    section('Tools', ['tool', 'effect', 'decisions'], r.tools),
    section('Deny bursts (3 or more denies in one task)', ['task', 'denies', 'first', 'last'], r.deny_bursts),
    section('Tools first used in the window', ['tool', 'first seen', 'seq'], r.first_seen_tools));
}

const SAMPLES = [
  ['Deny bursts', "SELECT actor_id, task_id, count(*) AS denies, min(event_time) AS first, max(event_time) AS last\nFROM events WHERE event_type = 'authz.decision' AND effect = 'deny' AND task_id IS NOT NULL\nGROUP BY actor_id, task_id HAVING count(*) >= 3 ORDER BY denies DESC LIMIT 50"],
  ['Executed after a deny', "SELECT o.seq, o.actor_id, o.tool_name, d.effect, d.seq AS decision_seq\nFROM events o JOIN events d ON d.event_id = o.decision_event_id\nWHERE o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' AND d.effect <> 'allow' LIMIT 100"],
  ['Executed without a decision', "SELECT o.seq, o.principal_id, o.actor_id, o.tool_name, o.decision_event_id\nFROM events o LEFT JOIN events d ON d.event_id = o.decision_event_id AND d.event_type = 'authz.decision'\nWHERE o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' AND d.seq IS NULL LIMIT 100"],
  ['Actions after revocation', "SELECT d.seq, d.actor_id, d.tool_name, d.event_time, r.seq AS revoked_at\nFROM lifecycle r JOIN events d ON d.actor_id = r.subject_agent_id\nWHERE r.event_type IN ('delegation.revoked', 'agent.deregistered') AND d.event_type = 'authz.decision'\n  AND d.effect = 'allow' AND d.event_time > r.event_time LIMIT 100"],
  ['Off-purpose tools', "SELECT purpose_scope, tool_name, count(*) AS allowed\nFROM events WHERE event_type = 'authz.decision' AND effect = 'allow' AND purpose_scope IS NOT NULL\nGROUP BY purpose_scope, tool_name ORDER BY allowed ASC LIMIT 50"],
  ['Chains deeper than 3', "SELECT seq, principal_id, actor_chain, tool_name, effect FROM decision_chains\nWHERE array_length(actor_chain) > 3 ORDER BY seq DESC LIMIT 100"],
  ['Decisions by effect and PDP', "SELECT pdp_id, effect, count(*) AS n FROM events WHERE event_type = 'authz.decision'\nGROUP BY pdp_id, effect ORDER BY pdp_id, n DESC"],
  ['Risky allows', "SELECT seq, actor_id, tool_name, risk_score FROM events\nWHERE event_type = 'authz.decision' AND effect = 'allow' AND risk_score >= 0.8 ORDER BY risk_score DESC LIMIT 100"],
  ['Policy versions in use', "SELECT policy_version, count(*) AS decisions, min(event_time) AS first, max(event_time) AS last\nFROM events WHERE event_type = 'authz.decision' GROUP BY policy_version ORDER BY last DESC"],
  ['New agent and tool pairs', "SELECT actor_id, tool_name, min(event_time) AS first_seen FROM events\nWHERE event_type = 'authz.decision' AND effect = 'allow' GROUP BY actor_id, tool_name ORDER BY first_seen DESC LIMIT 50"],
  ['Unverified delegations allowed', "SELECT seq, principal_id, actor_id, verification_status, tool_name FROM events\nWHERE event_type = 'authz.decision' AND effect = 'allow' AND verification_status <> 'verified' LIMIT 100"],
  ['Lost producer events', 'SELECT pdp_id, stream, missing, last_received_at FROM producer_streams WHERE missing > 0 ORDER BY missing DESC'],
];

function viewSql(main) {
  const area = el('textarea', { id: 'sql', 'aria-label': 'SQL', spellcheck: 'false' });
  area.value = sessionStorage.getItem('actlog.sql') || SAMPLES[0][1];
  const out = el('div', { id: 'sql-result' });
  const run = async () => {
    sessionStorage.setItem('actlog.sql', area.value);
    out.replaceChildren();
    say('Running…');
    try {
      const r = await sql(area.value);
      say('');
      out.append(el('p', {}, r.row_count + ' rows at tree size ' + r.tree_size + '.'),
        r.truncated ? el('p', { class: 'warn', role: 'alert' }, 'The result was cut at the server\'s row limit (sql_rows_max): narrow the query or download it as CSV.') : null,
        table(r.columns.map((c) => c.name), r.rows));
    } catch (e) { say(''); out.append(el('div', { class: 'error', role: 'alert' }, e.message)); }
  };
  const fetchAs = async (accept, name) => {
    try { const resp = await sql(area.value, accept); download(name, await resp.blob()); } catch (e) { out.append(el('div', { class: 'error', role: 'alert' }, e.message)); }
  };
  main.replaceChildren(el('h2', {}, 'SQL'),
    el('div', { class: 'samples' }, SAMPLES.map(([name, q]) => el('button', { type: 'button', class: 'chip sample', onclick: () => { area.value = q; run(); } }, name))),
    area,
    el('div', { class: 'row' }, el('button', { type: 'button', id: 'run', onclick: run }, 'Run'),
      el('button', { type: 'button', class: 'secondary', id: 'csv', onclick: () => fetchAs('text/csv', 'result.csv') }, 'Download CSV'),
      el('button', { type: 'button', class: 'secondary', onclick: () => fetchAs('application/vnd.apache.arrow.stream', 'result.arrows') }, 'Download Arrow')),
    out);
}

async function viewLedger(main) {
  main.replaceChildren(el('h2', {}, 'Ledger'));
  const cp = await checkpoint();
  const log = cp.log;
  const [cps, rate, perPdp] = await Promise.all([
    sql('SELECT tree_size, root_hash, created_at, note FROM checkpoints ORDER BY tree_size DESC LIMIT 20'),
    sql("SELECT count(*) FROM events WHERE received_at >= now() - INTERVAL '60 seconds'"),
    sql('SELECT pdp_id, count(*) AS events, max(received_at) AS last_received FROM events GROUP BY pdp_id ORDER BY events DESC LIMIT 50'),
  ]);
  const created = cps.rows.length && cps.rows[0][2] ? new Date(cps.rows[0][2]) : null;
  main.append(table(['', ''], [
    ['origin', log.origin], ['tree size', log.tree_size], ['latest checkpoint', cp.size + ' (signature ' + cp.signature + ')'],
    ['checkpoint age', created ? Math.max(0, Math.round((Date.now() - created.getTime()) / 1000)) + ' s' : 'unknown'],
    ['ingest rate', (rate.rows[0][0] / 60).toFixed(1) + ' events/s over the last minute'],
    ['verifier key', log.verifier_key],
    ['witnessed', cp.witnessed ? cp.witnessed.size + ', cosigned by ' + (cp.witnessed.cosigners.join(', ') || 'nobody') + ' (quorum ' + cp.witnessed.policyQuorum + (cp.witnessed.quorum ? ' met' : ' NOT met') + ', checked in the browser)'
      : log.witness_policy ? 'no checkpoint meets the quorum yet' : 'no witness policy'],
  ]), el('h3', {}, 'Checkpoint'), el('pre', {}, cp.note));
  main.append(el('h3', {}, 'Events per PDP'), table(perPdp.columns.map((c) => c.name), perPdp.rows));
  const sizes = cps.rows.map((r) => r[0]);
  const pick = (id, i) => el('select', { id }, sizes.map((n, k) => el('option', { value: String(n), selected: k === i }, String(n))));
  const oldSel = pick('cons-old', Math.max(0, sizes.length - 1));
  const newSel = pick('cons-new', 0);
  const result = el('p', { id: 'cons-result', role: 'status' });
  const check = async () => {
    result.textContent = 'checking…';
    const [a, b] = [Number(oldSel.value), Number(newSel.value)].sort((x, y) => x - y);
    const note = (n) => cps.rows.find((r) => r[0] === n)[3];
    const [na, nb] = await Promise.all([verifyNote(note(a), log.verifier_key), verifyNote(note(b), log.verifier_key)]);
    const p = await api('/v1/proofs/consistency?old=' + a + '&new=' + b);
    const ok = await consistent(a, b, na.root, nb.root, p.hashes.map(b64.dec));
    const good = ok && na.signature === 'valid' && nb.signature === 'valid';
    result.className = good ? 'proof valid' : 'proof invalid';
    result.textContent = (good ? '✓ consistent: ' : '✗ INVALID: ') + 'checkpoint ' + a + ' (signature ' + na.signature + ') and ' + b +
      ' (signature ' + nb.signature + '), consistency proof ' + (ok ? 'valid' : 'invalid') + '.';
  };
  main.append(el('h3', {}, 'Recent checkpoints'),
    el('div', { class: 'row' }, el('label', {}, 'Older', oldSel), el('label', {}, 'Newer', newSel),
      el('button', { type: 'button', id: 'cons-check', onclick: () => check().catch((e) => { result.textContent = e.message; }) }, 'Check consistency in the browser')),
    result, table(['tree_size', 'root_hash', 'created_at'], cps.rows.map((r) => r.slice(0, 3))));
}

function viewEvidence(main, p) {
  const w = p.get('from') && p.get('to') ? { from: p.get('from'), to: p.get('to') } : windowDefault();
  const from = el('input', { name: 'from', value: w.from, size: 22 });
  const to = el('input', { name: 'to', value: w.to, size: 22 });
  const result = el('p', { id: 'evidence-result', role: 'status' });
  const make = async () => {
    result.className = '';
    result.textContent = 'Making the bundle: the export, the nine controls, the report, the signatures…';
    try {
      const resp = await api('/v1/evidence?' + params({ from: from.value.trim(), to: to.value.trim() }), { method: 'POST', raw: true });
      const blob = await resp.blob();
      const m = /filename="([^"]+)"/.exec(resp.headers.get('content-disposition') || '');
      const name = m ? m[1] : 'evidence.tar.gz';
      download(name, blob);
      result.textContent = 'Downloaded ' + name + ' (' + blob.size + ' bytes). Unpack it and check it anywhere: actlog verify --bundle evidence --key <the verifier key>; open evidence/report.html.';
    } catch (e) {
      result.className = 'error';
      result.textContent = e.message;
    }
  };
  main.replaceChildren(el('h2', {}, 'Evidence'),
    el('p', {}, 'A NIST CSF 2.0 evidence bundle for a window: its events, findings for each control, OCSF records and an HTML report, signed by the ledger key. It needs an auditor token, and a window of at most the server\'s sql_rows_max events; for larger windows run actlog evidence.'),
    el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); make(); } },
      el('label', {}, 'From (UTC)', from), el('label', {}, 'To (UTC)', to), el('button', { type: 'submit', id: 'evidence-make' }, 'Make and download')),
    result);
}

// ------------------------------------------------------------ routing

async function route() {
  const t = token();
  document.getElementById('logout').hidden = !t;
  const main = el('div', { class: 'view' });
  mainBox.replaceChildren(main);
  if (!t) { viewLogin(main); return; }
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const p = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  say('');
  try {
    if (parts.length === 0) await viewSearch(main, p.get('q'));
    else if (parts[0] === 'events') await viewEvents(main, p);
    else if (parts[0] === 'chain' && parts[1]) await viewChain(main, parts[1]);
    else if (parts[0] === 'principal' && parts[1]) await viewPrincipal(main, parts[1], p);
    else if (parts[0] === 'agent' && parts[1]) await viewAgent(main, parts[1], p);
    else if (parts[0] === 'sql') viewSql(main);
    else if (parts[0] === 'ledger') await viewLedger(main);
    else if (parts[0] === 'evidence') viewEvidence(main, p);
    else main.replaceChildren(el('p', {}, 'No such view.'));
  } catch (e) {
    if (!token()) { route(); return; }
    fail(main, e);
  }
}

document.getElementById('logout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); location.hash = '#/'; route(); });
window.addEventListener('hashchange', route);
route();
