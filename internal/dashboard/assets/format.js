// Number formatting as the CLI does it: a port of schema/format.go
// (FormatQuantity and the formatters it calls) and of the Go behaviour
// they lean on (fmt's %.Nf, strconv's shortest 'f', time.Duration), so
// the page and `apd query` print a reading alike. format_test.go runs
// these in Chromium against the Go originals.

// goFixed is Go's fmt %.{prec}f: the exact binary value rounded half to
// even, where JavaScript's toFixed rounds ties up and switches to
// exponents from 1e21.
export function goFixed(x, prec) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  const neg = x < 0 || Object.is(x, -0);
  const [int, frac] = exactDecimal(Math.abs(x));
  const kept = frac.slice(0, prec).padEnd(prec, '0');
  const rest = frac.slice(prec);
  let up = false;
  if (rest[0] > '5') up = true;
  else if (rest[0] === '5') {
    if (/[1-9]/.test(rest.slice(1))) up = true;
    else up = +(prec > 0 ? kept[prec - 1] : int[int.length - 1]) % 2 === 1;
  }
  let digits = int + kept;
  if (up) digits = incDecimal(digits);
  const i = digits.length - prec;
  const body = prec > 0 ? digits.slice(0, i) + '.' + digits.slice(i) : digits;
  return (neg ? '-' : '') + body;
}

// exactDecimal returns the integer and fraction digits of a ≥ 0 exactly
// (a double has at most a few dozen fraction digits at the magnitudes
// formatted here; toFixed(100) writes them all).
function exactDecimal(a) {
  if (a >= 1e21) return [BigInt(a).toString(), ''];
  const s = a.toFixed(100);
  const dot = s.indexOf('.');
  return [s.slice(0, dot), s.slice(dot + 1).replace(/0+$/, '')];
}

function incDecimal(digits) {
  const d = digits.split('');
  let i = d.length - 1;
  while (i >= 0 && d[i] === '9') d[i--] = '0';
  if (i < 0) d.unshift('1');
  else d[i] = String(+d[i] + 1);
  return d.join('');
}

// formatNumber is strconv.FormatFloat(f, 'f', -1, 64): the shortest
// digits that read back as f, never with an exponent.
export function formatNumber(f) {
  if (Number.isNaN(f)) return 'NaN';
  if (f === Infinity) return '+Inf';
  if (f === -Infinity) return '-Inf';
  const neg = f < 0 || Object.is(f, -0);
  // String() gives the shortest round-trip digits, closest to f (as Go).
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(Math.abs(f)));
  let digits = m[1] + (m[2] || '');
  let dp = m[1].length + (m[3] ? +m[3] : 0);
  const lead = digits.match(/^0*/)[0].length;
  if (lead === digits.length) return neg ? '-0' : '0';
  digits = digits.slice(lead).replace(/0+$/, '');
  dp -= lead;
  let s;
  if (dp <= 0) s = '0.' + '0'.repeat(-dp) + digits;
  else if (dp >= digits.length) s = digits + '0'.repeat(dp - digits.length);
  else s = digits.slice(0, dp) + '.' + digits.slice(dp);
  return (neg ? '-' : '') + s;
}

// The canonical unit names and aliases of schema/units.go.
const canonicalUnits = new Set(['degC', 'degF', 'K', 'percent', 'ratio', 'B', 'W', 'Wh', 'J', 'V', 'A', 'Pa', 'hPa', 'lx', 'ppm', 's', 'deg']);
const unitAliases = {
  degree_Celsius: 'degC', celsius: 'degC', '°C': 'degC', C: 'degC',
  degree_Fahrenheit: 'degF', fahrenheit: 'degF', '°F': 'degF', F: 'degF',
  kelvin: 'K',
  '%': 'percent', percentage: 'percent',
  byte: 'B', bytes: 'B',
  watt: 'W', watt_hour: 'Wh', joule: 'J',
  volt: 'V', ampere: 'A',
  pascal: 'Pa', hectopascal: 'hPa',
  lux: 'lx', parts_per_million: 'ppm',
  second: 's', seconds: 's', sec: 's',
  degree: 'deg', degrees: 'deg',
};

// canonicalUnit is schema.CanonicalUnit: [name, known].
export function canonicalUnit(unit) {
  if (canonicalUnits.has(unit)) return [unit, true];
  if (Object.hasOwn(unitAliases, unit)) return [unitAliases[unit], true];
  return [unit, false];
}

