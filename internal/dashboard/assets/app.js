// apd dashboard: plain ES module, no bundler, no network beyond the
// server it came from. uPlot is loaded before this module (vendor/uplot).
const uPlot = globalThis.uPlot;
const $ = (sel) => document.querySelector(sel);

const DAY = 86400;
const state = {
  range: DAY,        // seconds shown while live
  rangeChosen: false, // the user (or the first load) has picked the range
  uncharted: [],     // titles of sensors without numbers in the range
  live: true,        // the range ends now and readings stream in
  from: 0, to: 0,    // the range when not live (unix seconds)
  sensors: [],       // the page of sensors charted, as the server ranks them
  page: 0,           // which page of sensors (the server picks the order)
  pageSize: 0,       // sensors per page, as the server says
  sensorTotal: 0,    // sensors of all hosts together
  hosts: [],
  data: new Map(),   // sensor → series answer of /api/v1/series
  plots: new Map(),  // sensor → uPlot
  primary: null,     // the sensor of the sparklines
  latest: new Map(), // host → its latest reading of the primary sensor
  mapSensor: null,
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

function fmtNumber(v) {
  if (v == null) return '–';
  const a = Math.abs(v);
  if (a >= 1e3 * 1e3) {
    // Large numbers (bytes, counters) with an SI prefix: 58.2 G.
    const prefixes = ['k', 'M', 'G', 'T', 'P', 'E'];
    let i = -1, x = v;
    while (Math.abs(x) >= 1000 && i < prefixes.length - 1) { x /= 1000; i++; }
    return (+x.toFixed(Math.abs(x) >= 100 ? 0 : 1)).toString() + ' ' + prefixes[i];
  }
  if (a !== 0 && a < 1e-3) return v.toPrecision(3);
  return (+v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)).toString();
}

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
    b.classList.toggle('active', state.live && +b.dataset.range === state.range);
  }
  const png = new URLSearchParams(seriesParams(1600));
  png.set('width', '1600');
  png.set('theme', isDark() ? 'dark' : 'light');
  $('#png').href = '/api/v1/chart.png?' + png;
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
  const sensors = new Set(list);
  const changed = list.join() !== state.sensors.join();
  state.sensors = list;
  showPages();
  if (!state.primary || !sensors.has(state.primary)) {
    state.primary = ['temperature', 'cpu_load', 'power'].find((s) => sensors.has(s)) || list[0] || null;
  }
  if (!state.mapSensor || !sensors.has(state.mapSensor)) state.mapSensor = state.primary;
  return changed;
}

async function loadSeries() {
  if (state.sensors.length === 0) {
    render();
    return;
  }
  const all = $('#charts').clientWidth || 1000;
  const width = all / Math.max(1, Math.floor(all / 520));
  const list = await api('/api/v1/series?' + seriesParams(width - 60));
  const drawn = (sj) => sj.stats.points > 0;
  // A sensor with no numbers in the range (failing, or text like
  // version) gets no chart; the sparklines follow one that has some.
  const charted = list.filter(drawn).map((sj) => sj.sensor);
  if (!charted.includes(state.primary)) {
    state.primary = ['temperature', 'cpu_load', 'power'].find((x) => charted.includes(x)) || charted[0] || state.primary;
  }
  if (!charted.includes(state.mapSensor)) state.mapSensor = state.primary;
  // A fresh installation has minutes of readings: show them across the
  // chart, not as a sliver at the end of a day.
  if (state.live && !state.rangeChosen) {
    let first = Infinity;
    for (const sj of list) if (sj.t.length) first = Math.min(first, sj.t[0]);
    const age = Date.now() / 1000 - first;
    const fit = [3600, 21600, 86400, 604800, 2592000].find((r) => r >= age * 1.05);
    if (first !== Infinity && fit && fit < state.range) {
      state.range = fit;
      state.rangeChosen = true;
      showRange();
      return loadSeries();
    }
  }
  state.rangeChosen = true;
  const latest = new URLSearchParams({ sensor: state.primary, agg: 'last', format: 'json', since: iso(currentRange()[0]) });
  if (list.find((sj) => sj.sensor === state.primary)?.unit === '%') latest.set('unit', 'percent'); // ratios are charted as percentages
  const last = state.primary ? await api('/api/v1/query?' + latest) : [];
  state.latest.clear();
  for (const r of last) {
    const v = typeof r.value === 'number' ? r.value : (r.value && typeof r.value.magnitude === 'number' ? r.value.magnitude : null);
    state.latest.set(r.host, { t: Date.parse(r.ts) / 1000, v, text: v == null ? JSON.stringify(r.value) : null });
  }
  state.data.clear();
  for (const sj of list) if (drawn(sj)) state.data.set(sj.sensor, sj);
  state.uncharted = list.filter((sj) => !drawn(sj)).map((sj) => sj.title);
  window.apd.loads++;
  render();
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
  reload();
}

