"""The operator's web page (GET /, /ui/app.js, /ui/app.css): served by the
admin API itself, public but inert (every data call carries the token),
under headers that let a browser run nothing but these files; and every
API call app.js makes exists and answers the fields the page reads."""

import re
from html.parser import HTMLParser

from conftest import http_request, proxy_body
from dp_util import make_cert

TOKEN = "web-page-test-token-0123456789"

FILES = {
    "/": "text/html",
    "/ui/app.js": "text/javascript",
    "/ui/app.css": "text/css",
}

# Every call app.js makes, spelled as app.js spells it (the server's route,
# "{}" filled from the call's arguments), with the fields of the answer
# that the page reads: dotted, "[]" for every element of an array.  A field
# renamed in the API, or a call added to the page without being listed
# here, fails the test.
CALLS = {
    ("GET", "/proxies"): [
        "[].droplet_name", "[].domain", "[].path_prefix", "[].strip_prefix", "[].upstreams[].host",
        "[].upstreams[].port", "[].upstreams[].weight", "[].upstreams[].health.state", "[].require_healthy",
        "[].enable_ssl", "[].ssl_enabled", "[].websocket", "[].security_headers", "[].dns", "[].max_body_size",
        "[].health_check.path", "[].health_check.interval_ms", "[].health_check.timeout_ms",
        "[].health_check.healthy_threshold", "[].health_check.unhealthy_threshold", "[].last_health_status",
        "[].source",
    ],
    ("PUT", "/proxies/{}"): ["droplet_name", "revision", "apply.changed"],
    ("DELETE", "/proxies/{}"): [],
    ("GET", "/certificates"): ["[].domain", "[].issuer", "[].not_after", "[].source", "[].used_by"],
    ("PUT", "/certificates/{}"): ["domain", "not_after"],
    ("DELETE", "/certificates/{}"): [],
    ("GET", "/revisions"): ["[].revision", "[].time", "[].actor", "[].action", "[].summary", "[].proxies"],
    ("POST", "/revisions/{}/restore"): ["restored", "revision", "apply.changed"],
    ("GET", "/audit?since={}&limit={}"): [
        "[].time", "[].actor", "[].action", "[].droplet_name", "[].domain", "[].result", "[].error_code",
        "[].correlation_id", "[].detail",
    ],
    ("GET", "/audit?limit={}"): [
        "[].time", "[].actor", "[].action", "[].droplet_name", "[].domain", "[].result", "[].error_code",
        "[].correlation_id", "[].detail",
    ],
    ("GET", "/proxy-manager/health"): [
        "status", "version", "engine", "proxies", "revision", "uptime_s", "checks.store.ok", "ssl.certificates",
        "ssl.expired", "ssl.expiring_within_14_days", "ssl.soonest_expiry",
    ],
}
# What the page shows of a failed call.
ERROR_FIELDS = ["error.code", "error.message", "error.details.fields", "error.details.correlation_id"]
# What the page copies from a listed proxy into the PUT of an edit (PUT
# replaces the whole spec): the API must take them back as they are.
SPEC_FIELDS = ["domain", "path_prefix", "strip_prefix", "require_healthy", "enable_ssl", "websocket",
               "security_headers", "dns", "max_body_size"]
UPSTREAM_FIELDS = ["host", "port", "weight"]
HEALTH_CHECK_FIELDS = ["path", "interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold"]

FORBIDDEN_JS = [r"\binnerHTML\b", r"\bouterHTML\b", r"\binsertAdjacentHTML\b", r"\bdocument\.write",
                r"\beval\b", r"\bnew\s+Function\b"]


def _get(p, path, **kw):
    return http_request(p.api_port, "GET", path, **kw)


def _app_js(p):
    r = _get(p, "/ui/app.js")
    assert r.status == 200, r
    return r.text


def _calls(js):
    """The (method, path pattern) of every api(...) call in app.js."""
    calls = re.findall(r'\bapi\(\s*"([A-Z]+)",\s*"([^"]*)"', js)
    # A call whose path is not a literal cannot be checked: refuse it.
    uses = len(re.findall(r"\bapi\(", js)) - len(re.findall(r"\bfunction\s+api\(", js))
    assert uses == len(calls), "every api() call of app.js names its method and path as literals"
    return set(calls)


