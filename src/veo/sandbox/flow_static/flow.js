// The fake Flow app (flow.google.com, the Angular generation). State changes only through
// trusted user input, as in the real app: a script that sets the DOM or dispatches synthetic
// events changes nothing.
'use strict';
(() => {
const C = window.__FLOW__;
const V = C.variant;

const LABELS = {
  en: {
    video: 'Video', image: 'Image', frames: 'Frames', ingredients: 'Ingredients',
    sec: (n) => `${n}s`, settings: 'Settings trigger', start: 'Start', end: 'End',
    generate: 'Start generation', stop: 'Stop', credits: 'Insufficient credits',
    creditsAria: 'Insufficient credits warning', agent: 'Agent', addMedia: 'Add media',
    upload: 'Upload image', library: 'Library', consentTitle: 'Before you upload',
    consentText: 'Only upload images you have the right to use. Uploads are stored in your project.',
    agree: 'I agree', cancel: 'Cancel', newProject: 'New project', openProject: 'Open project',
    projects: 'Your projects', prompt: 'What do you want to create?',
    cookieText: 'Google uses cookies to deliver and enhance the quality of its services and to analyze traffic.',
    cookieMore: 'See details', cookieReject: 'No thanks', cookieAccept: 'Ok, got it',
    promoTitle: 'Meet the new Flow', promoText: 'Agent mode, ingredients and more.',
    gotIt: 'Got it', close: 'Close', cost: (n) => `Generating will use ${n} credits`,
    search: 'Search assets', failed: 'Failed',
    notCharged: 'You have not been charged for this generation.', retry: 'Retry',
    reuse: 'Reuse prompt', del: 'Delete', more: 'More options', balance: (n) => `${n} credits`,
    groups: ['Media type', 'Video type', 'Aspect ratio', 'Resolution', 'Duration', 'Outputs per prompt'],
    model: 'Model',
    errors: {
      policy: 'This generation might violate our policies. Please try a different prompt or send feedback.',
      throttled: "You're requesting generations too quickly. Please wait and try again.",
      quota: "You've reached your generation limit for today. Please try again tomorrow.",
      unusual: 'We noticed some unusual activity. Please try again later.',
      generic: "Something went wrong. Couldn't generate video.",
      credits: 'Insufficient credits',
    },
  },
  ko: {
    video: '동영상', image: '이미지', frames: '프레임', ingredients: '애셋',
    sec: (n) => `${n}초`, settings: '설정 트리거', start: '시작', end: '끝',
    generate: '생성 시작', stop: '중지', credits: '크레딧 부족',
    creditsAria: '크레딧 부족 경고', agent: '에이전트', addMedia: '미디어 추가',
    upload: '이미지 업로드', library: '라이브러리', consentTitle: '업로드하기 전에',
    consentText: '사용할 권리가 있는 이미지만 업로드하세요.',
    agree: '동의', cancel: '취소', newProject: '새 프로젝트', openProject: '프로젝트 열기',
    projects: '내 프로젝트', prompt: '무엇을 만들고 싶으신가요?',
    cookieText: 'Google은 쿠키를 사용하여 서비스를 제공하고 트래픽을 분석합니다.',
    cookieMore: '자세히 알아보기', cookieReject: '거부', cookieAccept: '확인',
    promoTitle: '새로워진 Flow를 만나보세요', promoText: '에이전트 모드와 애셋 등.',
    gotIt: '확인', close: '닫기', cost: (n) => `생성 시 ${n}크레딧이 사용됩니다`,
    search: '애셋 검색', failed: '실패',
    notCharged: '이 생성에 대해서는 요금이 청구되지 않았습니다.', retry: '다시 시도',
    reuse: '프롬프트 재사용', del: '삭제', more: '옵션 더보기', balance: (n) => `${n} 크레딧`,
    groups: ['미디어 유형', '동영상 유형', '가로세로 비율', '해상도', '길이', '프롬프트당 출력'],
    model: '모델',
    errors: {
      policy: '이 생성물은 Google 정책을 위반할 수 있습니다. 다른 프롬프트를 사용해 보세요.',
      throttled: '생성 요청이 너무 빠릅니다. 잠시 후 다시 시도하세요.',
      quota: '오늘의 생성 한도에 도달했습니다. 내일 다시 시도하세요.',
      unusual: '비정상적인 활동이 감지되었습니다. 나중에 다시 시도하세요.',
      generic: '문제가 발생했습니다. 동영상을 생성할 수 없습니다.',
      credits: '크레딧 부족',
    },
  },
  pt: {
    video: 'Vídeo', image: 'Imagem', frames: 'Quadros', ingredients: 'Ingredientes',
    sec: (n) => `${n} s`, settings: 'Acionador de configurações', start: 'Início', end: 'Fim',
    generate: 'Iniciar geração', stop: 'Parar', credits: 'Créditos insuficientes',
    creditsAria: 'Alerta de créditos insuficientes', agent: 'Agente', addMedia: 'Adicionar mídia',
    upload: 'Enviar imagem', library: 'Biblioteca', consentTitle: 'Antes de enviar',
    consentText: 'Envie apenas imagens que você tem o direito de usar.',
    agree: 'Concordo', cancel: 'Cancelar', newProject: 'Novo projeto', openProject: 'Abrir projeto',
    projects: 'Seus projetos', prompt: 'O que você quer criar?',
    cookieText: 'O Google usa cookies para oferecer os serviços e analisar o tráfego.',
    cookieMore: 'Ver detalhes', cookieReject: 'Não, obrigado', cookieAccept: 'Ok, entendi',
    promoTitle: 'Conheça o novo Flow', promoText: 'Modo agente, ingredientes e mais.',
    gotIt: 'Entendi', close: 'Fechar', cost: (n) => `A geração vai usar ${n} créditos`,
    search: 'Pesquisar recursos', failed: 'Falha',
    notCharged: 'Você não foi cobrado por esta geração.', retry: 'Tentar novamente',
    reuse: 'Reutilizar comando', del: 'Excluir', more: 'Mais opções', balance: (n) => `${n} créditos`,
    groups: ['Tipo de mídia', 'Tipo de vídeo', 'Proporção', 'Resolução', 'Duração', 'Saídas por comando'],
    model: 'Modelo',
    errors: {
      policy: 'Esta geração pode violar nossas políticas. Tente outro comando.',
      throttled: 'Você está solicitando gerações rápido demais. Aguarde e tente novamente.',
      quota: 'Você atingiu seu limite de gerações de hoje. Tente novamente amanhã.',
      unusual: 'Percebemos uma atividade incomum. Tente novamente mais tarde.',
      generic: 'Algo deu errado. Não foi possível gerar o vídeo.',
      credits: 'Créditos insuficientes',
    },
  },
};
const L = LABELS[V.lang] || LABELS.en;
const REASONS = {
  PUBLIC_ERROR_UNSAFE_GENERATION: 'policy', PUBLIC_ERROR_USER_REQUESTS_THROTTLED: 'throttled',
  PUBLIC_ERROR_USER_QUOTA_REACHED: 'quota', PUBLIC_ERROR_UNUSUAL_ACTIVITY: 'unusual',
  PUBLIC_ERROR_SOMETHING_WENT_WRONG: 'generic', PUBLIC_ERROR_INSUFFICIENT_CREDITS: 'credits',
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- markup helpers: one place decides how this build renders ------------------------------
// component classes the notes name survive a rebuild only where the app kept them; this fake's
// own layout classes change with every build in the rebuilt variant
const RENAMED = {'settings-trigger-button': 'settings-chip', 'generate-icon-button': 'send-fab'};
const STABLE = /^(cdk-|mat-|mdc-|glue-|ProseMirror|empty-chip$|agent-mode-chip$|prompt-warning|loading-percentage$|asset-item$|error-title$|thumbnail$)/;
function cls(names) {
  return String(names).split(/\s+/).filter(Boolean).map((c) => {
    if (!V.rebuilt) return c;
    if (RENAMED[c]) return `${RENAMED[c]}-${C.build}`;
    return STABLE.test(c) ? c : `${c}_${C.build}`;
  }).join(' ');
}
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = cls(v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  if (V.rebuilt) e.setAttribute(`_ngcontent-ng-c${C.build}`, '');
  for (const k of kids.flat(3)) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
const icon = (name, extra) => h('mat-icon', {
  class: `mat-icon notranslate material-symbols-outlined ${extra || ''}`,
  'aria-hidden': 'true', 'data-mat-icon-type': 'font'}, name);
function btn(attrs, ...kids) {
  const a = {type: 'button', ...attrs, class: `mdc-button mat-mdc-button-base ${attrs.class || ''}`};
  if (!V.wrappers) return h('button', a, kids);
  return h('button', a, h('span', {class: 'mat-mdc-button-persistent-ripple'}),
    h('span', {class: 'mdc-button__label'}, h('span', {class: 'label-inner'}, kids)),
    h('span', {class: 'mat-focus-indicator'}));
}
// the app acts only on trusted clicks
const trusted = (fn) => (e) => { if (e.isTrusted) fn(e); };

// ---- overlays (CDK-like): a container, a backdrop, a pane; Escape closes the top one -------
let overlayRoot = null;
const stack = [];
function openOverlay(content, opts = {}) {
  const entry = {onClose: opts.onClose};
  entry.bd = opts.backdrop === false ? null : h('div', {class: `cdk-overlay-backdrop ${opts.backdrop === 'dark' ? 'cdk-overlay-dark-backdrop' : 'cdk-overlay-transparent-backdrop'} cdk-overlay-backdrop-showing`});
  if (entry.bd) entry.bd.addEventListener('click', trusted(() => closeOverlay(entry)));
  entry.pane = h('div', {class: `cdk-overlay-pane ${opts.paneClass || ''}`}, content);
  entry.box = h('div', {class: `cdk-overlay-connected-position-bounding-box ${opts.dialog ? 'dialog-box' : ''}`}, entry.pane);
  if (entry.bd) overlayRoot.append(entry.bd);
  overlayRoot.append(entry.box);
  if (C.overlayAnimation > 0 && !opts.dialog) {
    // Material scales its panes and menus in; what they hold moves until the animation ends
    entry.pane.animate([{transform: 'scale(0.8)', opacity: 0}, {transform: 'none', opacity: 1}],
      {duration: C.overlayAnimation * 1000, easing: 'ease-out'});
  }
  stack.push(entry);
  return entry;
}
function closeOverlay(entry) {
  const i = stack.indexOf(entry);
  if (i < 0) return;
  stack.splice(i, 1);
  if (entry.bd) entry.bd.remove();
  entry.box.remove();
  if (entry.onClose) entry.onClose();
}
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && e.isTrusted && stack.length) {
    e.preventDefault();
    closeOverlay(stack[stack.length - 1]);
  }
});

// ---- session gates ---------------------------------------------------------------------------
if (C.refuseHeadless && (navigator.webdriver || /HeadlessChrome/.test(navigator.userAgent))) {
  location.replace('/v3/signin/rejected');
  return;
}
const root = h('flow-app', {'ng-version': '20.3.1'});
document.body.prepend(root);
if (C.route === 'shell') {
  // signed out, revoked, or no access: the 200 document hops client-side a moment later
  root.append(h('div', {class: 'boot-spinner'}, 'Flow'));
  setTimeout(() => location.replace(C.hop), C.hopDelay * 1000);
  return;
}

function cookieBar() {
  if (!C.cookieBar || sessionStorage.getItem('cookie-ok')) return;
  const done = () => { sessionStorage.setItem('cookie-ok', '1'); bar.remove(); };
  const bar = h('div', {class: 'glue-cookie-notification-bar', role: 'region', 'aria-label': 'Cookie'},
    h('p', {class: 'glue-cookie-notification-bar__text'}, L.cookieText),
    h('div', {class: 'glue-cookie-notification-bar__buttons'},
      h('a', {class: 'glue-cookie-notification-bar__more', href: '#'}, L.cookieMore),
      h('button', {class: 'glue-cookie-notification-bar__reject', type: 'button', onclick: trusted(done)}, L.cookieReject),
      h('button', {class: 'glue-cookie-notification-bar__accept', type: 'button', onclick: trusted(done)}, L.cookieAccept)));
  document.body.append(bar);
}

let promoShown = 0;
function promo(withClose) {
  if (!C.promos) return;
  promoShown += 1;
  let entry = null;
  const closeIt = trusted(() => closeOverlay(entry));
  const dialog = h('mat-dialog-container', {role: 'dialog', 'aria-modal': 'true', class: 'mat-mdc-dialog-container promo-dialog'},
    withClose ? btn({class: 'promo-close', 'aria-label': L.close, onclick: closeIt}, icon('close')) : null,
    h('h2', {class: 'promo-title'}, L.promoTitle), h('p', {}, L.promoText),
    h('div', {class: 'promo-actions'}, btn({class: 'promo-ok', onclick: closeIt}, L.gotIt)));
  entry = openOverlay(dialog, {backdrop: 'dark', dialog: true});
  // a modal dialog takes the focus, as CDK's focus trap does
  const first = dialog.querySelector('button');
  if (first) first.focus();
}

function boot(fn) {
  overlayRoot = h('div', {class: 'cdk-overlay-container'});
  setTimeout(() => {
    fn();
    document.body.append(overlayRoot);
    if (V.overlays === 'late') {
      setTimeout(cookieBar, 900);
    } else {
      cookieBar();
      setTimeout(() => promo(true), 250);
    }
  }, C.bootDelay * 1000);
}

if (C.route === 'home') {
  boot(() => {
    root.append(h('header', {class: 'top-bar'}, h('span', {class: 'logo'}, 'Flow'),
      h('span', {class: 'credit-balance'}, L.balance(C.balance))));
    root.append(h('main', {class: 'projects'}, h('h1', {}, L.projects),
      btn({class: 'new-project-button', onclick: trusted(() => location.assign(`/project/${crypto.randomUUID()}`))},
        icon('add_2'), h('span', {}, L.newProject)),
      h('div', {class: 'project-list'}, C.projects.map((p) =>
        h('a', {class: 'project-card', href: `/project/${p}`, 'aria-label': L.openProject}, icon('movie'), p.slice(0, 8))))));
  });
  return;
}

// ---- the project page -------------------------------------------------------------------------
const script = document.createElement('script');
script.src = `/recaptcha/enterprise.js?render=${C.siteKey}`;
document.head.append(script);

const MODELS = C.models;
const S = {
  prompt: '', busy: false, agent: !!V.agent, media: 'video', type: 'frames', aspect: '16:9',
  resolution: '720p', duration: 8, count: 2, model: 'Veo 3.1 - Fast',
  frames: {start: null, end: null},
};
const assets = [];
const pickerFills = new Set();
const tiles = (C.history || []).map((t) => ({...t}));
let firstChoice = true;
let firstInput = true;

const cost = () => MODELS[S.model].cost * S.count;
const errorText = (reason) => L.errors[REASONS[reason] || 'generic'];

let editor, chipsBox, settingsTrigger, modelChip, agentChip, submitSlot, grid, balanceEl;
let settingsEntry = null;

function chipText() {
  return `${S.media === 'video' ? L.video : L.image} · ${S.resolution} · ${L.sec(S.duration)} · x${S.count}`;
}

function radiogroup(key, label, options) {
  if (C.drift.includes('radios')) {
    // a rendering no driver was written for
    return h('div', {class: 'option-row'}, options.map(([value, ic, text]) =>
      h('div', {class: 'option', onclick: trusted(() => choose(key, value))}, ic ? icon(ic) : null, text)));
  }
  return h('div', {role: 'radiogroup', 'aria-label': label, class: 'radio-group'}, options.map(([value, ic, text]) => {
    const disabled = key === 'resolution' && !MODELS[S.model].resolutions.includes(value);
    const radio = btn({role: 'radio', 'aria-checked': String(S[key] === value), 'aria-label': V.lang === 'en' ? null : text,
      'aria-disabled': disabled ? 'true' : null, class: `radio-option${S[key] === value ? ' selected' : ''}`,
      onclick: trusted(() => { if (!disabled) choose(key, value); })}, ic ? icon(ic) : null, h('span', {class: 'radio-label'}, text));
    return V.wrappers ? h('div', {class: 'radio-wrap'}, radio) : radio;
  }));
}

function modelButton(where) {
  return btn({class: `model-select-button model-${where}`, 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-label': V.lang === 'en' ? null : L.model, onclick: trusted(openModelMenu)},
  h('span', {class: 'model-name'}, S.model), icon('arrow_drop_down'));
}

function settingsPanel() {
  const g = L.groups;
  const groups = [['media', g[0], [['video', 'videocam', L.video], ['image', 'image', L.image]]]];
  if (S.media === 'video') groups.push(['type', g[1], [['frames', 'crop_free', L.frames], ['ingredients', 'chrome_extension', L.ingredients]]]);
  groups.push(['aspect', g[2], [['16:9', 'crop_16_9', '16:9'], ['9:16', 'crop_9_16', '9:16']]]);
  if (S.media === 'video') {
    groups.push(['resolution', g[3], ['360p', '720p'].map((r) => [r, null, r])]);
    groups.push(['duration', g[4], MODELS[S.model].durations.map((d) => [d, null, L.sec(d)])]);
  }
  groups.push(['count', g[5], [1, 2, 3, 4].map((n) => [n, null, `x${n}`])]);
  if (V.rebuilt) groups.push(groups.splice(2, 1)[0]);  // this build lists the aspect last
  return h('div', {class: 'settings-panel'},
    groups.map(([key, label, options]) => radiogroup(key, label, options)),
    V.model_menu === 'pane' ? modelButton('pane') : null,
    h('div', {class: 'cost-line'}, L.cost(cost())));
}

function refreshSettings() {
  if (settingsEntry) settingsEntry.pane.replaceChildren(settingsPanel());
  settingsTrigger.querySelector('.chip-text, [class^="chip-text"]').textContent = chipText();
  if (modelChip) modelChip.querySelector('[class*="model-name"]').textContent = S.model;
  renderChips();
  renderSubmit();
}

function choose(key, value) {
  S[key] = value;
  if (key === 'model') {
    const m = MODELS[value];
    if (!m.durations.includes(S.duration)) S.duration = m.durations.includes(8) ? 8 : m.durations[m.durations.length - 1];
    if (!m.resolutions.includes(S.resolution)) S.resolution = m.resolutions[m.resolutions.length - 1];
  }
  refreshSettings();
  if (firstChoice && V.overlays === 'late') setTimeout(() => promo(true), 120);
  firstChoice = false;
}

function openSettings() {
  if (settingsEntry) { closeOverlay(settingsEntry); return; }
  settingsTrigger.setAttribute('aria-expanded', 'true');
  settingsEntry = openOverlay(settingsPanel(), {onClose: () => {
    settingsEntry = null;
    settingsTrigger.setAttribute('aria-expanded', 'false');
  }});
}

function openModelMenu() {
  let entry = null;
  const menu = h('div', {role: 'menu', class: 'mat-mdc-menu-panel model-menu'}, Object.keys(MODELS).map((label) => {
    const m = /^(.*?)\s*(\[[^\]]+\])$/.exec(label);
    return btn({role: 'menuitem', class: 'mat-mdc-menu-item', onclick: trusted(() => { closeOverlay(entry); choose('model', label); })},
      h('span', {class: 'mat-mdc-menu-item-text'}, m ? m[1] : label, m ? h('span', {class: 'model-tag'}, ` ${m[2]}`) : null),
      S.model === label ? icon('check') : null);
  }));
  entry = openOverlay(menu, {paneClass: 'menu-pane'});
}

function toggleAgent() {
  S.agent = !S.agent;
  agentChip.setAttribute('aria-pressed', String(S.agent));
  settingsTrigger.hidden = S.agent;  // agent mode takes the whole settings panel away
  if (modelChip) modelChip.hidden = S.agent;
}

function renderChips() {
  chipsBox.replaceChildren(...['start', 'end'].map((slot) => {
    const a = S.frames[slot];
    const label = slot === 'start' ? L.start : L.end;
    const open = trusted(() => openPicker(slot));
    if (a) {
      return btn({class: 'frame-chip bound-chip', 'aria-label': label, 'aria-haspopup': 'dialog', onclick: open},
        h('img', {class: 'chip-thumb', src: a.thumb, alt: a.name}), V.chip_text ? h('span', {}, label) : null);
    }
    return btn({class: 'empty-chip frame-chip', 'aria-label': label, 'aria-haspopup': 'dialog', onclick: open},
      V.chip_text ? h('span', {}, label) : icon('add_photo_alternate'));
  }));
  chipsBox.hidden = S.media !== 'video' || S.type !== 'frames';
}

function openPicker(slot) {
  let entry = null;
  const search = h('input', {type: 'search', class: 'asset-search', placeholder: L.search, 'aria-label': L.search});
  const list = h('div', {role: 'listbox', class: 'asset-list', 'aria-label': L.search});
  const fill = () => {
    const q = search.value.toLowerCase();
    const named = !C.drift.includes('names');  // a build whose picker shows thumbnails only
    list.replaceChildren(...assets.filter((a) => !named || a.name.toLowerCase().includes(q)).slice().reverse().map((a) =>
      btn({class: 'asset-item', role: 'option', 'aria-label': named && !V.chip_text ? a.name : null,
        onclick: trusted(() => { S.frames[slot] = a; closeOverlay(entry); renderChips(); renderSubmit(); })},
      h('img', {src: a.thumb, alt: named ? a.name : ''}), named && V.chip_text ? h('span', {class: 'asset-name'}, a.name) : null)));
  };
  search.addEventListener('input', fill);
  entry = openOverlay(h('div', {class: 'asset-picker'}, search, list), {onClose: () => pickerFills.delete(fill)});
  pickerFills.add(fill);
  fill();
}

const fileInput = h('input', {type: 'file', accept: 'image/*', hidden: true});
fileInput.addEventListener('change', async () => {
  for (const file of [...fileInput.files]) {
    const tile = {state: 'upload', mid: null, name: file.name, thumb: URL.createObjectURL(file)};
    tiles.unshift(tile);
    renderGrid();
    const body = new FormData();
    body.append('file', file, file.name);
    const r = await fetch('/_/AiSandboxAngularFrontend/upload', {method: 'POST', body, credentials: 'include'});
    if (r.status === 401) { location.replace('/about'); return; }
    const info = await r.json();
    tile.mid = info.mediaId;
    assets.push({mid: info.mediaId, name: file.name, thumb: tile.thumb});
    pickerFills.forEach((f) => f());
    renderGrid();
  }
  fileInput.value = '';
});

function openAddMenu() {
  let entry = null;
  const upload = trusted(() => {
    closeOverlay(entry);
    if (sessionStorage.getItem('upload-consent')) { fileInput.click(); return; }
    let consent = null;
    const agree = trusted(() => { sessionStorage.setItem('upload-consent', '1'); closeOverlay(consent); fileInput.click(); });
    consent = openOverlay(h('flow-upload-consent-dialog', {},
      h('mat-dialog-container', {role: 'dialog', 'aria-modal': 'true', class: 'mat-mdc-dialog-container'},
        h('h2', {}, L.consentTitle), h('p', {}, L.consentText),
        h('mat-dialog-actions', {class: 'mat-mdc-dialog-actions', align: 'end'},
          btn({class: 'consent-cancel', onclick: trusted(() => closeOverlay(consent))}, L.cancel),
          btn({class: 'consent-agree mat-mdc-unelevated-button', onclick: agree}, L.agree)))),
    {backdrop: 'dark', dialog: true});
  });
  entry = openOverlay(h('div', {role: 'menu', class: 'mat-mdc-menu-panel add-menu'},
    btn({role: 'menuitem', class: 'mat-mdc-menu-item', onclick: upload}, icon('upload'), h('span', {}, L.upload)),
    btn({role: 'menuitem', class: 'mat-mdc-menu-item'}, icon('photo_library'), h('span', {}, L.library))),
  {paneClass: 'menu-pane'});
}

function renderSubmit() {
  let el;
  if (cost() > C.balance) {
    // out of credits: the arrow is replaced, not disabled
    el = btn({class: 'prompt-warning-button', 'aria-label': L.creditsAria},
      icon('info', 'prompt-warning-sphere-icon'), h('span', {}, L.credits));
  } else {
    const b = btn({class: 'generate-icon-button mat-mdc-icon-button', type: 'submit',
      'aria-label': S.busy ? L.stop : L.generate, onclick: trusted(submit)}, icon(S.busy ? 'stop' : 'arrow_forward'));
    if (!S.prompt && !S.busy) {
      if (V.rebuilt) { b.setAttribute('aria-disabled', 'true'); b.classList.add('mat-mdc-button-disabled'); } else b.disabled = true;
    }
    el = h('flow-generate-icon-button', {}, b);
  }
  submitSlot.replaceChildren(el);
}

let enableTimer = null;
function onInput(e) {
  if (!e.isTrusted) return;
  S.prompt = editor.innerText.replace(/\u00a0/g, ' ').trim();
  clearTimeout(enableTimer);
  enableTimer = setTimeout(renderSubmit, 100);  // the real app enables submit ~100 ms later
  if (firstInput && V.overlays === 'late') setTimeout(() => promo(false), 150);
  firstInput = false;
}

function clearEditor() {
  S.prompt = '';
  editor.replaceChildren(h('p', {}, h('br', {class: 'ProseMirror-trailingBreak'})));
}

let reqid = 1000 + Math.floor(Math.random() * 8000);
async function rpc(name, args) {
  const id = C.rpcNames[name] || name;  // another build may call them otherwise
  reqid += 100000;
  const body = new URLSearchParams();
  body.set('f.req', JSON.stringify([[[id, JSON.stringify(args), null, 'generic']]]));
  body.set('at', C.at);
  const qs = new URLSearchParams({rpcids: id, 'source-path': location.pathname, 'f.sid': C.sid,
    bl: C.bl, hl: V.lang, _reqid: String(reqid), rt: 'c'});
  const r = await fetch(`/_/AiSandboxAngularFrontend/data/batchexecute?${qs}`,
    {method: 'POST', body, credentials: 'include', headers: {'X-Same-Domain': '1'}});
  if (r.status === 401) { location.replace('/about'); return {ok: false}; }
  if (!r.ok) return {ok: false, status: r.status};
  for (const line of (await r.text()).split('\n')) {
    if (!line.startsWith('[')) continue;
    let chunk;
    try { chunk = JSON.parse(line); } catch (err) { continue; }
    for (const e of chunk) {
      if (e[0] !== 'wrb.fr' || e[1] !== id) continue;
      if (e[2] !== null) return {ok: true, payload: JSON.parse(e[2])};
      const st = e[5] || [];
      const info = (st[2] || [])[0];
      return {ok: false, code: st[0], reason: info ? info[1][0] : null};
    }
  }
  return {ok: false};
}

async function submit() {
  if (!S.prompt || S.busy || cost() > C.balance) return;
  S.busy = true;
  const prompt = S.prompt;
  const settings = [S.model, S.aspect, S.resolution, S.duration, S.count];
  const bound = S.type === 'frames' && (S.frames.start || S.frames.end);
  const frames = bound ? [S.frames.start ? S.frames.start.mid : null, S.frames.end ? S.frames.end.mid : null] : null;
  const id = !frames ? 'YhhmEf' : (frames[0] && frames[1]) ? 'nprQif' : 'eb1hJf';
  clearEditor();
  renderSubmit();
  let token = null;
  try {
    token = await window.grecaptcha.enterprise.execute(C.siteKey, {action: 'VIDEO_GENERATION'});
  } catch (err) { token = null; }
  await sleep(C.tokenLead * 1000);  // the token is minted just before the submit POST
  const res = await rpc(id, [C.project, prompt, settings, frames, token, crypto.randomUUID()]);
  S.busy = false;
  if (res.ok) {
    const [wf, media] = res.payload;
    const batch = media.map(([mid]) => ({mid, wf, state: 'pending', pct: 0}));
    tiles.unshift(...(V.reverse_tiles ? batch.slice().reverse() : batch));
    C.balance -= MODELS[settings[0]].cost * settings[4];
    poll();
  } else {
    if (res.reason === 'PUBLIC_ERROR_INSUFFICIENT_CREDITS') C.balance = 0;
    tiles.unshift({state: 'failed', reason: res.reason || 'PUBLIC_ERROR_SOMETHING_WENT_WRONG'});
  }
  balanceEl.textContent = L.balance(C.balance);
  renderGrid();
  renderSubmit();
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    for (;;) {
      const waiting = tiles.filter((t) => t.wf && (t.state === 'pending' || t.state === 'ready'));
      if (!waiting.length) return;
      await sleep(C.pollInterval * 1000);
      const wfs = [...new Set(waiting.filter((t) => t.state === 'pending').map((t) => t.wf))];
      if (wfs.length) {
        const res = await rpc('jwpduf', [wfs]);
        if (res.ok) {
          for (const [, , records] of res.payload) {
            for (const [mid, status, pct, reason] of records) {
              const t = tiles.find((x) => x.mid === mid);
              if (!t || t.state === 'done') continue;
              if (reason || status === 4) { t.state = 'failed'; t.reason = reason; }
              else if (status === 3) { t.state = 'ready'; t.pct = 100; }
              else t.pct = pct;
            }
          }
        }
      }
      const ready = tiles.filter((t) => t.state === 'ready').map((t) => t.mid);
      if (ready.length) {
        const res = await rpc('as29s', [ready]);
        if (res.ok) {
          for (const r of res.payload) {
            const [mid, url, poster] = C.drift.includes('urls') ? [r[2], r[0], r[1]] : r;
            const t = tiles.find((x) => x.mid === mid);
            if (t && url) Object.assign(t, {state: 'done', url, poster});
          }
        }
      }
      renderGrid();
    }
  } finally {
    polling = false;
  }
}

