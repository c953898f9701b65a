"""Opt-out list providers behind one interface (base): ACS today (acs/), AWS next.

Light on purpose: importing this package, `base`, `fanout`, `router` or `fake` loads no
Azure or AWS SDK. A provider's heavy client is built only in optouts/runtime.py."""
