from guard.mitm import AutodiscoverGuard  # mitmdump -s addons/autodiscover_guard.py; logic: guard/mitm.py

addons = [AutodiscoverGuard()]
