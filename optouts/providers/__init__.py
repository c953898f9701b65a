"""Opt-out providers behind one interface (`optouts.providers.base`)."""
