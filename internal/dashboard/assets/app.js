// apd dashboard: plain ES module, no bundler, no network beyond the
// server it came from. uPlot is loaded before this module (vendor/uplot).
import { formatValue, tickLabels } from './format.js';

const uPlot = globalThis.uPlot;
const $ = (sel) => document.querySelector(sel);

const DAY = 86400;
// A first view fitted to young data spans at least this: a single
// reading sits inside a readable stretch of time, not on a pin's width.
const MIN_SPAN = 600;
// Host rows shown before "show all": a fleet of a hundred keeps its
// charts within reach.
const HOST_ROWS = 25;
const state = {
  range: DAY,        // seconds shown while live
  autoRange: true,   // the range follows the data until someone picks one
  uncharted: [],     // titles of sensors without numbers in the range
  live: true,        // the range ends now and readings stream in
  from: 0, to: 0,    // the range when not live (unix seconds)
  sensors: [],       // the page of sensors charted, as the server ranks them
  titles: new Map(), // sensor → the title its newest reading carries
  page: 0,           // which page of sensors (the server picks the order)
  pageSize: 0,       // sensors per page, as the server says
  sensorTotal: 0,    // sensors of all hosts together
  hosts: [],
  allHosts: false,   // every host row shown, however many
  data: new Map(),   // sensor → series answer of /api/v1/series
  plots: new Map(),  // sensor → uPlot
  primary: null,     // the sensor of the sparklines
  chosenPrimary: null, // … as someone chose it (the URL's trend)
  latest: new Map(), // host → its latest reading of the primary sensor
  mapSensor: null,
  chosenMap: null,   // the URL's map
  events: null,
  dirty: new Set(),
};
// For people and tests poking at the page.
window.apd = { state, plots: state.plots, rendered: null, liveReadings: 0, lastLive: null, loads: 0, csv: () => shownCSV() };

// ---- the API ----

class HTTPError extends Error {}

async function api(path, init) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' }, ...init });
  if (r.status === 401) {
    await login();
    return api(path, init);
  }
  if (!r.ok) {
    let msg = r.status + ' ' + r.statusText;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
    throw new HTTPError(msg);
  }
  return r.json();
}

// login asks for the API key once; the server answers with an HttpOnly,
// SameSite=Strict cookie, so the page never keeps the key itself.
let loggingIn = null;
function login() {
  if (loggingIn) return loggingIn;
  loggingIn = new Promise((resolve) => {
    const dlg = $('#login');
    const form = $('#login-form');
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const r = await fetch('/api/v1/session', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ key: $('#key').value }),
      });
      if (r.ok) {
        $('#key').value = '';
        dlg.close();
        loggingIn = null;
        resolve();
        return;
      }
      $('#login-error').textContent = 'That is not the key.';
    };
    dlg.showModal();
  });
  return loggingIn;
}

// ---- formatting ----

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return Math.round(s) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 2 * DAY) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / DAY) + ' d ago';
}

function iso(sec) { return new Date(sec * 1000).toISOString(); }

