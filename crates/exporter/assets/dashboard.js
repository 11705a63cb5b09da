// ipcwatch's live dashboard: Netdata's six IPC charts and ipcwatch's own, drawn as SVG from
// /api/v1/data every second, each with its limit as a red line, and the alerts, raised first.
// No library and no network beyond this daemon: it works offline.
(function () {
  'use strict';
  var body = document.body;
  var errors = 0;
  body.dataset.errors = '0';
  window.addEventListener('error', function () { errors += 1; body.dataset.errors = String(errors); });
  window.addEventListener('unhandledrejection', function () { errors += 1; body.dataset.errors = String(errors); });

  // Netdata's charts first, then ours, in the order they are drawn.
  var WANTED = [
    'system.ipc_semaphore_arrays', 'system.ipc_semaphores',
    'system.message_queue_messages', 'system.message_queue_bytes',
    'system.shared_memory_segments', 'system.shared_memory_bytes',
    'ipc.message_queues', 'ipc.message_queue_fill', 'ipc.shared_memory_pages',
    'ipc.shared_memory_orphaned_bytes', 'ipc.posix_mqueue_queues', 'ipc.posix_shm_bytes',
    'ipc.stale_objects', 'ipc.semaphore_arrays_by_owner',
    'ipc.allocation_failures', 'ipc.semaphore_wait'
  ];
  var COLORS = ['#3366cc', '#dc3912', '#ff9900', '#109618', '#990099', '#0099c6', '#dd4477', '#66aa00'];
  var win = 300;          // seconds shown
  var space = '';         // '' = the daemon's own namespace, else 'ipc_ns_<inode>.'
  var charts = {};
  var painted = false;

  function get(url) {
    return fetch(url, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) { throw new Error(url + ': ' + r.status); }
      return r.json();
    });
  }
  function el(tag, attrs, text) {
    var e = document.createElementNS(tag === 'svg' || tag === 'polyline' || tag === 'line' || tag === 'text'
      ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function human(v) {
    if (v === null || v === undefined) { return '-'; }
    var a = Math.abs(v);
    if (a >= 1e12) { return (v / 1e12).toFixed(1) + 'T'; }
    if (a >= 1e9) { return (v / 1e9).toFixed(1) + 'G'; }
    if (a >= 1e6) { return (v / 1e6).toFixed(1) + 'M'; }
    if (a >= 1e4) { return (v / 1e3).toFixed(1) + 'k'; }
    return String(Math.round(v * 100) / 100);
  }
  function idFor(netdataId) {
    return space === '' ? netdataId : space + netdataId.split('.').slice(1).join('.');
  }

  function namespaces() {
    var found = {};
    Object.keys(charts).forEach(function (id) {
      var m = /^ipc_ns_(\d+)\./.exec(id);
      if (m) { found[m[1]] = true; }
    });
    var select = document.getElementById('namespace');
    select.textContent = '';
    select.appendChild(el('option', { value: '' }, 'this host (the daemon\'s own)'));
    Object.keys(found).sort().forEach(function (n) {
      select.appendChild(el('option', { value: 'ipc_ns_' + n + '.' }, 'IPC namespace ' + n));
    });
    select.value = space;
  }

  function build() {
    var grid = document.getElementById('charts');
    grid.textContent = '';
    WANTED.forEach(function (w) {
      var id = idFor(w);
      var c = charts[id];
      if (!c) { return; }
      var box = el('section', { 'class': 'chart', id: 'chart-' + id, 'data-chart': id });
      box.appendChild(el('h3', {}, c.title));
      box.appendChild(el('svg', { viewBox: '0 0 600 160', preserveAspectRatio: 'none' }));
      box.appendChild(el('div', { 'class': 'legend' }));
      grid.appendChild(box);
    });
  }

  function draw(box, c, d) {
    var svg = box.querySelector('svg');
    var legend = box.querySelector('.legend');
    var rows = d.result.data;            // oldest first (flip)
    var labels = d.result.labels.slice(1);
    var red = (typeof c.red === 'number') ? c.red : null;
    var max = 0;
    rows.forEach(function (r) { r.slice(1).forEach(function (v) { if (v !== null && v > max) { max = v; } }); });
    var top = Math.max(max, red !== null && red < max * 20 + 10 ? red : 0, 1) * 1.05;
    var t1 = rows.length ? rows[rows.length - 1][0] : 0;
    var t0 = t1 - win;
    svg.textContent = '';
    labels.forEach(function (name, i) {
      var pts = [];
      rows.forEach(function (r) {
        if (r[i + 1] === null) { return; }
        var x = (r[0] - t0) / win * 600;
        var y = 155 - r[i + 1] / top * 150;
        pts.push(x.toFixed(1) + ',' + y.toFixed(1));
      });
      svg.appendChild(el('polyline', { points: pts.join(' '), fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': '2' }));
    });
    var last = d.latest_values || [];
    var shown = red !== null && red <= top;
    if (shown) {
      var y = 155 - red / top * 150;
      svg.appendChild(el('line', { x1: 0, x2: 600, y1: y, y2: y, stroke: '#d00', 'stroke-dasharray': '6 4', 'class': 'limit' }));
    }
    legend.textContent = '';
    labels.forEach(function (name, i) {
      var item = el('span', { 'class': 'dim' });
      var swatch = el('i', { style: 'background:' + COLORS[i % COLORS.length] });
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(name + ' ' + human(last[i])));
      legend.appendChild(item);
    });
    if (red !== null) {
      var sum = last.reduce(function (a, v) { return a + (v || 0); }, 0);
      var pct = red > 0 ? (sum * 100 / red) : 0;
      legend.appendChild(el('span', { 'class': 'limit-text' + (pct >= 80 ? ' near' : '') },
        'limit ' + human(red) + ' (' + pct.toFixed(1) + '% used)'));
    }
    box.dataset.last = last.map(function (v) { return v === null ? '' : String(v); }).join(',');
    box.dataset.limit = red === null ? '' : String(red);
    if (!painted) {
      painted = true;
      // Since navigation started (performance.now() counts from it).
      body.dataset.firstPaintMs = String(Math.round(performance.now()));
    }
  }

  function refreshCharts() {
    var points = Math.min(win, 300);
    Array.prototype.forEach.call(document.querySelectorAll('.chart'), function (box) {
      var id = box.dataset.chart;
      get('api/v1/data?chart=' + encodeURIComponent(id) + '&after=-' + win + '&points=' + points +
          '&group=average&format=json&options=seconds|flip|jsonwrap')
        .then(function (d) { draw(box, charts[id], d); })
        .catch(function () { box.classList.add('stale'); });
    });
  }

  var ORDER = { CRITICAL: 0, WARNING: 1, UNDEFINED: 2, CLEAR: 3, UNINITIALIZED: 4 };
  function refreshAlerts() {
    get('api/v1/alarms?all').then(function (d) {
      var list = Object.keys(d.alarms).map(function (k) { return d.alarms[k]; });
      list.sort(function (a, b) {
        return (ORDER[a.status] - ORDER[b.status]) || a.chart.localeCompare(b.chart) || a.name.localeCompare(b.name);
      });
      var table = document.getElementById('alerts');
      table.textContent = '';
      var raised = 0;
      list.forEach(function (a) {
        if (a.status === 'WARNING' || a.status === 'CRITICAL') { raised += 1; }
        var tr = el('tr', { 'class': 'alert ' + a.status.toLowerCase(), 'data-name': a.name, 'data-status': a.status });
        tr.appendChild(el('td', {}, a.status));
        tr.appendChild(el('td', {}, a.name));
        tr.appendChild(el('td', {}, a.chart));
        tr.appendChild(el('td', {}, a.value_string || human(a.value)));
        tr.appendChild(el('td', {}, a.info || ''));
        table.appendChild(tr);
      });
      document.getElementById('raised').textContent = raised ? raised + ' raised' : 'none raised';
    }).catch(function () {});
  }

  function start() {
    get('api/v1/charts').then(function (d) {
      charts = d.charts;
      namespaces();
      build();
      refreshCharts();
      refreshAlerts();
    });
  }
  document.getElementById('namespace').addEventListener('change', function (e) {
    space = e.target.value;
    build();
    refreshCharts();
  });
  Array.prototype.forEach.call(document.querySelectorAll('[data-window]'), function (b) {
    b.addEventListener('click', function () {
      win = Number(b.dataset.window);
      Array.prototype.forEach.call(document.querySelectorAll('[data-window]'), function (o) { o.classList.toggle('on', o === b); });
      refreshCharts();
    });
  });
  start();
  setInterval(function () { refreshCharts(); refreshAlerts(); }, 1000);
  // New namespaces and charts (queues come and go).
  setInterval(function () {
    get('api/v1/charts').then(function (d) {
      var before = Object.keys(charts).join();
      charts = d.charts;
      if (Object.keys(charts).join() !== before) { namespaces(); build(); refreshCharts(); }
    }).catch(function () {});
  }, 10000);
})();
