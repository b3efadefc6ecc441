"""The `vitcost` command line. Each command lives in its own module and registers itself on `app`;
`main` loads only the module of the command it runs (`load_commands()` registers them all)."""

import sys

try:
    from vitcost.cli.app import COMMANDS, app, load_commands, main
except KeyboardInterrupt:  # Ctrl-C while typer and rich load: one line and 130, as anywhere later
    sys.stderr.write("vitcost: interrupted\n")
    raise SystemExit(130) from None

__all__ = ["COMMANDS", "app", "load_commands", "main"]
