// Live parts of a console page: an element with data-live is refetched every data-every
// milliseconds and replaced in place, without a reload. A fetch that fails leaves the
// last figures up and tries again at the next turn.
(function () {
  for (const box of document.querySelectorAll("[data-live]")) {
    const every = Number(box.dataset.every || 5000);
    setInterval(async () => {
      if (box.contains(document.activeElement)) return; // an operator is typing in it
      try {
        const answer = await fetch(box.dataset.live, { credentials: "same-origin" });
        if (answer.ok && !answer.redirected) box.innerHTML = await answer.text();
      } catch (_) { /* the next turn tries again */ }
    }, every);
  }
})();
