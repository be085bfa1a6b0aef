/* The portal's only script (no inline scripts: strict CSP). Pages work without it; it adds:
   - live countdowns on <time data-countdown datetime="...">,
   - the browser's time zone in a cookie, so the server can show times in it,
   - picking "Other" when someone types a custom duration,
   - the focus on the error summary after a refused submit, and its links moving the focus to their field. */
(function () {
  "use strict";

  function remember_time_zone() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    // IANA names (Europe/Berlin, America/Argentina/Buenos_Aires) need no escaping in a cookie.
    if (!zone || zone.length > 63 || !/^[A-Za-z0-9_+\-\/]+$/.test(zone)) { return; }
    var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("broker_tz=") === 0; })[0];
    var value = zone;
    if (current !== "broker_tz=" + value) {
      var secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = "broker_tz=" + value + "; Path=/; Max-Age=31536000; SameSite=Lax" + secure;
    }
  }

  // The day unit comes from the page (data-day), in its language: "d", "Tg.".
  function human(seconds, day) {
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d) { return d + " " + day + " " + h + " h"; }
    if (h) { return h + " h " + (m < 10 ? "0" : "") + m + " min"; }
    if (m) { return m + " min " + (s < 10 ? "0" : "") + s + " s"; }
    return s + " s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var until = Date.parse(el.getAttribute("datetime"));
      if (isNaN(until)) { return; }
      var left = Math.round((until - now) / 1000);
      var label = el.hasAttribute("data-label") ? el.getAttribute("data-label") : "left";
      var day = el.getAttribute("data-day") || "d";
      var up = el.getAttribute("data-up") || "time is up — refresh";
      var text = left > 0 ? (human(left, day) + " " + label).trim() : up;
      if (el.textContent !== text) { el.textContent = text; }
    });
  }

  function custom_durations() {
    document.querySelectorAll("[data-custom-duration]").forEach(function (input) {
      input.addEventListener("input", function () {
        var other = input.form && input.form.querySelector('input[name="duration"][value="custom"]');
        if (other && input.value.trim()) { other.checked = true; }
      });
    });
  }

  function error_summary() {
    var summary = document.querySelector("[data-error-summary]");
    if (!summary) { return; }
    // The page opens on the problems, read out first (autofocus does the same where it is honoured).
    if (document.activeElement !== summary) { summary.focus(); }
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var field = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!field) { return; }
      event.preventDefault();
      // Show the field's label (or legend) with it, not only the input at the very top of the window.
      var around = field.closest("fieldset") || field.closest(".field") || field;
      around.scrollIntoView();
      field.focus({ preventScroll: true });
    });
  }

  remember_time_zone();
  document.addEventListener("DOMContentLoaded", function () {
    error_summary();
    custom_durations();
    if (document.querySelector("[data-countdown]")) {
      tick();
      window.setInterval(tick, 1000);
    }
  });
})();
