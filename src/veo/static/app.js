// Veo studio: a page over the JSON API. No build step, no external scripts.
//
// The token travels only in the Authorization header, never in a URL: posters (small JPEGs)
// and videos are fetched with it and shown through object URLs. Posters load when they come
// near the screen; a video loads only when the person presses play, and one at a time.
'use strict';
const $ = (s, root = document) => root.querySelector(s);
let TOKEN = localStorage.getItem('veo-token') || '';
let ME = null;
let cursor = null;
let MODELS = [];        // the catalog's models that are not retired
let KEYS = [];          // the caller's keys, for guessing where "automatic" runs a job
let HEALTH = null;

const ACTIVE = new Set(['queued', 'running', 'paused']);
const REWORKABLE = new Set(['succeeded', 'failed', 'canceled']);  // redo a clip, rebuild the final
const MAX_STREAMS = 4;      // event streams held at once: HTTP/1.1 gives a page 6 connections per host
const HISTORY_STREAMS = 2; // of which jobs merely listed in history may hold this many
const POLL_MS = 4000;       // how often a job beyond MAX_STREAMS is polled instead
const POSTER_CACHE = 300;   // poster object URLs kept (small JPEGs); the oldest are revoked
const CAP_DEFAULTS = {     // what /api/models leaves out when a capability has its default value
  resolutions: [], durations: [], default_duration: 8, aspect_ratios: ['16:9', '9:16'],
  first_frame: false, last_frame: false, reference_images: 0, extension: false,
  person_generation: [], negative_prompt: false, enhance_prompt: false, samples_per_request: 1,
};

// ---- small helpers ------------------------------------------------------------------------------

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

function alertBox(msg) { const a = $('#alert'); a.textContent = msg; a.hidden = !msg; }
const pathOf = (url) => new URL(url, location.href).pathname;
const secs = (s) => (s == null ? '' : (Math.round(s * 10) / 10) + ' s');
const bytes = (n) => (n == null ? '' : n < 1e6 ? Math.round(n / 1e3) + ' kB' : (n / 1e6).toFixed(1) + ' MB');
const words = (s) => String(s).replace(/_/g, ' ');

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, {Authorization: 'Bearer ' + TOKEN});
  const init = Object.assign({}, opts, {headers});
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(opts.json); }
  delete init.json;
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = new Error(resp.status + ' ' + resp.statusText);
    try { const e = (await resp.json()).error; err.message = e.message || err.message; err.code = e.code; err.details = e.details; } catch (_) { /* not JSON */ }
    err.status = resp.status;
    if (resp.status === 401) signOut();
    throw err;
  }
  const type = resp.headers.get('content-type') || '';
  return type.includes('application/json') ? resp.json() : resp;
}

// a redo replaces a clip's videos and posters at the same URLs (the output ids stay; sha256
// changes), and a rebuilt final keeps its URL too: always revalidate with the server
async function fetchBlob(url) { return (await api(pathOf(url), {cache: 'no-cache'})).blob(); }

function saveBlob(blob, filename) {
  const href = URL.createObjectURL(blob);
  const a = h('a', {href, download: filename, hidden: true});
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);  // the download has started by then
}

// ---- posters: fetched with the token when near the screen, kept in a small LRU -----------------

const posters = new Map();  // key -> Promise<object URL>

function posterURL(url, key) {
  let p = posters.get(key);
  if (p) { posters.delete(key); posters.set(key, p); return p; }
  p = fetchBlob(url).then((b) => URL.createObjectURL(b));
  p.catch(() => posters.delete(key));
  posters.set(key, p);
  while (posters.size > POSTER_CACHE) {
    const [old, op] = posters.entries().next().value;
    posters.delete(old); op.then((u) => URL.revokeObjectURL(u), () => {});
  }
  return p;
}

const nearScreen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    nearScreen.unobserve(e.target);
    const img = e.target;
    posterURL(img.dataset.src, img.dataset.key)
      .then((u) => { img.src = u; })
      .catch(() => { img.classList.add('missing'); });
  }
}, {rootMargin: '300px'});

function posterImg(url, key, alt, cls) {
  const img = h('img', {class: cls || 'poster', alt, decoding: 'async', dataset: {src: url, key}});
  nearScreen.observe(img);
  return img;
}

// ---- players: a poster with a play button; the video is fetched only on play, one at a time ----

let playing = null;  // the one Player holding a video

class Player {
  constructor({url, posterUrl, posterKey, label, filename, portrait}) {
    Object.assign(this, {url, label, filename});
    this.el = h('div', {class: 'media' + (portrait ? ' portrait' : '')});
    this.poster = posterUrl ? posterImg(posterUrl, posterKey, 'Poster of ' + label) : null;
    this.button = h('button', {type: 'button', class: 'play', 'aria-label': 'Play ' + label,
                               onclick: () => this.play()}, '▶');
    this.el.append(...[this.poster, this.button].filter(Boolean));
    this.video = null; this.obj = null; this.blob = null;
  }