async function reload() {
  try {
    $('#status').textContent = 'loading…';
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
  renderHosts();
  renderCharts();
  renderMap();
  $('#uncharted').textContent = state.uncharted.length ? 'No numbers to chart in this range: ' + state.uncharted.join(', ') : '';
  if (window.apd.rendered == null && state.plots.size === state.data.size) {
    performance.mark('apd-rendered');
    window.apd.rendered = performance.now();
  }
}

function renderHosts() {
  const body = $('#hosts tbody');
  body.replaceChildren();
  const sj = state.data.get(state.primary);
  $('#spark-sensor').textContent = sj ? sj.title + (sj.unit ? ' (' + sj.unit + ')' : '') : 'Trend';
  for (const h of state.hosts) {
    const name = el('td', {}, el('span', { class: 'swatch' }), h.label);
    name.firstChild.style.background = h.chart_colour;
    if (h.label !== h.host) name.append(el('span', { class: 'host-id', text: h.host }));
    const state_ = h.state || 'unknown';
    const stateText = h.state || '–';
    const col = sj ? sj.hosts.findIndex((x) => x.host === h.host) : -1;
    const last = state.latest.get(h.host);
    const lastCell = el('td', { class: 'last', 'data-host': h.host });
    const value = last && (last.v != null ? `${fmtNumber(last.v)}${sj && sj.unit ? ' ' + sj.unit : ''}` : last.text);
    lastCell.textContent = last ? `${value} · ${ago(last.t)}` : (h.last_seen ? ago(Date.parse(h.last_seen) / 1000) : '–');
    const spark = el('canvas', { class: 'spark', width: '140', height: '26', 'data-host': h.host });
    const row = el('tr', { 'data-host': h.host }, name, el('td', { class: 'state-' + state_, text: stateText, title: h.state ? 'since ' + new Date(h.state_time).toLocaleString() : 'never published a status' }), lastCell, el('td', {}, spark));
    body.append(row);
    if (col >= 0) drawSpark(spark, sj, col, h.chart_colour);
  }
}

function drawSpark(canvas, sj, col, colour) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const vs = sj.v[col];
  let lo = Infinity, hi = -Infinity;
  for (const v of vs) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return;
  if (hi === lo) { hi += 1; lo -= 1; }
  const t0 = sj.from, t1 = Math.max(sj.to, sj.t[sj.t.length - 1] || sj.to);
  ctx.strokeStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < vs.length; i++) {
    if (vs[i] == null) continue;
    const x = (sj.t[i] - t0) / (t1 - t0) * (w - 2) + 1;
    const y = h - 2 - (vs[i] - lo) / (hi - lo) * (h - 4);
    if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
  }
  ctx.stroke();
}

