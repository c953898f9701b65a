"""Azure platform helpers shared by every part that talks to Azure: Storage clients and the
gateway's own identity."""
