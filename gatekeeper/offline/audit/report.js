/* The report's decision table, drill-downs and exports, drawn from the embedded rows.
 * Filters live in the URL fragment (#subject=s1&reason=quota_exceeded) and mean what the same
 * options of `gatekeeper audit query` mean (gatekeeper/audit/query.py, Filters.match).
 * Nothing is fetched: the data is the JSON element #gk-data. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gk-data").textContent);
  var COLS = data.columns;
  var rows = data.rows.map(function (r) {
    var o = {};
    COLS.forEach(function (c, i) { o[c] = r[i]; });
    o._t = stampMs(o.time);
    return o;
  });
  var FILTERS = [
    ["since", "since", "--since"], ["until", "until", "--until"], ["subject", "subject", "--subject"],
    ["org", "org", "--org"], ["cluster", "cluster", "--cluster"], ["decision", "decision", "--decision"],
    ["reason", "reason", "--reason"], ["tier", "tier", "--tier"], ["country", "country", "--country"],
    ["tag", "jurisdiction tag", "--tag"], ["level", "anti-extraction grade", "--level"],
    ["evidence", "evidence", "--evidence"], ["id", "decision id", "--id"]
  ];
  var SHOWN = [
    ["time", "time"], ["subject", "subject"], ["tier", "tier"], ["cluster", "cluster"],
    ["country", "country"], ["decision", "decision"], ["status", "status"], ["reasons", "reasons"],
    ["reasoning_mode", "reasoning"], ["reasoning_removed", "reasoning removed"],
    ["level", "grade"], ["evidence", "evidence"], ["id", "decision id"], ["chain", "chain · seq"]
  ];
  var PAGE = 250;
  var state = { limit: PAGE, sort: "-time", filtered: [] };

  function stampMs(text) {
    if (typeof text !== "string") return NaN;
    var m = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d)?)(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$/.exec(text.trim());
    if (!m) return NaN;
    var frac = m[3] ? m[3].slice(0, 4) : "";
    return Date.parse(m[1] + "T" + (m[2] || "00:00:00") + frac + (m[4] || "Z"));
  }

  function timeMs(text) {
    // The forms --since and --until take: RFC 3339 (or a day), or a duration ago.
    var rel = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(text.trim());
    if (rel) {
      var unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[rel[2]];
      return Date.now() - parseFloat(rel[1]) * unit * 1000;
    }
    return stampMs(text);
  }

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var f = {};
    FILTERS.forEach(function (d) {
      var v = params.get(d[0]);
      if (v !== null && v !== "") f[d[0]] = v;
    });
    state.sort = params.get("sort") || "-time";
    return f;
  }

  function writeHash(f) {
    var params = new URLSearchParams();
    FILTERS.forEach(function (d) { if (f[d[0]]) params.set(d[0], f[d[0]]); });
    if (state.sort !== "-time") params.set("sort", state.sort);
    var text = params.toString();
    if (("#" + text) !== location.hash && !(text === "" && location.hash === "")) {
      history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
    }
    render();
  }

  function has(list, v) { return Array.isArray(list) && list.indexOf(v) >= 0; }

  function matcher(f) {
    var since = f.since ? timeMs(f.since) : null, until = f.until ? timeMs(f.until) : null;
    return function (r) {
      if (f.id && r.id !== f.id) return false;
      if (f.subject && r.subject !== f.subject && r.org !== f.subject) return false;
      if (f.org && r.org !== f.org) return false;
      if (f.cluster && r.cluster !== f.cluster) return false;
      if (f.decision && r.decision !== f.decision) return false;
      if (f.tier && r.tier !== f.tier) return false;
      if (f.reason && !has(r.reasons, f.reason)) return false;
      if (f.country && (r.country || "").toUpperCase() !== f.country.toUpperCase()) return false;
      if (f.tag && !has(r.tags, f.tag)) return false;
      if (f.level && !(r.level === f.level || (f.level === "any" && r.level))) return false;
      if (f.evidence && !has(r.evidence, f.evidence)) return false;
      if (since !== null && !(r._t >= since)) return false;
      if (until !== null && !(r._t <= until)) return false;
      return true;
    };
  }

  function text(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.join(", ");
    return String(v);
  }

  function compare(key) {
    var desc = key.charAt(0) === "-", name = desc ? key.slice(1) : key;
    if (name === "time") name = "_t";
    return function (a, b) {
      var x = a[name], y = b[name], c;
      if (typeof x === "number" && typeof y === "number") c = x - y;
      else c = text(x).localeCompare(text(y));
      return desc ? -c : c;
    };
  }

  function el(tag, attrs, content) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function buildForm() {
    var form = document.getElementById("filters");
    FILTERS.forEach(function (d) {
      var label = el("label", {}, d[1]), input;
      if (d[0] === "decision") {
        input = el("select", { name: d[0] });
        ["", "allow", "deny"].forEach(function (v) { input.appendChild(el("option", { value: v }, v || "any")); });
      } else {
        input = el("input", { name: d[0], type: "text", list: "list-" + d[0],
          placeholder: d[0] === "since" || d[0] === "until" ? "2026-05-01, 24h" : "" });
        var values = {};
        rows.forEach(function (r) {
          var key = { tag: "tags", reason: "reasons", id: null, since: null, until: null }[d[0]];
          if (key === null) return;
          var v = r[key || d[0]];
          (Array.isArray(v) ? v : [v]).forEach(function (x) { if (x !== null && x !== undefined) values[x] = 1; });
        });
        var list = el("datalist", { id: "list-" + d[0] });
        Object.keys(values).sort().slice(0, 500).forEach(function (v) { list.appendChild(el("option", { value: v })); });
        label.appendChild(list);
      }
      input.addEventListener("change", function () {
        var f = readHash();
        f[d[0]] = input.value.trim();
        state.limit = PAGE;
        writeHash(f);
      });
      label.appendChild(input);
      form.appendChild(label);
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
  }

  function shellQuote(s) { return /^[\w.,:\/=+-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }

  function cellFilter(key, value) {
    return value ? { "data-filter": key + "=" + encodeURIComponent(value), tabindex: "0" } : {};
  }

  function renderTable(list) {
    var table = document.getElementById("table");
    var head = el("tr");
    SHOWN.forEach(function (c) {
      var th = el("th", { "data-key": c[0] }, c[1]);
      if (state.sort === c[0]) th.setAttribute("data-asc", "1");
      if (state.sort === "-" + c[0]) th.setAttribute("data-asc", "0");
      head.appendChild(th);
    });
    table.tHead.replaceChildren(head);
    var body = document.createDocumentFragment();
    list.slice(0, state.limit).forEach(function (r) {
      var tr = el("tr", { class: r.decision, "data-subject": text(r.subject), "data-id": text(r.id) });
      SHOWN.forEach(function (c) {
        var k = c[0], v = r[k], td;
        if (k === "subject" || k === "cluster") td = el("td", cellFilter(k, v), text(v));
        else if (k === "reasons") td = el("td", { class: "r" }, text(v));
        else if (k === "decision") td = el("td", { class: "d" }, text(v));
        else if (k === "time") td = el("td", {}, text(v).replace("T", " ").slice(0, 23));
        else if (k === "reasoning_mode") {
          td = el("td", {}, v ? v + " " + text(r.reasoning_exposed) + "/" + text(r.reasoning_seen) : "");
        } else if (k === "level") td = el("td", { class: "lvl-" + (v || "none") }, text(v));
        else if (k === "chain") td = el("td", {}, text(v) + " · " + text(r.seq));
        else if (k === "id") td = el("td", cellFilter("id", v), text(v));
        else td = el("td", typeof v === "number" ? { class: "n" } : {}, text(v));
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.tBodies[0].replaceChildren(body);
    document.getElementById("more").style.display = list.length > state.limit ? "" : "none";
  }

  function bucketSize(span) {
    var sizes = [60, 300, 900, 3600, 21600, 86400, 604800, 2592000];
    for (var i = 0; i < sizes.length; i++) if (span / (sizes[i] * 1000) <= 40) return sizes[i] * 1000;
    return sizes[sizes.length - 1] * 1000;
  }

  function columns(list, title, keys, value) {
    // An SVG column chart over time: value(row) gives {key: amount} for the row.
    var times = list.map(function (r) { return r._t; }).filter(function (t) { return !isNaN(t); });
    if (!times.length) return el("p", {}, "no timed decisions");
    var first = Math.min.apply(null, times), last = Math.max.apply(null, times);
    var size = bucketSize(last - first + 1), start = Math.floor(first / size) * size;
    var n = Math.floor((last - start) / size) + 1, buckets = [];
    for (var i = 0; i < n; i++) buckets.push({});
    list.forEach(function (r) {
      if (isNaN(r._t)) return;
      var b = buckets[Math.floor((r._t - start) / size)], v = value(r);
      Object.keys(v).forEach(function (k) { b[k] = (b[k] || 0) + v[k]; });
    });
    var peak = 1;
    buckets.forEach(function (b) {
      var s = 0; keys.forEach(function (k) { s += b[k[0]] || 0; }); peak = Math.max(peak, s);
    });
    var W = 560, H = 130, L = 44, B = 20, plotW = W - L - 6, plotH = H - B - 8, slot = Math.min(60, plotW / n);
    var ns = ["http", "//www.w3.org/2000/svg"].join(":"); // (spelled apart: no address in the file)
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("width", "100%");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    function add(tag, attrs, content) {
      var node = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
      if (content !== undefined) node.textContent = content;
      svg.appendChild(node);
      return node;
    }
    add("text", { x: L - 4, y: 14, "text-anchor": "end" }, String(peak));
    add("text", { x: L - 4, y: 8 + plotH, "text-anchor": "end" }, "0");
    add("line", { x1: L, x2: W - 6, y1: 8 + plotH, y2: 8 + plotH, class: "grid" });
    buckets.forEach(function (b, i) {
      var base = 8 + plotH, x = L + i * slot + slot * 0.1, tip = [new Date(start + i * size).toISOString().slice(0, 16).replace("T", " ")];
      keys.forEach(function (k) {
        var v = b[k[0]] || 0;
        if (!v) return;
        var h = plotH * v / peak;
        base -= h;
        add("rect", { x: x.toFixed(1), y: base.toFixed(1), width: Math.max(1, slot * 0.8).toFixed(1), height: h.toFixed(1), fill: k[1] });
        tip.push(k[2] + ": " + v);
      });
      var hit = add("rect", { x: x.toFixed(1), y: 8, width: Math.max(1, slot * 0.8).toFixed(1), height: plotH, class: "hit" });
      var t = document.createElementNS(ns, "title");
      t.textContent = tip.join(" · ");
      hit.appendChild(t);
    });
    (n > 1 ? [0, n - 1] : [0]).forEach(function (i) {
      add("text", { x: (L + i * slot + slot / 2).toFixed(1), y: H - 4, "text-anchor": i ? "end" : "start" },
        new Date(start + i * size).toISOString().slice(0, 16).replace("T", " "));
    });
    var box = el("div");
    box.appendChild(el("h3", {}, title));
    var legend = el("div", { class: "legend" });
    keys.forEach(function (k) {
      var s = el("span"), i = el("i");
      i.style.background = k[1];
      s.appendChild(i);
      s.appendChild(document.createTextNode(k[2]));
      legend.appendChild(s);
    });
    box.appendChild(legend);
    box.appendChild(svg);
    return box;
  }

  function counts(list, key) {
    var c = {};
    list.forEach(function (r) {
      var v = r[key];
      (Array.isArray(v) ? v : [v]).forEach(function (x) { if (x !== null && x !== undefined && x !== "") c[x] = (c[x] || 0) + 1; });
    });
    return Object.keys(c).sort(function (a, b) { return c[b] - c[a]; }).map(function (k) { return k + " " + c[k]; }).join(", ") || "-";
  }

  function sum(list, key) {
    return list.reduce(function (s, r) { return s + (typeof r[key] === "number" ? r[key] : 0); }, 0);
  }

  function renderDrill(f, list) {
    var drill = document.getElementById("drill");
    drill.replaceChildren();
    var who = f.subject ? ["Subject", f.subject] : f.cluster ? ["Cluster", f.cluster] : f.org ? ["Org", f.org] : null;
    if (!who) return;
    var panel = el("div", { class: "panel", id: "drill-panel" });
    panel.appendChild(el("h3", {}, who[0] + " " + who[1] + ": its decisions, evidence and withheld reasoning"));
    var dl = el("dl");
    var refused = list.filter(function (r) { return r.decision === "deny"; }).length;
    var seen = sum(list, "reasoning_seen"), removed = sum(list, "reasoning_removed");
    var cot = list.map(function (r) { return r.cot_elicitation; }).filter(function (v) { return typeof v === "number"; });
    var facts = [
      ["decisions", list.length + " (" + (list.length - refused) + " allowed, " + refused + " refused)"],
      ["first · last seen", list.length ? text(list.reduce(function (a, r) { return r._t < a._t ? r : a; }).time) + " · " + text(list.reduce(function (a, r) { return r._t > a._t ? r : a; }).time) : "-"],
      [who[0] === "Subject" ? "clusters" : "subjects", counts(list, who[0] === "Subject" ? "cluster" : "subject")],
      ["orgs · tiers", counts(list, "org") + " · " + counts(list, "tier")],
      ["countries · tags", counts(list, "country") + " · " + counts(list, "tags")],
      ["refusal reasons", counts(list.filter(function (r) { return r.decision === "deny"; }), "reasons")],
      ["anti-extraction grades", counts(list, "level")],
      ["evidence", counts(list, "evidence")],
      ["flagged for review · KYC step-ups", list.filter(function (r) { return r.flag_for_review; }).length + " · " + counts(list, "step_up_kyc")],
      ["reasoning withheld", removed + " of " + seen + " reasoning tokens removed (" + (seen ? Math.round(100 * removed / seen) : 0) + "%); modes " + counts(list, "reasoning_mode")],
      ["CoT elicitation score", cot.length ? "max " + Math.max.apply(null, cot).toFixed(2) + ", mean " + (cot.reduce(function (a, b) { return a + b; }, 0) / cot.length).toFixed(2) : "-"]
    ];
    facts.forEach(function (p) { dl.appendChild(el("dt", {}, p[0])); dl.appendChild(el("dd", {}, p[1])); });
    panel.appendChild(dl);
    var grid = el("div", { class: "cols" });
    grid.appendChild(columns(list, "Decisions over time", [["allow", "#2e7d32", "allowed"], ["deny", "#c62828", "refused"]],
      function (r) { var o = {}; o[r.decision] = 1; return o; }));
    grid.appendChild(columns(list, "Anti-extraction grades over time", [["watch", "#f9a825", "watch"], ["suspect", "#ef6c00", "suspect"], ["strong", "#b71c1c", "strong"]],
      function (r) { var o = {}; if (r.level) o[r.level] = 1; return o; }));
    grid.appendChild(columns(list, "Reasoning tokens over time", [["exposed", "#1565c0", "exposed"], ["removed", "#9e9e9e", "withheld"]],
      function (r) { return { exposed: r.reasoning_exposed || 0, removed: r.reasoning_removed || 0 }; }));
    var palette = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#9e9d24", "#5d4037"], tally = {};
    list.forEach(function (r) { (r.evidence || []).forEach(function (e) { tally[e] = (tally[e] || 0) + 1; }); });
    var top = Object.keys(tally).sort(function (a, b) { return tally[b] - tally[a]; }).slice(0, palette.length);
    grid.appendChild(columns(list, "Evidence over time (decisions carrying it)",
      top.map(function (e, i) { return [e, palette[i], e]; }),
      function (r) { var o = {}; (r.evidence || []).forEach(function (e) { o[e] = 1; }); return o; }));
    panel.appendChild(grid);
    drill.appendChild(panel);
  }

  function render() {
    var f = readHash();
    document.querySelectorAll("#filters [name]").forEach(function (input) {
      input.value = f[input.name] || "";
      input.classList.toggle("set", !!f[input.name]);
    });
    var list = rows.filter(matcher(f)).sort(compare(state.sort));
    state.filtered = list;
    var active = FILTERS.filter(function (d) { return f[d[0]]; });
    var matching = document.getElementById("matching");
    matching.textContent = list.length + " of the " + rows.length + " decisions in this report match" +
      (active.length ? " (" + active.map(function (d) { return d[0] + "=" + f[d[0]]; }).join(", ") + ")" : "") +
      (list.length > state.limit ? "; the first " + state.limit + " are listed, the exports hold all." : ".");
    // The report's own selection (its command's filters), then the page's on top of it.
    var all = Object.assign({}, data.selection, f), args = ["gatekeeper", "audit", "query"];
    FILTERS.forEach(function (d) { if (all[d[0]]) args.push(d[2], all[d[0]]); });
    document.getElementById("cli").textContent = args.concat(data.paths || []).map(shellQuote).join(" ") + " --json";
    renderDrill(all, list);
    renderTable(list);
    document.body.setAttribute("data-rows-shown", String(Math.min(list.length, state.limit)));
    document.body.setAttribute("data-rows-matching", String(list.length));
  }

  function download(name, type, content) {
    var link = document.createElement("a");
    link.setAttribute("download", name);
    link.setAttribute("href", URL.createObjectURL(new Blob([content], { type: type })));
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  function exportName(ext) {
    var f = readHash(), parts = FILTERS.filter(function (d) { return f[d[0]]; }).map(function (d) { return d[0] + "-" + f[d[0]]; });
    return ("decisions" + (parts.length ? "-" + parts.join("-") : "")).replace(/[^\w.-]+/g, "_") + "." + ext;
  }

  function csvCell(v) {
    var s = Array.isArray(v) ? v.join(";") : text(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function toCsv(list) {
    var lines = [COLS.join(",")];
    list.forEach(function (r) { lines.push(COLS.map(function (c) { return csvCell(r[c]); }).join(",")); });
    return lines.join("\r\n") + "\r\n";
  }

  function toJsonl(list) {
    return list.map(function (r) {
      var o = {};
      COLS.forEach(function (c) { o[c] = r[c]; });
      return JSON.stringify(o);
    }).join("\n") + (list.length ? "\n" : "");
  }

  function applyFilter(spec) {
    var f = readHash();
    new URLSearchParams(spec).forEach(function (v, k) { f[k] = v; });
    state.limit = PAGE;
    writeHash(f);
    document.getElementById("decisions").scrollIntoView();
  }

  document.addEventListener("click", function (e) {
    var target = e.target.closest ? e.target.closest("[data-filter]") : null;
    if (target) applyFilter(target.getAttribute("data-filter"));
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || !e.target.getAttribute || !e.target.getAttribute("data-filter")) return;
    applyFilter(e.target.getAttribute("data-filter"));
  });
  document.getElementById("table").tHead.addEventListener("click", function (e) {
    var key = e.target.getAttribute && e.target.getAttribute("data-key");
    if (!key) return;
    state.sort = state.sort === key ? "-" + key : key;
    writeHash(readHash());
  });
  document.getElementById("more").addEventListener("click", function () { state.limit += PAGE; render(); });
  document.getElementById("clear").addEventListener("click", function () { writeHash({}); });
  document.getElementById("export-csv").addEventListener("click", function () {
    download(exportName("csv"), "text/csv", toCsv(state.filtered));
  });
  document.getElementById("export-jsonl").addEventListener("click", function () {
    download(exportName("jsonl"), "application/x-ndjson", toJsonl(state.filtered));
  });
  window.addEventListener("hashchange", function () { state.limit = PAGE; render(); });

  // The static tables (subjects, clusters, revisions…) sort in place.
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function (e) {
      e.stopPropagation();
      var body = th.closest("table").tBodies[0];
      var list = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.asc !== "1";
      th.dataset.asc = asc ? "1" : "0";
      list.sort(function (a, b) {
        var x = a.cells[th.cellIndex].textContent, y = b.cells[th.cellIndex].textContent;
        var nx = parseFloat(x.replace(/,/g, "")), ny = parseFloat(y.replace(/,/g, ""));
        var c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      list.forEach(function (r) { body.appendChild(r); });
    });
  });

  window.gatekeeperReport = { csv: function () { return toCsv(state.filtered); }, jsonl: function () { return toJsonl(state.filtered); } };
  buildForm();
  render();
  document.body.setAttribute("data-report-ready", "1");
})();