// plotData turns a series answer into uPlot's columns. Daily totals
// become grouped bars: each host's bar at its own offset within the day,
// so one shared time axis holds them.
function plotData(sj) {
  if (!sj.bars) return [sj.t, ...sj.v];
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

function plotOptions(sj, width) {
  const muted = css('--muted'), grid = css('--grid');
  const [from, to] = currentRange();
  const bars = sj.bars ? uPlot.paths.bars({ size: [0.9, 60], align: 0 }) : null;
  return {
    width, height: 260,
    scales: { x: { time: true, range: () => [sj.bars ? Math.floor(from / DAY) * DAY : from, to] } },
    series: [{}, ...sj.hosts.map((h) => ({
      label: h.label, stroke: h.colour, width: sj.bars ? 0 : 1.5, fill: sj.bars ? h.colour : undefined,
      paths: bars || undefined, points: { show: false }, spanGaps: false,
      value: (u, v) => v == null ? '–' : fmtNumber(v) + (sj.unit ? ' ' + sj.unit : ''),
    }))],
    axes: [
      { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
      { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 54,
        values: (u, vals) => vals.map(fmtNumber) },
    ],
    cursor: { sync: { key: 'apd', setSeries: true }, drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
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

function renderCharts() {
  const root = $('#charts');
  const seen = new Set();
  const panelWidth = Math.max(300, root.clientWidth - 26);
  for (const sensor of state.sensors) {
    const sj = state.data.get(sensor);
    if (!sj) continue;
    seen.add(sensor);
    let panel = root.querySelector(`[data-sensor="${CSS.escape(sensor)}"]`);
    if (!panel) {
      panel = el('div', { class: 'chart-panel', 'data-sensor': sensor },
        el('h2', {}, el('span', { class: 'title' }), ' ', el('span', { class: 'unit' })),
        el('div', { class: 'chart' }));
      root.append(panel);
    }
    panel.querySelector('.title').textContent = sj.title;
    panel.querySelector('.unit').textContent = sj.unit ? '(' + sj.unit + ')' : '';
    const old = state.plots.get(sensor);
    if (old) old.destroy();
    const box = panel.querySelector('.chart');
    box.replaceChildren();
    const u = new uPlot(plotOptions(sj, box.clientWidth || panelWidth), plotData(sj), box);
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
  const sel = $('#map-sensor');
  if (sel.options.length !== state.sensors.length) {
    sel.replaceChildren(...state.sensors.map((s) => el('option', { value: s, text: s })));
  }
  sel.value = state.mapSensor;
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
    p.set('height', String(Math.max(300, Math.min(600, Math.round(w * 0.45)))));
    p.set('theme', isDark() ? 'dark' : 'light');
    $('#map-img').src = '/api/v1/chart.svg?' + p;
  }, 50);
}

function zoomTo(a, b) {
  state.live = false;
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
  // The page's sensors and the one of the hosts' table: a bounded list.
  const p = new URLSearchParams();
  for (const s of new Set([...state.sensors, state.primary].filter(Boolean))) p.append('sensor', s);
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
    if (!sj) { newHost = true; continue; }
    const col = sj.hosts.findIndex((h) => h.host === r.host);
    if (col < 0) { newHost = true; continue; }
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
  for (const b of document.querySelectorAll('#ranges button')) {
    b.addEventListener('click', () => {
      state.live = true;
      state.range = +b.dataset.range;
      state.rangeChosen = true;
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
    showRange();
    loadSeries();
  });
  $('#csv').addEventListener('click', downloadCSV);
  $('#prev').addEventListener('click', () => turnPage(-1));
  $('#next').addEventListener('click', () => turnPage(1));
  $('#theme').addEventListener('click', () => { setTheme(!isDark()); render(); showRange(); });
  $('#map-sensor').addEventListener('change', (ev) => { state.mapSensor = ev.target.value; renderMap(); });
  let resize = null;
  addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => render(), 200);
  });
  // Live charts slide with the clock; a fetch now and then re-reads the
  // states of hosts and evens out the points appended since.
  setInterval(() => { if (state.live && !document.hidden) reload(); }, 60000);
  reload();
}

init();
