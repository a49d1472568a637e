"""Device cookies confined to their session: one namespace per session, ``__Host-`` enforced.

Every session origin ``s-<id>.<domain>`` is a sibling under the relay's domain, so a script
on one session's origin can set ``document.cookie = "x=1; domain=<domain>"`` and every other
session's requests then carry ``x``. In a ``Cookie`` header such a parent-domain cookie looks
exactly like one the session's own device set. So the relay names the cookies it will forward:

- **From the device** (``Set-Cookie``), each cookie ``NAME=VALUE; Path=P; …`` becomes
  ``__Host-dev.<tag>.<hex(P)>.NAME=VALUE; Path=/; Secure`` plus the device's ``Expires``,
  ``Max-Age``, ``HttpOnly`` and ``SameSite``. ``<tag>`` is derived from the session id;
  ``Domain``, ``Partitioned`` and anything unknown are dropped. The ``__Host-`` prefix makes
  the browser itself refuse the name with a ``Domain`` (so no sibling origin can plant one) and
  keep it host-only; the device's path lives on in the name.
- **To the device** (``Cookie``), only cookies named ``__Host-dev.<this tag>.…`` are sent,
  renamed back, and only on paths their device path matches (RFC 6265 §5.1.4, longest path
  first). Everything else is stripped: the relay's own cookies, other sessions' namespaces,
  and every un-namespaced cookie — whoever set it, for whichever domain.
- **In the page**, a small script (:func:`cookie_shim`) put first into HTML documents wraps
  ``document.cookie`` with the same mapping, so device pages that read and write their own
  cookies in JavaScript (many EWS login pages) keep working: a write is namespaced (and made
  host-only), a read shows this session's cookies under their device names and hides the rest.
  The shim is a convenience, not the guarantee: a hostile page can go around it, and then its
  cookies are un-namespaced and never reach a device. What it cannot do — set a ``__Host-``
  name for another origin — is refused by the browser.

Operators should still put the relay's domain on the Public Suffix List (docs/relay.md): then
browsers refuse parent-domain cookies altogether.
"""

from __future__ import annotations

import hashlib
import json
import re

from ewsgate.relay.rewrite import RESERVED_COOKIE_PREFIX

__all__ = ["NAMESPACE_PREFIX", "DeviceCookies", "HtmlShimInjector", "path_matches"]

#: every namespaced device cookie starts with this (case matters: browsers check it exactly)
NAMESPACE_PREFIX = "__Host-dev."
#: the device's attributes that keep their meaning on the namespaced cookie
_KEPT_ATTRIBUTES = frozenset({"expires", "max-age", "httponly", "samesite"})


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4 path-match."""
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4 default-path of a request path."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


class DeviceCookies:
    """The cookie namespace of one session (see the module docstring)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        digest = hashlib.sha256(b"ewsgate device cookies\0" + session_id.encode()).hexdigest()
        self.tag = digest[:12]
        self.prefix = f"{NAMESPACE_PREFIX}{self.tag}."
        self._prefix_bytes = self.prefix.encode("ascii")

    def namespaced(self, value: str, request_path: str) -> str | None:
        """The browser's ``Set-Cookie`` for a device's; None drops it (nameless, or one
        naming the relay's own cookies)."""
        pair, *attributes = value.split(";")
        name, sep, cookie_value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            return None
        lower = name.lower()
        if lower.startswith(RESERVED_COOKIE_PREFIX) or lower.startswith("__secure-ewsgate"):
            return None
        path = default_path(request_path)
        kept: list[str] = []
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            key = key.strip().lower()
            if key == "path":
                attr_value = attr_value.strip()
                if attr_value.startswith("/"):
                    path = attr_value
            elif key in _KEPT_ATTRIBUTES:
                kept.append(attribute.strip())
        encoded = "" if path == "/" else path.encode("latin-1", "replace").hex()
        return "; ".join([f"{self.prefix}{encoded}.{name}={cookie_value.strip()}",
                          "Path=/", "Secure", *kept])

    def for_device(self, cookie_header: bytes | None, request_path: bytes) -> bytes | None:
        """The ``Cookie`` header for the device: this session's cookies, renamed back."""
        if not cookie_header or self._prefix_bytes not in cookie_header:
            return None
        path = request_path.split(b"?", 1)[0].decode("latin-1") or "/"
        found: list[tuple[int, int, bytes]] = []
        for index, part in enumerate(cookie_header.split(b";")):
            part = part.strip()
            if not part.startswith(self._prefix_bytes):
                continue
            rest = part[len(self._prefix_bytes):]
            encoded, sep, pair = rest.partition(b".")
            if not sep or not pair or pair.startswith(b"="):
                continue
            try:
                cookie_path = bytes.fromhex(encoded.decode("ascii")).decode("latin-1") \
                    if encoded else "/"
            except (ValueError, UnicodeDecodeError):
                continue
            if path_matches(path, cookie_path):
                found.append((-len(cookie_path), index, pair))
        found.sort()
        return b"; ".join(pair for _, _, pair in found) or None

    def shim(self) -> bytes:
        """The ``<script>`` that maps ``document.cookie`` onto this namespace."""
        return cookie_shim(self.prefix)