def _has(value, dotted):
    """Whether dotted ("a.b", "[].c", "a[].b") is in value: a key that is
    there counts, even with a null value; an array must not be empty."""
    return _walk(value, [part for part in dotted.replace("[]", ".[]").split(".") if part])


def _walk(value, parts):
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if head == "[]":
        return isinstance(value, list) and len(value) > 0 and all(_walk(v, rest) for v in value)
    return isinstance(value, dict) and head in value and _walk(value[head], rest)


def _leaves(dotted):
    return [part.replace("[]", "") for part in dotted.split(".") if part.replace("[]", "")]


class _Page(HTMLParser):
    """The tags, attributes and inline script text of a page."""

    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, {attr: value})
        self.script_text = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text.append(data)


def test_files_are_public_with_strict_headers(portico):
    p = portico(settings={"api_token": TOKEN})
    for path, content_type in FILES.items():
        r = _get(p, path)
        assert r.status == 200, (path, r)
        assert r.headers["content-type"].split(";")[0].strip() == content_type, (path, r.headers)
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split(";") if d.strip()}
        assert csp["default-src"] == ["'none'"]
        for directive in ("script-src", "style-src", "connect-src"):
            assert csp[directive] == ["'self'"], (directive, csp)
        assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert "unsafe-eval" not in r.headers["content-security-policy"]
        # HEAD answers the same headers and no body.
        h = http_request(p.api_port, "HEAD", path)
        assert h.status == 200 and h.body == b""
        assert h.headers["content-length"] == str(len(r.body))
        assert h.headers["content-security-policy"] == r.headers["content-security-policy"]
    r = http_request(p.api_port, "POST", "/", raw_body=b"x", headers={"Content-Type": "text/plain"})
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
    assert _get(p, "/ui/nothing.js").status == 404
    # The data routes still want the token.
    for path in ("/proxies", "/certificates", "/revisions", "/audit"):
        r = _get(p, path)
        assert r.status == 401 and r.error_code == "UNAUTHORIZED", (path, r)
        assert p.api("GET", path).status == 200


def test_page_loads_only_its_own_files(portico):
    p = portico()
    r = _get(p, "/")
    page = _Page()
    page.feed(r.text)
    page.close()
    assert "".join(page.script_text).strip() == "", "no inline script"
    refs = []
    for tag, attrs in page.tags:
        assert tag != "style", "no <style> element"
        assert "style" not in attrs, f"no style= attribute ({tag})"
        assert not any(a.startswith("on") for a in attrs), f"no inline event handler ({tag} {attrs})"
        if tag == "script":
            assert attrs.get("src"), "every script is a file"
        for a in ("src", "href", "action", "formaction", "srcset", "poster", "data"):
            if attrs.get(a) is not None:
                refs.append(attrs[a])
    assert "/ui/app.js" in refs and "/ui/app.css" in refs
    for ref in refs:
        # Same origin: an absolute path, not a scheme or a network path.
        assert ref.startswith("/") and not ref.startswith("//"), ref
        assert _get(p, ref).status == 200, ref


def test_script_builds_nodes_not_markup(portico):
    p = portico()
    js = _app_js(p)
    for pattern in FORBIDDEN_JS:
        assert not re.search(pattern, js), pattern
    # The page reads the token from sessionStorage only, and sends it as a
    # bearer token.
    assert "localStorage" not in js and "document.cookie" not in js
    assert '"Bearer "' in js


