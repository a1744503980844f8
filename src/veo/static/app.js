// Veo studio: a page over the JSON API. No build step, no external scripts.
'use strict';
const $ = (s) => document.querySelector(s);
let TOKEN = localStorage.getItem('veo-token') || '';
let ME = null;
let cursor = null;

function alertBox(msg) { const a = $('#alert'); a.textContent = msg; a.hidden = !msg; }

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, {Authorization: 'Bearer ' + TOKEN});
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(opts.json); }
  const resp = await fetch(path, Object.assign({}, opts, {headers}));
  if (!resp.ok) {
    let msg = resp.status + ' ' + resp.statusText;
    try { const e = (await resp.json()).error; msg = e.message || msg; } catch (_) { /* not JSON */ }
    if (resp.status === 401) signOut();
    throw new Error(msg);
  }
  const type = resp.headers.get('content-type') || '';
  return type.includes('application/json') ? resp.json() : resp;
}

function show(signedIn) {
  $('#signin').hidden = signedIn;
  for (const id of ['#create', '#history', '#keys', '#nav']) $(id).hidden = !signedIn;
  const admin = signedIn && ME && ME.is_admin;
  $('#admin').hidden = !admin; $('#nav-admin').hidden = !admin;
}

async function signIn(token) {
  TOKEN = token;
  try {
    ME = await api('/api/me');
    localStorage.setItem('veo-token', token);
    alertBox(''); show(true);
    loadHistory(true); loadKeys(); if (ME.is_admin) loadAdmin();
  } catch (e) { TOKEN = ''; show(false); alertBox('Sign-in failed: ' + e.message); }
}
function signOut() { TOKEN = ''; ME = null; localStorage.removeItem('veo-token'); show(false); }

async function uploadFrame(input) {
  if (!input.files.length) return null;
  const fd = new FormData(); fd.append('file', input.files[0]);
  return (await api('/api/uploads', {method: 'POST', body: fd})).id;
}

async function submitJob(ev) {
  ev.preventDefault(); alertBox('');
  const btn = $('#submit-job'); btn.disabled = true;
  try {
    const clip = {prompt: $('#prompt').value.trim()};
    const first = await uploadFrame($('#first_frame'));
    const last = await uploadFrame($('#last_frame'));
    if (first) clip.first_frame = first;
    if (last) clip.last_frame = last;
    const body = {clips: [clip], aspect_ratio: $('#aspect_ratio').value,
                  number_of_videos: Number($('#number_of_videos').value), backend: $('#backend').value};
    if ($('#model').value) body.model = $('#model').value;
    if ($('#duration_seconds').value) body.duration_seconds = Number($('#duration_seconds').value);
    const job = await api('/api/jobs', {method: 'POST', json: body, headers: {'Idempotency-Key': crypto.randomUUID ? crypto.randomUUID() : String(Date.now())}});
    renderJob($('#current'), job);
    follow(job.id, $('#current'));
  } catch (e) { alertBox(e.message); } finally { btn.disabled = false; }
}

// SSE through fetch, so the token travels in a header rather than the URL
async function follow(id, el) {
  try {
    const resp = await api(`/api/jobs/${id}/events`);
    const reader = resp.body.getReader(); const dec = new TextDecoder(); let buf = '';
    for (;;) {
      const {value, done} = await reader.read(); if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = chunk.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('');
        if (data && data !== '{}') renderJob(el, JSON.parse(data));
      }
    }
    loadHistory(true);
  } catch (e) { alertBox(e.message); }
}

function renderJob(el, job) {
  el.innerHTML = '';
  const box = document.createElement('article'); box.setAttribute('aria-label', 'Job ' + job.id); box.dataset.jobId = job.id;
  const head = document.createElement('p');
  head.innerHTML = `<span class="status ${job.status}" data-status="${job.status}"></span> · <span class="prog"></span> · <code></code>`;
  head.querySelector('.status').textContent = job.status + (job.paused_reason ? ` (${job.paused_reason.replace(/_/g, ' ')})` : '');
  head.querySelector('.prog').textContent = job.progress + '%' + (job.queue_position != null ? ` · position ${job.queue_position + 1}` : '');
  head.querySelector('code').textContent = job.id;
  box.appendChild(head);
  const bar = document.createElement('progress'); bar.max = 100; bar.value = job.progress; bar.setAttribute('aria-label', 'Progress'); box.appendChild(bar);
  const p = document.createElement('p'); p.textContent = job.clips.map((c) => c.prompt).join(' / '); box.appendChild(p);
  if (job.error) { const err = document.createElement('p'); err.className = 'status failed'; err.textContent = job.error.message; box.appendChild(err); }
  for (const out of job.outputs) {
    const fig = document.createElement('figure');
    const v = document.createElement('video'); v.controls = true; v.setAttribute('aria-label', `Clip ${out.clip} variant ${out.variant}`); v.preload = 'metadata';
    const a = document.createElement('a'); a.textContent = `Download clip ${out.clip} variant ${out.variant}`; a.download = `${job.id}-${out.clip}-${out.variant}.mp4`; a.href = '#';
    loadVideo(out.url, v, a);
    fig.appendChild(v); const cap = document.createElement('figcaption'); cap.appendChild(a); fig.appendChild(cap); box.appendChild(fig);
  }
  if (['queued', 'running', 'paused'].includes(job.status)) {
    const c = document.createElement('button'); c.className = 'secondary'; c.type = 'button'; c.textContent = 'Cancel';
    c.onclick = async () => { try { await api(`/api/jobs/${job.id}/cancel`, {method: 'POST'}); } catch (e) { alertBox(e.message); } };
    box.appendChild(c);
  } else if (['failed', 'canceled'].includes(job.status)) {
    const r = document.createElement('button'); r.className = 'secondary'; r.type = 'button'; r.textContent = 'Retry';
    r.onclick = async () => { try { const j = await api(`/api/jobs/${job.id}/retry`, {method: 'POST'}); renderJob(el, j); follow(job.id, el); } catch (e) { alertBox(e.message); } };
    box.appendChild(r);
  }
  el.appendChild(box);
}