function localInput(sec) {
  const d = new Date(sec * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- the view in the URL ----

// The view someone chose (range, trend and map sensors, page) lives in
// the query string, so a link shows the same view and a reload keeps
// it. What the page picked by itself stays out: a shared link then
// keeps choosing from the data.
function spanText(sec) {
  for (const [unit, n] of [['d', DAY], ['h', 3600], ['m', 60]]) if (sec % n === 0) return sec / n + unit;
  return sec + 's';
}

function parseSpan(text) {
  const m = /^(\d+)([smhd]?)$/.exec(text || '');
  if (!m) return null;
  const n = +m[1] * { '': 1, s: 1, m: 60, h: 3600, d: DAY }[m[2]];
  return n >= 60 && n <= 400 * DAY ? n : null;
}

function readURL() {
  const q = new URLSearchParams(location.search);
  const from = Date.parse(q.get('from') || ''), to = Date.parse(q.get('to') || '');
  if (from < to) {
    state.live = false;
    state.autoRange = false;
    state.from = from / 1000;
    state.to = to / 1000;
  } else if (parseSpan(q.get('range'))) {
    state.range = parseSpan(q.get('range'));
    state.autoRange = false;
  }
  state.chosenPrimary = q.get('trend') || null;
  state.chosenMap = q.get('map') || null;
  state.page = Math.max(0, Math.floor(+q.get('page') || 0));
  state.allHosts = q.get('hosts') === 'all';
}

function writeURL() {
  const q = new URLSearchParams();
  if (!state.live) {
    q.set('from', new Date(state.from * 1000).toISOString());
    q.set('to', new Date(state.to * 1000).toISOString());
  } else if (!state.autoRange) {
    q.set('range', spanText(state.range));
  }
  if (state.chosenPrimary) q.set('trend', state.chosenPrimary);
  if (state.chosenMap) q.set('map', state.chosenMap);
  if (state.page > 0) q.set('page', String(state.page));
  if (state.allHosts) q.set('hosts', 'all');
  const search = q.toString() ? '?' + q : '';
  if (search !== location.search) history.replaceState(null, '', location.pathname + search + location.hash);
}

// ---- the range ----

function currentRange() {
  if (state.live) {
    const to = Date.now() / 1000;
    return [to - state.range, to];
  }
  return [state.from, state.to];
}

function showRange() {
  const [from, to] = currentRange();
  $('#from').value = localInput(from);
  $('#to').value = localInput(to);
  $('#live').checked = state.live;
  for (const b of document.querySelectorAll('#ranges button')) {
    const on = state.live && +b.dataset.range === state.range;
    b.classList.toggle('active', on);
    b.setAttribute('aria-pressed', String(on));
  }
  const png = new URLSearchParams(seriesParams(1600));
  png.set('width', '1600');
  png.set('theme', isDark() ? 'dark' : 'light');
  $('#png').href = '/api/v1/chart.png?' + png;
  writeURL();
}

function seriesParams(points) {
  const [from, to] = currentRange();
  const p = new URLSearchParams();
  for (const s of state.sensors) p.append('sensor', s);
  p.set('since', iso(from));
  if (!state.live) p.set('until', iso(to));
  p.set('points', String(Math.max(10, Math.min(10000, Math.round(points)))));
  return p;
}

// fitSpan is the range that shows readings reaching back age seconds
// across the chart: a little more than their age, in round steps.
function fitSpan(age) {
  const want = Math.max(MIN_SPAN, age * 1.1);
  return [600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY].find((r) => r >= want) || DAY;
}

// ---- loading ----

// loadHosts reads the hosts and the page of sensors to chart. A host may
// have a thousand sensors: the server ranks them (those most hosts have
// first) and hands out a page, so no URL the page makes names more than
// a page of sensors, and a host with many of its own never crowds out
// what the fleet shares.
async function loadHosts() {
  const [hosts, page] = await Promise.all([
    api('/api/v1/dashboard/hosts'),
    api('/api/v1/dashboard/sensors?' + new URLSearchParams({ offset: String(state.page * state.pageSize) })),
  ]);
  state.hosts = hosts;
  state.pageSize = page.limit;
  state.sensorTotal = page.total;
  if (page.sensors.length === 0 && state.page > 0) {
    state.page = Math.max(0, Math.ceil(page.total / page.limit) - 1); // fewer sensors than before
    return loadHosts();
  }
  const list = page.sensors.map((s) => s.sensor);
  for (const s of page.sensors) if (s.title) state.titles.set(s.sensor, s.title);
  const changed = list.join() !== state.sensors.join();
  state.sensors = list;
  showPages();
  return changed;
}

// titleOf is a sensor's title as its readings give it.
function titleOf(sensor) {
  return state.data.get(sensor)?.title || state.titles.get(sensor) || sensor;
}

// defaultSensor is the sensor with numbers on the most hosts in the
// range (ties: the server's order, which ranks what most hosts have
// first). A sensor that every host has but that only fails, or tells
// text, has no numbers and is never the default; one of states (true
// and false: 1 and 0, no unit) only when nothing measures.
function defaultSensor(list) {
  let best = null, most = 0;
  for (const sj of list) {
    const n = sj.v.filter((col) => col.some((v) => v != null)).length;
    const states = !sj.unit && sj.v.every((col) => col.every((v) => v == null || v === 0 || v === 1));
    const score = states ? n / 1000 : n;
    if (score > most) { best = sj.sensor; most = score; }
  }
  return best;
}

async function loadSeries() {
  if (state.sensors.length === 0) {
    render();
    return;
  }
  if (state.live && state.autoRange) state.range = DAY;
  const all = $('#charts').clientWidth || 1000;
  const width = all / Math.max(1, Math.floor(all / 520));
  let list = await api('/api/v1/series?' + seriesParams(width - 60));
  // A fresh installation has minutes of readings: show them across the
  // chart, not as a sliver at the end of a day.
  if (state.live && state.autoRange) {
    let first = Infinity;
    for (const sj of list) if (sj.stats.points > 0) first = Math.min(first, sj.t[0]);
    const fit = fitSpan(Date.now() / 1000 - first);
    if (first !== Infinity && fit < state.range) {
      state.range = fit;
      showRange();
      list = await api('/api/v1/series?' + seriesParams(width - 60));
    }
  }
  const drawn = (sj) => sj.stats.points > 0;
  // A sensor with no numbers in the range (failing, or text like
  // version) gets no chart; the sparklines and the map follow one that
  // has some.
  const charted = list.filter(drawn);
  const has = (s) => charted.some((sj) => sj.sensor === s);
  const fallback = defaultSensor(charted);
  state.primary = has(state.chosenPrimary) ? state.chosenPrimary : fallback;
  state.mapSensor = has(state.chosenMap) ? state.chosenMap : state.primary;
  await loadLatest(list);
  state.data.clear();
  for (const sj of charted) state.data.set(sj.sensor, sj);
  state.uncharted = list.filter((sj) => !drawn(sj)).map((sj) => state.titles.get(sj.sensor) || sj.title);
  window.apd.loads++;
  render();
}

// loadLatest reads each host's newest reading of the trend's sensor.
async function loadLatest(list) {
  state.latest.clear();
  if (!state.primary) return;
  const latest = new URLSearchParams({ sensor: state.primary, agg: 'last', format: 'json', since: iso(currentRange()[0]) });
  if (list.find((sj) => sj.sensor === state.primary)?.unit === '%') latest.set('unit', 'percent'); // ratios are charted as percentages
  for (const r of await api('/api/v1/query?' + latest)) {
    const v = typeof r.value === 'number' ? r.value : (r.value && typeof r.value.magnitude === 'number' ? r.value.magnitude : null);
    state.latest.set(r.host, { t: Date.parse(r.ts) / 1000, v, text: v == null ? JSON.stringify(r.value) : null });
  }
}

function showPages() {
  const pages = Math.ceil(state.sensorTotal / Math.max(1, state.pageSize));
  $('#pages').hidden = pages <= 1;
  const first = state.page * state.pageSize;
  $('#page-info').textContent = `sensors ${first + 1}–${first + state.sensors.length} of ${state.sensorTotal}`;
  $('#prev').disabled = state.page === 0;
  $('#next').disabled = state.page >= pages - 1;
}

function turnPage(by) {
  state.page = Math.max(0, state.page + by);
  writeURL();
  reload();
}

async function reload() {
  try {
    $('#status').textContent = 'loading…';
    $('#status').classList.remove('error');
    const sensorsChanged = await loadHosts();
    // A stream the server ended for good (a session that expired) is
    // opened again once the page has the key again.
    if (sensorsChanged || !state.events || state.events.readyState === EventSource.CLOSED) connectLive();
    showRange();
    await loadSeries();
    $('#status').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    $('#status').textContent = e.message;
    $('#status').classList.add('error');
    throw e;
  }
}

// ---- drawing ----

function isDark() { return document.documentElement.classList.contains('dark'); }

function render() {
  $('#empty').hidden = state.sensors.length > 0;
  renderChoices();
  renderHosts();
  renderCharts();
  renderMap();
  $('#uncharted').textContent = state.uncharted.length ? 'No numbers to chart in this range: ' + state.uncharted.join(', ') : '';
  if (window.apd.rendered == null && state.plots.size === state.data.size) {
    performance.mark('apd-rendered');
    window.apd.rendered = performance.now();
  }
}

// renderChoices fills the trend and map pickers with the sensors that
// have numbers to show.
function renderChoices() {
  const options = [...state.data.keys()].map((s) => [s, titleOf(s)]);
  for (const [sel, value] of [[$('#trend-sensor'), state.primary], [$('#map-sensor'), state.mapSensor]]) {
    const want = options.map(([s, t]) => s + '\u0000' + t).join('\u0001');
    if (sel.dataset.options !== want) {
      sel.replaceChildren(...options.map(([s, t]) => el('option', { value: s, text: t })));
      sel.dataset.options = want;
    }
    sel.value = value || '';
    sel.disabled = options.length === 0;
  }
}

function withUnit(sj, v) { return formatValue(v, sj ? sj.unit : ''); }

function renderHosts() {
  const body = $('#hosts tbody');
  body.replaceChildren();
  const sj = state.data.get(state.primary);
  $('#last-head').textContent = sj ? 'Last ' + sj.title : 'Last reading';
  const shown = state.allHosts ? state.hosts : state.hosts.slice(0, HOST_ROWS);
  for (const h of shown) {
    const name = el('th', { scope: 'row' }, el('span', { class: 'swatch', 'aria-hidden': 'true' }), h.label);
    name.firstChild.style.background = h.chart_colour;
    if (h.label !== h.host) name.append(el('span', { class: 'host-id', text: h.host }));
    const state_ = h.state || 'unknown';
    const stateText = h.state || '–';
    const col = sj ? sj.hosts.findIndex((x) => x.host === h.host) : -1;
    const last = state.latest.get(h.host);
    const lastCell = el('td', { class: 'last', 'data-host': h.host });
    const value = last && (last.v != null ? withUnit(sj, last.v) : last.text);
    lastCell.append(last ? value : '–', el('span', { class: 'ago', text: last ? ago(last.t) : (h.last_seen ? ago(Date.parse(h.last_seen) / 1000) : '') }));
    const spark = el('canvas', { class: 'spark', width: '140', height: '28', 'data-host': h.host, role: 'img' });
    const row = el('tr', { 'data-host': h.host }, name,
      el('td', { class: 'state state-' + state_, text: stateText, title: h.state ? 'since ' + new Date(h.state_time).toLocaleString() : 'never published a status' }),
      lastCell, el('td', { class: 'trend' }, spark));
    row.addEventListener('mouseenter', () => emphasise(h.host));
    row.addEventListener('mouseleave', () => emphasise(null));
    body.append(row);
    const range = col >= 0 ? drawSpark(spark, sj, col, h.chart_colour) : null;
    spark.setAttribute('aria-label', range ? `${sj.title}: ${withUnit(sj, range[0])} to ${withUnit(sj, range[1])}` : 'no numbers');
  }
  const more = $('#more-hosts');
  more.hidden = state.hosts.length <= HOST_ROWS;
  more.textContent = state.allHosts ? `Show the first ${HOST_ROWS} hosts` : `Show all ${state.hosts.length} hosts`;
  more.setAttribute('aria-expanded', String(state.allHosts));
}

// drawSpark draws one host's column of sj as the charts do: a line
// where readings follow each other, a dot where one stands alone. It returns the low and high
// drawn, or null when there is nothing to draw.
function drawSpark(canvas, sj, col, colour) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const vs = sj.v[col];
  let lo = Infinity, hi = -Infinity;
  for (const v of vs) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return null;
  const range = [lo, hi];
  if (hi === lo) { hi += 1; lo -= 1; }
  const t0 = sj.from, t1 = Math.max(sj.to, sj.t[sj.t.length - 1] || sj.to);
  const x = (i) => (sj.t[i] - t0) / (t1 - t0 || 1) * (w - 6) + 3;
  const y = (v) => h - 3 - (v - lo) / (hi - lo) * (h - 6);
  ctx.strokeStyle = ctx.fillStyle = colour;
  ctx.lineWidth = 1.5;
  const line = hostColumn(sj.t, vs);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === null) pen = false;
    if (line[i] == null) continue;
    if (pen) ctx.lineTo(x(i), y(line[i])); else ctx.moveTo(x(i), y(line[i]));
    pen = true;
  }
  ctx.stroke();
  for (const i of loneIndices(line, 0, line.length - 1)) {
    ctx.beginPath();
    ctx.arc(x(i), y(line[i]), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  return range;
}

// hostColumn is one host's column for drawing. The columns share one
// time axis, so a host's column is null at the times of other hosts'
// readings: those become undefined, which uPlot (and drawSpark) join
// across, and only a silence well beyond the host's usual step stays a
// null, a gap in its line.
function hostColumn(t, vs) {
  const col = vs.map((v) => v == null ? undefined : v);
  const own = [];
  for (let i = 0; i < vs.length; i++) if (vs[i] != null) own.push(i);
  if (own.length < 3) return col;
  const steps = own.slice(1).map((i, k) => t[i] - t[own[k]]).sort((a, b) => a - b);
  const limit = 3 * steps[steps.length >> 1];
  for (let k = 1; k < own.length; k++) {
    const a = own[k - 1], b = own[k];
    if (t[b] - t[a] > limit && b - a > 1) col[a + 1] = null;
  }
  return col;
}

// loneIndices are the readings in [i0, i1] of a host column that a line
// cannot show: alone between gaps, or the only one.
function loneIndices(col, i0, i1) {
  const own = [];
  let gap = true;
  for (let i = i0; i <= i1; i++) {
    if (col[i] === null) gap = true;
    else if (col[i] !== undefined) { own.push([i, gap]); gap = false; }
  }
  return own.filter(([, before], k) => before && (k + 1 === own.length || own[k + 1][1])).map(([i]) => i);
}

// plotData turns a series answer into uPlot's columns. A host's column
// holds nulls at the times of other hosts; a line joins its own
// readings across them (spanGaps below) unless they are far apart.
// Daily totals become grouped bars: each host's bar at its own offset
// within the day, so one shared time axis holds them.
function plotData(sj) {
  if (!sj.bars) return [sj.t, ...sj.v.map((vs) => hostColumn(sj.t, vs))];
  const n = sj.hosts.length;
  const xs = [], cols = sj.hosts.map(() => []);
  sj.t.forEach((t, i) => {
    for (let c = 0; c < n; c++) {
      xs.push(t + (c + 1) * DAY / (n + 1));
      cols.forEach((col, k) => col.push(k === c ? sj.v[c][i] : null));
    }
  });
  return [xs, ...cols];
}

// Steps for axes of bytes: round in the binary unit the labels use
// (0.5 GiB, not 500 MiB written as 0.49 GiB), as tickLabels picks it.
function byteIncrs(sj) {
  let max = 0;
  for (const col of sj.v) for (const v of col) if (v != null) max = Math.max(max, Math.abs(v));
  let p = 0;
  while (max / 1024 ** p >= 1024 && p < 6) p++;
  const out = [];
  for (let e = -3; e <= 3; e++) for (const m of [1, 2, 2.5, 5]) out.push(m * 10 ** e * 1024 ** p);
  return out.filter((x) => x >= 1);
}
// Steps for axes of seconds: round in minutes, hours, days.
const secondIncrs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY];