def test_every_call_of_the_page_answers_what_it_reads(portico, upstream, tmp_path):
    p = portico(settings={"api_token": TOKEN})
    js = _app_js(p)
    calls = _calls(js)
    assert calls == set(CALLS), f"app.js calls {sorted(calls)}; CALLS lists {sorted(CALLS)}"
    for dotted in [f for fields in CALLS.values() for f in fields] + ERROR_FIELDS:
        for leaf in _leaves(dotted):
            assert re.search(r"\b" + re.escape(leaf) + r"\b", js), f"app.js does not read {leaf} ({dotted})"
    for name in SPEC_FIELDS + UPSTREAM_FIELDS + HEALTH_CHECK_FIELDS:
        assert re.search(r"\b" + name + r":", js), f"app.js does not copy {name} into an edit"

    done = set()

    def call(method, pattern, args=(), body=None, want=(200,)):
        values = iter(args)
        path = re.sub(r"\{\}", lambda _: str(next(values)), pattern)
        r = p.api(method, path, body=body)
        assert r.status in want, (method, path, r)
        for field in CALLS[(method, pattern)]:
            assert _has(r.json, field), f"{method} {pattern}: no {field} in {r.text[:2000]}"
        done.add((method, pattern))
        return r

    up1, up2 = upstream("one"), upstream("two")
    domain = "shop.example.test"
    # Settings away from the defaults, so that an edit which dropped one
    # would show as a change.
    body = {"domain": domain, "path_prefix": "/api", "strip_prefix": True,
            "upstreams": [{"host": "127.0.0.1", "port": up1.port, "weight": 3},
                          {"host": "127.0.0.1", "port": up2.port, "weight": 1}],
            "health_check": {"path": "/health", "interval_ms": 7000, "timeout_ms": 900,
                             "healthy_threshold": 3, "unhealthy_threshold": 4},
            "websocket": False, "security_headers": False, "max_body_size": 123456}
    assert call("PUT", "/proxies/{}", ["shop"], body, want=(201,)).json["apply"]["changed"] is True
    # A second proxy, as the page's form creates one.
    form = proxy_body("api.example.test", up1.port, path_prefix="/", enable_ssl=False, require_healthy=True,
                      strip_prefix=False, websocket=True)
    call("PUT", "/proxies/{}", ["api"], form, want=(201,))
    cert, key, _ = make_cert(tmp_path, domain)
    call("PUT", "/certificates/{}", [domain], {"certificate": cert, "key": key}, want=(201,))

    # A failed call, as the page shows it (and an audit row with a code).
    r = p.put_proxy("bad", {"domain": "bad domain", "upstream_host": "127.0.0.1", "upstream_port": 0})
    assert r.status == 400
    for field in ERROR_FIELDS:
        assert _has(r.json, field), (field, r)

    listed = call("GET", "/proxies").json
    call("GET", "/certificates")
    call("GET", "/revisions")
    audit = call("GET", "/audit?since={}&limit={}", [0, 1000]).json
    assert any(a["error_code"] == "INVALID_CONFIG" for a in audit)
    assert call("GET", "/audit?limit={}", [1000]).json == audit
    call("GET", "/proxy-manager/health")

    # An edit through the page: the listed proxy's spec, as specOf() copies
    # it, is taken back unchanged; then the form's change goes through.
    shop = next(x for x in listed if x["droplet_name"] == "shop")
    spec = {k: shop[k] for k in SPEC_FIELDS}
    spec["upstreams"] = [{k: u[k] for k in UPSTREAM_FIELDS} for u in shop["upstreams"]]
    spec["health_check"] = {k: shop["health_check"][k] for k in HEALTH_CHECK_FIELDS}
    assert call("PUT", "/proxies/{}", ["shop"], spec).json["apply"]["changed"] is False
    spec["upstreams"][0]["port"] = up2.port
    spec["upstreams"][1]["port"] = up1.port
    assert call("PUT", "/proxies/{}", ["shop"], spec).json["apply"]["changed"] is True

    # Revision 1 is "shop" as first put, without "api".
    assert call("POST", "/revisions/{}/restore", [1], {}).json["apply"]["changed"] is True
    assert [x["droplet_name"] for x in p.api("GET", "/proxies").json] == ["shop"]
    call("DELETE", "/certificates/{}", [domain])
    call("DELETE", "/proxies/{}", ["shop"])
    assert done == set(CALLS)


def test_cross_origin_calls_are_still_refused(portico):
    p = portico(settings={"api_token": TOKEN})
    evil = {"Origin": "http://evil.test"}
    r = p.api("GET", "/proxies", headers=evil)
    assert r.status == 403 and r.error_code == "FORBIDDEN_ORIGIN"
    r = p.put_proxy("x", proxy_body("x.example.test", 1, require_healthy=False), headers=evil)
    assert r.status == 403 and r.error_code == "FORBIDDEN_ORIGIN"
    assert p.api("GET", "/proxies").json == []
    # What a browser sends from the page itself: its own origin.
    same = {"Origin": f"http://127.0.0.1:{p.api_port}"}
    assert p.api("GET", "/proxies", headers=same).status == 200
