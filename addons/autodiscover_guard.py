"""mitmdump -s addons/autodiscover_guard.py — the guard's logic lives in guard.mitm."""
from guard.mitm import AutodiscoverGuard

addons = [AutodiscoverGuard()]
