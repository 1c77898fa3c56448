"""Help text as people read it: typer (0.29, rich mode) keeps a docstring's single line breaks, so
sentences wrapped at 110 columns in the source came out broken mid-line in `--help`."""
from __future__ import annotations

import inspect

import typer


def reflow(doc: str) -> str:
    """Join the lines of each paragraph into one; `Example:` lines stay lines of their own."""
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith("Example:") and not lines[-1].startswith("Example:"):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Every command's and sub-group's help, recursively, before click builds the commands."""
    for command in app.registered_commands:
        doc = command.help or inspect.getdoc(command.callback)
        if doc:
            command.help = reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = reflow(info.help)
            reflow_help(group.typer_instance)
