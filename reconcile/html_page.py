"""What the two self-contained pages share (`flows graph --format html`, `flows runs show --html`): the head and
its base style, the side panel's style, the DOM helpers that put every value in as text (never as HTML), the
page's end, the JSON block for a `<script>`, and one-pass placeholder filling."""
from __future__ import annotations

import json
import re
from typing import Any

HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>
  body { margin: 0; font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; }
  header { padding: 10px 16px; border-bottom: 1px solid #d0d7de; }
  header h1 { font-size: 18px; margin: 0 8px 0 0; display: inline; }
"""

DETAILS_STYLE = """\
  #details { width: 420px; overflow: auto; border-left: 1px solid #d0d7de; padding: 12px 16px; background: #f6f8fa; }
  #details h2 { font-size: 16px; margin: 0 0 6px; word-break: break-all; }
  #details h3 { font-size: 13px; margin: 14px 0 4px; text-transform: uppercase; color: #656d76; }
  #details table { border-collapse: collapse; width: 100%; font-size: 12px; }
"""

DOM_HELPERS = """\
  // Small DOM helpers: every value goes in as text (never as HTML), so nothing in a flow can inject markup.
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    for (var k in (attrs || {})) e.setAttribute(k, attrs[k]);
    return e;
  }
  function section(title, field) {
    panel.appendChild(el("h3", title));
    var box = el("div", null, {"data-field": field});
    panel.appendChild(box);
    return box;
  }
"""

END = """\
  // A link to page.html#<address> opens with that node's details shown.
  if (location.hash.length > 1) show(decodeURIComponent(location.hash.slice(1)));
})();
</script>
</body>
</html>
"""


def json_for_script(data: Any) -> str:
    # Inside <script>, `</script>` or `<!--` in a value would end or break the block: escape <, >, & as \u00XX.
    text = json.dumps(data, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fill(template: str, parts: dict[str, str]) -> str:
    """Replace each @@NAME@@ in one pass, so a placeholder-looking string inside the data is never substituted."""
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], template)
