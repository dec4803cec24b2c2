// Keeps an open page current: every data-refresh seconds, fetch this same address and swap in the
// new <main>, unless someone is typing in a form or the page is hidden. Pages marked data-static
// (settings, digest, errors) are left alone. Our own code; no library.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main || main.hasAttribute("data-static")) { return; }
  var every = Math.max(5, Number(main.getAttribute("data-refresh")) || 30) * 1000;

  function busy() {
    var el = document.activeElement;
    return document.hidden || (el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA"));
  }

  function refresh() {
    if (busy()) { return schedule(); }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          if (fresh && !busy()) {
            main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
              return document.importNode(n, true);
            }));
            document.body.setAttribute("data-refreshed", String(Date.now()));
            document.dispatchEvent(new CustomEvent("fleetwatch:refreshed"));
          }
        }
      })
      .catch(function () { /* the agent is restarting or the network is down: try again next time */ })
      .then(schedule);
  }

  function schedule() { window.setTimeout(refresh, every); }
  schedule();
}());
