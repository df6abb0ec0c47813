"""What every command shares: settings with clear errors, logging, the console."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console

from mercato.platform.logs import configure_logging
from mercato.platform.settings import ConfigError, Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    return settings
