/* The dashboard page of the widget data resolver.
 *
 * Plain browser JavaScript, no build step. It lists the caller's widgets (GET /v1/widgets),
 * the metric catalog (GET /v1/metrics), then fills every tile with ONE batch request
 * (POST /v1/widgets/data) and draws it by kind with the vendored Apache ECharts. Every tile
 * carries a badge saying, in words and colour, where its numbers came from.
 *
 * Everything that came from the server is put in the page as text (textContent), never as
 * HTML. A bearer token, when the service asks for one, is kept in sessionStorage only.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "wdr.token";
  const AUTO_KEY = "wdr.autoRefresh";
  const BATCH_MAX = 50; // the batch endpoint's limit
  const DEGRADED_RETRY_S = 15; // degraded tiles are retried at least this often while auto-refresh is on
  const SLOW_MS = 1000; // a tile resolving longer than this is "slow": progress is shown, streamed when possible
  const STREAM_PATH = "/v1/widgets/{widget_id}/data/stream";

  const KIND_ORDER = { kpi: 0, line: 1, area: 1, bar: 2, pie: 3, table: 4 };
  const TRUST = {
    verified: { icon: "✔", text: "Verified", tip: "An owner verified the answer to this question." },
    compiled_from_metric: { icon: "◆", text: "From metric", tip: "Answered from a governed catalog metric: the model chose the metric, the metric compiler wrote the SQL." },
    model_written_unverified: { icon: "⚠", text: "AI-written · unverified", tip: "The model wrote this SQL itself. The safety layer checked it; nobody verified that it answers the question." },
  };
  const BACKEND_NAMES = { postgres: "PostgreSQL", databricks: "Databricks" };
  const PALETTE = ["#2563eb", "#0d9488", "#f59e0b", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#64748b"];

  const state = {
    widgets: [], // [{id, spec}]
    metrics: {}, // name -> MetricOut
    tiles: new Map(), // widget id -> Tile
    features: { stream: false, changes: false },
    changes: null, // the pushed-changes watcher (watchChanges)
    autoSeconds: 0,
    timer: null,
    lastFullLoad: 0,
    nextTickAt: 0,
    loading: false,
    authProblem: null,
  };

  // ------------------------------------------------------------------ small helpers

  function $(sel, root) {
    return (root || document).querySelector(sel);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function formatAge(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) {
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    }
    return `${Math.floor(s / 86400)} d`;
  }

  function formatClock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function numberFormatter(unit, { compact = false } = {}) {
    const opts = { maximumFractionDigits: 2 };
    if (compact) Object.assign(opts, { notation: "compact", maximumFractionDigits: 1 });
    if (unit === "USD") {
      const f = new Intl.NumberFormat("en-US", {
        style: "currency",
        currency: "USD",
        maximumFractionDigits: compact ? 1 : 0,
        notation: compact ? "compact" : "standard",
      });
      return (v) => (typeof v === "number" ? f.format(v) : String(v ?? "—"));
    }
    const f = new Intl.NumberFormat("en-US", opts);
    if (unit === "percent") return (v) => (typeof v === "number" ? `${f.format(v)}%` : String(v ?? "—"));
    return (v) => (typeof v === "number" ? f.format(v) : String(v ?? "—"));
  }

  function unitSuffix(unit) {
    if (!unit || unit === "USD" || unit === "percent" || unit === "varies") return "";
    return unit;
  }

  const RANGE_NAMES = { mtd: "Month to date", qtd: "Quarter to date", ytd: "Year to date", all: "All time", today: "Today" };
  const RANGE_UNITS = { m: "minute", h: "hour", d: "day" };

  function rangeLabel(range) {
    if (!range) return "";
    if (typeof range !== "string") return "Custom range";
    if (RANGE_NAMES[range]) return RANGE_NAMES[range];
    const m = /^last_(\d+)(m|h|d)$/.exec(range);
    if (!m) return humanize(range);
    const n = Number(m[1]);
    const unit = RANGE_UNITS[m[2]];
    return n === 1 ? `Last ${unit}` : `Last ${n} ${unit}s`;
  }

  function humanize(id) {
    return String(id).replace(/_/g, " ");
  }

  // ------------------------------------------------------------------ the API client

  class ApiError extends Error {
    constructor(status, title, detail, problem) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
      this.title = title;
      this.detail = detail;
      this.problem = problem || {};
    }
  }

  function authHeaders(extra) {
    const headers = Object.assign({ Accept: "application/json" }, extra || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  async function raiseFor(resp) {
    let problem = {};
    try {
      problem = await resp.json();
    } catch (_) {
      problem = {};
    }
    throw new ApiError(resp.status, problem.title || resp.statusText || "Error", problem.detail || "", problem);
  }

  async function api(path, { method = "GET", body, signal, accept } = {}) {
    const headers = authHeaders(body !== undefined ? { "Content-Type": "application/json" } : {});
    if (accept) headers.Accept = accept;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, "The service did not answer", "check that it is running and reachable");
    }
    if (!resp.ok) await raiseFor(resp);
    if (accept === "text/event-stream") return resp;
    return resp.status === 204 ? null : resp.json();
  }

  // Plain words for the identity problems (RFC 7807 bodies from the service).
  function explainAuth(err) {
    const detail = err.detail ? ` The service said: “${err.detail}”.` : "";
    if (err.status === 401) {
      const had = Boolean(sessionStorage.getItem(TOKEN_KEY));
      return had
        ? `Your token was not accepted — it may have expired, been mistyped, or been issued for another service.${detail} Paste a new token to continue.`
        : `This dashboard needs you to sign in: the service only answers requests that carry a token.${detail}`;
    }
    if (err.status === 403) {
      return `You are signed in, but your token does not allow this: it lacks the permission (scope) needed to read this data.${detail} Ask an administrator for a token with the scopes data:read, widgets:read and metrics:read.`;
    }
    return err.message;
  }

  // ------------------------------------------------------------------ SQL formatting

  const SQL_CLAUSES = [
    "WITH", "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "OFFSET",
    "UNION ALL", "UNION", "LEFT JOIN", "RIGHT JOIN", "INNER JOIN", "FULL JOIN", "CROSS JOIN", "JOIN",
    "QUALIFY", "WINDOW",
  ];
  const SQL_KEYWORDS = new Set(
    ("SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT OFFSET WITH AS AND OR NOT IN IS NULL ON JOIN LEFT RIGHT " +
      "INNER FULL OUTER CROSS UNION ALL DISTINCT CASE WHEN THEN ELSE END CAST ASC DESC NULLS LAST FIRST BETWEEN " +
      "LIKE ILIKE OVER PARTITION INTERVAL TIMESTAMP DATE TRUE FALSE EXISTS QUALIFY WINDOW ROWS RANGE").split(" ")
  );

  function tokenizeSql(sql) {
    const re = /('(?:[^']|'')*')|("(?:[^"]|"")*"|`[^`]*`)|(--[^\n]*)|(%\([a-z_]+\)s|:[a-z_]+)|([A-Za-z_][A-Za-z0-9_.]*)|(\d+(?:\.\d+)?)|(\s+)|([(),])|([^\sA-Za-z0-9_'"`(),]+)/g;
    const out = [];
    let m;
    while ((m = re.exec(sql))) {
      if (m[1]) out.push({ t: "str", v: m[1] });
      else if (m[2]) out.push({ t: "ident", v: m[2] });
      else if (m[3]) out.push({ t: "comment", v: m[3] });
      else if (m[4]) out.push({ t: "param", v: m[4] });
      else if (m[5]) out.push({ t: SQL_KEYWORDS.has(m[5].toUpperCase()) ? "kw" : "word", v: m[5] });
      else if (m[6]) out.push({ t: "num", v: m[6] });
      else if (m[7]) out.push({ t: "ws", v: m[7] });
      else if (m[8]) out.push({ t: "punct", v: m[8] });
      else out.push({ t: "op", v: m[9] });
    }
    return out;
  }

  // Already multi-line SQL (the Postgres templates) is kept as written; one-line SQL (the
  // compiled warehouse SQL) gets a line per clause, indented by subquery depth.
  function formatSql(sql) {
    if (!sql) return [];
    const tokens = tokenizeSql(sql.trim());
    if (sql.includes("\n")) return tokens;
    const words = tokens.filter((t) => t.t !== "ws");
    const out = [];
    let depth = 0;
    const stack = []; // true for a paren that opened a subquery
    const nl = (extra) => {
      while (out.length && out[out.length - 1].t === "ws") out.pop();
      if (out.length) out.push({ t: "ws", v: "\n" + "  ".repeat(depth + (extra || 0)) });
    };
    for (let i = 0; i < words.length; i++) {
      const tok = words[i];
      const up = tok.v.toUpperCase();
      const next = words[i + 1] ? words[i + 1].v.toUpperCase() : "";
      const two = `${up} ${next}`;
      if (tok.t === "kw" && (SQL_CLAUSES.includes(two) || SQL_CLAUSES.includes(up))) {
        const prev = out.length ? out[out.length - 1] : null;
        if (!(prev && prev.t === "punct" && prev.v === "(")) nl();
        out.push(tok);
        if (SQL_CLAUSES.includes(two)) {
          out.push({ t: "ws", v: " " }, words[++i]);
        }
        out.push({ t: "ws", v: " " });
        continue;
      }
      if (tok.t === "kw" && (up === "AND" || up === "OR") && !stack.some((s) => !s)) {
        nl(1);
        out.push(tok, { t: "ws", v: " " });
        continue;
      }
      if (tok.t === "punct" && tok.v === "(") {
        const sub = next === "SELECT" || next === "WITH";
        stack.push(sub);
        if (sub) depth++;
        out.push(tok);
        continue;
      }
      if (tok.t === "punct" && tok.v === ")") {
        const sub = stack.pop();
        if (sub) {
          depth--;
          nl();
        }
        while (out.length && out[out.length - 1].t === "ws" && !sub) out.pop();
        out.push(tok, { t: "ws", v: " " });
        continue;
      }
      if (tok.t === "punct" && tok.v === ",") {
        while (out.length && out[out.length - 1].t === "ws") out.pop();
        out.push(tok, { t: "ws", v: " " });
        continue;
      }
      const prev = out.length ? out[out.length - 1] : null;
      if (prev && !(prev.t === "ws") && !(prev.t === "punct" && prev.v === "(")) out.push({ t: "ws", v: " " });
      out.push(tok);
      const call = (tok.t === "word" || (tok.t === "kw" && up === "CAST")) && next === "(";
      if (!call) out.push({ t: "ws", v: " " });
    }
    while (out.length && out[out.length - 1].t === "ws") out.pop();
    return out;
  }

  function sqlText(tokens) {
    return tokens.map((t) => t.v).join("");
  }

  function sqlNode(tokens) {
    const code = el("code", { class: "sql" });
    for (const t of tokens) {
      if (t.t === "ws" || t.t === "word" || t.t === "punct" || t.t === "op") code.append(document.createTextNode(t.v));
      else code.append(el("span", { class: `sql-${t.t}`, text: t.v }));
    }
    return el("pre", { class: "sql-block", "data-testid": "sql-text", tabindex: "0" }, code);
  }

  // ------------------------------------------------------------------ status of an answer

  /* One of: live, cached, stale, fallback (last good answer standing in for a failing
   * backend), mock, dry, error. `degraded` is true for anything not live or cached. */
  function classify(r) {
    if (!r) return "loading";
    if (r.dry_run) return "dry";
    if (r.live_data_unavailable) return r.stale ? "fallback" : "mock";
    if (r.stale) return "stale";
    if (r.cache_hit) return "cached";
    return "live";
  }

  // A forced refresh that came too soon after a live answer gets that answer back (the
  // answer says so: refresh_debounced; older services only in the trace).
  function debounced(r) {
    if (r && typeof r.refresh_debounced === "boolean") return r.refresh_debounced;
    return Boolean(r && r.trace && r.trace.some((t) => t.node === "cache_lookup" && t.outcome === "refresh_debounced"));
  }

  function ageOf(tile) {
    const r = tile.result;
    if (!r) return 0;
    return (r.freshness_seconds || 0) + (performance.now() - tile.receivedAt) / 1000;
  }

  function badgeFor(tile) {
    const r = tile.result;
    const status = tile.error ? "error" : classify(r);
    const backend = r ? BACKEND_NAMES[r.backend] || r.backend || "backend" : "";
    if (r && r.rollup && (status === "live" || status === "cached")) {
      // read from a rollup (README "Rollups"): the age shown is its data's
      const age = formatAge(r.rollup.data_age_s + (performance.now() - tile.receivedAt) / 1000);
      return {
        status, icon: status === "live" ? "●" : "◷", text: `Rollup · ${age}`, kind: "rollup",
        tip: `Read from the rollup ${r.rollup.name} in PostgreSQL, no ${backend} statement; its data was built ${age} ago${status === "cached" ? " (this answer from the cache)" : ""}.${r.rollup.range_widened_to ? ` Counted from ${r.rollup.range_widened_to.slice(0, 16).replace("T", " ")} UTC, the start of the range's first bucket (up to one bucket more than asked).` : ""}`,
      };
    }
    switch (status) {
      case "live":
        return { status, icon: "●", text: `Live · ${backend}`, kind: null, tip: `Answered live by ${backend} just now.` };
      case "cached":
        return {
          status, icon: "◷", text: `Cached · ${formatAge(ageOf(tile))}`, kind: debounced(r) ? "refresh_debounced" : null,
          tip: debounced(r)
            ? `You asked for a live refresh, but this widget was resolved live only ${formatAge(r.freshness_seconds)} before, so the service reused that answer (forced refreshes are limited to one every few seconds${r.refresh_retry_after_s ? `: a live refresh is possible in ${formatAge(r.refresh_retry_after_s)}` : ""}). A live ${backend} answer, ${formatAge(ageOf(tile))} old.`
            : `A live ${backend} answer from the cache, ${formatAge(ageOf(tile))} old (refreshed when its TTL runs out).`,
        };
      case "stale":
        return {
          status, icon: "⚠", text: `Stale · ${formatAge(ageOf(tile))}`, kind: r.stale_reason || "revalidating",
          tip: `Older than its TTL (${formatAge(ageOf(tile))}); reason: ${r.stale_reason || "revalidating"}. A fresh answer is on its way.`,
        };
      case "fallback":
        return {
          status, icon: "⚠", text: `Stale · ${formatAge(ageOf(tile))} · live data unavailable`, kind: r.stale_reason || r.source,
          tip: `Live data unavailable (${r.source}): ${r.error_detail || "no detail"}. Showing the last good answer, ${formatAge(ageOf(tile))} old.`,
        };
      case "mock":
        return {
          status, icon: "⚠", text: "Mock · live data unavailable", kind: r.source,
          tip: `Live data unavailable (${r.source}): ${r.error_detail || "no detail given"}. These are the widget's sample numbers, not real data.`,
        };
      case "dry":
        return { status, icon: "◇", text: "Dry run · not executed", kind: null, tip: "The SQL was prepared and checked but not run; no data." };
      case "error":
        return {
          status, icon: "✕", text: tile.error.status === 401 ? "Sign-in needed" : tile.error.status === 403 ? "Not allowed" : "Error · no answer",
          kind: tile.error.status ? String(tile.error.status) : null,
          tip: tile.error.status === 401 || tile.error.status === 403 ? explainAuth(tile.error) : tile.error.message,
        };
      default:
        return { status: "loading", icon: "", text: "Loading", kind: null, tip: "Resolving…" };
    }
  }

  // ------------------------------------------------------------------ charts

  function columnsOf(r) {
    const cols = (r.schema || []).map((c) => c.name);
    if (!cols.length && r.data && r.data[0]) return Object.keys(r.data[0]);
    return cols;
  }

  function valueColumn(r) {
    const cols = columnsOf(r);
    if (cols.includes("value")) return "value";
    const numeric = (r.schema || []).find((c) => ["number", "integer", "float", "double", "decimal"].includes(c.type));
    if (numeric) return numeric.name;
    const row = (r.data || [])[0] || {};
    return cols.find((c) => typeof row[c] === "number") || cols[cols.length - 1];
  }

  function dimensionColumns(r, exclude) {
    return columnsOf(r).filter((c) => !exclude.includes(c));
  }

  function baseOption(fmtCompact) {
    return {
      color: PALETTE,
      animationDuration: 300,
      textStyle: { fontFamily: "inherit", color: "#334155" },
      grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
      tooltip: { confine: true, valueFormatter: (v) => fmtCompact.full(v) },
    };
  }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const MAX_TIME_LABELS = 8;

  // Ticks on the data's own points when they fall on whole days (daily, weekly, monthly
  // buckets, in UTC): every k-th bucket so at most MAX_TIME_LABELS labels, each month
  // named at its first label ("Sep 8", "15", "22", "Oct 6"), the year at its first label
  // and on every January. Null for finer grains: the time axis picks its own ticks then.
  // A bucket as epoch ms; a timestamp without an offset is UTC (as the backends mean it).
  function timeMs(t) {
    if (typeof t === "string" && /T\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(t)) return new Date(t + "Z").getTime();
    return new Date(t).getTime();
  }

  function timeTicks(times) {
    const points = [...new Set(times.map(timeMs).filter((t) => !Number.isNaN(t)))].sort((a, b) => a - b);
    if (points.length < 2 || points.some((t) => t % 86400000 !== 0)) return null;
    const monthly = points.every((t) => new Date(t).getUTCDate() === 1);
    const step = Math.ceil(points.length / MAX_TIME_LABELS);
    // thin from the last point back, so the latest bucket always has its label
    const shown = points.filter((_, i) => (points.length - 1 - i) % step === 0);
    const labels = new Map();
    let lastMonth = null;
    let lastYear = null;
    for (const t of shown) {
      const d = new Date(t);
      const month = d.getUTCFullYear() * 12 + d.getUTCMonth();
      const name = MONTHS[d.getUTCMonth()];
      const year = d.getUTCFullYear();
      const yearText = lastYear === null || year !== lastYear ? ` ${year}` : "";
      if (monthly) labels.set(t, `${name}${d.getUTCMonth() === 0 || lastYear === null ? yearText : ""}`);
      else labels.set(t, month !== lastMonth ? `${name} ${d.getUTCDate()}` : String(d.getUTCDate()));
      lastMonth = month;
      lastYear = year;
    }
    return { values: shown, label: (v) => labels.get(v) ?? "" };
  }

  // Categories in the catalog's natural order for this dimension (GET /v1/metrics
  // dimension_order), values it does not list after them, as they came.
  function inCatalogOrder(categories, metricId, dimension) {
    const order = ((state.metrics[metricId] || {}).dimension_order || {})[dimension];
    if (!order || !order.length) return categories;
    const rank = new Map(order.map((v, i) => [String(v), i]));
    return categories
      .map((c, i) => [c, rank.has(c) ? rank.get(c) : order.length + i])
      .sort((a, b) => a[1] - b[1])
      .map(([c]) => c);
  }

  function chartOption(kind, r, unit) {
    const full = numberFormatter(unit);
    const compact = numberFormatter(unit, { compact: true });
    const fmt = { full, compact };
    const vcol = valueColumn(r);
    const rows = r.data || [];
    const opt = baseOption(fmt);
    if (kind === "line" || kind === "area") {
      const tcol = columnsOf(r).includes("bucket") ? "bucket" : dimensionColumns(r, [vcol])[0];
      const split = dimensionColumns(r, [vcol, tcol])[0];
      const groups = new Map();
      for (const row of rows) {
        const key = split ? String(row[split]) : "value";
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push([timeMs(row[tcol]), row[vcol]]);
      }
      opt.tooltip.trigger = "axis";
      opt.xAxis = {
        type: "time", splitNumber: 6, axisLine: { lineStyle: { color: "#cbd5e1" } }, splitLine: { show: false },
        axisLabel: { hideOverlap: true, color: "#64748b" },
      };
      const ticks = timeTicks(rows.map((row) => row[tcol]));
      if (ticks) {
        opt.xAxis.axisLabel = { color: "#64748b", customValues: ticks.values, formatter: ticks.label, hideOverlap: false };
        opt.xAxis.axisTick = { customValues: ticks.values };
      }
      opt.yAxis = {
        type: "value", axisLabel: { formatter: (v) => compact(v) },
        splitLine: { lineStyle: { color: "#eef2f7" } },
      };
      if (groups.size > 1) opt.legend = { top: 0, type: "scroll" };
      if (groups.size > 1) opt.grid.top = 32;
      opt.series = [...groups.entries()].map(([name, points]) => ({
        name: groups.size > 1 ? name : humanize(r.metric_id),
        type: "line",
        data: points,
        showSymbol: points.length <= 20,
        symbolSize: 5,
        lineStyle: { width: 2 },
        areaStyle: kind === "area" || groups.size === 1 ? { opacity: kind === "area" ? 0.25 : 0.08 } : undefined,
      }));
      return opt;
    }
    if (kind === "pie") {
      const name = dimensionColumns(r, [vcol])[0];
      opt.tooltip.trigger = "item";
      opt.legend = { type: "scroll", orient: "vertical", right: 0, top: "middle", textStyle: { color: "#334155" } };
      opt.series = [{
        type: "pie",
        radius: ["42%", "70%"],
        center: ["36%", "50%"],
        avoidLabelOverlap: true,
        itemStyle: { borderColor: "#fff", borderWidth: 2 },
        label: { show: true, formatter: (p) => `${Math.round(p.percent)}%`, color: "#334155" },
        data: rows.map((row) => ({ name: String(row[name]), value: row[vcol] })),
      }];
      return opt;
    }
    // bar (and anything else categorical)
    const [cat, split] = dimensionColumns(r, [vcol]);
    let categories = [];
    const bySplit = new Map();
    for (const row of rows) {
      const c = String(row[cat]);
      if (!categories.includes(c)) categories.push(c);
      const key = split ? String(row[split]) : humanize(r.metric_id);
      if (!bySplit.has(key)) bySplit.set(key, new Map());
      bySplit.get(key).set(c, row[vcol]);
    }
    categories = inCatalogOrder(categories, r.metric_id, cat);
    const horizontal = categories.length > 6 || categories.some((c) => c.length > 10);
    const catAxis = {
      type: "category", data: horizontal ? [...categories].reverse() : categories,
      axisTick: { show: false }, axisLine: { lineStyle: { color: "#cbd5e1" } },
      axisLabel: { color: "#475569", interval: 0, hideOverlap: true },
    };
    const valAxis = {
      type: "value", axisLabel: { formatter: (v) => compact(v), color: "#64748b" },
      splitLine: { lineStyle: { color: "#eef2f7" } },
    };
    opt.tooltip.trigger = "axis";
    opt.tooltip.axisPointer = { type: "shadow" };
    opt.xAxis = horizontal ? valAxis : catAxis;
    opt.yAxis = horizontal ? catAxis : valAxis;
    if (bySplit.size > 1) {
      opt.legend = { top: 0, type: "scroll" };
      opt.grid.top = 32;
    }
    opt.series = [...bySplit.entries()].map(([name, values]) => ({
      name,
      type: "bar",
      barMaxWidth: 36,
      itemStyle: { borderRadius: horizontal ? [0, 4, 4, 0] : [4, 4, 0, 0] },
      label: bySplit.size === 1 && categories.length <= 8
        ? { show: true, position: horizontal ? "right" : "top", formatter: (p) => compact(p.value), color: "#475569", fontSize: 11 }
        : undefined,
      data: (horizontal ? [...categories].reverse() : categories).map((c) => values.get(c) ?? null),
    }));
    return opt;
  }

  function describeData(kind, r, unit) {
    const rows = r.data || [];
    const fmt = numberFormatter(unit);
    const vcol = valueColumn(r);
    const dim = dimensionColumns(r, [vcol])[0];
    const parts = rows.slice(0, 12).map((row) => (dim ? `${row[dim]}: ${fmt(row[vcol])}` : fmt(row[vcol])));
    const more = rows.length > 12 ? `, and ${rows.length - 12} more` : "";
    return `${kind} chart, ${rows.length} ${rows.length === 1 ? "point" : "points"}: ${parts.join(", ")}${more}`;
  }

  // ------------------------------------------------------------------ tiles

  class Tile {
    constructor(widget) {
      this.id = widget.id;
      this.spec = widget.spec;
      this.kind = widget.spec.kind;
      this.metric = widget.spec.data_intent.metric_id;
      this.result = null;
      this.error = null;
      this.receivedAt = 0;
      this.lastMs = 0;
      this.chart = null;
      this.node = $("#tile-template").content.firstElementChild.cloneNode(true);
      const n = this.node;
      n.dataset.widgetId = this.id;
      n.dataset.kind = this.kind;
      n.dataset.testid = "tile";
      n.classList.add(`kind-${this.kind}`);
      n.id = `tile-${this.id}`;
      const titleId = `title-${this.id}`;
      n.setAttribute("aria-labelledby", titleId);
      Object.assign(this, {
        title: $(".tile-title", n), infoBtn: $(".info-btn", n), badge: $(".badge", n),
        badgeIcon: $(".badge-icon", n), badgeText: $(".badge-text", n), badgeKind: $(".badge-kind", n),
        trustMark: $(".trust", n), approxMark: $(".approx", n), tip: $(".tip", n), popover: $(".popover", n), viz: $(".viz", n), mockMark: $(".mock-mark", n),
        meta: $(".meta", n), refreshBtn: $(".refresh-btn", n), sqlBtn: $(".sql-btn", n), traceBtn: $(".trace-btn", n),
        body: $(".tile-body", n),
      });
      this.title.id = titleId;
      this.title.textContent = this.spec.title;
      this.tip.id = `tip-${this.id}`;
      this.badge.setAttribute("aria-describedby", this.tip.id);
      this.popover.id = `about-${this.id}`;
      this.infoBtn.setAttribute("aria-controls", this.popover.id);
      this.infoBtn.setAttribute("aria-label", `About the metric of “${this.spec.title}”`);
      this.infoBtn.title = "About this metric";
      this.refreshBtn.setAttribute("aria-label", `Refresh “${this.spec.title}” live`);
      this.refreshBtn.title = "Resolve live now, skipping the cache";
      this.sqlBtn.setAttribute("aria-label", `SQL of “${this.spec.title}”`);
      this.traceBtn.setAttribute("aria-label", `Trace of “${this.spec.title}”`);
      this.refreshBtn.addEventListener("click", () => refreshTile(this));
      this.sqlBtn.addEventListener("click", () => showSql(this));
      this.traceBtn.addEventListener("click", () => showTrace(this));
      this.infoBtn.addEventListener("click", (ev) => {
        ev.stopPropagation();
        this.togglePopover();
      });
      this.popover.addEventListener("keydown", (ev) => {
        if (ev.key === "Escape") this.togglePopover(false);
      });
      this.showTip = (show) => { this.tip.hidden = !show; };
      this.badge.addEventListener("mouseenter", () => this.showTip(true));
      this.badge.addEventListener("mouseleave", () => this.showTip(document.activeElement === this.badge));
      this.badge.addEventListener("focus", () => this.showTip(true));
      this.badge.addEventListener("blur", () => this.showTip(false));
      this.badge.addEventListener("keydown", (ev) => {
        if (ev.key === "Escape") this.showTip(false);
      });
      this.badge.addEventListener("click", () => this.showTip(this.tip.hidden));
      this.setBadge();
    }

    get status() {
      return this.error ? "error" : classify(this.result);
    }

    setLoading(on, label) {
      this.node.setAttribute("aria-busy", on ? "true" : "false");
      this.node.classList.toggle("is-loading", on);
      this.refreshBtn.disabled = on;
      if (on) {
        this.loadingSince = performance.now();
        this.progressLabel = label || "Resolving…";
        this.tickProgress();
      } else {
        this.progressLabel = null;
        this.node.classList.remove("is-slow");
        this.renderMeta();
      }
    }

    tickProgress() {
      if (!this.progressLabel) return;
      const elapsed = performance.now() - this.loadingSince;
      if (!this.result || elapsed > 400) {
        this.meta.textContent = `${this.progressLabel} ${(elapsed / 1000).toFixed(1)} s`;
      }
      this.node.classList.toggle("is-slow", elapsed > SLOW_MS);
    }

    setProgressStep(text) {
      this.progressLabel = text;
      this.tickProgress();
    }

    setResult(r, { keepTrace = false } = {}) {
      const previousTrace = this.result && this.result.trace;
      this.result = r;
      if (keepTrace && !r.trace && previousTrace) r.trace = previousTrace;
      this.error = null;
      this.receivedAt = performance.now();
      if (r.trace) this.lastMs = r.trace.reduce((a, t) => a + t.ms, 0);
      this.render();
    }

    setError(err) {
      this.error = err;
      this.setBadge();
      this.node.dataset.status = "error";
      this.node.classList.add("is-error");
      this.renderMeta();
    }

    setBadge() {
      const b = badgeFor(this);
      this.badge.className = `badge badge-${b.status}`;
      this.badge.dataset.status = b.status;
      this.badgeIcon.textContent = b.icon;
      this.badgeText.textContent = b.text;
      this.badgeKind.hidden = !b.kind;
      this.badgeKind.textContent = b.kind || "";
      this.badgeKind.className = `badge-kind badge-kind-${b.status}`;
      this.badgeKind.dataset.testid = "failure-kind";
      this.tip.textContent = b.tip;
      this.badge.setAttribute("aria-label", `Data source: ${b.text}${b.kind ? ` (${b.kind})` : ""}`);
      this.setTrust();
    }

    // A free-text question's answer says how far it can be trusted (README "Trust levels"):
    // a model-written answer never looks like a verified or metric-compiled one.
    setTrust() {
      const trust = this.result && !this.error ? this.result.trust : null;
      const t = trust && TRUST[trust];
      this.trustMark.hidden = !t;
      this.trustMark.className = t ? `trust trust-${trust}` : "trust";
      this.trustMark.dataset.trust = trust || "";
      this.trustMark.textContent = t ? `${t.icon} ${t.text}` : "";
      // a verified answer names who verified it, and when
      const v = trust === "verified" ? this.result.verification : null;
      const tip = t ? (v ? `${t.tip} Verified by ${v.verified_by} on ${v.verified_at}.` : t.tip) : "";
      this.trustMark.title = tip;
      if (t) this.trustMark.setAttribute("aria-label", `Answer trust: ${t.text}. ${tip}`);
      else this.trustMark.removeAttribute("aria-label");
      // an answer computed with an approximate aggregate says so (response `approximation`)
      const approx = this.result && !this.error && this.result.approximate ? this.result.approximation : null;
      this.approxMark.hidden = !approx;
      this.approxMark.title = approx
        ? `Estimated values (${approx.functions.join(", ")})${approx.columns.length ? ` in ${approx.columns.join(", ")}` : ""}, within the function's documented error`
        : "";
    }

    render() {
      const r = this.result;
      const status = this.status;
      const n = this.node;
      n.dataset.status = status;
      for (const s of ["live", "cached", "stale", "fallback", "mock", "dry", "error"]) n.classList.toggle(`is-${s}`, s === status);
      n.classList.toggle("is-degraded", ["stale", "fallback", "mock", "error"].includes(status));
      this.setBadge();
      this.mockMark.hidden = status !== "mock";
      this.renderViz();
      this.renderMeta();
      this.sqlBtn.disabled = false;
      this.traceBtn.disabled = false;
      if (!r) return;
    }

    renderMeta() {
      if (this.progressLabel) return;
      const r = this.result;
      if (!r) {
        this.meta.textContent = this.error ? "No answer" : "";
        return;
      }
      const parts = [];
      const backend = BACKEND_NAMES[r.backend] || r.backend;
      if (backend) parts.push(backend);
      parts.push(`${r.row_count} ${r.row_count === 1 ? "row" : "rows"}`);
      if (this.lastMs) parts.push(`${this.lastMs < 1 ? this.lastMs.toFixed(2) : this.lastMs < 10 ? this.lastMs.toFixed(1) : Math.round(this.lastMs)} ms`);
      parts.push(`at ${formatClock(new Date(r.resolved_at))}`);
      this.meta.textContent = parts.join(" · ");
      this.meta.title = `Resolved at ${r.resolved_at}`;
    }

    renderViz() {
      const r = this.result;
      if (!r) return;
      const unit = (state.metrics[this.metric] || {}).unit;
      const viz = this.viz;
      if (r.dry_run) {
        this.disposeChart();
        viz.replaceChildren(el("div", { class: "empty" }, el("strong", { text: "Dry run" }), el("span", { text: "The SQL was checked, nothing ran. Open “SQL” to read it." })));
        return;
      }
      if (!r.data || !r.data.length) {
        this.disposeChart();
        viz.replaceChildren(el("div", { class: "empty", "data-testid": "no-rows" }, el("strong", { text: "No rows" }), el("span", { text: "The query ran and found nothing for this range." })));
        return;
      }
      if (this.kind === "kpi") {
        this.disposeChart();
        const vcol = valueColumn(r);
        const value = r.data[0][vcol];
        const fmt = numberFormatter(unit);
        const suffix = unitSuffix(unit);
        const range = this.spec.data_intent.time_range;
        viz.replaceChildren(
          el("div", { class: "kpi", "data-testid": "kpi" },
            el("span", { class: "kpi-value", "data-testid": "kpi-value", text: fmt(value) }),
            suffix ? el("span", { class: "kpi-unit", text: suffix }) : null,
            el("span", { class: "kpi-range", text: rangeLabel(range) })));
        return;
      }
      if (this.kind === "table") {
        this.disposeChart();
        const cols = columnsOf(r);
        const fmt = numberFormatter(undefined);
        const table = el("table", { class: "data-table", "data-testid": "data-table" },
          el("caption", { class: "sr-only", text: this.spec.title }),
          el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { scope: "col", text: humanize(c) })))),
          el("tbody", {}, ...r.data.map((row) => el("tr", {}, ...cols.map((c) => el("td", { class: typeof row[c] === "number" ? "num" : null, text: typeof row[c] === "number" ? fmt(row[c]) : String(row[c] ?? "—") }))))));
        viz.replaceChildren(el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `${this.spec.title} (table)` }, table));
        return;
      }
      if (typeof echarts === "undefined") {
        viz.replaceChildren(el("div", { class: "empty" }, el("strong", { text: "Charting library missing" })));
        return;
      }
      if (!this.chart || !viz.contains(this.chartEl)) {
        this.chartEl = el("div", { class: "chart", role: "img", "data-testid": "chart" });
        viz.replaceChildren(this.chartEl);
        this.chart = echarts.init(this.chartEl, null, { renderer: "canvas" });
        new ResizeObserver(() => this.chart && this.chart.resize()).observe(this.chartEl);
      }
      this.chartEl.setAttribute("aria-label", describeData(this.kind, r, unit));
      this.chart.setOption(chartOption(this.kind, r, unit), true);
    }

    disposeChart() {
      if (this.chart) {
        this.chart.dispose();
        this.chart = null;
        this.chartEl = null;
      }
    }

    togglePopover(force) {
      const open = force === undefined ? this.popover.hidden : force;
      for (const t of state.tiles.values()) if (t !== this && !t.popover.hidden) t.togglePopover(false);
      if (open) this.fillPopover();
      this.popover.hidden = !open;
      this.infoBtn.setAttribute("aria-expanded", String(open));
      if (open) this.popover.focus();
      else if (force === false && this.popover.contains(document.activeElement)) this.infoBtn.focus();
    }

    fillPopover() {
      const m = state.metrics[this.metric];
      const p = this.popover;
      p.tabIndex = -1;
      p.setAttribute("aria-label", `About ${this.metric}`);
      p.dataset.testid = "metric-popover";
      if (!m) {
        p.replaceChildren(el("p", { text: `Metric ${this.metric} is not in the catalog you can read.` }));
        return;
      }
      const gov = m.governance_status || "unknown";
      const rows = [
        ["Metric", el("code", { text: m.name })],
        ["Owner", m.owner],
        ["Unit", m.unit],
        ["Governance", el("span", { class: `gov gov-${gov.replace(/[^a-z]/g, "")}`, text: gov })],
        ["Last validated", m.last_validated_at ? new Date(m.last_validated_at).toLocaleString() : "not recorded"],
        ["Served by", `${BACKEND_NAMES[m.backend] || m.backend || "?"}${m.generator && m.backend === "databricks" ? ` · ${m.generator === "llm" ? "LLM-written SQL" : "compiled SQL"}` : ""}`],
        ["Cached for", m.ttl_seconds ? formatAge(m.ttl_seconds) : "—"],
        ["Dimensions", m.dimensions && m.dimensions.length ? m.dimensions.join(", ") : "none"],
      ];
      const dl = el("dl");
      for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", {}, v));
      p.replaceChildren(
        el("p", { class: "popover-desc", text: m.description }),
        dl,
        el("button", { type: "button", class: "btn btn-small popover-close", text: "Close" }),
      );
      $(".popover-close", p).addEventListener("click", () => this.togglePopover(false));
    }
  }

  // ------------------------------------------------------------------ loading data

  function applyResults(payload, { keepTrace = false } = {}) {
    for (const r of payload.results || []) {
      const tile = state.tiles.get(r.widget_id);
      if (tile) tile.setResult(r, { keepTrace });
    }
    for (const id of payload.not_found || []) {
      const tile = state.tiles.get(id);
      if (tile) {
        tile.setError(new ApiError(404, "Widget not found", "it was deleted or is not visible to you"));
      }
    }
  }

  function handleAuthError(err) {
    if (err.status === 401 || err.status === 403) {
      showAuth(err);
      return true;
    }
    return false;
  }

  async function loadTiles(tiles, { refresh = false } = {}) {
    if (!tiles.length) return;
    for (const t of tiles) t.setLoading(true, refresh ? "Refreshing live…" : "Resolving…");
    const ids = tiles.map((t) => t.id);
    const chunks = [];
    for (let i = 0; i < ids.length; i += BATCH_MAX) chunks.push(ids.slice(i, i + BATCH_MAX));
    try {
      await Promise.all(
        chunks.map(async (chunk) => {
          const body = { widget_ids: chunk };
          if (refresh) body.refresh = true;
          const payload = await api("/v1/widgets/data?trace=true", { method: "POST", body });
          applyResults(payload);
        }),
      );
      hideNotice();
    } catch (err) {
      for (const t of tiles) t.setError(err);
      if (!handleAuthError(err)) showNotice(`Could not load the tiles: ${err.message}`);
    } finally {
      for (const t of tiles) t.setLoading(false);
      updateSummary();
    }
  }

  async function streamTile(tile, body) {
    const resp = await api(`/v1/widgets/${encodeURIComponent(tile.id)}/data/stream?trace=true`, {
      method: "POST", body, accept: "text/event-stream",
    });
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let final = null;
    const steps = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        let event = "message";
        const data = [];
        for (const line of raw.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        let msg;
        try {
          msg = JSON.parse(data.join("\n"));
        } catch (_) {
          continue;
        }
        if (event === "error" || (msg && msg.status && msg.title && !msg.widget_id)) {
          throw new ApiError(msg.status || 500, msg.title || "Stream error", msg.detail || "", msg);
        }
        if (msg && msg.widget_id && "source" in msg) final = msg;
        else if (msg && msg.node) {
          steps.push(msg);
          tile.setProgressStep(`${steps.length} ${steps.length === 1 ? "step" : "steps"} · ${msg.node} ✓ ·`);
        }
      }
      if (done) break;
    }
    if (!final) throw new ApiError(0, "The stream ended without an answer", "");
    if (!final.trace && steps.length) final.trace = steps.map((s) => ({ node: s.node, ms: s.ms, outcome: s.outcome }));
    return final;
  }

  async function refreshTile(tile) {
    tile.setLoading(true, "Refreshing live…");
    try {
      let r;
      if (state.features.stream) {
        r = await streamTile(tile, { refresh: true });
      } else {
        r = await api(`/v1/widgets/${encodeURIComponent(tile.id)}/data?trace=true`, {
          method: "POST", body: { refresh: true },
        });
      }
      tile.setResult(r);
    } catch (err) {
      tile.setError(err);
      handleAuthError(err);
    } finally {
      tile.setLoading(false);
      updateSummary();
    }
  }

  async function loadAll({ refresh = false } = {}) {
    if (state.loading) return;
    state.loading = true;
    try {
      const tiles = [...state.tiles.values()];
      // Tiles that were slow last time are streamed one by one (progress per node) when the
      // service has the stream; the rest come back in one batch round trip.
      const slow = state.features.stream ? tiles.filter((t) => t.lastMs > SLOW_MS) : [];
      const fast = tiles.filter((t) => !slow.includes(t));
      await Promise.all([
        loadTiles(fast, { refresh }),
        ...slow.map(async (t) => {
          t.setLoading(true, refresh ? "Refreshing live…" : "Resolving…");
          try {
            t.setResult(await streamTile(t, refresh ? { refresh: true } : {}));
          } catch (err) {
            t.setError(err);
            handleAuthError(err);
          } finally {
            t.setLoading(false);
          }
        }),
      ]);
      state.lastFullLoad = performance.now();
      $("#updated").textContent = `Updated ${formatClock(new Date())}`;
    } finally {
      state.loading = false;
      updateSummary();
      schedule();
    }
  }

  // ------------------------------------------------------------------ auto-refresh

  function degradedTiles() {
    return [...state.tiles.values()].filter((t) => ["mock", "fallback", "stale", "error"].includes(t.status));
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    state.nextTickAt = 0;
    if (!state.autoSeconds || state.authProblem) return;
    const sinceFull = (performance.now() - state.lastFullLoad) / 1000;
    let delay = Math.max(0, state.autoSeconds - sinceFull);
    if (degradedTiles().length) delay = Math.min(delay, DEGRADED_RETRY_S);
    state.nextTickAt = performance.now() + delay * 1000;
    state.timer = setTimeout(tick, delay * 1000);
  }

  async function tick() {
    if (document.hidden) {
      state.timer = null; // resumed by visibilitychange
      return;
    }
    const dueFull = (performance.now() - state.lastFullLoad) / 1000 >= state.autoSeconds - 0.05;
    if (dueFull) {
      await loadAll();
    } else {
      await loadTiles(degradedTiles());
      schedule();
    }
  }

  function setAuto(seconds, { persist = true } = {}) {
    state.autoSeconds = seconds;
    const select = $("#auto-refresh");
    if (![...select.options].some((o) => Number(o.value) === seconds)) {
      select.append(el("option", { value: String(seconds), text: `every ${seconds} s` }));
    }
    select.value = String(seconds);
    if (persist) localStorage.setItem(AUTO_KEY, String(seconds));
    schedule();
    updateSummary();
  }

  // ------------------------------------------------------------------ summary, notices

  function updateSummary() {
    const counts = { live: 0, cached: 0, stale: 0, degraded: 0, loading: 0, dry: 0 };
    for (const t of state.tiles.values()) {
      const s = t.status;
      if (s === "live") counts.live++;
      else if (s === "cached") counts.cached++;
      else if (s === "stale" || s === "fallback") counts.stale++;
      else if (s === "mock" || s === "error") counts.degraded++;
      else if (s === "dry") counts.dry++;
      else counts.loading++;
    }
    const total = state.tiles.size;
    const summary = $("#summary");
    const item = (cls, n, label) => el("span", { class: `sum sum-${cls}`, "data-count": n, "data-testid": `sum-${cls}` }, el("span", { class: "dot", "aria-hidden": "true" }), `${n} ${label}`);
    summary.replaceChildren(
      el("strong", { text: `${total} ${total === 1 ? "tile" : "tiles"}` }),
      item("live", counts.live, "live"),
      item("cached", counts.cached, "cached"),
      item("stale", counts.stale, "stale"),
      item("degraded", counts.degraded, "degraded"),
    );
    if (counts.dry) summary.append(item("dry", counts.dry, "dry run"));
    if (counts.loading) summary.append(el("span", { class: "sum sum-loading", text: `${counts.loading} loading` }));
    summary.dataset.degraded = String(counts.degraded);
    document.title = `${counts.degraded ? `(${counts.degraded} degraded) ` : ""}Dashboard · Widget data resolver`;
  }

  function updateClock() {
    for (const t of state.tiles.values()) {
      if (["cached", "stale", "fallback"].includes(t.status)) t.setBadge();
      t.tickProgress();
    }
    const updated = $("#updated");
    if (state.lastFullLoad) {
      const base = `Updated ${formatAge((performance.now() - state.lastFullLoad) / 1000)} ago`;
      const next = state.nextTickAt ? ` · next check in ${formatAge((state.nextTickAt - performance.now()) / 1000)}` : "";
      updated.textContent = base + (state.autoSeconds ? next : " · auto-refresh off");
    }
  }

  function showNotice(text) {
    const n = $("#notice");
    n.textContent = text;
    n.hidden = false;
  }

  function hideNotice() {
    if (!state.authProblem) $("#notice").hidden = true;
  }

  // ------------------------------------------------------------------ dialogs

  function openDialog({ title, sub, body, copy }) {
    const d = $("#detail-dialog");
    $("#detail-title").textContent = title;
    $("#detail-sub").textContent = sub || "";
    $("#detail-body").replaceChildren(...[].concat(body));
    $("#detail-status").textContent = "";
    const copyBtn = $("#detail-copy");
    copyBtn.hidden = !copy;
    copyBtn.onclick = copy ? () => copyText(copy) : null;
    if (!d.open) d.showModal();
  }

  async function copyText(text) {
    const status = $("#detail-status");
    try {
      await navigator.clipboard.writeText(text);
      status.textContent = "Copied to the clipboard.";
    } catch (_) {
      const area = el("textarea", { class: "sr-only", readonly: true });
      area.value = text;
      $("#detail-body").append(area);
      area.select();
      const ok = document.execCommand && document.execCommand("copy");
      area.remove();
      status.textContent = ok ? "Copied to the clipboard." : "Select the SQL and copy it (Ctrl+C).";
    }
  }

  function sqlSubtitle(r) {
    if (r.backend === "postgres") return "PostgreSQL · allowlisted, parameterized template (%(name)s are bound parameters)";
    const gen = (state.metrics[r.metric_id] || {}).generator;
    const how = r.source === "bedrock_unconfigured" || gen === "llm" ? "written by the LLM" : "compiled from the metric's definition";
    return `Databricks SQL · ${how} · passed the safety layer${r.executed ? "" : " · not executed"}`;
  }

  function showSql(tile) {
    const r = tile.result;
    if (!r) return;
    if (r.generated_sql) {
      const tokens = formatSql(r.generated_sql);
      openDialog({ title: `SQL · ${tile.spec.title}`, sub: sqlSubtitle(r), body: sqlNode(tokens), copy: sqlText(tokens) });
      return;
    }
    const why = r.live_data_unavailable
      ? `No SQL ran for this answer: live data was unavailable (${r.source}). ${r.error_detail || ""}`
      : "No SQL is recorded for this answer.";
    const preview = el("button", { type: "button", class: "btn", text: "Prepare the SQL without running it (dry run)" });
    const body = [el("p", { class: "dialog-note", text: why }), preview];
    openDialog({ title: `SQL · ${tile.spec.title}`, sub: "", body });
    preview.addEventListener("click", async () => {
      $("#detail-status").textContent = "Preparing…";
      try {
        const dry = await api(`/v1/widgets/${encodeURIComponent(tile.id)}/data`, { method: "POST", body: { dry_run: true } });
        if (dry.generated_sql) {
          const tokens = formatSql(dry.generated_sql);
          openDialog({ title: `SQL (dry run) · ${tile.spec.title}`, sub: sqlSubtitle(dry), body: sqlNode(tokens), copy: sqlText(tokens) });
        } else {
          openDialog({ title: `SQL (dry run) · ${tile.spec.title}`, body: el("p", { class: "dialog-note", text: `No SQL could be prepared: ${dry.source}. ${dry.error_detail || ""}` }) });
        }
      } catch (err) {
        $("#detail-status").textContent = handleAuthError(err) ? explainAuth(err) : err.message;
      }
    });
  }

  function traceTable(steps) {
    const total = steps.reduce((a, s) => a + s.ms, 0);
    const max = Math.max(...steps.map((s) => s.ms), 0.001);
    const rows = steps.map((s) => {
      const bar = el("span", { class: "trace-bar" });
      bar.style.width = `${Math.max(2, (s.ms / max) * 100)}%`;
      return el("tr", {},
        el("th", { scope: "row" }, el("code", { text: s.node })),
        el("td", { class: "num", text: `${s.ms < 10 ? s.ms.toFixed(2) : s.ms.toFixed(1)} ms` }),
        el("td", { class: "trace-bar-cell" }, bar),
        el("td", { text: s.outcome }));
    });
    return el("table", { class: "trace-table", "data-testid": "trace-table" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Node" }), el("th", { scope: "col", class: "num", text: "Time" }), el("th", { scope: "col", text: "" }), el("th", { scope: "col", text: "Outcome" }))),
      el("tbody", {}, ...rows),
      el("tfoot", {}, el("tr", {}, el("th", { scope: "row", text: "Total" }), el("td", { class: "num", text: `${total.toFixed(2)} ms` }), el("td"), el("td"))));
  }

  async function showTrace(tile) {
    const r = tile.result;
    if (r && r.trace && r.trace.length) {
      openDialog({
        title: `Trace · ${tile.spec.title}`,
        sub: `The graph's nodes for the answer shown (${classify(r)}, resolved at ${formatClock(new Date(r.resolved_at))}).`,
        body: traceTable(r.trace),
      });
      return;
    }
    openDialog({ title: `Trace · ${tile.spec.title}`, sub: "Resolving once more with ?trace=true…", body: el("p", { class: "dialog-note", text: "…" }) });
    try {
      const fresh = await api(`/v1/widgets/${encodeURIComponent(tile.id)}/data?trace=true`, { method: "POST" });
      openDialog({
        title: `Trace · ${tile.spec.title}`,
        sub: `A new resolution just now (${classify(fresh)}); the answer shown on the tile was not traced.`,
        body: traceTable(fresh.trace || []),
      });
    } catch (err) {
      $("#detail-status").textContent = handleAuthError(err) ? explainAuth(err) : err.message;
    }
  }

  // ------------------------------------------------------------------ identity

  function showAuth(err) {
    state.authProblem = err;
    schedule();
    const text = explainAuth(err);
    showNotice(text);
    $("#sign-in").hidden = false;
    $("#sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
    $("#auth-reason").textContent = text;
    const d = $("#auth-dialog");
    $("#auth-title").textContent = err.status === 403 ? "Your token lacks a permission" : "Sign in to see the dashboard";
    if (!d.open && err.status === 401) d.showModal();
  }

  function wireAuth() {
    const d = $("#auth-dialog");
    $("#auth-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("#auth-token").value.trim().replace(/^Bearer\s+/i, "");
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("#auth-token").value = "";
      d.close();
      state.authProblem = null;
      $("#notice").hidden = true;
      $("#sign-in").hidden = true;
      $("#sign-out").hidden = false;
      boot();
    });
    $("#auth-cancel").addEventListener("click", () => d.close());
    $("#sign-in").addEventListener("click", () => {
      $("#auth-reason").textContent = state.authProblem ? explainAuth(state.authProblem) : "Paste a bearer token.";
      d.showModal();
    });
    $("#sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#sign-out").hidden = true;
      boot();
    });
    $("#sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  // ------------------------------------------------------------------ boot

  async function detectFeatures() {
    try {
      const doc = await api("/openapi.json");
      state.features.stream = Boolean(doc && doc.paths && doc.paths[STREAM_PATH]);
    } catch (_) {
      state.features.stream = false; // the batch result is used
    }
  }

  async function boot() {
    const kpis = $("#kpis");
    const charts = $("#charts");
    try {
      const [widgets, metrics] = await Promise.all([api("/v1/widgets"), api("/v1/metrics"), detectFeatures()]);
      state.authProblem = null;
      state.metrics = Object.fromEntries((metrics.metrics || []).map((m) => [m.name, m]));
      state.widgets = [...(widgets.widgets || [])].sort(
        (a, b) => (KIND_ORDER[a.spec.kind] ?? 9) - (KIND_ORDER[b.spec.kind] ?? 9) || a.id.localeCompare(b.id),
      );
    } catch (err) {
      $("#summary").textContent = "No tiles loaded.";
      if (!handleAuthError(err)) showNotice(`Could not list the widgets: ${err.message}`);
      return;
    }
    for (const t of state.tiles.values()) t.disposeChart();
    state.tiles.clear();
    kpis.replaceChildren();
    charts.replaceChildren();
    if (!state.widgets.length) {
      charts.append(el("p", { class: "empty-page", text: "No widgets are registered for you yet. Add one with PUT /v1/widgets/{id}." }));
    }
    for (const w of state.widgets) {
      const tile = new Tile(w);
      state.tiles.set(w.id, tile);
      (w.spec.kind === "kpi" ? kpis : charts).append(tile.node);
    }
    updateSummary();
    await loadAll();
    watchChanges();
  }

  // ------------------------------------------------------------------ pushed changes

  // GET /v1/changes: the service names each widget whose data changed (CHANGE_REFRESH on);
  // its tile is re-fetched at once. Polling (auto-refresh) stays as the fallback: a 204
  // (off) stops watching, any other failure retries with a growing pause.
  async function watchChanges() {
    if (state.changes) return;
    state.changes = { retryS: 1, pending: new Map() };
    for (;;) {
      try {
        const resp = await api("/v1/changes", { accept: "text/event-stream" });
        if (resp.status === 204 || !resp.body) {
          state.features.changes = false; // CHANGE_REFRESH is off: polling only
          return;
        }
        state.features.changes = true;
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (value) buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const raw = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            let event = "message";
            let data = "";
            for (const line of raw.split(/\r?\n/)) {
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
            }
            if (event === "ready") state.changes.retryS = 1;
            if (event === "changed") changed(data);
          }
          if (done) break;
        }
      } catch (err) {
        if (err && (err.status === 404 || err.status === 401 || err.status === 403)) {
          state.features.changes = false;
          return;
        }
      }
      state.features.changes = false;
      await new Promise((r) => setTimeout(r, state.changes.retryS * 1000));
      state.changes.retryS = Math.min(30, state.changes.retryS * 2);
    }
  }

  function changed(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      return;
    }
    const tile = msg && state.tiles.get(msg.widget_id);
    if (!tile || state.changes.pending.has(tile.id)) return;
    // one re-fetch per tile for a burst of events (each identity's answer refreshed)
    state.changes.pending.set(tile.id, setTimeout(() => {
      state.changes.pending.delete(tile.id);
      loadTiles([tile]);
    }, 150));
  }

  function init() {
    wireAuth();
    const params = new URLSearchParams(location.search);
    const fromUrl = Number(params.get("auto"));
    const saved = localStorage.getItem(AUTO_KEY);
    const auto = Number.isFinite(fromUrl) && fromUrl >= 2 ? fromUrl : saved !== null ? Number(saved) : 30;
    setAuto(Number.isFinite(auto) ? auto : 30, { persist: !(fromUrl >= 2) });
    $("#auto-refresh").addEventListener("change", (ev) => setAuto(Number(ev.target.value)));
    $("#reload-all").addEventListener("click", () => loadAll());
    $("#refresh-all").addEventListener("click", () => loadAll({ refresh: true }));
    document.addEventListener("click", (ev) => {
      for (const t of state.tiles.values()) {
        if (!t.popover.hidden && !t.popover.contains(ev.target) && ev.target !== t.infoBtn) t.togglePopover(false);
      }
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape") return;
      for (const t of state.tiles.values()) if (!t.popover.hidden) t.togglePopover(false);
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.autoSeconds && !state.timer && !state.loading) schedule();
    });
    setInterval(updateClock, 1000);
    boot();
  }

  // exposed for the browser tests and the curious: read-only views of the page's state
  window.dashboard = {
    formatSql: (sql) => sqlText(formatSql(sql)),
    status: () => Object.fromEntries([...state.tiles.values()].map((t) => [t.id, t.status])),
    features: () => Object.assign({}, state.features),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
