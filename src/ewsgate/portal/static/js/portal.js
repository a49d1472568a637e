// ewsgate portal: small progressive enhancements. Every page works without this file;
// it is loaded from 'self' only (CSP script-src 'self'), and the templates hold no inline script.
//
//  - <select data-autosubmit> submits its form when changed (the filter bars);
//  - <form data-confirm="question"> asks before submitting (revoke, remove, disable);
//  - <button data-copy="element-id"> copies that element's text (one-time tokens).
"use strict";

(function () {
  function onReady(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  onReady(function () {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.form) {
          select.form.requestSubmit ? select.form.requestSubmit() : select.form.submit();
        }
      });
    });

    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });

    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-copy"));
        if (!target || !navigator.clipboard) {
          return;
        }
        navigator.clipboard.writeText(target.textContent.trim()).then(function () {
          var label = button.textContent;
          button.textContent = "Copied";
          window.setTimeout(function () { button.textContent = label; }, 2000);
        });
      });
    });
  });
})();
