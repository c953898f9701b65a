"""The use cases: one opt-out command (service), and requests that arrive as queue messages.

They reach upstream only through `optouts.providers.base.Provider`; which provider, is
decided in optouts/runtime.py."""
