"""What the CLI's exit status means: the contract scripts rely on (docs/cli.md, "Exit codes")."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    #: Everything asked for succeeded (a check's opted-out numbers are a success too).
    OK = 0
    #: The gateway answered, but some numbers were invalid or failed (see the results).
    NUMBERS_NOT_SUCCEEDED = 1
    #: The command line or an input file is wrong; nothing was sent. Click uses 2 for its own usage errors.
    USAGE = 2
    #: The gateway refused the request (any 4xx/5xx, 401 for a wrong key) or could not be reached.
    GATEWAY = 3
    #: The job ended failed or cancelled.
    JOB_UNSUCCESSFUL = 4
    #: The job has not finished: `--wait` gave up after `--wait-timeout`, or its report was asked for too early.
    JOB_NOT_FINISHED = 5
