/**
 * The server's few HTML pages (landing page, sign-in, patient picker, consent) share one look:
 * server-rendered, no JavaScript, no external assets (the sign-in pages' CSP allows only inline
 * styles), readable on a 390 px phone and a desktop alike.
 */
export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export const PRODUCT_NAME = 'Remote Patient Monitoring';

const STYLE = `
:root{--ink:#17212b;--muted:#566573;--line:#d5dde5;--bg:#f2f5f8;--card:#fff;--brand:#0a6a84;--brand-dark:#07526a;--soft:#e8f3f6;--danger:#b42318;--focus:#e59500}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.brand{background:var(--brand);color:#fff}
.brand div{max-width:30rem;margin:0 auto;padding:.8rem 1rem;display:flex;align-items:center;gap:.6rem;font-weight:600;letter-spacing:.01em}
.wide .brand div,.wide main,.wide footer{max-width:52rem}
.brand svg{flex:none}
main{max-width:30rem;margin:2rem auto;padding:0 1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:1.75rem;box-shadow:0 1px 2px rgba(16,24,40,.05),0 4px 16px rgba(16,24,40,.04)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .5rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
p{margin:.5rem 0}
a{color:var(--brand-dark)}
.lead{color:var(--muted);margin-bottom:1.25rem}
.field{display:block;margin:1rem 0 0;font-weight:600}
.field input{display:block;width:100%;margin-top:.35rem;padding:.75rem .85rem;font:inherit;font-weight:400;color:var(--ink);border:1px solid #aebdca;border-radius:10px;background:#fff}
input:focus-visible,button:focus-visible,a:focus-visible,.choice:focus-within{outline:3px solid var(--focus);outline-offset:2px}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.5rem}
button{flex:1 1 9rem;min-height:48px;padding:.75rem 1.25rem;font:inherit;font-weight:600;border-radius:10px;border:1px solid var(--brand);cursor:pointer}
.primary{background:var(--brand);color:#fff}
.primary:hover{background:var(--brand-dark)}
.secondary{background:#fff;color:var(--brand-dark)}
.alert{background:#fef3f2;border:1px solid #fecdca;color:var(--danger);padding:.65rem .85rem;border-radius:10px;margin:1rem 0}
.muted{color:var(--muted);font-size:.9rem}
.who{display:flex;gap:.75rem;align-items:center;background:var(--soft);border-radius:10px;padding:.85rem 1rem;margin:1rem 0}
.who strong{display:block;font-size:1.05rem}
.avatar{flex:none;width:2.5rem;height:2.5rem;border-radius:50%;background:var(--brand);color:#fff;display:flex;align-items:center;justify-content:center;font-weight:700}
.choices{margin:1rem 0 0;padding:0;border:0}
.choice{display:flex;gap:.75rem;align-items:flex-start;padding:.8rem .9rem;border:1px solid var(--line);border-radius:10px;margin:.5rem 0;cursor:pointer;background:#fff}
.choice input{flex:none;width:1.2rem;height:1.2rem;margin:.2rem 0 0;accent-color:var(--brand)}
.choice small{display:block;color:var(--muted);font-size:.8rem;word-break:break-all}
.divider{text-align:center;color:var(--muted);margin:1.25rem 0 .5rem;font-size:.9rem}
.link-button{display:block;text-align:center;padding:.75rem 1rem;border:1px solid var(--line);border-radius:10px;text-decoration:none;font-weight:600}
ul.links{padding-left:1.1rem}
ul.links li{margin:.35rem 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;word-break:break-word}
footer{max-width:30rem;margin:0 auto 2rem;padding:0 1rem;color:var(--muted);font-size:.85rem}
@media (max-width:480px){main{margin:1rem auto}.card{padding:1.25rem}h1{font-size:1.35rem}}
`;

const LOGO = '<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true"><path fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" d="M3 12h4l2-5 4 10 2-5h6"/></svg>';

/** A whole page: the brand bar, one card with the body, and a footer line. */
export function htmlPage(title: string, body: string, options: { wide?: boolean; footer?: string } = {}): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · ${PRODUCT_NAME}</title>
<style>${STYLE}</style>
</head><body${options.wide ? ' class="wide"' : ''}>
<header class="brand"><div>${LOGO}<span>${PRODUCT_NAME}</span></div></header>
<main><div class="card">
<h1>${escapeHtml(title)}</h1>
${body}
</div></main>
${options.footer ? `<footer>${options.footer}</footer>` : ''}
</body></html>`;
}