// pointsFilter shows the readings a line cannot: those alone between
// gaps (a single reading, or one among other hosts' times).
function pointsFilter(u, si, show) {
  if (show) return null;
  const [i0, i1] = u.series[0].idxs || [0, u.data[0].length - 1];
  const idx = loneIndices(u.data[si], i0, i1);
  return idx.length ? idx : null;
}

function plotOptions(sj, width) {
  const muted = css('--muted'), grid = css('--grid');
  const [from, to] = currentRange();
  const bars = sj.bars ? uPlot.paths.bars({ size: [0.9, 60], align: 0 }) : null;
  const incrs = sj.unit === 'B' ? byteIncrs(sj) : sj.unit === 's' ? secondIncrs : undefined;
  const narrow = width < 500;
  return {
    width, height: narrow ? 220 : 260,
    scales: { x: { time: true, range: () => [sj.bars ? Math.floor(from / DAY) * DAY : from, to] } },
    // Many hosts: the line nearest the cursor stands out, the rest fade.
    focus: { alpha: 0.25 },
    series: [{}, ...sj.hosts.map((h) => ({
      label: h.label, stroke: h.colour, width: sj.bars ? 0 : 1.5, fill: sj.bars ? h.colour : undefined,
      paths: bars || undefined, spanGaps: false,
      points: sj.bars ? { show: false } : { size: 7, fill: h.colour, filter: pointsFilter },
      value: (u, v) => withUnit(sj, v),
    }))],
    axes: [
      { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, space: narrow ? 70 : 50 },
      { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, incrs,
        values: (u, vals) => tickLabels(vals, sj.unit),
        size: (u, values) => 22 + 7.5 * Math.max(2, ...(values || []).map((s) => String(s).length)) },
    ],
    cursor: { sync: { key: 'apd', setSeries: true }, drag: { x: true, y: false, setScale: false }, points: { size: 6 }, focus: { prox: 24 } },
    legend: { live: true },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width > 4) {
          const a = u.posToVal(u.select.left, 'x'), b = u.posToVal(u.select.left + u.select.width, 'x');
          zoomTo(a, b);
        }
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      }],
    },
  };
}

