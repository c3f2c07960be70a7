"""The gallery page's inline stylesheet and script (no external files: the page works from file://)."""

from __future__ import annotations

CSS = """
:root{color-scheme:light dark;--bg:#f5f5f2;--fg:#1c1c1c;--card:#fff;--muted:#5a5a5a;--line:#d8d8d3;--accent:#1f55c4}
@media (prefers-color-scheme:dark){:root{--bg:#131313;--fg:#ececec;--card:#1e1e1e;--muted:#a8a8a8;--line:#353535;
--accent:#8fb5ff}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{position:sticky;top:0;z-index:1;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;
padding:.7rem 1rem;background:var(--bg);border-bottom:1px solid var(--line)}
h1{font-size:1.1rem;margin:0}
.summary{margin:0;color:var(--muted)}
.search{display:flex;gap:.5rem;align-items:center;margin-left:auto}
.search input{font:inherit;padding:.35rem .5rem;min-width:15rem;border:1px solid var(--line);border-radius:4px;
background:var(--card);color:inherit}
#count{color:var(--muted);font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:1rem;padding:1rem;margin:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;overflow:hidden;display:flex;
flex-direction:column;content-visibility:auto;contain-intrinsic-size:auto 210px auto 420px}
.card[hidden]{display:none}
.card:focus{outline:3px solid var(--accent);outline-offset:2px}
.frame{position:relative;aspect-ratio:1;display:grid;place-items:center;overflow:hidden;cursor:zoom-in;
background:repeating-conic-gradient(#8882 0 25%,transparent 0 50%) 0 0/16px 16px}
.frame img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain}
img.px{image-rendering:pixelated}
.frame.broken{cursor:default;padding:1rem;text-align:center;color:#b3261e;font-weight:600}
.meta{padding:.5rem .7rem .7rem;display:flex;flex-direction:column;gap:.3rem;overflow-wrap:anywhere}
.meta p{margin:0}
.prompt{font-weight:600;white-space:pre-wrap}
.negative,.axes,.trace,.file{font-size:12px;white-space:pre-wrap}
.k{color:var(--muted);margin-right:.3rem}
.fields{display:flex;flex-wrap:wrap;gap:.1rem .7rem;margin:0;font-size:12px}
.fields div{display:flex;gap:.25rem}
.fields dt{color:var(--muted)}
.fields dd{margin:0}
.error{color:#b3261e;font-size:12px}
.replay{display:flex;gap:.4rem;align-items:center}
.replay code{flex:1;min-width:0;font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
background:#8882;padding:.2rem .35rem;border-radius:3px}
.caption .replay code{white-space:pre-wrap;overflow-wrap:anywhere}
button{font:inherit;font-size:12px;cursor:pointer;padding:.2rem .5rem}
a{color:var(--accent)}
.empty{padding:2rem;color:var(--muted)}
dialog{max-width:min(1100px,96vw);max-height:96vh;padding:1rem;border:1px solid var(--line);border-radius:8px;
background:var(--card);color:inherit}
dialog::backdrop{background:#000b}
dialog .close{float:right;font-size:18px;line-height:1}
.media{display:flex;flex-wrap:wrap;gap:1rem;justify-content:center;align-items:flex-start;clear:both}
.media figure{margin:0;text-align:center}
.media figcaption{font-size:12px;color:var(--muted)}
.media img{max-width:100%;max-height:70vh}
.media img.px{image-rendering:pixelated;width:min(50vh,60vw);height:auto}
.caption .meta{padding:.7rem 0 0}
"""

SCRIPT = """
(() => {
  'use strict';
  const list = document.getElementById('cards');
  const cards = Array.from(list.querySelectorAll('.card'));
  const texts = cards.map((card) => card.textContent.toLowerCase());
  const filter = document.getElementById('filter');
  const count = document.getElementById('count');
  const viewer = document.getElementById('viewer');
  const media = viewer.querySelector('.media');
  const caption = viewer.querySelector('.caption');
  let current = null;

  function applyFilter() {
    const terms = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    cards.forEach((card, i) => {
      const match = terms.every((term) => texts[i].includes(term));
      card.hidden = !match;
      if (match) shown += 1;
    });
    count.textContent = shown + ' of ' + cards.length + ' shown';
  }

  function figure(src, alt, label, pixel) {
    const box = document.createElement('figure');
    const img = document.createElement('img');
    img.src = src;
    img.alt = alt;
    if (pixel) img.className = 'px';
    if (!pixel) {
      img.addEventListener('load', () => {  // a small animation or sheet: scaled up with hard pixel edges
        const side = Math.max(img.naturalWidth, img.naturalHeight);
        if (side > 0 && side <= 128) {
          img.style.imageRendering = 'pixelated';
          img.style.width = Math.floor(256 / side) * img.naturalWidth + 'px';
        }
      });
    }
    const text = document.createElement('figcaption');
    text.textContent = label;
    box.append(img, text);
    media.append(box);
  }

  function open(card) {
    current = card;
    media.replaceChildren();
    const alt = card.getAttribute('aria-label');
    if (card.dataset.full) figure(card.dataset.full, alt, 'image', card.dataset.px === '1');
    if (card.dataset.anim) figure(card.dataset.anim, 'denoising animation of: ' + alt, 'animation', false);
    if (card.dataset.sheet) figure(card.dataset.sheet, 'contact sheet of the denoising of: ' + alt, 'contact sheet', false);
    caption.replaceChildren(card.querySelector('.meta').cloneNode(true));
    if (!viewer.open) viewer.showModal();
    viewer.querySelector('.close').focus();
  }

  function visible() { return cards.filter((card) => !card.hidden); }

  function step(card, delta) {
    const shown = visible();
    const i = shown.indexOf(card);
    return shown.length ? shown[(i + delta + shown.length) % shown.length] : null;
  }

  function copy(button) {
    const text = button.parentNode.querySelector('code').textContent;
    const done = () => {
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    };
    const fallback = () => {
      const area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.style.position = 'fixed';
      area.style.opacity = '0';
      button.parentNode.append(area);
      area.select();
      try { if (document.execCommand('copy')) done(); } catch (err) { /* nothing to copy with */ }
      area.remove();
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }

  filter.addEventListener('input', applyFilter);
  document.addEventListener('click', (event) => {
    const button = event.target.closest('.copy');
    if (button) { copy(button); return; }
    const frame = event.target.closest('.card .frame');
    if (frame && !frame.classList.contains('broken')) open(frame.closest('.card'));
  });
  list.addEventListener('keydown', (event) => {
    const card = event.target;
    if (!card.classList || !card.classList.contains('card')) return;
    if (event.key === 'Enter') {  // not Space: its keyup would press the dialog's focused close button
      event.preventDefault();
      if (card.dataset.full) open(card);
    } else if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
      event.preventDefault();
      const next = step(card, event.key === 'ArrowRight' ? 1 : -1);
      if (next) next.focus();
    }
  });
  viewer.querySelector('.close').addEventListener('click', () => viewer.close());
  viewer.addEventListener('click', (event) => { if (event.target === viewer) viewer.close(); });
  viewer.addEventListener('keydown', (event) => {
    if (!current || (event.key !== 'ArrowRight' && event.key !== 'ArrowLeft')) return;
    const next = step(current, event.key === 'ArrowRight' ? 1 : -1);
    if (next && next.dataset.full) open(next);
  });
  viewer.addEventListener('close', () => {
    media.replaceChildren();
    caption.replaceChildren();
    if (current) current.focus();
  });
})();
"""