  async play() {
    if (playing && playing !== this) playing.unload();
    playing = this;
    this.button.disabled = true; this.button.setAttribute('aria-busy', 'true'); this.el.classList.add('loading');
    try {
      this.blob = await fetchBlob(this.url);
      if (playing !== this) { this.blob = null; return; }  // another play was pressed meanwhile
      this.obj = URL.createObjectURL(this.blob);
      this.video = h('video', {controls: true, playsinline: true, preload: 'auto', 'aria-label': this.label});
      this.video.src = this.obj;
      this.el.replaceChildren(this.video);
      this.video.play().catch(() => { /* autoplay refused: the controls are there */ });
    } catch (e) {
      alertBox(`Could not load ${this.label}: ${e.message}`);
      this.unload();
    } finally {
      this.button.disabled = false; this.button.removeAttribute('aria-busy'); this.el.classList.remove('loading');
    }
  }

  unload() {
    if (this.video) { this.video.pause(); this.video.removeAttribute('src'); this.video.load(); }
    if (this.obj) URL.revokeObjectURL(this.obj);
    this.video = null; this.obj = null; this.blob = null;
    this.el.replaceChildren(...[this.poster, this.button].filter(Boolean));
    if (playing === this) playing = null;
  }

  async download(button) {
    button.disabled = true; button.setAttribute('aria-busy', 'true');
    try { saveBlob(this.blob || await fetchBlob(this.url), this.filename); } catch (e) { alertBox(e.message); } finally {
      button.disabled = false; button.removeAttribute('aria-busy');
    }
  }
}

// ---- live updates: SSE over fetch (the token stays in a header), or polling past MAX_STREAMS ----

const watchers = new Map();  // job id -> {views: Set<JobView>, ctrl, running, last}
let streams = 0;

function views(id) {
  if (!watchers.has(id)) watchers.set(id, {views: new Set(), ctrl: null, running: false, last: null});
  return watchers.get(id);
}

function publish(job) {
  const w = views(job.id); w.last = job;
  for (const v of w.views) v.update(job);
}

function attach(view) { views(view.id).views.add(view); }

function detach(view) {
  const w = watchers.get(view.id); if (!w) return;
  w.views.delete(view);
  if (!w.views.size) { if (w.ctrl) w.ctrl.abort(); watchers.delete(view.id); }
}

// follows a job until it ends; `prefer`: the person just acted on it, so it gets a stream first
function watch(id, prefer) {
  const w = views(id);
  if (w.running) return;
  w.running = true; w.ctrl = new AbortController();
  const run = streams < (prefer ? MAX_STREAMS : HISTORY_STREAMS) ? stream : poll;
  run(id, w).finally(() => { w.running = false; w.ctrl = null; });
}

async function stream(id, w) {
  streams++;
  let failures = 0;  // in a row; a stream that delivered something starts the count again
  try {
    while (failures < 5 && !w.ctrl.signal.aborted) {
      try {
        const resp = await api(`/api/jobs/${id}/events`, {signal: w.ctrl.signal});
        const reader = resp.body.getReader(); const dec = new TextDecoder(); let buf = '';
        for (;;) {
          const {value, done} = await reader.read(); if (done) break;
          buf += dec.decode(value, {stream: true}).replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const lines = buf.slice(0, i).split('\n'); buf = buf.slice(i + 2);
            const event = (lines.find((l) => l.startsWith('event:')) || 'event: message').slice(6).trim();
            const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
            if (event === 'deleted') { for (const v of [...w.views]) v.remove(); return; }
            if (event === 'job' && data) { publish(JSON.parse(data)); failures = 0; }
          }
        }
        // the server ends the stream when the job ends; a redo or rebuild meanwhile starts it again
        if (w.last && !ACTIVE.has(w.last.status)) return;
      } catch (e) {
        if (w.ctrl.signal.aborted || e.status === 404 || e.status === 401) return;
        if (e.status !== 429) alertBox(`Live updates for ${id} stopped: ${e.message}; retrying`);
      }
      failures++;
      await new Promise((r) => setTimeout(r, 1000 * failures));
    }
  } finally { streams--; }
}

