"""Stock Debian Thunderbird under Xvfb, driven through Marionette (`marionette-driver`).

One :class:`Thunderbird` per test module: a fresh profile (proxy prefs, the guard's CA in the
profile's own NSS store, nothing that calls the internet), started with
`--marionette -remote-allow-system-access` (version 153 refuses the chrome context without it).
Cases switch prefs at runtime in the chrome context (`set_prefs`), so one start serves many.

`discover(email)` runs Thunderbird's own account discovery, `FindConfig.parallelAutoDiscovery`
(resource:///modules/accountcreation/FindConfig.sys.mjs, an async generator), and returns the
servers it ended with, or the failure. A 3rd-party credential redirect question is refused
(`acceptRedirect: false`), as a careful user would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support.process import stop as stop_process

PrefValue = bool | int | str
THUNDERBIRD = "thunderbird"
STARTUP_SECONDS = 90

# Prefs that keep a test profile quiet: no updates, telemetry, start page, captive-portal or OCSP
# probes (the guard's leaves name no responder), no DNS prefetch. Remote Settings is still polled once
# (it ignores `services.settings.server`); through the proxy it reaches only the local upstream.
QUIET_PREFS: Mapping[str, PrefValue] = {
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "browser.shell.checkDefaultBrowser": False,
    "mail.shell.checkDefaultClient": False,
    "mailnews.start_page.enabled": False,
    "mail.provider.enabled": False,
    "mail.rights.override": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.predictor.enabled": False,
    "network.trr.mode": 5,
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "mail.instrumentation.postUrl": "",
    "mail.instrumentation.askUser": False,
    "mail.inappnotifications.enabled": False,
    "mailnews.auto_config.account_constraints": "",
    "toolkit.startup.max_resumed_crashes": -1,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proxy_prefs(port: int) -> dict[str, PrefValue]:
    """Manual proxy (`network.proxy.type` 1): HTTP and HTTPS to the guard, no exceptions."""
    return {"network.proxy.type": 1, "network.proxy.http": "127.0.0.1", "network.proxy.http_port": port,
            "network.proxy.ssl": "127.0.0.1", "network.proxy.ssl_port": port,
            "network.proxy.share_proxy_settings": True, "network.proxy.no_proxies_on": ""}


def pac_prefs(pac_url: str) -> dict[str, PrefValue]:
    """PAC (`network.proxy.type` 2) from `pac_url` (a file:// URL)."""
    return {"network.proxy.type": 2, "network.proxy.autoconfig_url": pac_url, "network.proxy.no_proxies_on": ""}


def _user_js(prefs: Mapping[str, PrefValue]) -> str:
    def literal(value: PrefValue) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, int) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join(f'user_pref("{name}", {literal(value)});\n' for name, value in prefs.items())


