"""The `vitcost` command line. Each command lives in its own module and registers itself on `app`;
`main` loads only the module of the command it runs (`load_commands()` registers them all)."""

from vitcost.cli.app import COMMANDS, app, load_commands, main

__all__ = ["COMMANDS", "app", "load_commands", "main"]