// emphasise brings one host's lines forward in every chart (null: all
// alike again), as hovering its row in the table asks.
function emphasise(host) {
  for (const [sensor, u] of state.plots) {
    const sj = state.data.get(sensor);
    const i = host == null ? -1 : sj.hosts.findIndex((h) => h.host === host);
    u.setSeries(i >= 0 ? i + 1 : null, { focus: i >= 0 }, false);
  }
}

function renderCharts() {
  const root = $('#charts');
  const seen = new Set();
  const panelWidth = Math.max(240, root.clientWidth - 26);
  for (const sensor of state.sensors) {
    const sj = state.data.get(sensor);
    if (!sj) continue;
    seen.add(sensor);
    let panel = root.querySelector(`[data-sensor="${CSS.escape(sensor)}"]`);
    if (!panel) {
      const id = 'chart-title-' + sensor;
      panel = el('section', { class: 'chart-panel', 'data-sensor': sensor, 'aria-labelledby': id },
        el('h2', { id }, el('span', { class: 'title' }), ' ', el('span', { class: 'unit' })),
        el('div', { class: 'chart' }));
      root.append(panel);
    }
    panel.querySelector('.title').textContent = sj.title;
    panel.querySelector('.unit').textContent = sj.unit ? '(' + sj.unit + ')' : '';
    const old = state.plots.get(sensor);
    if (old) old.destroy();
    const box = panel.querySelector('.chart');
    box.replaceChildren();
    box.classList.toggle('many', sj.hosts.length > 12);
    const u = new uPlot(plotOptions(sj, box.clientWidth || panelWidth), plotData(sj), box);
    // The canvas is a picture to a screen reader; the legend below it
    // reads out the hosts and their values.
    u.root.querySelector('canvas')?.setAttribute('aria-hidden', 'true');
    state.plots.set(sensor, u);
  }
  for (const [sensor, u] of state.plots) {
    if (!seen.has(sensor)) {
      u.destroy();
      state.plots.delete(sensor);
      root.querySelector(`[data-sensor="${CSS.escape(sensor)}"]`)?.remove();
    }
  }
}

