"""mitmdump -s addons/autodiscover_guard.py: the guard's addons (logic: guard/proxy/)."""

from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.console import JsonConsole
from guard.proxy.dns import DnsGuard
from guard.proxy.identity import ClientIdentity
from guard.proxy.prometheus import MetricsEndpoint

_http = AutodiscoverGuard()
# DnsGuard shares the redirect walks: URLs an allowed TXT mailconf= record names join them
addons = [ClientIdentity(), _http, DnsGuard(_http.runtime, _http.redirects), MetricsEndpoint(_http.runtime),
          JsonConsole()]  # JsonConsole last: its start line follows everyone's `running`