function tileEl(t) {
  let inner;
  if (t.state === 'pending' || t.state === 'ready') {
    inner = h('flow-pending-tile', {'data-media-id': V.rebuilt ? null : t.mid},
      h('div', {class: 'loading-percentage'}, `${t.pct}%`), icon('progress_activity'));
  } else if (t.state === 'done') {
    inner = h('flow-video-tile', {},
      h('video', {src: t.url, poster: t.poster, preload: 'none', muted: true, playsinline: true}),
      h('img', {class: 'thumbnail', src: t.poster, alt: ''}),
      btn({class: 'tile-more', 'aria-label': L.more, 'aria-haspopup': 'menu'}, icon('more_vert')));
  } else if (t.state === 'failed') {
    inner = h('flow-error-tile', {}, icon('warning'), h('div', {class: 'error-title'}, L.failed),
      h('div', {class: 'error-message'}, errorText(t.reason)),
      h('div', {class: 'error-disclaimer'}, L.notCharged),
      btn({class: 'tile-retry'}, icon('refresh'), L.retry), btn({class: 'tile-reuse'}, icon('undo'), L.reuse),
      btn({class: 'tile-delete'}, icon('delete_forever'), L.del));
  } else {
    inner = h('flow-image-tile', {}, h('img', {src: t.thumb, alt: t.name, 'data-media-id': t.mid}));
  }
  return h('flow-grid-tile-container', {class: 'grid-tile'}, V.wrappers ? h('div', {class: 'tile-frame'}, inner) : inner);
}