def make_profile(folder: Path, prefs: Mapping[str, PrefValue], trusted_cas: Mapping[str, Path]) -> Path:
    """A fresh profile: `user.js` with `prefs`, each CA trusted for TLS servers in its NSS store."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user.js").write_text(_user_js(prefs), encoding="utf-8")
    subprocess.run(["certutil", "-N", "-d", f"sql:{folder}", "--empty-password"], check=True, capture_output=True,
                   timeout=30)
    for nickname, pem in trusted_cas.items():
        subprocess.run(["certutil", "-A", "-n", nickname, "-t", "C,,", "-i", str(pem), "-d", f"sql:{folder}"],
                       check=True, capture_output=True, timeout=30)
    return folder


@dataclass(frozen=True)
class Discovered:
    """What `parallelAutoDiscovery` ended with: servers (`type host:port`), or `error`, or neither."""

    incoming: tuple[str, ...] = ()  # first the chosen server, then the alternatives
    outgoing: tuple[str, ...] = ()
    source: str = ""
    error: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.incoming or self.outgoing)

    def hosts(self) -> set[str]:
        return {server.split(" ", 1)[1].rsplit(":", 1)[0] for server in (*self.incoming, *self.outgoing)}


_DISCOVER_JS = """
const [domain, email, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const { FindConfig } = ChromeUtils.importESModule("resource:///modules/accountcreation/FindConfig.sys.mjs");
Services.cache2.clear();
const server = s => `${s.type} ${s.hostname}:${s.port}`;
(async () => {
  const generator = FindConfig.parallelAutoDiscovery(domain, email, new AbortController().signal);
  let step = await generator.next();
  while (!step.done) {  // only a 3rd-party credential redirect question is yielded: refuse it
    step = await generator.next({ acceptRedirect: false });
  }
  const config = step.value;
  if (!config) { return { incoming: [], outgoing: [], source: "", error: "" }; }
  return {
    incoming: [config.incoming, ...config.incomingAlternatives].filter(s => s && s.hostname).map(server),
    outgoing: [config.outgoing, ...config.outgoingAlternatives].filter(s => s && s.hostname).map(server),
    source: String(config.source), error: "",
  };
})().then(done, e => done({ incoming: [], outgoing: [], source: "", error: String(e && (e.message || e)) }));
"""

_SET_PREFS_JS = """
const [prefs, done] = [arguments[0], arguments[arguments.length - 1]];
for (const [name, value] of Object.entries(prefs)) {
  if (typeof value === "boolean") { Services.prefs.setBoolPref(name, value); }
  else if (typeof value === "number") { Services.prefs.setIntPref(name, value); }
  else { Services.prefs.setStringPref(name, value); }
}
done(true);
"""


@dataclass(frozen=True)
class HubState:
    """What the Account Hub's email view shows: the visible step, its text, and whether it is still busy."""

    step: str
    busy: bool
    text: str  # the visible step's text, whitespace collapsed (hostnames, form labels, buttons)
    notice: str  # the Fluent id of the step's notification title, if one is shown (its text is set async)


_HUB_START_JS = """
const [email, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const window = Services.wm.getMostRecentWindow("mail:3pane");
  await window.openAccountHub("MAIL");
  const view = window.document.querySelector("account-hub-container").modal.querySelector("account-hub-email");
  const form = view.querySelector("email-auto-form");
  for (const [id, value] of [["#realName", "Guard Test"], ["#email", email]]) {
    const input = form.querySelector(id);
    input.focus();
    input.value = value;
    input.dispatchEvent(new window.Event("input", { bubbles: true }));
  }
  view.querySelector("account-hub-footer #forward").click();
  return true;
})().then(done, e => done(String(e)));
"""

_HUB_STATE_JS = """
const done = arguments[arguments.length - 1];
const window = Services.wm.getMostRecentWindow("mail:3pane");
const view = window.document.querySelector("account-hub-container").modal.querySelector("account-hub-email");
const steps = [...view.querySelectorAll(":scope > [id$='Subview']")].filter(e => !e.hidden);
const step = steps.length ? steps[0] : null;
const squash = text => text.replace(/\\s+/g, " ").trim();
const header = step?.shadowRoot?.querySelector("account-hub-header")?.shadowRoot;
const bar = header?.querySelector("#emailFormNotification");
const title = header?.querySelector("#emailFormNotificationTitle .localized-title");
done({ step: step ? step.id : "", busy: view.classList.contains("busy"), text: step ? squash(step.textContent) : "",
       notice: bar && !bar.hidden ? (title?.getAttribute("data-l10n-id") || "") : "" });
"""

_HUB_CLOSE_JS = """
const done = arguments[arguments.length - 1];
const window = Services.wm.getMostRecentWindow("mail:3pane");
const hub = window.document.querySelector("account-hub-container");
if (hub && hub.modal.open) { hub.modal.close(); }
done(true);
"""


class Thunderbird:
    """One running Thunderbird with a Marionette session in the chrome context."""

    def __init__(self, workdir: Path, prefs: Mapping[str, PrefValue], trusted_cas: Mapping[str, Path]) -> None:
        from marionette_driver.marionette import Marionette

        self.workdir = workdir
        self.display = _start_xvfb(workdir)
        port = free_port()
        self.profile = make_profile(workdir / "profile", {**QUIET_PREFS, "marionette.port": port, **prefs},
                                    trusted_cas)
        env = {**os.environ, "DISPLAY": f":{self.display.number}", "MOZ_DISABLE_AUTO_SAFE_MODE": "1",
               "HOME": str(workdir), "TMPDIR": str(workdir), "MOZ_CRASHREPORTER_DISABLE": "1"}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
            env.pop(name, None)
        self.console = (workdir / "thunderbird.log").open("w")
        self.process = subprocess.Popen(
            [THUNDERBIRD, "--marionette", "-remote-allow-system-access", "--no-remote", "--profile",
             str(self.profile)], env=env, stdout=self.console, stderr=subprocess.STDOUT)
        self.client = Marionette(host="127.0.0.1", port=port, startup_timeout=STARTUP_SECONDS)
        try:
            self.client.start_session()
            self.client.set_context(self.client.CONTEXT_CHROME)
        except Exception:
            self.close()
            raise

    def set_prefs(self, prefs: Mapping[str, PrefValue]) -> None:
        """Set prefs in the running instance (proxy, privacy): effective for the next request."""
        self.client.execute_async_script(_SET_PREFS_JS, script_args=[dict(prefs)], script_timeout=10_000)

    def discover(self, email: str, timeout_ms: int = 60_000) -> Discovered:
        """Thunderbird's own discovery for `email`, as the Account Hub runs it."""
        domain = email.rsplit("@", 1)[1]
        found: dict[str, Any] = self.client.execute_async_script(
            _DISCOVER_JS, script_args=[domain, email], script_timeout=timeout_ms)
        return Discovered(tuple(found["incoming"]), tuple(found["outgoing"]), found["source"], found["error"])

    def open_account_hub(self, email: str) -> None:
        """Open the Account Hub's email setup, type a name and `email`, press Continue (discovery starts)."""
        started = self.client.execute_async_script(_HUB_START_JS, script_args=[email], script_timeout=30_000)
        assert started is True, started

    def account_hub(self) -> HubState:
        """The Account Hub's state now."""
        state: dict[str, Any] = self.client.execute_async_script(_HUB_STATE_JS, script_timeout=10_000)
        return HubState(state["step"], state["busy"], state["text"], state["notice"])

    def close_account_hub(self) -> None:
        """Close the Account Hub dialog (the next `open_account_hub` starts from its first step)."""
        self.client.execute_async_script(_HUB_CLOSE_JS, script_timeout=10_000)

    def screenshot(self, path: Path) -> Path:
        """The whole screen of the Xvfb display as PNG (what a user would see)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.client.screenshot(format="base64", full=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        from marionette_driver.errors import MarionetteException

        with contextlib.suppress(MarionetteException, OSError):  # already gone: stopped below either way
            self.client.delete_session()
        stop_process(self.process)
        self.console.close()
        self.display.close()


@dataclass
class XDisplay:
    number: int
    process: subprocess.Popen[bytes]

    def close(self) -> None:
        stop_process(self.process)


def _start_xvfb(workdir: Path) -> XDisplay:
    """`Xvfb -displayfd`: the server picks a free display number and tells us once it is ready."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten",
                                "tcp"], pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=workdir)
    os.close(write_end)
    with os.fdopen(read_end) as announced:
        number = announced.readline().strip()
    if not number.isdigit():
        stop_process(process)
        raise RuntimeError("Xvfb did not start (is the xvfb package installed?)")
    return XDisplay(int(number), process)


def missing_programs() -> list[str]:
    """System programs this harness needs that are not on PATH."""
    return [name for name in (THUNDERBIRD, "Xvfb", "certutil") if shutil.which(name) is None]


def require_thunderbird() -> None:
    """Skip the test when a program the harness needs is missing; fail instead under CI=true (.ci/run installs them)."""
    missing = missing_programs()
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: apt-get install thunderbird xvfb libnss3-tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must have them: .ci/run installs them")
        pytest.skip(message)