// formatQuantity is schema.FormatQuantity.
export function formatQuantity(m, unit) {
  const [u] = canonicalUnit(unit);
  switch (u) {
    case 'degC': return formatCelsius(m);
    case 'degF': return goFixed(m, 1) + ' °F';
    case 'K': return goFixed(m, 2) + ' K';
    case 'ratio': return formatPercent(m * 100);
    case 'percent': return formatPercent(m);
    case 'B': return formatBytes(m);
    case 'Wh': return Math.abs(m) >= 1000 ? goFixed(m / 1000, 3) + ' kWh' : goFixed(m, 3) + ' Wh';
    case 'W': return Math.abs(m) >= 1000 ? goFixed(m / 1000, 3) + ' kW' : goFixed(m, 1) + ' W';
    case 's': return formatDuration(m);
    case 'deg': return formatNumber(m) + '°';
    case '': return formatNumber(m);
  }
  return formatNumber(m) + ' ' + unit;
}

// formatCelsius is schema.FormatCelsius: "21.0 °C (69.8 °F)".
export function formatCelsius(c) {
  return goFixed(c, 1) + ' °C (' + goFixed(c * 9 / 5 + 32, 1) + ' °F)';
}

export function formatPercent(p) { return goFixed(p, 1) + '%'; }

// formatRatio is schema.FormatRatio for a number: 0.098 → "9.8%".
export function formatRatio(f) { return formatPercent(f * 100); }

const binaryPrefixes = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

// formatBytes is schema.FormatBytes: 716476416 → "683.3 MiB".
export function formatBytes(n) {
  let i = 0;
  while (Math.abs(n) >= 1024 && i < binaryPrefixes.length - 1) {
    n /= 1024;
    i++;
  }
  if (i === 0) return goFixed(n, 0) + ' B';
  return goFixed(n, 1) + ' ' + binaryPrefixes[i];
}

const SEC = 1000000000n, MIN = 60n * SEC, HOUR = 60n * MIN, DAYNS = 24n * HOUR;

// formatDuration is schema.FormatDuration: 273906 → "3d 4h 5m 6s". The
// nanoseconds are a BigInt, as Go's int64 Duration: a float loses whole
// seconds past 104 days of them.
export function formatDuration(sec) {
  let d = roundDuration(toDuration(sec * 1e9), SEC);
  if (d < MIN) return durationString(d);
  const days = d / DAYNS;
  d -= days * DAYNS;
  const h = d / HOUR, m = (d % HOUR) / MIN, s = (d % MIN) / SEC;
  const parts = [];
  if (days > 0n) parts.push(days + 'd');
  if (days > 0n || h > 0n) parts.push(h + 'h');
  parts.push(m + 'm', s + 's');
  return parts.join(' ');
}

const minDuration = -(2n ** 63n), maxDuration = 2n ** 63n - 1n;

// toDuration is Go's float64 → int64 conversion; out of range it gives
// what amd64 gives (the smallest int64).
function toDuration(ns) {
  if (!Number.isFinite(ns) || ns >= 2 ** 63 || ns < -(2 ** 63)) return minDuration;
  return BigInt(Math.trunc(ns));
}

// roundDuration is time.Duration.Round: halves away from zero.
function roundDuration(d, m) {
  let r = d % m;
  const lessThanHalf = (x, y) => x + x < y;
  if (d < 0n) {
    r = -r;
    if (lessThanHalf(r, m)) return d + r;
    const d1 = d - m + r;
    return d1 >= minDuration ? d1 : minDuration;
  }
  if (lessThanHalf(r, m)) return d - r;
  const d1 = d + m - r;
  return d1 <= maxDuration ? d1 : maxDuration;
}

// durationString is time.Duration.String for whole seconds (what
// Round(time.Second) leaves, bar the extremes).
function durationString(d) {
  if (d === 0n) return '0s';
  const neg = d < 0n;
  const u = neg ? -d : d;
  const frac = u % SEC;
  const secs = u / SEC;
  const h = secs / 3600n, m = (secs / 60n) % 60n;
  let s = String(secs % 60n);
  if (frac) s += '.' + String(frac).padStart(9, '0').replace(/0+$/, '');
  let out = s + 's';
  if (h > 0n) out = h + 'h' + m + 'm' + out;
  else if (m > 0n) out = m + 'm' + out;
  return (neg ? '-' : '') + out;
}

