"""`python -m optouts_cli`, the same as the `optouts` console script."""

from optouts_cli.app import main

main()