_SHIM = """<script>(function(){var P=%s,D=Document.prototype,
d=Object.getOwnPropertyDescriptor(D,"cookie");if(!d||!d.get||!d.set)return;
function hx(s){s=unescape(encodeURIComponent(s));var o="";for(var i=0;i<s.length;i++){
var c=s.charCodeAt(i);o+=(c<16?"0":"")+c.toString(16);}return o;}
function uh(h){var o="";for(var i=0;i<h.length;i+=2)o+="%%"+h.substr(i,2);
try{return decodeURIComponent(o);}catch(e){return null;}}
function pm(r,c){if(r===c)return true;if(r.indexOf(c)!==0)return false;
return c.charAt(c.length-1)==="/"||r.charAt(c.length)==="/";}
function dp(){var p=location.pathname,i=p.lastIndexOf("/");return i>0?p.slice(0,i):"/";}
Object.defineProperty(D,"cookie",{configurable:true,enumerable:d.enumerable,
get:function(){var all=String(d.get.call(this)).split("; "),out=[],p=location.pathname;
for(var i=0;i<all.length;i++){var c=all[i];if(c.indexOf(P)!==0)continue;c=c.slice(P.length);
var k=c.indexOf(".");if(k<0)continue;var path=k?uh(c.slice(0,k)):"/";
if(path!==null&&pm(p,path))out.push([path.length,i,c.slice(k+1)]);}
out.sort(function(a,b){return b[0]-a[0]||a[1]-b[1];});
return out.map(function(x){return x[2];}).join("; ");},
set:function(v){var parts=String(v).split(";"),nv=parts[0],e=nv.indexOf("=");
if(e<1)return;var name=nv.slice(0,e).trim();if(!name||/^__(host|secure)-ewsgate/i.test(name))
return;var path=dp(),kept=[];for(var i=1;i<parts.length;i++){var a=parts[i].trim(),
q=a.indexOf("="),key=(q<0?a:a.slice(0,q)).trim().toLowerCase();
if(key==="path"){var pv=q<0?"":a.slice(q+1).trim();if(pv.charAt(0)==="/")path=pv;}
else if(key==="expires"||key==="max-age"||key==="samesite")kept.push(a);}
d.set.call(this,P+(path==="/"?"":hx(path))+"."+name+"="+nv.slice(e+1).trim()+
"; Path=/; Secure"+(kept.length?"; "+kept.join("; "):""));}});
try{Object.defineProperty(window,"cookieStore",{configurable:true,value:undefined});}
catch(e){}})();</script>"""


def cookie_shim(prefix: str) -> bytes:
    """The shim for a namespace ``prefix`` (see :class:`DeviceCookies`)."""
    return (_SHIM % json.dumps(prefix)).replace("\n", "").encode("ascii")


#: what may come before the place for the shim: a BOM, blanks, comments, one doctype
_PREAMBLE = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<!--.*?-->)*(?:<!doctype[^>]*>)?",
                       re.IGNORECASE | re.DOTALL)
_LOOKAHEAD = 1024


class HtmlShimInjector:
    """Put ``snippet`` into a streamed HTML body once: after a leading doctype (and BOM,
    blanks, comments), so the document's mode is unchanged, and before any script of the page.
    An empty body stays empty (HEAD, 204, 304).
    """

    def __init__(self, snippet: bytes) -> None:
        self._snippet = snippet
        self._pending = bytearray()
        self._done = False

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return data
        self._pending += data
        return self._emit(final=False)

    def finish(self) -> bytes:
        if self._done or not self._pending:
            self._done = True
            return b""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> bytes:
        buffer = bytes(self._pending)
        match = _PREAMBLE.match(buffer)
        end = match.end() if match else 0
        if not final and len(buffer) < _LOOKAHEAD:
            rest = buffer[end:end + 9].lower()
            if not rest or b"<!doctype".startswith(rest) or rest.startswith(b"<!--") or (
                    b"<!--".startswith(rest)):
                return b""  # the preamble may go on in the next piece
        self._done = True
        self._pending.clear()
        return buffer[:end] + self._snippet + buffer[end:]
