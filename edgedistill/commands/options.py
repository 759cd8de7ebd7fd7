"""Click options generated from the config sections: one option per field, defined once.

The help text, default, choices and type of ``--temperature`` come from
``DistillConfig.temperature``; ``run``, the stage commands and ``search`` all take it from
there. A command may pick fields (``only``/``exclude``), add old spellings (``aliases``,
e.g. ``teacher --preset`` for ``--teacher-preset``) and mark some required.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Iterable, Mapping

import click

from edgedistill.config import RunConfig, Section, read_config_file

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _click_type(field: dataclasses.Field, hint: Any) -> Any:
    # Choices are checked by the config section (one `Error:` line listing them), not by click.
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    return base if base in (int, float, str) else str


def field_option(
    field: dataclasses.Field,
    hint: Any,
    *,
    aliases: Iterable[str] = (),
    required: bool = False,
    override: Mapping[str, Any] | None = None,
) -> Decorator:
    """The click option of one config field."""
    settings: dict[str, Any] = {
        "default": None if required else field.default,
        "show_default": not required,
        "help": field.metadata.get("help", ""),
        "required": required,
    }
    settings.update(override or {})
    if hint is bool:
        flags = f"{_flag(field.name)}/--no-{field.name.replace('_', '-')}"
        return click.option(flags, field.name, **settings)
    return click.option(_flag(field.name), *aliases, field.name, type=_click_type(field, hint), **settings)


def config_options(
    sections: Iterable[type[Section]],
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    required: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Decorator:
    """Add one option per field of ``sections`` (in order) to a click command."""
    only, exclude, required = (set(only) if only is not None else None), set(exclude), set(required)
    aliases, overrides = aliases or {}, overrides or {}
    decorators: list[Decorator] = []
    for section in sections:
        hints = typing.get_type_hints(section)
        for field in dataclasses.fields(section):
            if (only is not None and field.name not in only) or field.name in exclude:
                continue
            decorators.append(
                field_option(
                    field, hints[field.name], aliases=aliases.get(field.name, ()),
                    required=field.name in required, override=overrides.get(field.name),
                )
            )

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _load_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        values = read_config_file(value)
        # A shared run config fed to a stage command: the keys this command has no option for do nothing here.
        names = {parameter.name for parameter in ctx.command.params}
        ignored = sorted(set(values) - names)
        if ignored:
            import logging

            logging.getLogger("edgedistill.config").warning(
                "%s: %s not option(s) of `%s`; ignored here.", value, ", ".join(ignored), ctx.info_name
            )
        ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


config_file_option: Decorator = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), is_eager=True, expose_value=True,
    callback=_load_config_file, help="YAML file of options (keys as the options, - or _); the command line wins.",
)


def all_run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Every option of every section, plus ``--config``: the options of ``edgedistill run``."""
    return config_file_option(config_options(RunConfig.sections().values())(function))


__all__ = ["config_options", "field_option", "config_file_option", "all_run_options"]