async function loadVideo(url, video, link) {
  try {
    const resp = await api(new URL(url).pathname);
    const blob = await resp.blob();
    const obj = URL.createObjectURL(blob);
    video.src = obj; link.href = obj;
  } catch (e) { link.textContent += ' (unavailable: ' + e.message + ')'; }
}

async function loadHistory(reset) {
  if (reset) { cursor = null; $('#job-list').innerHTML = ''; }
  try {
    const page = await api('/api/jobs?limit=10' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    for (const job of page.data) {
      const li = document.createElement('li'); renderJob(li, job); $('#job-list').appendChild(li);
      if (['queued', 'running', 'paused'].includes(job.status)) follow(job.id, li);
    }
    cursor = page.next_cursor; $('#more-history').hidden = !page.has_more;
  } catch (e) { alertBox(e.message); }
}

async function loadKeys() {
  try {
    const {data} = await api('/api/keys');
    const rows = $('#key-rows'); rows.innerHTML = '';
    for (const k of data) {
      const tr = document.createElement('tr');
      tr.innerHTML = '<td></td><td></td><td></td><td><button type="button" class="secondary">Delete</button></td>';
      tr.children[0].textContent = k.masked; tr.children[1].textContent = k.label || '';
      tr.children[2].textContent = k.status + (k.cooling_until ? ' until ' + new Date(k.cooling_until).toLocaleTimeString() : '');
      tr.querySelector('button').setAttribute('aria-label', 'Delete key ' + k.masked);
      tr.querySelector('button').onclick = async () => { try { await api('/api/keys/' + k.id, {method: 'DELETE'}); loadKeys(); } catch (e) { alertBox(e.message); } };
      rows.appendChild(tr);
    }
  } catch (e) { alertBox(e.message); }
}

async function addKey(ev) {
  ev.preventDefault(); alertBox('');
  try {
    await api('/api/keys', {method: 'POST', json: {key: $('#key-value').value, label: $('#key-label').value || null}});
    $('#key-value').value = ''; $('#key-label').value = ''; loadKeys();
  } catch (e) { alertBox(e.message); }
}

async function loadAdmin() {
  try {
    const h = await fetch('/api/health').then((r) => r.json());
    $('#health').textContent = JSON.stringify(h, null, 1);
    const q = await fetch('/api/flow/queue/status').then((r) => r.json());
    $('#queue').textContent = JSON.stringify(q, null, 1);
    const a = await api('/api/admin/flow/auth');
    $('#flow-auth').textContent = `account ${a.account}: ${a.configured ? 'login stored' : 'no login stored'}` +
      (a.needs_auth ? ' — PAUSED: needs a new login' : ' — ok') + (a.last_verified_at ? `, verified ${new Date(a.last_verified_at).toLocaleString()}` : '');
  } catch (e) { alertBox(e.message); }
}

async function uploadState(ev) {
  ev.preventDefault(); alertBox('');
  try {
    const text = await $('#state-file').files[0].text();
    await api('/api/admin/flow/auth', {method: 'POST', body: text, headers: {'Content-Type': 'application/json'}});
    $('#state-file').value = ''; loadAdmin();
    $('#flow-auth').textContent += ' — new login uploaded; paused jobs resume when the worker has checked it';
  } catch (e) { alertBox(e.message); }
}

$('#signin-form').onsubmit = (ev) => { ev.preventDefault(); signIn($('#token').value.trim()); };
$('#signout').onclick = signOut;
$('#job-form').onsubmit = submitJob;
$('#key-form').onsubmit = addKey;
$('#state-form').onsubmit = uploadState;
$('#refresh-history').onclick = () => loadHistory(true);
$('#more-history').onclick = () => loadHistory(false);
$('#retry-failed').onclick = async () => { try { const r = await api('/api/admin/flow/queue/retry-failed', {method: 'POST'}); alertBox(''); $('#queue').textContent += `\nre-queued ${r.requeued}`; } catch (e) { alertBox(e.message); } };
setInterval(() => { if (ME && ME.is_admin && !$('#admin').hidden) loadAdmin(); }, 5000);
if (TOKEN) signIn(TOKEN); else show(false);