let mapTimer = null;
function renderMap() {
  const located = state.hosts.some((h) => h.location);
  $('#map').hidden = !located || !state.mapSensor;
  if ($('#map').hidden) return;
  clearTimeout(mapTimer);
  // Drawn by the server with the same code as apd chart --map.
  mapTimer = setTimeout(() => {
    const w = Math.round($('#map').clientWidth - 24);
    const p = new URLSearchParams(seriesParams(10));
    p.delete('sensor');
    p.delete('points');
    p.set('sensor', state.mapSensor);
    p.set('map', 'only');
    p.set('width', String(Math.max(300, Math.min(4000, w))));
    p.set('height', String(Math.max(300, Math.min(600, Math.round(w * 0.6)))));
    p.set('theme', isDark() ? 'dark' : 'light');
    $('#map-img').src = '/api/v1/chart.svg?' + p;
    $('#map-img').alt = `Hosts on a map, coloured by their latest ${titleOf(state.mapSensor)}`;
  }, 50);
}

function zoomTo(a, b) {
  state.live = false;
  state.autoRange = false;
  state.from = Math.floor(a);
  state.to = Math.ceil(b);
  showRange();
  loadSeries().catch((e) => { $('#status').textContent = e.message; });
}

// ---- live ----

function connectLive() {
  if (state.events) state.events.close();
  state.events = null;
  if (state.sensors.length === 0) return;
  // The page's sensors (the trend's is one of them): a bounded list.
  const p = new URLSearchParams();
  for (const s of state.sensors) p.append('sensor', s);
  const es = new EventSource('/api/v1/live?' + p);
  es.addEventListener('readings', (ev) => onReadings(JSON.parse(ev.data)));
  es.addEventListener('resync', () => { if (state.live) reload(); });
  state.events = es;
}

