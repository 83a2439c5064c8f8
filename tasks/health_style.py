"""The look of health.html: one inline stylesheet (the page loads nothing), laid out for a 1400 px window."""

from __future__ import annotations

STYLE = """
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f2; color: #1f2a1f; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
  Roboto, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 24px; margin: 4px 0 8px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 2px solid #6a9f3f; padding-bottom: 4px; }
h2 .count { display: inline-block; min-width: 26px; padding: 0 8px; border-radius: 12px; background: #6a9f3f;
  color: #fff; font-size: 13px; text-align: center; vertical-align: middle; }
h3 { font-size: 13px; font-weight: 600; margin: 0 0 6px; color: #40513f; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #e7eae2; padding: 1px 4px;
  border-radius: 3px; word-break: break-all; }
ul.facts { margin: 0; padding-left: 18px; color: #40513f; }
section > figure { display: inline-block; vertical-align: top; }
.card { display: inline-block; vertical-align: top; background: #fff; border: 1px solid #d9ddd3; border-radius: 6px;
  padding: 10px; margin: 0 10px 10px 0; max-width: 100%; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.arrow { align-self: center; font-size: 22px; color: #9aa595; }
.rest { align-self: center; color: #6b7767; }
figure { width: 160px; margin: 0 8px 10px 0; background: #fff; border: 1px solid #d9ddd3; border-radius: 6px;
  padding: 7px; }
.card figure { margin: 0; border-color: #eceee8; }
figure img, .gone { display: block; width: 144px; height: 144px; object-fit: contain; background: #fafbf8; }
.gone { display: flex; align-items: center; justify-content: center; color: #a33; font-size: 12px; }
figcaption { margin-top: 5px; font-size: 12px; }
.label { font-weight: 600; overflow-wrap: anywhere; }
.warn { color: #b03a2e; }
.note { color: #8a4b08; overflow-wrap: anywhere; }
.path { color: #6b7767; font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; overflow-wrap: anywhere; }
p.none { color: #3d7a2a; margin: 4px 0; }
p.more { color: #6b7767; font-style: italic; }
"""