// ---- the page's own forms, built on the CLI's ----

// The chart's display units (chart.DisplayUnit) back to canonical ones.
const fromDisplay = { '°C': 'degC', '°F': 'degF', '%': 'percent', '°': 'deg' };

function canonicalOf(displayUnit) { return fromDisplay[displayUnit] ?? displayUnit; }

// Units the CLI formats in a way of its own; any other is "SI for
// others": three significant digits with a prefix.
const cliUnits = new Set(['degF', 'K', 'percent', 'ratio', 'B', 'Wh', 'W', 's', 'deg']);

const siPrefixes = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

// formatSI writes v with three significant digits and an SI prefix from
// a thousand: 0.273 → "0.273", 1234567 → "1.23 M", 3.3 with V → "3.3 V".
export function formatSI(v, unit = '') {
  if (!Number.isFinite(v)) return formatNumber(v);
  let i = 0;
  while (Math.abs(v) >= 999.5 && i < siPrefixes.length - 1) { v /= 1000; i++; }
  const text = formatNumber(Number(v.toPrecision(3)));
  return text + (siPrefixes[i] || unit ? ' ' + siPrefixes[i] + unit : '');
}

// formatValue is how the page writes a charted value of a unit (as the
// chart names it, chart.DisplayUnit): the CLI's form for the units it
// knows, a temperature without its Fahrenheit twin (the charts are in
// one unit), SI for the rest.
export function formatValue(v, displayUnit) {
  if (v == null) return '–';
  const u = canonicalOf(displayUnit);
  if (u === 'degC') return goFixed(v, 1) + ' °C';
  if (cliUnits.has(u)) return formatQuantity(v, u);
  return formatSI(v, displayUnit);
}

// shortDuration is formatDuration without the trailing parts that are
// zero: 36000 → "10h", 39180 → "10h 53m".
export function shortDuration(sec) {
  const s = formatDuration(sec);
  const parts = s.split(' ');
  while (parts.length > 1 && /^0[dhms]$/.test(parts[parts.length - 1])) parts.pop();
  return parts.join(' ');
}

// tickLabels labels an axis's ticks in its unit with the fewest decimals
// that keep every label distinct and close to its tick (a twentieth of
// the step): never "2.48e+10" twice, nor "12%" for 12.5.
export function tickLabels(values, displayUnit) {
  const u = canonicalOf(displayUnit);
  const shown = values.filter((v) => v != null);
  const max = Math.max(0, ...shown.map(Math.abs));
  let step = Infinity;
  for (let i = 1; i < shown.length; i++) step = Math.min(step, Math.abs(shown[i] - shown[i - 1]));
  // No "-0" beside "0" for a tick a hair below zero.
  const fixed = (v, d) => goFixed(v, d).replace(/^-(?=0(\.0*)?$)/, '');
  let scale = 1, label;
  if (u === 'B') {
    let i = 0;
    while (max / 1024 ** i >= 1024 && i < binaryPrefixes.length - 1) i++;
    scale = 1024 ** i;
    label = (v, d) => fixed(v / scale, d) + ' ' + binaryPrefixes[i];
  } else if (u === 's' && max >= 60 && step >= 1) {
    return values.map((v) => v == null ? '' : shortDuration(v));
  } else if (u === 'percent') {
    label = (v, d) => fixed(v, d) + '%';
  } else {
    let i = 0;
    while (max / 1000 ** i >= 999.5 && i < siPrefixes.length - 1) i++;
    scale = 1000 ** i;
    const suffix = siPrefixes[i] || u === 's' ? ' ' + siPrefixes[i] + (u === 's' ? 's' : '') : '';
    label = (v, d) => fixed(v / scale, d) + suffix;
  }
  const close = (v, d) => !Number.isFinite(step) || Math.abs(Number(goFixed(v / scale, d)) - v / scale) <= step / scale / 20;
  for (let d = 0; d <= 6; d++) {
    const out = values.map((v) => v == null ? '' : label(v, d));
    const texts = out.filter((s) => s !== '');
    if (new Set(texts).size === texts.length && shown.every((v) => close(v, d))) return out;
  }
  return values.map((v) => v == null ? '' : label(v, 6));
}
