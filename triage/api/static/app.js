/* 信访事项登记页: live classification while the clerk types, and feedback to /v1/feedback.
 *
 * Plain JavaScript, no build step, no external resources. Text from the form or from the API
 * is never parsed as HTML: every node that shows it is built with textContent /
 * createTextNode (tests/test_page.py checks that no HTML-parsing sink is used).
 */
(function () {
  'use strict';

  var API = {
    classify: '/v1/classify',
    feedback: '/v1/feedback',
    taxonomy: '/v1/taxonomy',
    model: '/v1/model'
  };
  var DEBOUNCE_MS = 250;
  var KEY_STORAGE = 'triage.apiKey';
  var SNIPPET_CHARS = 36;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var PRIORITY = {
    urgent: { text: '紧急', icon: 'triangle' },
    high: { text: '较急', icon: 'diamond' },
    normal: { text: '一般', icon: 'circle' }
  };
  var FLAGS = {
    collective: { name: '集体访', icon: 'people' },
    escalation: { name: '越级', icon: 'arrow' },
    extreme: { name: '过激', icon: 'triangle' },
    repeat: { name: '重复', icon: 'cycle' }
  };
  var DISPOSITION = {
    '受理': '本机关受理办理',
    '转送': '转送有权处理的机关',
    '告知': '告知通过法定途径解决（依法分离）'
  };
  var ICONS = {
    triangle: ['M8 1 15.5 14.5H.5Z', 'M7.2 5.5h1.6v4.6H7.2zM7.2 11.3h1.6v1.6H7.2z'],
    diamond: ['M8 1 15 8 8 15 1 8Z'],
    circle: ['M8 2a6 6 0 1 0 0 12A6 6 0 1 0 8 2Z'],
    people: ['M5 3.2a2.3 2.3 0 1 0 0 4.6 2.3 2.3 0 1 0 0-4.6ZM11 3.2a2.3 2.3 0 1 0 0 4.6 2.3 2.3 0 1 0 0-4.6Z' +
             'M.5 14c0-3 2-4.8 4.5-4.8S9.5 11 9.5 14ZM7.5 14c.2-1.7-.2-3-1-4 1.2-.6 2.8-.9 4.5-.8 2.5.2 4.5 1.8 4.5 4.8Z'],
    arrow: ['M8 1 14 7.5H10V15H6V7.5H2Z'],
    cycle: ['M8 1.5a6.5 6.5 0 0 1 6.3 5H16l-3 3.5-3-3.5h2.2A4.5 4.5 0 0 0 3.6 6L1.8 5A6.5 6.5 0 0 1 8 1.5Z' +
            'M8 14.5a6.5 6.5 0 0 1-6.3-5H0l3-3.5 3 3.5H3.8a4.5 4.5 0 0 0 8.6 1L14.2 11A6.5 6.5 0 0 1 8 14.5Z']
  };

  function $(id) { return document.getElementById(id); }

  var el = {
    form: $('petition-form'),
    title: $('title'),
    text: $('text'),
    receivedAt: $('received_at'),
    channel: $('channel'),
    region: $('region'),
    charCount: $('char-count'),
    reset: $('reset-button'),
    mirror: $('mirror'),
    legend: $('mirror-legend'),
    panel: $('result-panel'),
    status: $('classify-status'),
    error: $('classify-error'),
    results: $('results'),
    review: $('review-warning'),
    reviewText: $('review-text'),
    candidates: $('candidates'),
    department: $('department'),
    disposition: $('disposition'),
    reason: $('reason'),
    priority: $('priority'),
    flags: $('flags'),
    dlReceived: $('dl-received'),
    dlAck: $('dl-ack'),
    dlResolve: $('dl-resolve'),
    dlExtended: $('dl-extended'),
    dlReview: $('dl-review'),
    similar: $('similar'),
    similarEmpty: $('similar-empty'),
    accept: $('accept-button'),
    change: $('change-button'),
    changeForm: $('change-form'),
    changeLabel: $('change-label'),
    changeDepartment: $('change-department'),
    changeSubmit: $('change-submit'),
    changeCancel: $('change-cancel'),
    caseId: $('case-id'),
    message: $('feedback-message'),
    modelInfo: $('model-info'),
    keyButton: $('key-button'),
    keyDialog: $('key-dialog'),
    keyForm: $('key-form'),
    keyInput: $('key-input'),
    keyError: $('key-error'),
    keyCancel: $('key-cancel'),
    keyClear: $('key-clear')
  };

  var state = {
    seq: 0,              // id of the newest classify request issued
    timer: null,         // pending debounce timer
    controller: null,    // AbortController of the request in flight
    inflight: null,      // promise of the request in flight
    lastBody: null,      // body of the newest request (identical input is not re-sent)
    composing: false,    // an IME composition is under way (pinyin not yet committed)
    result: null,        // the classification on screen
    resultBody: null,    // the request it answers (feedback is only sent for the text on screen)
    announced: '',       // what the status region last said
    draftIds: {},        // case ids this form produced: not "similar earlier cases"
    taxonomy: null,
    typeNames: {},       // issue type id -> Chinese name
    typeDepartments: {}, // issue type id -> default department
    pending: null,       // feedback waiting for the API key
    sending: false,
    keyOpener: null
  };

  /* ------------------------------------------------------------------ helpers */

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function icon(name, className) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('class', 'icon ' + (className || ''));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    (ICONS[name] || ICONS.circle).forEach(function (d, i) {
      var path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      path.setAttribute('class', i === 0 ? 'icon-outer' : 'icon-inner');
      svg.appendChild(path);
    });
    return svg;
  }

  function pct(p) {
    var n = Number(p);
    if (!isFinite(n)) return '–';
    n = Math.max(0, Math.min(1, n)) * 100;
    // Whole percents, with one decimal where rounding would mislead (0.4% → not 0%, 99.7% →
    // not 100%).
    if (n === 0 || n === 100 || (n >= 10 && n <= 99.5)) return Math.round(n) + '%';
    return n.toFixed(1) + '%';
  }

  function today() {
    var d = new Date();
    return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' +
      String(d.getDate()).padStart(2, '0');
  }

  var WEEKDAYS = ['日', '一', '二', '三', '四', '五', '六'];

  function formatDate(iso) {
    var m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(iso || ''));
    if (!m) return iso ? String(iso) : '–';
    var y = +m[1], mo = +m[2], d = +m[3];
    var wd = new Date(Date.UTC(y, mo - 1, d)).getUTCDay();
    return y + '年' + mo + '月' + d + '日（周' + WEEKDAYS[wd] + '）';
  }

  function typeName(id) {
    return (id && state.typeNames[id]) || id || '';
  }

  function readJson(response) {
    return response.text().then(function (body) {
      if (!body) return null;
      try { return JSON.parse(body); } catch (e) { return null; }
    });
  }

  function errorText(status, data) {
    var detail = data && (data.detail || data.error);
    if (typeof detail !== 'string') detail = '';
    if (status === 413) return '内容过长，超过服务允许的最大字数。' + (detail ? '（' + detail + '）' : '');
    if (status === 422) return '输入有误：' + (detail || '请检查各项内容。');
    if (status === 503) return '模型暂不可用，请稍后再试。' + (detail ? '（' + detail + '）' : '');
    if (status === 401) return 'API 密钥无效或缺失。';
    if (status === 403) return '服务器未配置 API 密钥，暂不能提交。';
    if (status === 404) return '找不到对应记录。' + (detail ? '（' + detail + '）' : '');
    return '服务出错（HTTP ' + status + '）。' + (detail ? '（' + detail + '）' : '');
  }

  function setMessage(text, kind) {
    el.message.className = 'feedback-message' + (kind ? ' is-' + kind : '');
    clear(el.message);
    if (!text) return;
    if (kind) el.message.appendChild(icon(kind === 'error' ? 'triangle' : 'circle'));
    el.message.appendChild(make('span', null, text));
  }

  function announce(text) {
    if (text === state.announced) return;
    state.announced = text;
    el.status.textContent = text;
  }

  /* ------------------------------------------------------------------ text mirror */

  // NFKC per character, remembering where each normalised code unit came from, so evidence
  // words (which the server found in normalised text: half-width digits and punctuation) can
  // be located in what the clerk typed.
  function normalisedIndex(source) {
    var norm = '';
    var map = [];
    var i = 0;
    while (i < source.length) {
      var cp = source.codePointAt(i);
      var ch = String.fromCodePoint(cp);
      var n = ch.normalize('NFKC');
      for (var k = 0; k < n.length; k++) map.push(i);
      norm += n;
      i += ch.length;
    }
    map.push(source.length);
    return { norm: norm, map: map };
  }

  function findSpans(source, terms) {
    var idx = normalisedIndex(source);
    var found = [];
    terms.forEach(function (term) {
      var needle = String(term.word || '').normalize('NFKC');
      if (!needle.trim()) return;
      var from = 0;
      while (true) {
        var pos = idx.norm.indexOf(needle, from);
        if (pos < 0) break;
        var start = idx.map[pos];
        var lastUnit = pos + needle.length - 1;
        var lastOrig = idx.map[lastUnit];
        var lastChar = String.fromCodePoint(source.codePointAt(lastOrig));
        found.push({ start: start, end: lastOrig + lastChar.length, flags: [term.flag] });
        from = pos + needle.length;
      }
    });
    found.sort(function (a, b) { return a.start - b.start || (b.end - b.start) - (a.end - a.start); });
    var spans = [];
    found.forEach(function (span) {
      var last = spans[spans.length - 1];
      if (last && span.start === last.start && span.end === last.end) {
        if (last.flags.indexOf(span.flags[0]) < 0) last.flags.push(span.flags[0]);
      } else if (!last || span.start >= last.end) {
        spans.push(span);
      }
    });
    return spans;
  }

  function highlighted(source, terms, found) {
    var fragment = document.createDocumentFragment();
    var spans = findSpans(source, terms);
    spans.forEach(function (span) { span.flags.forEach(function (f) { found[f] = true; }); });
    var at = 0;
    spans.forEach(function (span) {
      if (span.start > at) fragment.appendChild(document.createTextNode(source.slice(at, span.start)));
      var names = span.flags.map(function (f) { return (FLAGS[f] && FLAGS[f].name) || f; }).join('、');
      var mark = make('mark', 'hl hl-' + span.flags[0], source.slice(span.start, span.end));
      mark.title = names;
      mark.dataset.flag = span.flags.join(' ');
      fragment.appendChild(mark);
      fragment.appendChild(make('span', 'visually-hidden', '（' + names + '）'));
      at = span.end;
    });
    if (at < source.length) fragment.appendChild(document.createTextNode(source.slice(at)));
    return { fragment: fragment, count: spans.length };
  }

  function evidenceTerms() {
    var terms = [];
    var result = state.result;
    var flags = (result && result.flags) || [];
    flags.forEach(function (flag) {
      if (flag.id === 'repeat') return; // its evidence is case ids, not words of the text
      (flag.evidence || []).forEach(function (word) {
        if (typeof word === 'string') terms.push({ word: word, flag: flag.id });
      });
    });
    return terms;
  }

  function renderMirror() {
    var title = el.title.value;
    var text = el.text.value;
    clear(el.mirror);
    clear(el.legend);
    if (!title.trim() && !text.trim()) {
      el.mirror.appendChild(make('p', 'placeholder', '尚未输入内容。'));
      el.legend.hidden = true;
      return;
    }
    var terms = evidenceTerms();
    var marks = 0;
    var found = {};
    if (title.trim()) {
      var head = make('p', 'mirror-title');
      head.appendChild(make('span', 'mirror-label', '标题：'));
      var t = highlighted(title, terms, found);
      head.appendChild(t.fragment);
      marks += t.count;
      el.mirror.appendChild(head);
    }
    var body = make('div', 'mirror-text');
    var b = highlighted(text, terms, found);
    body.appendChild(b.fragment);
    marks += b.count;
    el.mirror.appendChild(body);

    Object.keys(FLAGS).concat(Object.keys(found)).forEach(function (flag, i, all) {
      if (!found[flag] || all.indexOf(flag) !== i) return;
      var item = make('li');
      item.appendChild(make('span', 'swatch hl hl-' + flag, '示例'));
      item.appendChild(document.createTextNode(' ' + ((FLAGS[flag] && FLAGS[flag].name) || flag)));
      el.legend.appendChild(item);
    });
    el.legend.hidden = !marks;
  }

  /* ------------------------------------------------------------------ classify */

  function requestBody() {
    var text = el.text.value;
    if (!text.trim()) return null;
    // Live suggestions are previews: nothing is stored until the clerk accepts or corrects,
    // so drafts never become cases (nor look like repeat petitions of each other).
    var body = { text: text, store: false };
    var title = el.title.value.trim();
    if (title) body.title = title;
    var date = el.receivedAt.value;
    if (/^\d{4}-\d{2}-\d{2}$/.test(date)) body.received_at = date;
    if (el.channel.value) body.channel = el.channel.value;
    var region = el.region.value.trim();
    if (region) body.region = region;
    return JSON.stringify(body);
  }

  function schedule() {
    if (state.composing) return;
    if (state.timer) clearTimeout(state.timer);
    state.timer = setTimeout(function () {
      state.timer = null;
      classifyNow();
    }, DEBOUNCE_MS);
  }

  function setBusy(busy) {
    el.panel.setAttribute('aria-busy', busy ? 'true' : 'false');
    el.panel.classList.toggle('is-busy', busy);
  }

  function showClassifyError(text) {
    el.error.hidden = !text;
    clear(el.error);
    if (text) {
      el.error.appendChild(icon('triangle'));
      el.error.appendChild(make('span', null, text));
    }
  }

  function classifyNow() {
    var body = requestBody();
    if (body === state.lastBody && (state.inflight || state.result)) return state.inflight || Promise.resolve();
    if (state.controller) state.controller.abort();
    state.controller = null;
    state.inflight = null;
    state.lastBody = body;
    if (body === null) {
      state.seq += 1;
      setBusy(false);
      showResult(null);
      return Promise.resolve();
    }
    var seq = ++state.seq;
    var controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    var promise = fetch(API.classify, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: body,
      signal: controller.signal
    }).then(function (response) {
      return readJson(response).then(function (data) {
        if (seq !== state.seq) return; // a newer request was issued: this answer is stale
        if (!response.ok || !data || typeof data.label !== 'string') {
          state.lastBody = null; // let the same input be tried again
          showClassifyError(response.ok ? '服务返回的结果无法识别。' : errorText(response.status, data));
          return;
        }
        showClassifyError('');
        showResult(data, body);
      });
    }).catch(function (err) {
      if (err && err.name === 'AbortError') return;
      if (seq !== state.seq) return;
      state.lastBody = null;
      showClassifyError('无法连接分类服务，请检查网络后继续输入或稍后再试。');
    }).then(function () {
      if (state.controller === controller) {
        state.controller = null;
        state.inflight = null;
        setBusy(false);
      }
    });
    state.inflight = promise;
    return promise;
  }

  // The classification of exactly what is on screen (used before sending feedback).
  function settle() {
    if (state.timer) {
      clearTimeout(state.timer);
      state.timer = null;
      return classifyNow();
    }
    if (requestBody() !== state.lastBody) return classifyNow();
    return state.inflight || Promise.resolve();
  }

  /* ------------------------------------------------------------------ render */

  function showResult(data, body) {
    state.result = data;
    state.resultBody = data ? body : null;
    if (data && data.case_id) state.draftIds[data.case_id] = true;
    el.results.hidden = !data;
    renderMirror();
    if (!data) {
      showClassifyError('');
      announce('输入内容后显示建议。');
      closeChange(false);
      return;
    }
    var name = data.label_name || typeName(data.label);
    renderCandidates(data);
    el.review.hidden = !data.needs_review;
    el.reviewText.textContent = '模型把握不大（置信度 ' + pct(data.confidence) +
      '），请人工核定事项类别，可用“改为…”选择。';

    el.department.textContent = data.department || '（未给出）';
    clear(el.disposition);
    var disp = data.disposition || '';
    el.disposition.appendChild(make('strong', 'disposition disp-' + (disp || 'none'), disp || '（未给出）'));
    if (DISPOSITION[disp]) el.disposition.appendChild(make('span', 'hint-inline', '：' + DISPOSITION[disp]));
    el.reason.textContent = data.reason || '';

    renderPriority(data.priority);
    renderFlags(data);
    renderDeadlines(data.deadlines);
    renderSimilar(data.similar_cases || []);
    el.caseId.textContent = (data.case_id ? '案件编号：' + data.case_id : '预览（提交时登记案件）') +
      (data.model_version ? ' · 模型 ' + data.model_version : '');
    el.accept.disabled = false;
    el.changeSubmit.disabled = false;
    if (el.changeForm.hidden) presetChange(data);

    // Announced when the suggestion changes, not at every keystroke (the numbers are on screen).
    announce('建议：' + name + (data.needs_review ? '（把握不大，需人工核定）' : ''));
  }

  function renderCandidates(data) {
    clear(el.candidates);
    var list = Array.isArray(data.candidates) && data.candidates.length ? data.candidates
      : [{ label: data.label, name: data.label_name, probability: data.confidence }];
    list.slice(0, 3).forEach(function (c, i) {
      var item = make('li', 'candidate' + (i === 0 ? ' is-top' : ''));
      item.dataset.label = c.label;
      var head = make('div', 'candidate-head');
      head.appendChild(make('span', 'candidate-name', c.name || typeName(c.label)));
      if (i === 0) head.appendChild(make('span', 'tag', '建议'));
      head.appendChild(make('span', 'candidate-pct', pct(c.probability)));
      item.appendChild(head);
      var bar = make('div', 'bar');
      bar.setAttribute('aria-hidden', 'true');
      var fill = make('div', 'bar-fill');
      fill.style.width = Math.max(0, Math.min(100, Number(c.probability) * 100 || 0)) + '%';
      bar.appendChild(fill);
      item.appendChild(bar);
      el.candidates.appendChild(item);
    });
  }

  function renderPriority(priority) {
    var p = PRIORITY[priority] || { text: priority || '一般', icon: 'circle' };
    clear(el.priority);
    el.priority.appendChild(make('span', 'priority-label', '优先级：'));
    var badge = make('span', 'badge prio prio-' + (PRIORITY[priority] ? priority : 'normal'));
    badge.appendChild(icon(p.icon));
    badge.appendChild(make('span', null, p.text));
    el.priority.appendChild(badge);
  }

  // Every classify call stores a case, so the drafts of the petition being typed are in the
  // history the server searches. A 重复 flag whose only near-duplicates are these drafts is not
  // a repeat petition.
  function onlyDrafts(similar) {
    return similar.length > 0 && similar.every(function (s) { return s && state.draftIds[s.case_id]; });
  }

  function renderFlags(data) {
    clear(el.flags);
    var draftsOnly = onlyDrafts(data.similar_cases || []);
    var flags = (data.flags || []).filter(function (f) {
      return f && f.id && !(f.id === 'repeat' && draftsOnly);
    });
    if (!flags.length) {
      el.flags.appendChild(make('li', 'no-flags', '无集体访、越级、过激、重复提示'));
      return;
    }
    flags.forEach(function (flag) {
      var meta = FLAGS[flag.id] || { name: flag.name || flag.id, icon: 'circle' };
      var item = make('li', 'flag');
      var badge = make('span', 'badge flag-badge flag-' + flag.id);
      badge.appendChild(icon(meta.icon));
      badge.appendChild(make('span', null, flag.name || meta.name));
      item.appendChild(badge);
      if (flag.id === 'repeat') {
        // Its evidence is the ids of the earlier cases: point at the list instead.
        item.appendChild(make('span', 'evidence', '依据：见下方“相似旧案”'));
      } else {
        var words = (flag.evidence || []).filter(function (w) { return typeof w === 'string' && w; });
        if (words.length) item.appendChild(make('span', 'evidence', '依据：' + words.join('、')));
      }
      el.flags.appendChild(item);
    });
  }

  function renderDeadlines(d) {
    d = d || {};
    el.dlReceived.textContent = formatDate(d.received_at);
    el.dlAck.textContent = formatDate(d.acknowledge_by);
    el.dlResolve.textContent = formatDate(d.resolve_by);
    el.dlExtended.textContent = formatDate(d.extended_resolve_by);
    el.dlReview.textContent = d.review_request_days
      ? '对处理意见不服的，可自收到之日起 ' + d.review_request_days + ' 日内请求复查。' : '';
  }

  function renderSimilar(list) {
    clear(el.similar);
    // The page's own earlier drafts of this petition are not earlier cases.
    var shown = list.filter(function (s) { return s && !state.draftIds[s.case_id]; }).slice(0, 5);
    shown.forEach(function (s) {
      var item = make('li', 'similar-case');
      item.dataset.caseId = s.case_id;
      var date = s.received_at || (s.created_at ? String(s.created_at).slice(0, 10) : '');
      var meta = make('div', 'similar-meta');
      var time = make('time', 'similar-date', date || '日期不详');
      if (date) time.dateTime = date;
      meta.appendChild(time);
      meta.appendChild(make('span', 'similar-score', '相似度 ' + pct(s.similarity)));
      item.appendChild(meta);
      var snippet = String(s.snippet || '').replace(/\s+/g, ' ').trim();
      if (snippet.length > SNIPPET_CHARS) snippet = snippet.slice(0, SNIPPET_CHARS) + '…';
      item.appendChild(make('p', 'similar-snippet', snippet || '（无摘要）'));
      var handled = [typeName(s.label), s.department, s.disposition].filter(Boolean).join(' · ');
      item.appendChild(make('p', 'similar-handled', '处理：' + (handled || '不详')));
      el.similar.appendChild(item);
    });
    el.similarEmpty.hidden = shown.length > 0;
  }

  /* ------------------------------------------------------------------ taxonomy, model */

  function option(value, text) {
    var o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    return o;
  }

  function ensureDepartment(department) {
    if (!department) return;
    for (var i = 0; i < el.changeDepartment.options.length; i++) {
      if (el.changeDepartment.options[i].value === department) return;
    }
    el.changeDepartment.appendChild(option(department, department));
  }

  function loadTaxonomy() {
    return fetch(API.taxonomy, { headers: { 'Accept': 'application/json' } })
      .then(function (response) {
        return readJson(response).then(function (data) {
          if (!response.ok || !data || !Array.isArray(data.issue_types)) throw new Error('taxonomy');
          state.taxonomy = data;
          clear(el.changeLabel);
          clear(el.changeDepartment);
          data.issue_types.forEach(function (t) {
            state.typeNames[t.id] = t.name;
            state.typeDepartments[t.id] = t.department;
            el.changeLabel.appendChild(option(t.id, t.name + '（' + t.id + '）'));
          });
          (data.departments || []).forEach(function (d) { el.changeDepartment.appendChild(option(d, d)); });
          if (state.result) {
            presetChange(state.result);
            renderSimilar(state.result.similar_cases || []);
          }
        });
      })
      .catch(function () {
        el.change.disabled = true;
        var notice = $('page-notice');
        notice.appendChild(icon('triangle'));
        notice.appendChild(make('span', null, '无法读取事项类别和部门列表（/v1/taxonomy），暂只能采纳建议。'));
        notice.hidden = false;
      });
  }

  function loadModelInfo() {
    fetch(API.model, { headers: { 'Accept': 'application/json' } })
      .then(function (response) {
        return readJson(response).then(function (data) {
          el.modelInfo.textContent = response.ok && data && data.version
            ? '模型：' + data.version : '模型：未加载';
        });
      })
      .catch(function () { el.modelInfo.textContent = '模型：无法连接'; });
  }

  /* ------------------------------------------------------------------ feedback */

  function presetChange(data) {
    if (!data) return;
    if (state.typeNames[data.label]) el.changeLabel.value = data.label;
    ensureDepartment(data.department);
    if (data.department) el.changeDepartment.value = data.department;
  }

  function openChange() {
    el.changeForm.hidden = false;
    el.change.setAttribute('aria-expanded', 'true');
    presetChange(state.result);
    el.changeLabel.focus();
  }

  function closeChange(focusButton) {
    el.changeForm.hidden = true;
    el.change.setAttribute('aria-expanded', 'false');
    if (focusButton) el.change.focus();
  }

  function getKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch (e) { return ''; }
  }

  function setKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key lives for this call only */ }
    updateKeyButton();
  }

  function updateKeyButton() {
    el.keyButton.textContent = getKey() ? 'API 密钥：已设置' : '设置 API 密钥';
  }

  function openKeyDialog(errorMessage, opener) {
    if (!el.keyDialog.open) state.keyOpener = opener || document.activeElement;
    el.keyInput.value = '';
    el.keyError.hidden = !errorMessage;
    el.keyError.textContent = errorMessage || '';
    el.keyInput.setAttribute('aria-invalid', errorMessage ? 'true' : 'false');
    el.keyClear.hidden = !getKey();
    if (!el.keyDialog.open) el.keyDialog.showModal();
    el.keyInput.focus();
  }

  function afterKeyDialog() {
    var opener = state.keyOpener;
    state.keyOpener = null;
    if (state.pending) {
      var pending = state.pending;
      state.pending = null;
      if (getKey()) {
        if (opener && opener.focus && document.contains(opener)) opener.focus();
        sendFeedback(pending.choice, pending.kind, pending.opener);
        return;
      }
      setMessage('未提交：需要 API 密钥。', 'error');
    }
    if (opener && opener.focus && document.contains(opener)) opener.focus();
  }

  // While sending, the buttons stay focusable (disabling a focused button would drop keyboard
  // focus to the page); aria-disabled tells assistive technology, state.sending guards clicks.
  function setSending(sending) {
    state.sending = sending;
    [el.accept, el.changeSubmit].forEach(function (button) {
      button.setAttribute('aria-disabled', sending ? 'true' : 'false');
    });
    el.panel.classList.toggle('is-sending', sending);
  }

  // choice: function () -> {label, department} read after the classification has settled.
  function submitChoice(kind, choice, opener) {
    if (state.sending) return;
    setSending(true);
    setMessage('正在提交…');
    settle().then(function () {
      setSending(false);
      if (!state.result) {
        setMessage('没有可提交的建议：请先输入内容，等待建议出现。', 'error');
        return;
      }
      if (state.resultBody !== requestBody()) {
        setMessage('未提交：建议尚未按修改后的内容更新（见上方错误提示），请稍后再试。', 'error');
        return;
      }
      sendFeedback(choice(), kind, opener);
    });
  }

  function sendFeedback(choice, kind, opener) {
    var result = state.result;
    var key = getKey();
    if (!key) {
      state.pending = { choice: choice, kind: kind, opener: opener };
      setMessage('请输入 API 密钥后继续提交。');
      openKeyDialog('', opener);
      return;
    }
    setSending(true);
    setMessage('正在提交…');
    registerCase(result).then(function (caseId) {
      postFeedback(caseId, choice, kind, opener, key);
    }, function (message) {
      setSending(false);
      setMessage('提交失败：' + message, 'error');
    });
  }

  // The previewed petition becomes a case once, when the clerk first accepts or corrects it.
  function registerCase(result) {
    if (result.case_id) return Promise.resolve(result.case_id);
    var body = JSON.parse(state.resultBody);
    body.store = true;
    return fetch(API.classify, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return readJson(response).then(function (data) {
        if (!response.ok || !data || !data.case_id) {
          throw response.ok ? '服务未返回案件编号。' : errorText(response.status, data);
        }
        result.case_id = data.case_id;
        state.draftIds[data.case_id] = true;
        el.caseId.textContent = '案件编号：' + data.case_id +
          (data.model_version ? ' · 模型 ' + data.model_version : '');
        return data.case_id;
      });
    }, function () { throw '无法连接服务，请稍后重试。'; });
  }

  function postFeedback(caseId, choice, kind, opener, key) {
    var body = { case_id: caseId, label: choice.label };
    if (choice.department) body.department = choice.department;
    fetch(API.feedback, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json', 'X-API-Key': key },
      body: JSON.stringify(body)
    }).then(function (response) {
      return readJson(response).then(function (data) {
        setSending(false);
        if (response.ok) {
          var what = typeName(body.label) + (body.department ? ' → ' + body.department : '');
          setMessage('已提交' + (kind === 'accept' ? '（采纳建议）' : '（更正）') + '：' + what +
            (data && data.id !== undefined ? '。反馈编号 ' + data.id : '') + '。', 'success');
          if (kind === 'change') closeChange(true);
          return;
        }
        if (response.status === 401) {
          setKey('');
          state.pending = { choice: choice, kind: kind, opener: opener };
          setMessage('API 密钥无效，请重新输入。', 'error');
          openKeyDialog('密钥无效，请重新输入。', opener);
          return;
        }
        setMessage('提交失败：' + errorText(response.status, data), 'error');
      });
    }).catch(function () {
      setSending(false);
      setMessage('提交失败：无法连接服务，请稍后重试。', 'error');
    });
  }

  /* ------------------------------------------------------------------ wiring */

  function onInput(event) {
    el.charCount.textContent = String(el.text.value.length);
    if (event && event.isComposing) return;
    renderMirror();
    schedule();
  }

  ['title', 'text', 'region'].forEach(function (name) {
    var input = el[name];
    input.addEventListener('input', onInput);
    input.addEventListener('compositionstart', function () { state.composing = true; });
    input.addEventListener('compositionend', function () {
      state.composing = false;
      onInput();
    });
  });
  el.receivedAt.addEventListener('change', schedule);
  el.channel.addEventListener('change', schedule);

  el.form.addEventListener('submit', function (event) {
    event.preventDefault(); // Enter in a field: classify at once instead of reloading
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    classifyNow();
  });

  el.reset.addEventListener('click', function () {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    if (state.controller) state.controller.abort();
    el.form.reset();
    el.receivedAt.value = today();
    el.charCount.textContent = '0';
    state.draftIds = {};
    state.lastBody = null;
    state.seq += 1;
    setBusy(false);
    showResult(null);
    setMessage('');
    el.title.focus();
  });

  el.accept.addEventListener('click', function () {
    submitChoice('accept', function () {
      return { label: state.result.label, department: state.result.department || null };
    }, el.accept);
  });
  el.change.addEventListener('click', function () {
    if (el.changeForm.hidden) openChange();
    else closeChange(true);
  });
  el.changeLabel.addEventListener('change', function () {
    var department = state.typeDepartments[el.changeLabel.value];
    ensureDepartment(department);
    if (department) el.changeDepartment.value = department;
  });
  el.changeForm.addEventListener('submit', function (event) {
    event.preventDefault();
    submitChoice('change', function () {
      return { label: el.changeLabel.value, department: el.changeDepartment.value || null };
    }, el.changeSubmit);
  });
  el.changeCancel.addEventListener('click', function () { closeChange(true); });
  el.changeForm.addEventListener('keydown', function (event) {
    if (event.key === 'Escape') {
      event.preventDefault();
      closeChange(true);
    }
  });

  el.keyButton.addEventListener('click', function () { openKeyDialog(''); });
  el.keyForm.addEventListener('submit', function (event) {
    var key = el.keyInput.value.trim();
    if (!key) {
      event.preventDefault();
      el.keyError.textContent = '请输入密钥。';
      el.keyError.hidden = false;
      el.keyInput.setAttribute('aria-invalid', 'true');
      el.keyInput.focus();
      return;
    }
    setKey(key);
    if (!state.pending) setMessage('API 密钥已保存（仅本标签页有效）。', 'success');
    // method="dialog" closes the dialog; the close event continues.
  });
  el.keyCancel.addEventListener('click', function () { el.keyDialog.close('cancel'); });
  el.keyClear.addEventListener('click', function () {
    setKey('');
    el.keyClear.hidden = true;
    setMessage('已清除保存的 API 密钥。', 'success');
    el.keyInput.focus();
  });
  el.keyDialog.addEventListener('close', function () {
    el.keyInput.value = '';
    afterKeyDialog();
  });

  /* ------------------------------------------------------------------ start */

  el.receivedAt.value = today();
  updateKeyButton();
  setSending(false);
  loadTaxonomy();
  loadModelInfo();
  if (el.text.value.trim()) onInput(); // text restored by the browser after a reload

  // For tests and debugging: what the page currently shows.
  window.triagePage = {
    state: state,
    classifyNow: classifyNow,
    findSpans: findSpans
  };
})();