let newHost = false;
function onReadings(list) {
  window.apd.liveReadings += list.length;
  for (const r of list) {
    if (r.unit === 'ratio' && r.v != null) r.v *= 100; // charted as percentages
    window.apd.lastLive = r;
    if (r.sensor === state.primary && !(state.latest.get(r.host)?.t > r.t)) {
      state.latest.set(r.host, { t: r.t, v: r.v, text: r.human || '–' });
      state.dirty.add(r.sensor);
    }
    if (!state.live) continue;
    const sj = state.data.get(r.sensor);
    if (!sj) { if (r.v != null) newHost = true; continue; }
    const col = sj.hosts.findIndex((h) => h.host === r.host);
    if (col < 0) { if (r.v != null) newHost = true; continue; }
    if (sj.bars || r.v == null) continue; // totals come with the next fetch
    const n = sj.t.length;
    if (n > 0 && r.t < sj.t[n - 1]) continue; // late: the next fetch has it
    if (n > 0 && r.t === sj.t[n - 1]) {
      sj.v[col][n - 1] = r.v;
    } else {
      sj.t.push(r.t);
      sj.v.forEach((vs, i) => vs.push(i === col ? r.v : null));
    }
    state.dirty.add(r.sensor);
  }
  if (newHost) {
    newHost = false;
    reload();
    return;
  }
  if (state.dirty.size) requestAnimationFrame(flushLive);
}

