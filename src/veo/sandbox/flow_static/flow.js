// The fake Flow page. State changes only through trusted user input, as in the real app.
function boot(CONFIG) {
  const S = {prompt: '', mode: 'text', aspect: '16:9', count: 2, model: 'Veo 3.1 - Fast',
             frames: {start: null, end: null}, tiles: (CONFIG.history || []).slice(), slot: null, pendingUpload: null};
  const $ = (sel) => document.querySelector(sel);
  const grid = $('#grid');

  function chip() {
    $('#chip').textContent = `${S.mode === 'frames' ? 'Frames' : 'Video'} ${S.aspect === '16:9' ? 'crop_16_9' : 'crop_9_16'} x${S.count} · ${S.model}`;
  }

  // editor: generation A (textarea) or B (Slate contenteditable)
  let editor;
  if (CONFIG.ui === 'B') {
    editor = document.createElement('div');
    editor.setAttribute('role', 'textbox');
    editor.setAttribute('contenteditable', 'true');
    editor.setAttribute('data-slate-editor', 'true');
    editor.setAttribute('aria-label', 'What do you want to create?');
    editor.innerHTML = '<p data-slate-node="element"><span data-slate-node="text"><span data-slate-leaf="true"><span data-slate-zero-width="n">\uFEFF</span></span></span></p>';
    editor.addEventListener('input', (e) => { if (e.isTrusted) S.prompt = editor.innerText.replace(/\uFEFF/g, '').trim(); sync(); });
  } else {
    editor = document.createElement('textarea');
    editor.id = 'PINHOLE_TEXT_AREA_ELEMENT_ID';
    editor.placeholder = 'Generate a video with text…';
    editor.setAttribute('aria-label', 'Generate a video with text…');
    editor.addEventListener('input', (e) => { if (e.isTrusted) S.prompt = editor.value.trim(); sync(); });
  }
  $('#editor-host').replaceWith(editor);

  // submit, or the credits warning that replaces it
  let submit;
  if (CONFIG.credits) {
    submit = document.createElement('button');
    submit.type = 'button';
    submit.disabled = true;
    submit.innerHTML = '<i class="google-symbols">arrow_forward</i>Create';
    submit.onclick = create;
  } else {
    submit = document.createElement('button');
    submit.type = 'button';
    submit.className = 'prompt-warning-button';
    submit.setAttribute('aria-label', 'Insufficient credits warning');
    submit.innerHTML = '<i class="google-symbols prompt-warning-sphere-icon">info</i>Insufficient credits';
  }
  $('#submit-host').replaceWith(submit);

  function sync() {
    if (!CONFIG.credits) return;
    const framesOk = S.mode !== 'frames' || S.frames.start;
    submit.disabled = !(S.prompt && framesOk);
    submit.setAttribute('aria-disabled', String(submit.disabled));
  }

  // settings menu
  const menu = $('#settings-menu');
  $('#settings').onclick = () => { menu.hidden = !menu.hidden; $('#settings').setAttribute('aria-expanded', String(!menu.hidden)); };
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') { menu.hidden = true; $('#settings').setAttribute('aria-expanded', 'false'); } });
  function select(group, btn) { group.querySelectorAll('[role=tab]').forEach((b) => b.setAttribute('aria-selected', String(b === btn))); }
  menu.querySelectorAll('[data-mode]').forEach((b) => b.onclick = () => { S.mode = b.dataset.mode; select(b.parentNode, b); $('#slots').hidden = S.mode !== 'frames'; chip(); sync(); });
  menu.querySelectorAll('[data-aspect]').forEach((b) => b.onclick = () => { S.aspect = b.dataset.aspect; select(b.parentNode, b); chip(); });
  menu.querySelectorAll('[data-count]').forEach((b) => b.onclick = () => { S.count = Number(b.dataset.count); select(b.parentNode, b); chip(); });
  menu.querySelectorAll('[data-model]').forEach((b) => b.onclick = () => { S.model = b.dataset.model; menu.hidden = true; chip(); });

  // frame slots and the upload dialog
  const dialog = $('#upload-dialog');
  document.querySelectorAll('.slot').forEach((slot) => slot.onclick = () => { S.slot = slot.dataset.slot; S.pendingUpload = null; $('#add-to-prompt').disabled = true; $('#upload-state').textContent = ''; dialog.hidden = false; });
  $('#upload-media').onclick = () => $('#file').click();
  $('#file').onchange = async () => {
    const f = $('#file').files[0];
    if (!f) return;
    $('#upload-state').textContent = 'Uploading…';
    const fd = new FormData(); fd.append('file', f);
    const r = await fetch('/fx/api/upload', {method: 'POST', body: fd});
    if (r.status === 401) { location.href = '/signin'; return; }
    S.pendingUpload = (await r.json()).id;
    $('#upload-state').textContent = 'Uploaded ' + f.name;
    $('#add-to-prompt').disabled = false;
    $('#file').value = '';
  };
  $('#add-to-prompt').onclick = () => {
    S.frames[S.slot] = S.pendingUpload;
    document.querySelector(`.slot[data-slot=${S.slot}]`).classList.add('filled');
    document.querySelector(`.slot[data-slot=${S.slot}]`).textContent = (S.slot === 'start' ? 'Start' : 'End') + ' ✓';
    dialog.hidden = true; sync();
  };

  function toast(text) {
    if (!CONFIG.toast) return;
    const box = $('#toasts');
    const li = document.createElement('li');
    li.setAttribute('data-radix-collection-item', '');
    li.setAttribute('role', 'status');
    li.innerHTML = `<span>${text}</span> <button type="button">Dismiss</button>`;
    li.querySelector('button').onclick = () => { li.remove(); box.hidden = !box.querySelector('li'); };
    box.querySelector('ol').appendChild(li);
    box.hidden = false;
  }

  async function create() {
    if (submit.disabled) return;
    const body = {project: CONFIG.project, prompt: S.prompt, mode: S.mode, aspect: S.aspect,
                  count: S.count, model: S.model, frames: S.mode === 'frames' ? S.frames : {}};
    const r = await fetch('/fx/api/generate', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
    if (r.status === 401) { location.href = '/signin'; return; }
    const ids = (await r.json()).ids;
    // the new batch goes to the top, in the order the service returned it
    S.tiles = ids.map((id) => ({id, state: 'running', progress: 0, prompt: S.prompt})).concat(S.tiles);
    if (CONFIG.ui === 'B') editor.innerHTML = '<p data-slate-node="element"><span data-slate-node="text"><span data-slate-leaf="true"><span data-slate-zero-width="n">\uFEFF</span></span></span></p>';
    else editor.value = '';
    S.prompt = ''; sync(); render();
    toast('Generation started');
  }

  function render() {
    const existing = new Map([...grid.querySelectorAll('[data-tile-id]')].map((el) => [el.dataset.tileId, el.parentNode]));
    const wanted = S.tiles.map((t, i) => {
      let wrap = existing.get(t.id);
      if (!wrap) { wrap = document.createElement('div'); wrap.innerHTML = `<div class="tile" data-tile-id="${t.id}"></div>`; }
      wrap.dataset.index = String(i);
      const tile = wrap.firstChild;
      if (tile.dataset.state !== t.state || t.state === 'running') paint(tile, t);
      return wrap;
    });
    wanted.forEach((w, i) => { if (grid.children[i] !== w) grid.insertBefore(w, grid.children[i] || null); });
  }

  function paint(tile, t) {
    tile.dataset.state = t.state;
    if (t.state === 'running') {
      tile.innerHTML = `<i class="google-symbols">videocam</i><span class="pct">${t.progress}%</span><i class="google-symbols">progress_activity</i><p>Generating</p>`;
    } else if (t.state === 'failed') {
      tile.innerHTML = `<div class="failed" role="alert"><strong>Failed</strong><p></p><button type="button" aria-label="Retry"><i class="google-symbols">refresh</i></button><button type="button"><i class="google-symbols">undo</i>Reuse prompt</button></div>`;
      tile.querySelector('p').textContent = t.message;
      tile.querySelector('[aria-label=Retry]').onclick = async () => { await fetch('/fx/api/retry/' + t.id, {method: 'POST'}); t.state = 'running'; t.progress = 0; render(); };
    } else {
      tile.innerHTML = `<video src="${t.src}" muted playsinline preload="metadata"></video><div class="actions"><button type="button" aria-label="download" aria-haspopup="menu"><i class="google-symbols">download</i></button></div>`;
      tile.querySelector('[aria-label=download]').onclick = (e) => downloadMenu(tile, t);
    }
  }

  function downloadMenu(tile, t) {
    document.querySelectorAll('.download-menu').forEach((m) => m.remove());
    const m = document.createElement('div');
    m.setAttribute('role', 'menu');
    m.className = 'download-menu';
    tile.appendChild(m);
    // items render late, as in the real app
    setTimeout(() => {
      m.innerHTML = [['gif_box', 'Animated GIF (270p)', null], ['capture', 'Original size (720p)', '/fx/api/download/' + t.id], ['high_res', 'Upscaled (1080p)', null]]
        .map(([icon, label, href]) => `<div role="menuitem" class="menuitem" data-href="${href || ''}"><i class="google-symbols">${icon}</i>${label}</div>`).join('');
      m.querySelectorAll('[role=menuitem]').forEach((item) => item.onclick = () => {
        if (item.dataset.href) { const a = document.createElement('a'); a.href = item.dataset.href; a.download = ''; document.body.appendChild(a); a.click(); a.remove(); }
        m.remove();
      });
    }, 120);
  }

  async function poll() {
    const running = S.tiles.filter((t) => t.state === 'running').map((t) => t.id);
    if (running.length) {
      const r = await fetch('/fx/api/status?ids=' + running.join(','));
      if (r.status === 401) { location.href = '/signin?continue=' + location.pathname; return; }
      for (const s of await r.json()) {
        const t = S.tiles.find((x) => x.id === s.id);
        Object.assign(t, s);
      }
      render();
    }
    setTimeout(poll, 150);
  }
  chip(); sync(); render(); poll();
}