function renderGrid() {
  grid.replaceChildren(...tiles.map(tileEl));
}

boot(() => {
  balanceEl = h('span', {class: 'credit-balance'}, L.balance(C.balance));
  root.append(h('header', {class: 'top-bar'}, h('span', {class: 'logo'}, 'Flow'), balanceEl));
  grid = h('div', {class: 'tile-grid', role: 'list'});
  root.append(h('main', {class: 'project'}, grid));
  editor = h('div', {class: 'ProseMirror', contenteditable: 'true', role: 'textbox', 'aria-multiline': 'true',
    'aria-label': L.prompt, translate: 'no', tabindex: '0'});
  editor.addEventListener('input', onInput);
  clearEditor();
  chipsBox = h('div', {class: 'frame-chips'});
  settingsTrigger = btn({class: 'settings-trigger-button', 'aria-haspopup': 'dialog', 'aria-expanded': 'false',
    'aria-label': L.settings, onclick: trusted(openSettings)}, h('span', {class: 'chip-text'}, chipText()));
  agentChip = btn({class: 'agent-mode-chip', 'aria-pressed': String(S.agent), onclick: trusted(toggleAgent)},
    icon('auto_awesome'), h('span', {}, L.agent));
  modelChip = V.model_menu === 'chip' ? modelButton('chip') : null;
  submitSlot = h('span', {class: 'submit-slot'});
  const toolbar = h('div', {class: 'composer-toolbar'},
    btn({class: 'add-media-button', 'aria-haspopup': 'menu', 'aria-label': L.addMedia, onclick: trusted(openAddMenu)}, icon('add')),
    agentChip, modelChip, settingsTrigger, submitSlot);
  const base = h('flow-base-prompt-box', {}, h('flow-rich-text-editor', {}, V.wrappers ? h('div', {class: 'editor-shell'}, editor) : editor));
  root.append(h('flow-prompt-box', {}, chipsBox, base, toolbar, fileInput));
  settingsTrigger.hidden = S.agent;
  if (modelChip) modelChip.hidden = S.agent;
  renderChips();
  renderSubmit();
  renderGrid();
});
})();
