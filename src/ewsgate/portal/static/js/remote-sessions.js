// ewsgate portal: Remote Technician sessions, live. Loaded from 'self' (CSP script-src 'self');
// every page it touches also works without it.
//
//  - #rt-session (the session's progress page): polls GET /api/v1/remote-sessions/{id}, marks
//    the steps, counts down to expires_at, and when the session is ready opens the device web
//    page in a new tab (once; the "Open device web page" link stays for a blocked pop-up);
//  - [data-countdown] cells: count down whole seconds;
//  - #rt-device-sessions (a device page): lists the viewer's live sessions on that device with
//    a countdown and an End button (DELETE with the page's CSRF token);
//  - #remote-technician-log[data-live-log] (a job page): while the job runs, appends new log
//    entries from GET /api/v1/jobs/{id}/log?after_seq=N.
"use strict";

(function () {
  var LIVE = { verifying: true, connecting: true, ready: true };
  var STEPS = ["verifying", "connecting", "ready"];

  function onReady(fn) {
    if (document.readyState !== "loading") { fn(); } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" },
                        cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  function countdown(element, seconds, onZero) {
    var deadline = Date.now() + seconds * 1000;
    function tick() {
      var left = (deadline - Date.now()) / 1000;
      element.textContent = clock(left);
      if (left <= 0) {
        if (onZero) { onZero(); }
        return;
      }
      window.setTimeout(tick, 1000 - (Date.now() % 1000) || 1000);
    }
    tick();
  }

  function progressPage(root) {
    var api = root.getAttribute("data-api");
    var url = root.getAttribute("data-url");
    var owner = root.getAttribute("data-owner") === "true";
    var statusEl = document.getElementById("rt-status");
    var reasonEl = document.getElementById("rt-reason");
    var reasonWrap = document.getElementById("rt-reason-wrap");
    // wrappers: a class's display rule (.btn, .alert) would override [hidden] on the element
    var openWrap = document.getElementById("rt-open-wrap");
    var endWrap = document.getElementById("rt-end-wrap");
    var countEl = document.getElementById("rt-countdown");
    var openedKey = "ewsgate-opened-" + api;
    var status = root.getAttribute("data-status");
    countdown(countEl, parseInt(root.getAttribute("data-expires-in"), 10) || 0);

    function show(data) {
      status = data.status;
      root.setAttribute("data-status", status);
      statusEl.textContent = status;
      var reached = STEPS.indexOf(status);
      root.querySelectorAll("[data-step]").forEach(function (li) {
        li.classList.toggle("rt-done", STEPS.indexOf(li.getAttribute("data-step")) <= reached);
      });
      if (data.reason) {
        reasonWrap.hidden = false;
        reasonEl.textContent = data.reason;
        reasonEl.className = status === "failed" ? "alert alert-error" : "muted";
      }
      if (status === "ready" && owner) {
        openWrap.hidden = false;
        if (!window.sessionStorage.getItem(openedKey)) {
          window.sessionStorage.setItem(openedKey, "1");
          window.open(url, "_blank", "noopener,noreferrer");
        }
      }
      if (!LIVE[status]) {
        openWrap.hidden = true;
        if (endWrap) { endWrap.hidden = true; }
        countEl.textContent = "0:00";
      }
    }

    function poll() {
      getJSON(api).then(function (data) {
        show(data);
        if (LIVE[data.status]) { window.setTimeout(poll, data.status === "ready" ? 5000 : 500); }
      }).catch(function () { window.setTimeout(poll, 2000); });
    }
    poll();
  }

  function deviceSessions(root) {
    var deviceId = parseInt(root.getAttribute("data-device-id"), 10);
    var me = root.getAttribute("data-user-email");
    getJSON("/api/v1/remote-sessions").then(function (data) {
      var mine = data.sessions.filter(function (s) {
        return s.device_id === deviceId && s.user_email === me;
      });
      if (!mine.length) { return; }
      root.hidden = false;
      var list = document.createElement("ul");
      mine.forEach(function (s) {
        var li = document.createElement("li");
        var link = document.createElement("a");
        link.href = "/remote-sessions/" + encodeURIComponent(s.session_id);
        link.textContent = "Live session (" + s.status + ")";
        var left = document.createElement("strong");
        left.className = "rt-left";
        var end = document.createElement("button");
        end.type = "button";
        end.className = "btn btn-danger btn-small";
        end.textContent = "End";
        end.addEventListener("click", function () {
          end.disabled = true;
          fetch("/api/v1/remote-sessions/" + encodeURIComponent(s.session_id), {
            method: "DELETE", credentials: "same-origin",
            headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" }
          }).then(function () { li.remove(); if (!list.children.length) { root.hidden = true; } });
        });
        li.appendChild(link);
        li.appendChild(document.createTextNode(" · time left "));
        li.appendChild(left);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(end);
        list.appendChild(li);
        countdown(left, s.expires_in, function () { li.remove(); });
      });
      root.appendChild(list);
    }).catch(function () { /* the page works without it */ });
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function liveLog(root) {
    var api = root.getAttribute("data-log-api");
    var body = root.querySelector("tbody");
    var foot = root.querySelector(".table-foot");
    var after = parseInt(root.getAttribute("data-after-seq"), 10);
    function recount() {
      if (!foot || !body) { return; }
      var n = body.querySelectorAll("tr").length;
      foot.textContent = n + (n === 1 ? " request" : " requests") + " recorded";
    }
    function poll() {
      var query = isNaN(after) ? "" : "?after_seq=" + after;
      getJSON(api + query).then(function (data) {
        data.entries.forEach(function (e) {
          if (!body) { return; }
          var tr = document.createElement("tr");
          cell(tr, String(e.seq), "small");
          cell(tr, new Date(e.at).toISOString().substring(11, 19), "nowrap small");
          cell(tr, e.user_email || "—", "small");
          cell(tr, e.method + " " + e.url, "mono");
          cell(tr, e.status === null ? "—" : String(e.status));
          cell(tr, e.bytes_in + " B / " + e.bytes_out + " B", "small nowrap");
          cell(tr, e.duration_ms + " ms", "small nowrap");
          var outcome = cell(tr, e.outcome);
          if (e.detail) {
            var d = document.createElement("div");
            d.className = "muted small";
            d.textContent = e.detail;
            outcome.appendChild(d);
          }
          body.appendChild(tr);
          after = e.seq;
        });
        recount();
        if (data.live) { window.setTimeout(poll, 2000); }
      }).catch(function () { window.setTimeout(poll, 5000); });
    }
    if (root.getAttribute("data-live-log") === "true") { window.setTimeout(poll, 2000); }
  }

  onReady(function () {
    var session = document.getElementById("rt-session");
    if (session) { progressPage(session); }
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      countdown(el, parseInt(el.getAttribute("data-countdown"), 10) || 0);
    });
    var device = document.getElementById("rt-device-sessions");
    if (device) { deviceSessions(device); }
    var log = document.getElementById("remote-technician-log");
    if (log && log.hasAttribute("data-log-api")) { liveLog(log); }
  });
})();
