// devicepass self-service page. The page works without this script; it
// adds the copy button and moves focus to a newly created password.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const created = document.getElementById("created");
  if (created) {
    created.focus();
    // This page answers a POST: make a reload fetch the list instead of
    // creating another password.
    history.replaceState(null, "", created.dataset.home);
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const status = document.getElementById("copy-status");
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (status) status.textContent = "Copied.";
      } catch (_) {
        // No clipboard access (plain http, or refused): select the text
        // so the user can copy it by hand.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Selected: press Ctrl+C or ⌘C to copy.";
      }
    });
  }
});
