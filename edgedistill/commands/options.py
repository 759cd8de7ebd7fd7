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


class RegistryHelpOption(click.Option):
    """An option whose help lists a registry's names (``{names}``): read when ``--help`` is shown, not at import,
    so running a command never imports the registries for its help text."""

    def __init__(self, *args: Any, names_from: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.names_from = names_from

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        import importlib

        module, attribute = self.names_from.split(":")
        registry = getattr(importlib.import_module(module), attribute)
        self.help = (self.help or "").replace("{names}", ", ".join(registry.names()))
        return super().get_help_record(ctx)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _click_type(field: dataclasses.Field, hint: Any, *, checked: bool = False) -> Any:
    # Choices are checked by the config section (one `Error:` line listing them), not by click; `checked` (commands
    # that build no section from their options) applies the field's choices and check as the option is parsed.
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    base = base if base in (int, float, str) else str
    return _CheckedType(field, base) if checked else base


class _CheckedType(click.ParamType):
    """The field's type, then its choices and check (:func:`edgedistill.config.check_value`), at parse time."""

    def __init__(self, field: dataclasses.Field, base: type) -> None:
        self.field, self.base = field, click.types.convert_type(base)
        self.name = self.base.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from edgedistill.config import check_value
        from edgedistill.errors import InputError

        converted = self.base.convert(value, param, ctx)
        try:
            check_value(self.field, converted)
        except InputError as error:
            self.fail(str(error), param, ctx)
        return converted


def field_option(
    field: dataclasses.Field,
    hint: Any,
    *,
    aliases: Iterable[str] = (),
    required: bool = False,
    override: Mapping[str, Any] | None = None,
    checked: bool = False,
) -> Decorator:
    """The click option of one config field (spelled ``--field-name``, or the field's ``flag``)."""
    settings: dict[str, Any] = {
        "default": None if required else field.default,
        "show_default": not required,
        "help": field.metadata.get("help", ""),
        "required": required,
    }
    if hint is not bool:
        settings["type"] = _click_type(field, hint, checked=checked)
    if field.metadata.get("names"):
        settings.update(cls=RegistryHelpOption, names_from=field.metadata["names"])
    settings.update(override or {})
    flag = field.metadata.get("flag")
    if hint is bool:
        flags = flag or f"{_flag(field.name)}/--no-{field.name.replace('_', '-')}"
        if "/" not in flags:  # an on-switch without its --no- form (e.g. bench --profile)
            settings.update(is_flag=True)
        return click.option(flags, *aliases, field.name, **settings)
    return click.option(flag or _flag(field.name), *aliases, field.name, **settings)


def config_options(
    sections: Iterable[type[Section]],
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    required: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    checked: bool = False,
) -> Decorator:
    """Add one option per field of ``sections`` (in order) to a click command (``checked``: validate each value as
    it is parsed, for commands that build no section from their options)."""
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
                    field,
                    hints[field.name],
                    aliases=aliases.get(field.name, ()),
                    required=field.name in required,
                    override=overrides.get(field.name),
                    checked=checked,
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
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=True,
    callback=_load_config_file,
    help="YAML file of options (keys as the options, - or _); the command line wins.",
)


def all_run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Every option of every section, plus ``--config``: the options of ``edgedistill run``."""
    return config_file_option(config_options(RunConfig.sections().values())(function))


__all__ = ["config_options", "field_option", "config_file_option", "all_run_options"]