function flushLive() {
  const [from] = currentRange();
  for (const sensor of state.dirty) {
    const sj = state.data.get(sensor);
    const u = state.plots.get(sensor);
    if (!sj || !u) continue;
    let drop = 0;
    while (drop < sj.t.length && sj.t[drop] < from) drop++;
    if (drop) {
      sj.t.splice(0, drop);
      for (const vs of sj.v) vs.splice(0, drop);
    }
    u.setData(plotData(sj));
  }
  if (state.dirty.has(state.primary)) renderHosts();
  state.dirty.clear();
}

// ---- controls ----

function shownCSV() {
  const rows = ['sensor,host,name,time,value,unit'];
  const quote = (s) => /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  for (const sj of state.data.values()) {
    sj.hosts.forEach((h, c) => {
      sj.t.forEach((t, i) => {
        const v = sj.v[c][i];
        if (v != null) rows.push([sj.sensor, h.host, quote(h.label), iso(t), v, quote(sj.unit)].join(','));
      });
    });
  }
  return rows.join('\n') + '\n';
}

function downloadCSV() {
  const url = URL.createObjectURL(new Blob([shownCSV()], { type: 'text/csv' }));
  const a = el('a', { href: url, download: 'apd-readings.csv' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function setTheme(dark) {
  document.documentElement.classList.toggle('dark', dark);
  try { localStorage.setItem('apd-theme', dark ? 'dark' : 'light'); } catch { /* private mode */ }
}

function init() {
  let saved = null;
  try { saved = localStorage.getItem('apd-theme'); } catch { /* private mode */ }
  setTheme(saved ? saved === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches);
  readURL();
  for (const b of document.querySelectorAll('#ranges button')) {
    b.addEventListener('click', () => {
      state.live = true;
      state.range = +b.dataset.range;
      state.autoRange = false;
      showRange();
      loadSeries();
    });
  }
  $('#picker').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const a = Date.parse($('#from').value) / 1000, b = Date.parse($('#to').value) / 1000;
    if (!(a < b)) { $('#status').textContent = 'from must be before to'; return; }
    zoomTo(a, b);
  });
  $('#live').addEventListener('change', (ev) => {
    if (ev.target.checked) {
      state.live = true;
      state.range = Math.max(60, Math.round(state.to - state.from)) || DAY;
    } else {
      [state.from, state.to] = currentRange();
      state.live = false;
    }
    state.autoRange = false;
    showRange();
    loadSeries();
  });
  $('#csv').addEventListener('click', downloadCSV);
  $('#prev').addEventListener('click', () => turnPage(-1));
  $('#next').addEventListener('click', () => turnPage(1));
  $('#theme').addEventListener('click', () => {
    setTheme(!isDark());
    $('#theme').setAttribute('aria-pressed', String(isDark()));
    render();
    showRange();
  });
  $('#theme').setAttribute('aria-pressed', String(isDark()));
  $('#map-sensor').addEventListener('change', (ev) => {
    state.mapSensor = state.chosenMap = ev.target.value;
    writeURL();
    renderMap();
  });
  $('#trend-sensor').addEventListener('change', async (ev) => {
    state.primary = state.chosenPrimary = ev.target.value;
    if (!state.chosenMap) state.mapSensor = state.primary;
    writeURL();
    try {
      await loadLatest([...state.data.values()]);
    } catch (e) {
      $('#status').textContent = e.message;
    }
    renderHosts();
    renderChoices();
    renderMap();
  });
  $('#more-hosts').addEventListener('click', () => {
    state.allHosts = !state.allHosts;
    writeURL();
    renderHosts();
  });
  let resize = null;
  let lastWidth = innerWidth;
  addEventListener('resize', () => {
    if (innerWidth === lastWidth) return; // taller or shorter: the charts fit as they are
    lastWidth = innerWidth;
    clearTimeout(resize);
    resize = setTimeout(() => render(), 200);
  });
  // Live charts slide with the clock; a fetch now and then re-reads the
  // states of hosts and evens out the points appended since.
  setInterval(() => { if (state.live && !document.hidden) reload(); }, 60000);
  reload();
}

init();
