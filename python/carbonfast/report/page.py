"""The shell every HTML page shares: one self-contained file, its chart library and script
inlined, its data embedded as inert JSON, and a policy that lets it fetch nothing.

Whatever a page shows from a record or the history (labels, commands, hosts) is untrusted: it
travels as JSON inside `<script type="application/json">`, with `<`, `>` and `&` escaped so that
no `</script>` in a label ends the element, and the page's script puts it into the DOM as text.
"""

from __future__ import annotations

import functools
import html
import json
import math
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ASSETS = Path(__file__).with_name("assets")

# The page may run its own inline script and styles and show inline images; every fetch (a
# script, a stylesheet, an image, a font, fetch()) is refused by the browser, and reported.
POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:72em;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.4em;overflow-wrap:anywhere}h2{font-size:1.15em;margin-top:1.6em}
td,th{padding:.2em .7em;vertical-align:top;text-align:left}
table.data td.n,table.data th.n{text-align:right;font-variant-numeric:tabular-nums}
table.data{border-collapse:collapse;font-size:.9em}table.data tr:nth-child(even){background:#f4f6f4}
.note{color:#555;font-size:.9em}.est{color:#777;font-style:italic}
.bar{position:relative;height:.8em;min-width:12em;background:#eef2ee}
.bar>span{position:absolute;top:0;bottom:0;left:0;background:#4c8c4a}
.bar>i{position:absolute;top:.35em;height:1px;background:#111}
#cf-errors{color:#b00;white-space:pre-wrap}
.controls label{margin-right:1em}.chart{margin:1em 0}
"""

# First in the page: every script error, and every fetch the policy blocks, is written into the
# page (#cf-errors) and counted in <html data-errors>, where a reader and a test both see it;
# once loaded, <html data-fetched> counts what the page fetched (the browser's resource log).
_CATCH = """
(function(){var seen=[];function show(){var box=document.getElementById("cf-errors");
if(box){box.hidden=false;box.textContent=seen.join("\\n");}}
window.cfError=function(m){seen.push(String(m));
document.documentElement.setAttribute("data-errors",String(seen.length));show();};
window.addEventListener("error",function(e){cfError("script error: "+e.message);});
document.addEventListener("securitypolicyviolation",function(e){
cfError("blocked a fetch of "+e.blockedURI);});
document.addEventListener("DOMContentLoaded",show);
window.addEventListener("load",function(){document.documentElement.setAttribute("data-fetched",
String(performance.getEntriesByType("resource").length));});})();
"""


@functools.cache
def asset(name: str) -> str:
    """One of the files under assets/, as text (read once per process)."""
    return (ASSETS / name).read_text(encoding="utf-8")


def finite(value: object) -> float | None:
    """A number fit for JSON: None for what is missing, not a number, or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def text(value: object, limit: int = 400) -> str | None:
    """Text from a record or the history, whatever type a damaged row holds, cut to `limit`
    characters."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def json_script(element_id: str, data: Any) -> str:
    """`data` as an inert JSON element that no text inside it can end or turn into markup."""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{body}</script>'


def document(title: str, body: str, *, data: Any = None, start: str | None = None) -> str:
    """A whole page. With `start` (a function of pages.js: "run", "dashboard"), uPlot and the
    page script are inlined and `start` is called once the page is parsed, reading `data`."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>carbonfast: {html.escape(title)}</title>",
        f"<script>{_CATCH}</script>",
        f"<style>{_STYLE}",
        asset("uPlot.min.css") if start else "",
        "</style></head><body>",
        '<div id="cf-errors" hidden></div>',
        body,
    ]
    if start:
        parts += [
            json_script("cf-data", data),
            f"<script>{asset('uPlot.iife.min.js')}</script>",
            f"<script>{asset('pages.js')}</script>",
            f'<script>carbonfast.start("{start}")</script>',
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
