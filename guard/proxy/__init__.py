"""The mitmproxy side of the guard: the only package that imports mitmproxy.

`endpoints` is the table of discovery endpoints (and imports nothing from mitmproxy, so the
launcher can read it), `flows` reads a flow (host, URL, headers, who the user is), `walk` keeps
redirect walks, `addon` is the HTTP addon, `dns` the DNS addon, `reload` the policy and metrics
they share, `apply` changes a flow as a decision says, `replay` re-judges saved flows.
"""
