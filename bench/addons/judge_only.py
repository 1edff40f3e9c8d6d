"""Benchmark variant: an addon that only judges POX answers (engine.judge), nothing else the guard does."""

from mitmproxy import http

from guard.engine import judge
from guard.names import User
from guard.policy import default_policy_path, load_policy

POLICY = load_policy(default_policy_path())
ALICE = User.from_address("alice@contoso.com")


class JudgeOnly:
    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.request.path.startswith("/autodiscover/"):
            judge(flow.response.content or b"", ALICE, POLICY)


addons = [JudgeOnly()]
