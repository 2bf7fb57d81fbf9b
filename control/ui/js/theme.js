// The colour theme: "system" (no attribute: app.css follows prefers-color-scheme), "light" or
// "dark" (<html data-theme>, which overrides the system). A classic, render-blocking script in
// <head> rather than a module, so that a stored choice applies before the first paint (the CSP
// allows no inline script). Only this choice is kept in localStorage — never a token.
(() => {
  const KEY = 'antcode.theme';
  const root = document.documentElement;
  const stored = () => {
    try { return localStorage.getItem(KEY); } catch (_) { return null; }
  };
  const apply = (theme) => {
    if (theme === 'light' || theme === 'dark') root.dataset.theme = theme;
    else delete root.dataset.theme;
    const select = document.getElementById('theme');
    if (select) select.value = root.dataset.theme || 'system';
  };
  apply(stored());
  document.addEventListener('DOMContentLoaded', () => {
    const select = document.getElementById('theme');
    apply(stored());
    select.addEventListener('change', () => {
      try {
        if (select.value === 'system') localStorage.removeItem(KEY);
        else localStorage.setItem(KEY, select.value);
      } catch (_) { /* storage is off: the choice lasts as long as the page */ }
      apply(select.value);
    });
  });
  // Another tab changed it.
  window.addEventListener('storage', (e) => { if (e.key === KEY) apply(e.newValue); });
})();
