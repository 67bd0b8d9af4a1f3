"""`python -m meterline.cli`: the same as the `meterline` command."""

from meterline.cli import main

main()