async function poll(id, w) {
  while (!w.ctrl.signal.aborted) {
    try {
      const job = await api(`/api/jobs/${id}`, {signal: w.ctrl.signal});
      publish(job);
      if (!ACTIVE.has(job.status)) return;
    } catch (e) { if (w.ctrl.signal.aborted || e.status === 404 || e.status === 401) return; }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function stopAll() { for (const w of watchers.values()) if (w.ctrl) w.ctrl.abort(); watchers.clear(); }

// ---- the job view: status, the final video, and the clips as a strip of posters -----------------

class JobView {
  constructor(job, where) {
    this.id = job.id; this.where = where; this.clips = new Map(); this.finalSig = null;
    this.el = h('article', {class: 'job', 'aria-label': 'Job ' + job.id, dataset: {jobId: job.id}});
    this.live = h('span', {class: 'status', 'aria-live': 'polite', 'aria-atomic': 'true'});
    this.prog = h('span', {class: 'prog'});
    this.statusLine = h('p', {class: 'status-line'}, this.live, this.prog);
    this.title = h('h3', {class: 'job-title'});
    this.meta = h('p', {class: 'meta'});
    this.bar = h('progress', {max: '100', 'aria-label': 'Progress of job ' + job.id});
    this.error = h('p', {class: 'error', hidden: true});
    this.final = h('section', {class: 'final', 'aria-label': 'Final video of job ' + job.id});
    this.strip = h('ol', {class: 'strip', 'aria-label': 'Clips of job ' + job.id});
    this.actions = h('div', {class: 'actions'});
    this.el.append(this.title, this.statusLine, this.bar, this.meta, this.error, this.final, this.strip, this.actions);
    attach(this);
    this.update(job);
  }

  update(job) {
    this.job = job;
    const portrait = job.aspect_ratio === '9:16';
    this.el.dataset.status = job.status;
    this.el.classList.toggle('portrait', portrait);
    const pos = job.queue_position != null ? `, position ${job.queue_position + 1} in the queue` : '';
    const reason = job.paused_reason ? ` (${words(job.paused_reason)})` : '';
    const said = job.status + reason + pos;
    if (this.live.textContent !== said) this.live.textContent = said;  // announced: changes only
    this.live.className = 'status ' + job.status; this.live.dataset.status = job.status;
    this.prog.textContent = ACTIVE.has(job.status) ? ` · ${job.progress}%` : '';
    this.bar.value = job.progress;
    this.bar.hidden = !ACTIVE.has(job.status);
    const n = job.clips.length;
    const first = job.clips.length ? job.clips[0].prompt : '';
    this.title.textContent = (first.length > 90 ? first.slice(0, 88) + '…' : first) + (n > 1 ? ` (+${n - 1} more clip${n > 2 ? 's' : ''})` : '');
    this.meta.replaceChildren(
      `${n} clip${n === 1 ? '' : 's'} · ${job.model} · ${job.backend} · ${job.resolution} · ${job.duration_seconds} s · ${job.aspect_ratio}` +
      (job.number_of_videos > 1 ? ` · ${job.number_of_videos} variants` : '') +
      (job.continuity === 'chain' ? ' · chained' : '') + ' · ', h('code', {}, job.id));
    this.error.hidden = !job.error;
    this.error.textContent = !job.error ? '' : (ACTIVE.has(job.status) ? 'Last error (it is tried again): ' : '') + job.error.message;
    this.renderFinal(job, portrait);
    for (const clip of job.clips) {
      let cv = this.clips.get(clip.index);
      if (!cv) { cv = new ClipView(this, clip.index); this.clips.set(clip.index, cv); this.strip.append(cv.el); }
      cv.update(clip, job, portrait);
    }
    this.renderActions(job);
  }

  renderFinal(job, portrait) {
    const f = job.final;
    const allDone = job.clips.every((c) => c.status === 'succeeded');
    const canBuild = REWORKABLE.has(job.status) && allDone;
    const sig = JSON.stringify([f, canBuild, job.clips.length]);
    if (sig === this.finalSig) return;
    this.finalSig = sig;
    if (this.finalPlayer) this.finalPlayer.unload();
    this.finalPlayer = null;
    this.final.hidden = !f && !canBuild;
    if (this.final.hidden) { this.final.replaceChildren(); return; }
    this.final.dataset.status = f ? f.status : 'none';
    this.final.dataset.sha256 = (f && f.sha256) || '';
    const kids = [h('h4', {}, 'Final video')];
    const side = h('div', {class: 'final-side'});
    if (f && f.status === 'succeeded') {
      this.finalPlayer = new Player({url: f.url, posterUrl: f.poster_url, posterKey: 'final:' + f.sha256,
        label: 'final video of job ' + job.id, filename: `${job.id}-final.mp4`, portrait});
      kids.push(this.finalPlayer.el);
      const dl = h('button', {type: 'button', class: 'secondary', onclick: () => this.finalPlayer.download(dl)}, 'Download final video');
      side.append(h('p', {class: 'meta'}, `${f.transition} · ${secs(f.duration_seconds)} · ${bytes(f.size)}`), dl);
    } else if (f && (f.status === 'pending' || f.status === 'running')) {
      side.append(h('p', {class: 'meta building'},
        f.status === 'running' || (ACTIVE.has(job.status) && allDone) ? `Building the final video (${f.transition})…`
          : ACTIVE.has(job.status) ? `The final video (${f.transition}) is built when every clip is done.` : 'Not built yet.'));
    } else if (f && f.status === 'failed') {
      side.append(h('p', {class: 'error'}, 'The final video failed: ' + (f.error ? f.error.message : 'unknown error')));
    }
    if (canBuild) side.append(this.finalForm(f));
    this.final.replaceChildren(...kids, side);
  }

  // POST /final replaces every option, so the form carries them all; `final` names only the
  // transition today, so the others start at their defaults unless the server sends them
  finalForm(f) {
    const id = this.where + '-' + this.id;
    const o = Object.assign({transition: 'cut', crossfade_seconds: 0.5, trim_start_frames: 0, trim_end_frames: 0, loudnorm: false}, f || {});
    const field = (key, label, input) => { input.id = `${id}-${key}`; return h('div', {}, h('label', {for: input.id}, label), input); };
    const trans = h('select', {}, h('option', {value: 'cut'}, 'Cut'), h('option', {value: 'crossfade'}, 'Crossfade'));
    trans.value = o.transition;
    const xfade = h('input', {type: 'number', min: '0.1', max: '3', step: '0.1', value: String(o.crossfade_seconds)});
    const trimStart = h('input', {type: 'number', min: '0', max: '120', step: '1', value: String(o.trim_start_frames)});
    const trimEnd = h('input', {type: 'number', min: '0', max: '120', step: '1', value: String(o.trim_end_frames)});
    const loud = h('input', {type: 'checkbox', checked: o.loudnorm});
    const xfadeBox = field('xfade', 'Crossfade (s)', xfade);
    const sync = () => { xfadeBox.hidden = trans.value !== 'crossfade'; };
    trans.addEventListener('change', sync); sync();
    const verb = f && f.status !== 'pending' ? 'Rebuild final video' : 'Build final video';
    const button = h('button', {type: 'submit'}, verb);
    return h('form', {class: 'final-form', onsubmit: async (ev) => {
      ev.preventDefault(); alertBox(''); button.disabled = true;
      const body = {transition: trans.value, trim_start_frames: Number(trimStart.value) || 0,
                    trim_end_frames: Number(trimEnd.value) || 0, loudnorm: loud.checked};
      if (trans.value === 'crossfade') body.crossfade_seconds = Number(xfade.value);
      try { publish(await api(`/api/jobs/${this.id}/final`, {method: 'POST', json: body})); watch(this.id, true); }
      catch (e) { alertBox(e.message); button.disabled = false; }
    }}, field('transition', 'Transition', trans), xfadeBox,
    h('details', {class: 'more'}, h('summary', {}, 'Trims and loudness'),
      field('trim-start', 'Trim start of each clip (frames)', trimStart),
      field('trim-end', 'Trim end of each clip (frames)', trimEnd),
      h('label', {class: 'check'}, loud, 'Even out loudness')),
    button);
  }

  renderActions(job) {
    const sig = job.status;
    if (sig === this.actionsSig) return;
    this.actionsSig = sig;
    const kids = [];
    const act = (label, path, method, after) => h('button', {type: 'button', class: 'secondary', onclick: async (ev) => {
      ev.target.disabled = true; alertBox('');
      try { await after(await api(`/api/jobs/${this.id}${path}`, {method})); } catch (e) { alertBox(e.message); ev.target.disabled = false; }
    }}, label);
    if (ACTIVE.has(job.status)) kids.push(act('Cancel', '/cancel', 'POST', publish));
    if (job.status === 'failed' || job.status === 'canceled') kids.push(act('Retry', '/retry', 'POST', (j) => { publish(j); watch(j.id, true); }));
    if (!ACTIVE.has(job.status)) {
      kids.push(h('button', {type: 'button', class: 'secondary danger', onclick: async () => {
        if (!confirm('Delete this job and its videos?')) return;
        try { await api(`/api/jobs/${this.id}`, {method: 'DELETE'}); for (const v of [...views(this.id).views]) v.remove(); } catch (e) { alertBox(e.message); }
      }}, 'Delete job'));
    }
    this.actions.replaceChildren(...kids);
  }

  remove() {
    detach(this);
    for (const cv of this.clips.values()) cv.unload();
    if (this.finalPlayer) this.finalPlayer.unload();
    const li = this.el.closest('li'); (li || this.el).remove();
  }
}

class ClipView {
  constructor(job, index) {
    this.jobView = job; this.index = index; this.player = null; this.mediaSig = null; this.restSig = null;
    const n = index + 1;
    this.el = h('li', {class: 'clip', dataset: {clip: String(index)}});
    this.head = h('h4', {}, 'Clip ' + n);
    this.mediaBox = h('div', {class: 'media-box'});
    this.state = h('p', {class: 'clip-state'});
    this.prompt = h('p', {class: 'prompt'});
    this.variants = h('fieldset', {class: 'variants'});
    this.tools = h('div', {class: 'clip-tools'});
    const rid = `${job.where}-${job.id}-redo-${index}`;
    this.redoText = h('textarea', {id: rid, rows: '3', maxlength: '4000'});
    this.redoForm = h('form', {class: 'redo', hidden: true, onsubmit: (ev) => this.redo(ev)},
      h('label', {for: rid}, `New prompt for clip ${n}`), this.redoText,
      h('button', {type: 'submit'}, `Redo clip ${n}`),
      h('button', {type: 'button', class: 'secondary', onclick: () => { this.redoForm.hidden = true; this.redoToggle.focus(); }}, 'Cancel redo'));
    this.el.append(this.head, this.mediaBox, this.state, this.prompt, this.variants, this.tools, this.redoForm);
  }

  update(clip, job, portrait) {
    this.clip = clip;
    const n = this.index + 1;
    const outs = clip.outputs;
    const chosen = outs.find((o) => o.selected) || outs[0];
    this.el.dataset.status = clip.status;
    this.el.dataset.outputs = outs.map((o) => o.id).join(' ');
    this.el.dataset.sha256 = outs.map((o) => o.sha256).join(' ');
    // the big poster: the chosen variant; left alone while nothing about it changed (it may be playing)
    const mediaSig = chosen ? chosen.id + chosen.sha256 + portrait : 'none' + portrait;
    if (mediaSig !== this.mediaSig) {
      this.mediaSig = mediaSig;
      this.unload();
      if (chosen) {
        this.player = new Player({url: chosen.url, posterUrl: chosen.poster_url, posterKey: chosen.sha256,
          label: `clip ${n}, variant ${chosen.variant + 1}`, filename: `${job.id}-clip${n}-v${chosen.variant + 1}.mp4`, portrait});
        this.player.el.dataset.outputId = chosen.id;
        this.player.el.dataset.sha256 = chosen.sha256;
        this.mediaBox.replaceChildren(this.player.el);
      } else {
        this.mediaBox.replaceChildren(h('div', {class: 'media empty' + (portrait ? ' portrait' : '')}, h('span', {}, 'No video yet')));
      }
    }
    const working = ACTIVE.has(job.status) && clip.status !== 'succeeded' && clip.status !== 'failed' && clip.status !== 'canceled';
    this.state.replaceChildren(
      h('span', {class: 'status ' + clip.status, dataset: {status: clip.status}}, clip.status),
      working && clip.progress ? ` · ${clip.progress}%` : '',
      chosen && chosen.duration_seconds ? ` · ${secs(chosen.duration_seconds)}` : '',
      outs.length && working ? ' · redoing; the variants below are replaced when the new ones exist' : '');
    if (clip.error) this.state.append(h('span', {class: 'error'}, ' · ' + clip.error.message));
    this.prompt.textContent = clip.prompt;
    const canRework = REWORKABLE.has(job.status);
    const restSig = JSON.stringify([outs.map((o) => [o.id, o.sha256, o.selected]), canRework]);
    if (restSig === this.restSig) return;
    this.restSig = restSig;
    this.renderVariants(outs, job);
    const dl = h('button', {type: 'button', class: 'secondary', onclick: () => this.player && this.player.download(dl)}, `Download clip ${n}`);
    dl.hidden = !chosen;
    this.redoToggle = h('button', {type: 'button', class: 'secondary', 'aria-expanded': String(!this.redoForm.hidden),
      onclick: () => this.toggleRedo()}, `Redo clip ${n}…`);
    this.redoToggle.hidden = !canRework;
    if (!canRework) this.redoForm.hidden = true;
    this.tools.replaceChildren(dl, this.redoToggle);
  }

  renderVariants(outs, job) {
    const n = this.index + 1;
    const hadFocus = this.variants.contains(document.activeElement);
    this.variants.hidden = outs.length < 2;
    if (outs.length < 2) { this.variants.replaceChildren(); return; }
    const name = `variant-${this.jobView.where}-${job.id}-${this.index}`;
    const radios = outs.map((o) => {
      const input = h('input', {type: 'radio', name, value: String(o.variant), checked: o.selected,
        onchange: () => this.select(o.variant)});
      return h('label', {class: 'variant', dataset: {variant: String(o.variant), outputId: o.id}},
        input, o.poster_url ? posterImg(o.poster_url, o.sha256, '', 'thumb') : null,
        h('span', {}, `Variant ${o.variant + 1}`));
    });
    this.variants.replaceChildren(h('legend', {}, `Pick a variant of clip ${n}`), ...radios);
    if (hadFocus) { const c = $('input:checked', this.variants); if (c) c.focus(); }
  }

  async select(variant) {
    alertBox('');
    try {
      publish(await api(`/api/jobs/${this.jobView.id}/clips/${this.index}/select`, {method: 'POST', json: {variant}}));
      const f = this.jobView.job.final;
      if (f && f.status === 'succeeded') {
        this.jobView.final.dataset.stale = 'true';
        const note = $('.stale', this.jobView.final) || h('p', {class: 'hint stale', role: 'status'});
        note.textContent = 'The final video still holds the earlier choice: rebuild it to use this one.';
        if (!note.isConnected) $('.final-side', this.jobView.final).prepend(note);
      }
    } catch (e) { alertBox(e.message); this.restSig = null; this.update(this.clip, this.jobView.job, this.jobView.job.aspect_ratio === '9:16'); }
  }

  toggleRedo() {
    this.redoForm.hidden = !this.redoForm.hidden;
    this.redoToggle.setAttribute('aria-expanded', String(!this.redoForm.hidden));
    if (!this.redoForm.hidden) { this.redoText.value = this.clip.prompt; this.redoText.focus(); }
  }

  async redo(ev) {
    ev.preventDefault(); alertBox('');
    const prompt = this.redoText.value.trim();
    const body = prompt && prompt !== this.clip.prompt ? {prompt} : {};
    try {
      const job = await api(`/api/jobs/${this.jobView.id}/clips/${this.index}/redo`, {method: 'POST', json: body});
      this.redoForm.hidden = true;
      publish(job); watch(job.id, true);
    } catch (e) { alertBox(e.message); }
  }

  unload() { if (this.player) this.player.unload(); this.player = null; }
}

let currentView = null;  // the job just submitted, shown under the form

function showJob(container, job, where, prefer) {
  const view = new JobView(job, where);
  container.append(view.el);
  if (ACTIVE.has(job.status)) watch(job.id, prefer);
  return view;
}

// ---- the create form: the models and their capabilities come from GET /api/models ---------------

function ownUsableKey() { return KEYS.some((k) => k.status !== 'invalid'); }

function backendFor(model) {
  const chosen = $('#backend').value;
  if (chosen !== 'auto') return chosen;
  // automatic: the API when the person has a usable key (or the pool seems to), else Flow
  const flowOn = !HEALTH || HEALTH.backends.flow.enabled;
  const poolKeys = HEALTH && HEALTH.backends.api.available_keys > 0;
  if (model.backends.includes('api') && (ownUsableKey() || poolKeys || !flowOn || !model.backends.includes('flow'))) return 'api';
  return model.backends.includes('flow') ? 'flow' : model.backends[0];
}

function currentModel() { return MODELS.find((m) => m.id === $('#model').value) || MODELS[0]; }

function capsNow() {
  const m = currentModel();
  if (!m) return Object.assign({}, CAP_DEFAULTS, {backend: 'api'});
  const b = backendFor(m);
  return Object.assign({}, CAP_DEFAULTS, m.capabilities[b] || {}, {backend: b});
}

function fillSelect(sel, values, preferred, label = String) {
  const prev = sel.value;
  sel.replaceChildren(...values.map((v) => h('option', {value: String(v)}, label(v))));
  const want = [prev, preferred].map(String).find((v) => values.map(String).includes(v));
  if (want !== undefined) sel.value = want;
}

function fillModels() {
  const flowOn = !HEALTH || HEALTH.backends.flow.enabled;
  const flowOpt = $('#backend option[value=flow]');
  flowOpt.disabled = !flowOn; flowOpt.textContent = flowOn ? 'Flow' : 'Flow (turned off)';
  if (!flowOn && $('#backend').value === 'flow') $('#backend').value = 'auto';
  const backend = $('#backend').value;
  const runs = (m) => m.backends.some((b) => b !== 'flow' || flowOn);
  const list = MODELS.filter((m) => runs(m) && (backend === 'auto' || m.backends.includes(backend)));
  const sel = $('#model'); const prev = sel.value;
  sel.replaceChildren(...list.map((m) => h('option', {value: m.id, title: m.description || null},
    m.id + (m.default ? ' (default)' : ''))));
  const keep = list.find((m) => m.id === prev) || list.find((m) => m.default) || list[0];
  if (keep) sel.value = keep.id;
  applyCaps();
}

function applyCaps() {
  const caps = capsNow(); const m = currentModel();
  fillSelect($('#aspect_ratio'), caps.aspect_ratios, '16:9');
  fillSelect($('#resolution'), caps.resolutions, caps.resolutions.includes('720p') ? '720p' : caps.resolutions[0]);
  fillSelect($('#duration_seconds'), caps.durations, caps.default_duration);
  $('#person-field').hidden = !caps.person_generation.length;
  fillSelect($('#person_generation'), ['', ...caps.person_generation], '', (v) => v ? words(v) : 'Model default');
  $('#negative-field').hidden = !caps.negative_prompt;
  $('#enhance-field').hidden = !caps.enhance_prompt;
  const where = {api: 'the Gemini API', flow: 'Flow'}[caps.backend] || caps.backend;
  $('#model-hint').textContent = m
    ? `${m.description || m.id}. Choices shown for ${where}` + ($('#backend').value === 'auto' ? ' (where “Automatic” would run it).' : '.')
    : 'No model is available.';
  syncClipSpecs();
}

function clipSpecRow() {
  const li = h('li', {class: 'spec'});
  const file = (cls) => h('div', {class: cls}, h('label', {}), h('input', {type: 'file', accept: 'image/png,image/jpeg,image/webp'}));
  const refs = file('refs'); $('input', refs).multiple = true;
  li.append(h('label', {}), h('textarea', {rows: '3', maxlength: '4000'}),
    h('details', {class: 'frames'}, h('summary', {}), h('div', {class: 'frames-grid'}, file('ff'), file('lf'), refs)),
    h('p', {class: 'hint chain-note', hidden: true}),
    h('button', {type: 'button', class: 'secondary remove', onclick: () => { li.remove(); syncClipSpecs(); }}));
  $('#clip-specs').append(li);
  syncClipSpecs();
  return li;
}

// numbers the clip rows and shows the fields the model takes (frames, references, chain notes)
function syncClipSpecs() {
  const rows = [...document.querySelectorAll('#clip-specs > li')];
  const caps = capsNow(); const chain = $('#continuity').value === 'chain'; const one = rows.length === 1;
  rows.forEach((li, i) => {
    const n = i + 1; const pre = one ? '' : `Clip ${n} `;
    const [label, text] = [li.children[0], li.children[1]];
    text.id = `clip-prompt-${i}`; label.htmlFor = text.id; label.textContent = one ? 'Prompt' : `Clip ${n} prompt`;
    const set = (cls, id, name, show) => {
      const box = $('.' + cls, li); const input = $('input', box);
      input.id = `clip-${id}-${i}`; $('label', box).htmlFor = input.id; $('label', box).textContent = pre ? pre + name.toLowerCase() : name;
      box.hidden = !show; if (!show) input.value = '';
    };
    const chained = chain && i > 0;
    set('ff', 'first', 'Start frame (optional)', caps.first_frame && !chained);
    set('lf', 'last', 'End frame (optional)', caps.last_frame && !chained);
    set('refs', 'refs', `Reference images (optional, up to ${caps.reference_images})`, caps.reference_images > 0);
    const frames = $('.frames', li);
    const kinds = [(caps.first_frame || caps.last_frame) && !chained && 'frames', caps.reference_images > 0 && 'reference images'].filter(Boolean);
    frames.hidden = !kinds.length;
    const what = kinds.join(' and ') + ' (optional)';
    $('summary', frames).textContent = pre ? pre + what : what[0].toUpperCase() + what.slice(1);
    const note = $('.chain-note', li); note.hidden = !chained;
    note.textContent = chained ? `Starts from the last frame of clip ${i}.` : '';
    const rm = $('.remove', li); rm.textContent = `Remove clip ${n}`; rm.hidden = one;
  });
  $('#add-clip').disabled = rows.length >= 50;
  $('#continuity-hint').hidden = !chain;
}

async function uploadFile(file) {
  const fd = new FormData(); fd.append('file', file);
  return (await api('/api/uploads', {method: 'POST', body: fd})).id;
}

// puts the person on the field a 422 names (`clips[1].prompt`, `duration_seconds`, `final.…`)
const CLIP_FIELDS = {prompt: 'clip-prompt-', first_frame: 'clip-first-', last_frame: 'clip-last-', reference_images: 'clip-refs-'};
const FINAL_FIELDS = {transition: 'final_transition', crossfade_seconds: 'final_crossfade',
  trim_start_frames: 'final_trim_start', trim_end_frames: 'final_trim_end', loudnorm: 'final_loudnorm'};
function markField(field) {
  if (!field) return;
  const m = /^clips\[(\d+)\]\.(\w+)/.exec(field);
  const id = m ? (CLIP_FIELDS[m[2]] || 'clip-prompt-') + m[1]
    : field === 'prompt' ? 'clip-prompt-0'
    : field.startsWith('final.') ? FINAL_FIELDS[field.slice(6)]
    : field;
  const el = id && document.getElementById(id);
  const fold = el && el.closest('details'); if (fold) fold.open = true;
  if (el && !el.closest('[hidden]')) { el.setAttribute('aria-invalid', 'true'); el.focus(); }
}

async function submitJob(ev) {
  ev.preventDefault(); alertBox('');
  for (const el of document.querySelectorAll('#job-form [aria-invalid]')) el.removeAttribute('aria-invalid');
  const rows = [...document.querySelectorAll('#clip-specs > li')];
  const empty = rows.findIndex((li) => !li.children[1].value.trim());
  if (empty >= 0) { alertBox(rows.length === 1 ? 'Write a prompt.' : `Clip ${empty + 1} needs a prompt.`); markField(`clips[${empty}].prompt`); return; }
  const caps = capsNow();
  const btn = $('#submit-job'); btn.disabled = true; btn.setAttribute('aria-busy', 'true');
  try {
    const clips = [];
    for (const li of rows) {
      const clip = {prompt: li.children[1].value.trim()};
      const first = $('.ff input', li).files[0]; const last = $('.lf input', li).files[0];
      const refs = [...$('.refs input', li).files];
      if (refs.length > caps.reference_images) throw new Error(`at most ${caps.reference_images} reference images per clip`);
      if (first) clip.first_frame = await uploadFile(first);
      if (last) clip.last_frame = await uploadFile(last);
      if (refs.length) { clip.reference_images = []; for (const r of refs) clip.reference_images.push(await uploadFile(r)); }
      clips.push(clip);
    }
    const body = {clips, model: $('#model').value, aspect_ratio: $('#aspect_ratio').value,
                  resolution: $('#resolution').value, duration_seconds: Number($('#duration_seconds').value),
                  number_of_videos: Number($('#number_of_videos').value), backend: $('#backend').value};
    if ($('#continuity').value === 'chain') body.continuity = 'chain';
    if (!$('#person-field').hidden && $('#person_generation').value) body.person_generation = $('#person_generation').value;
    if (!$('#negative-field').hidden && $('#negative_prompt').value.trim()) body.negative_prompt = $('#negative_prompt').value.trim();
    if (!$('#enhance-field').hidden && $('#enhance_prompt').checked) body.enhance_prompt = true;
    if ($('#final_on').checked) {
      body.final = {transition: $('#final_transition').value, trim_start_frames: Number($('#final_trim_start').value) || 0,
                    trim_end_frames: Number($('#final_trim_end').value) || 0, loudnorm: $('#final_loudnorm').checked};
      if (body.final.transition === 'crossfade') body.final.crossfade_seconds = Number($('#final_crossfade').value);
    }
    const job = await api('/api/jobs', {method: 'POST', json: body,
      headers: {'Idempotency-Key': crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()}});
    if (currentView) currentView.remove();
    currentView = showJob($('#current'), job, 'current', true);
    if (!historyViews.some((v) => v.id === job.id)) {  // newest first, fed by the same stream
      const li = h('li'); $('#job-list').prepend(li);
      historyViews.unshift(showJob(li, job, 'history'));
    }
  } catch (e) { alertBox(e.message); markField(e.details && e.details.field); } finally { btn.disabled = false; btn.removeAttribute('aria-busy'); }
}

async function loadModels() {
  try {
    const [list, health] = await Promise.all([api('/api/models'), fetch('/api/health').then((r) => r.json()).catch(() => null)]);
    MODELS = list.data.filter((m) => !m.retired);
    HEALTH = health;
    fillModels();
  } catch (e) { alertBox('Could not load the models: ' + e.message); }
}

// ---- history ------------------------------------------------------------------------------------

let historyViews = [];

async function loadHistory(reset) {
  if (reset) { for (const v of historyViews) v.remove(); historyViews = []; cursor = null; $('#job-list').replaceChildren(); }
  try {
    const page = await api('/api/jobs?limit=10' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    for (const job of page.data) {
      const li = h('li'); $('#job-list').append(li);
      historyViews.push(showJob(li, job, 'history'));
    }
    cursor = page.next_cursor; $('#more-history').hidden = !page.has_more;
  } catch (e) { alertBox(e.message); }
}

// ---- sign-in, keys, operations --------------------------------------------------------------------

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
    await loadKeys();
    loadModels(); loadHistory(true); if (ME.is_admin) loadAdmin();
  } catch (e) { TOKEN = ''; show(false); alertBox('Sign-in failed: ' + e.message); }
}

function signOut() {
  TOKEN = ''; ME = null; localStorage.removeItem('veo-token');
  stopAll();
  for (const v of historyViews) v.remove(); historyViews = [];
  if (currentView) currentView.remove(); currentView = null;
  $('#current').replaceChildren(); $('#job-list').replaceChildren();
  for (const p of posters.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
  posters.clear();
  show(false);
}

async function loadKeys() {
  try {
    const {data} = await api('/api/keys');
    KEYS = data;
    $('#key-rows').replaceChildren(...data.map((k) => {
      const del = h('button', {type: 'button', class: 'secondary', 'aria-label': 'Delete key ' + k.masked, onclick: async () => {
        try { await api('/api/keys/' + k.id, {method: 'DELETE'}); await loadKeys(); applyCaps(); } catch (e) { alertBox(e.message); }
      }}, 'Delete');
      return h('tr', {}, h('td', {}, k.masked), h('td', {}, k.label || ''),
        h('td', {}, k.status + (k.cooling_until ? ' until ' + new Date(k.cooling_until).toLocaleTimeString() : '') +
                    (k.last_error ? ' — ' + k.last_error : '')), h('td', {}, del));
    }));
  } catch (e) { alertBox(e.message); }
}

async function addKey(ev) {
  ev.preventDefault(); alertBox('');
  try {
    await api('/api/keys', {method: 'POST', json: {key: $('#key-value').value, label: $('#key-label').value || null}});
    $('#key-value').value = ''; $('#key-label').value = ''; await loadKeys(); applyCaps();
  } catch (e) { alertBox(e.message); }
}

async function loadAdmin() {
  try {
    const h2 = await fetch('/api/health').then((r) => r.json());
    $('#health').textContent = JSON.stringify(h2, null, 1);
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
    $('#state-file').value = ''; await loadAdmin();
    $('#flow-auth').textContent += ' — new login uploaded; paused jobs resume when the worker has checked it';
  } catch (e) { alertBox(e.message); }
}

$('#signin-form').onsubmit = (ev) => { ev.preventDefault(); signIn($('#token').value.trim()); };
$('#signout').onclick = signOut;
$('#job-form').onsubmit = submitJob;
$('#key-form').onsubmit = addKey;
$('#state-form').onsubmit = uploadState;
$('#backend').onchange = fillModels;
$('#model').onchange = applyCaps;
$('#continuity').onchange = syncClipSpecs;
$('#add-clip').onclick = () => { const li = clipSpecRow(); li.children[1].focus(); };
$('#final_on').onchange = () => { $('#final-fields').hidden = !$('#final_on').checked; };
$('#final_transition').onchange = () => { $('#final-xfade-field').hidden = $('#final_transition').value !== 'crossfade'; };
$('#refresh-history').onclick = () => loadHistory(true);
$('#more-history').onclick = () => loadHistory(false);
$('#retry-failed').onclick = async () => { try { const r = await api('/api/admin/flow/queue/retry-failed', {method: 'POST'}); alertBox(''); $('#queue').textContent += `\nre-queued ${r.requeued}`; } catch (e) { alertBox(e.message); } };
setInterval(() => { if (ME && ME.is_admin && !$('#admin').hidden) loadAdmin(); }, 5000);
clipSpecRow();
if (TOKEN) signIn(TOKEN); else show(false);
