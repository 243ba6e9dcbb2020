"""A strict traitlets command line, shared by pipeline-run, pipeline-worker, pipeline-keys and pipeline-gui: an
option the command does not have (``--name`` or ``--Class.trait``), or a value that cannot work, is a one-line
ConfigError (exit status 2)."""

from __future__ import annotations

import argparse
import logging
import logging.config
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, NoReturn

from traitlets import Enum, default
from traitlets.config import Application
from traitlets.config.loader import _DOT_REPLACEMENT, ArgumentError, KVArgParseConfigLoader
from traitlets.traitlets import TraitError

from pipeline.config.ctapipe_flow import FLOW_SECTION, FLOW_SECTION_EDIT
from pipeline.config.traits import names_a_class
from pipeline.console.humanize import quoted, suggest
from pipeline.console.log_lines import ConsoleFormatter
from pipeline.errors import COMMAND_LINE, ConfigError

#: A logging_config that works, for the error of one that does not: a log file beside stderr.
#: (the run's lines are those of the pipeline logger, which keeps them from the root's handlers: a file handler
#: alone, as traitlets' own example has it, wrote nothing)
_LOGGING_CONFIG_EXAMPLE = ("{'handlers': {'file': {'class': 'logging.FileHandler', 'filename': 'run.log'}}, "
                           "'loggers': {'pipeline': {'handlers': ['console', 'file']}}}")

#: The ``--debug`` flag of the commands whose debug output is their log alone.
DEBUG_FLAG: dict[str, tuple[dict[str, Any], str]] = {
    "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log at DEBUG level."),
}

# What traitlets reads as an option name; "-5" is a value, "--Class.trait" is checked elsewhere.
_OPTION_NAME = re.compile(r"--?[A-Za-z][\w-]*")
# A class's option written with '-' where '.' goes ("--Squares-count"): a class's name begins with a capital.
_DASHED_CLASS_OPTION = re.compile(r"--?(?P<section>[A-Z]\w*)-(?P<trait>[a-z][\w-]*)")
# What traitlets reads as a class's option, "--Class.trait" (or "-Class.trait", which it takes alike).
_CLASS_OPTION = re.compile(r"--?(?P<section>[A-Za-z_]\w*)\.(?P<trait>.+)")


#: traitlets' sentences for a bad value of a trait, and how to say them in one line of ours (named by the option).
_TRAIT_ERRORS = (
    (re.compile(r"The '(?P<name>\w+)' trait of an? \w+ instance expected (?P<expected>.+), not the (?P<got>.+?)\.?"),
     "expected {expected}, got {got}"),
    (re.compile(r"The value of the '(?P<name>\w+)' trait of an? \w+ instance should not be less than "
                r"(?P<limit>\S+), but a value of (?P<got>.+) was specified"), "expected at least {limit}, got {got}"),
    (re.compile(r"The value of the '(?P<name>\w+)' trait of an? \w+ instance should not be greater than "
                r"(?P<limit>\S+), but a value of (?P<got>.+) was specified"), "expected at most {limit}, got {got}"),
)


class _Parser(KVArgParseConfigLoader.parser_class):
    """traitlets' argument parser, raising a one-line ConfigError instead of printing usage."""

    #: The command's aliases (``config``, ``PipelineRun.config_file``): an error names the option as it was typed.
    aliases: tuple[tuple[str, str], ...] = ()
    #: What each option read so far sets, in the order given: its destination, or a flag's settings.
    given: list[str | dict[str, dict[str, Any]]]

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        """argparse's reading of one option's value (called for each option, in the order given), noting what it
        sets: traitlets keeps the values of each ``--Class.trait`` apart from the flags, so their order is lost."""
        flag = getattr(action, "flag", None)
        self.given.append(flag if isinstance(flag, dict) and not arg_strings else action.dest)
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        """Report a malformed command line (such as an option without its value)."""
        for alias, target in self.aliases:
            message = message.replace(f"argument --{target}:", f"argument --{alias}:")
        raise ConfigError(COMMAND_LINE, "", message)


class _Loader(KVArgParseConfigLoader):
    """traitlets' command-line loader with the raising parser, where an option given more than once, by any of its
    forms, takes its last value."""

    parser_class = _Parser

    #: The sections that name the command itself (``Application``, ``PipelineRun``): one option whichever is given.
    own_sections: frozenset[str] = frozenset()

    def _create_parser(self) -> None:
        """traitlets' parser, told the command's aliases."""
        super()._create_parser()
        self.parser.aliases = tuple((alias, target) for alias, target in self.aliases.items()
                                    if isinstance(alias, str) and isinstance(target, str))  # traitlets allows tuples
        self.parser.given = []

    def _convert_to_config(self) -> None:
        """As traitlets, after keeping only the last value of an option given more than once.

        traitlets collects every ``--Class.trait=value`` into a list and then refuses a list for a
        trait of one value; it applies the flags (``--no-progress``, ``--debug``) after every value,
        and keeps ``--Application.log_level`` apart from its alias (``--log-level``, which it reads
        as ``--PipelineRun.log_level``). As in most command lines, the last of an option's forms
        wins, for a list or dict option too (its value is one Python literal), and only it is read:
        a bad value given before is not an error. The options of classes not known yet (a
        pipeline's steps) are settled the same way by the config loader.
        """
        given = [setting for setting in self.parser.given if setting != "extra_args"]
        last = {option: place for place, setting in enumerate(given) for option in self._options_set(setting)}
        flag_places = [place for place, setting in enumerate(given) if isinstance(setting, dict)]
        self.parsed_data._flags = [  # each flag's settings that no later option sets again
            {section: kept for section, values in flag.items()
             if (kept := {trait: value for trait, value in values.items() if last[self._option(section, trait)] == at})}
            for at, flag in zip(flag_places, self.parsed_data._flags, strict=True)]
        winners = {given[place] for place in last.values() if isinstance(given[place], str)}
        for dest in given:
            if isinstance(dest, str) and dest not in winners and hasattr(self.parsed_data, dest):
                delattr(self.parsed_data, dest)  # set again later by another of its forms
        for dest, value in vars(self.parsed_data).items():
            if dest != "extra_args" and isinstance(value, list) and len(value) > 1:
                setattr(self.parsed_data, dest, type(value)(value[-1:]))
        super()._convert_to_config()

    def _options_set(self, setting: str | dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        """The options that one ``setting`` sets: a flag's, or the one of a ``--Class.trait`` or an alias."""
        if isinstance(setting, dict):
            return [self._option(section, trait) for section, values in setting.items() for trait in values]
        section, _, trait = setting.replace(_DOT_REPLACEMENT, ".").rpartition(".")
        return [self._option(section, trait)]

    def _option(self, section: str, trait: str) -> tuple[str, str]:
        """One option however it is named: the command's own by its trait alone, whichever class names it."""
        return ("" if section in self.own_sections else section, trait)


def _check_case(option: str) -> None:
    """A ``--Class.trait`` (or ``--Outer.Inner.trait``) option's classes begin with a capital letter and its trait
    does not: traitlets tells the two apart by that alone."""
    *classes, trait = option[2:].split(".")
    for place, name in enumerate(classes):
        if not names_a_class(name):
            if place and name[:1].islower():  # --Counter.count.x: an option, with more after it
                raise ConfigError(COMMAND_LINE, option, f"{quoted(name)} is not a class name: an option is the last "
                                                        "name of an option's path (expected --Class.option=value)")
            guess = f": did you mean {quoted(name[:1].upper() + name[1:])}?" if name[:1].islower() else ""
            raise ConfigError(COMMAND_LINE, option, f"{quoted(name)} is not a class name (class names begin with a "
                                                    f"capital letter{guess})")
    if names_a_class(trait):
        guess = trait[:1].lower() + trait[1:]
        hint = f": did you mean {quoted(guess)}?" if not trait[1:2].isupper() else ""  # URL_count: no guess to make
        raise ConfigError(COMMAND_LINE, option, f"{quoted(trait)} is not an option name (option names begin with a "
                                                f"lowercase letter{hint})")


#: The names of the log levels, as --log-level takes them and the docs say them.
LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARN: "WARN", logging.ERROR: "ERROR",
               logging.CRITICAL: "CRITICAL"}


class LogLevel(Enum):
    """A log level, by number or by name in any case: traitlets' names, and Python's own WARNING (which a user of
    logging types, and traitlets refused)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((0, *LEVEL_NAMES, *LEVEL_NAMES.values(), "WARNING"), **kwargs)

    def validate(self, obj: Any, value: Any) -> Any:
        """``value``, a name in capitals; a TraitError listing the levels if it is none."""
        if isinstance(value, str) and value.upper() in self.values:
            value = value.upper()
        return super().validate(obj, value)


class StrictApplication(Application):
    """An Application whose command line is checked in full (traitlets alone only warns or exits 1)."""

    _log_formatter_cls = ConsoleFormatter  # a step's error text reaches the terminal as text

    log_level = LogLevel(default_value=logging.WARN, help="Set the log level by value or name.").tag(config=True)

    #: The package loggers that log through the application's console handler at its log level.
    package_loggers: ClassVar[tuple[str, ...]] = ()

    @default("version")
    def _version_default(self) -> str:
        return package_version()

    def print_version(self) -> None:
        """``--version``: the command's name and the package's version."""
        print(f"{self.name} {self.version}")

    @default("option_description")
    def _option_description_default(self) -> str:
        # traitlets' own words say "<cmd>" where the command's name goes.
        return (f"The options below are short forms of class options, each with what it is equivalent to. "
                f"{self.name} --help-all lists every option.")

    @default("log_format")
    def _log_format_default(self) -> str:
        return "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def get_default_logging_config(self) -> dict[str, Any]:
        """traitlets' stderr logging, extended to the package loggers and, through the root logger, to the libraries
        that steps use (ctapipe's warnings came bare, whatever --log-level said, as worker processes already did)."""
        config = super().get_default_logging_config()
        for name in self.package_loggers:
            # The logger's own level (not only the handler's) keeps disabled debug calls cheap.
            config["loggers"][name] = {"level": self.log_level, "handlers": ["console"], "propagate": False}
        if self.package_loggers:
            config["root"] = {"level": self.log_level, "handlers": ["console"]}
        return config

    def _configure_logging(self) -> None:
        """traitlets' logging set-up (on each change of a logging option), the options checked first: a format or a
        ``logging_config`` that cannot work is a ConfigError naming it (traitlets raised a traceback, or wrote one for
        every line logged), and the logging stays as the defaults set it."""
        console = self.get_default_logging_config()["formatters"]["console"]
        check_log_format(self._log_formatter_cls, console, "--Application.log_format", self._log_format_default())
        formatters = (self.logging_config or {}).get("formatters")
        for name, formatter in formatters.items() if isinstance(formatters, dict) else ():
            if isinstance(formatter, dict) and not {"()", "class"} & set(formatter):  # a custom class may add fields
                # Merged over the console formatter as traitlets merges it (a new one is logging's own class).
                merged = {**console, **formatter} if name == "console" else formatter
                check_log_format(self._log_formatter_cls if name == "console" else logging.Formatter, merged,
                                 "--Application.logging_config", self._log_format_default())
        try:
            super()._configure_logging()
        except (ValueError, TypeError, AttributeError, ImportError) as err:
            logging.config.dictConfig(self.get_default_logging_config())  # the defaults, with the checked formats
            reasons = [str(err), *([str(err.__cause__)] if err.__cause__ else [])]
            raise ConfigError(COMMAND_LINE, "--Application.logging_config", f"{': '.join(reasons)} (expected a "
                              f"logging.config dictionary, version 1, e.g. {_LOGGING_CONFIG_EXAMPLE})") from err

    def emit_alias_help(self) -> Iterator[str]:
        """traitlets' help of the aliases, the log level's default by name (``Default: 'WARN'``, not 30)."""
        yield from named_levels(super().emit_alias_help())

    def parse_strictly(self, argv: Sequence[str] | None) -> None:
        """Read the command line; raise a ConfigError for any option or value that cannot work."""
        argv = list(sys.argv[1:] if argv is None else argv)
        self.check_option_names(argv)
        try:
            # Past traitlets' catch_config_error, which would log the error and exit with status 1.
            Application.parse_command_line.__wrapped__(self, argv)
        except TraitError as err:
            raise ConfigError(COMMAND_LINE, *self.trait_problem(str(err))) from err
        except ArgumentError as err:
            raise ConfigError(COMMAND_LINE, "", str(err)) from err
        if self.extra_args:
            argument = self.extra_args[0]
            raise ConfigError(COMMAND_LINE, argument,
                              f"unexpected argument (options are --name=value{self.argument_hint(argument)})")

    def trait_problem(self, text: str) -> tuple[str, str]:
        """traitlets' words for a bad value of this command's own option (``The 'threads' trait of a PipelineWorker
        instance ...``), as (the option: its alias, else its full name; what was expected and what came)."""
        for pattern, problem in _TRAIT_ERRORS:
            found = pattern.fullmatch(text.strip())
            if found is not None:
                name = found.group("name")
                option = next((alias for alias, target in self.aliases.items() if target.endswith(f".{name}")), None)
                # Without a short form, the full name (--Application.show_config), as --help-all lists it.
                option = option or next((f"{cls.__name__}.{name}" for cls in self.option_classes().values()
                                         if name in cls.class_own_traits()), name)
                return f"--{option}", problem.format(**found.groupdict())
        return "", text

    def argument_hint(self, argument: str) -> str:
        """What a bare ``argument`` was probably meant to be, as "; did you mean ...?" ("" if unknown)."""
        return ""

    #: Whether a ``--Class.trait`` of a class that is not the command's own is read later (pipeline-run's: the
    #: pipeline's and its steps' classes, which the config loader checks); if not, it is refused here.
    other_classes_later: ClassVar[bool] = False
    #: Why a class that is not the command's own is refused, said in place of a guess among its own ("" to guess).
    other_classes_note: ClassVar[str] = ""

    def check_option_names(self, argv: Sequence[str]) -> None:
        """Reject an option this command does not have, ``--name`` or ``--Class.trait`` (traitlets would only warn,
        or say nothing), and a ``--Class.trait`` whose case traitlets cannot read (it failed on its own objects'
        words)."""
        known = {"-h", "--help", "--help-all", "--version", *(f"--{name}" for name in [*self.aliases, *self.flags])}
        for arg in argv:
            name = arg.split("=", 1)[0]
            if _OPTION_NAME.fullmatch(name) and name not in known:
                dashed = _DASHED_CLASS_OPTION.fullmatch(name)  # --Squares-count: a class option with '-' for '.'
                if dashed is not None:
                    meant = f"--{dashed.group('section')}.{dashed.group('trait').replace('-', '_')}"
                    raise ConfigError(COMMAND_LINE, name, f"unknown option (did you mean {quoted(meant)}?)")
                forms = self.option_forms(name.lstrip("-"))  # --mode, ctapipe flow's: --Pipeline.mode here
                hint = f" (did you mean {forms}?)" if forms else suggest(name, known)
                raise ConfigError(COMMAND_LINE, name, "unknown option" + hint)
            if name.startswith("--") and "." in name:
                _check_case(name)
            found = _CLASS_OPTION.fullmatch(name)
            if found:
                self.check_class_option(name, found["section"], found["trait"])

    def option_classes(self) -> dict[str, type[Application]]:
        """The classes whose options this command takes as ``--Class.trait``, by name: itself and the Application
        classes it derives from (``--Application.log_level``), as traitlets applies them."""
        return {cls.__name__: cls for cls in type(self).__mro__ if issubclass(cls, Application)}

    def check_class_option(self, option: str, section: str, trait: str) -> None:
        """Reject ``option`` (``--section.trait``) unless its class is this command's own and has that option, or its
        class is read later (other_classes_later) and is none of the library classes this command derives from."""
        own = self.option_classes()
        forms = self.option_forms(trait)
        if section == FLOW_SECTION and forms:  # --Flow.mode, as ctapipe flow's command line named it
            raise ConfigError(COMMAND_LINE, option, f"{FLOW_SECTION_EDIT} (did you mean {forms}?)")
        if section in own:
            traits = own[section].class_traits(config=True)
            if trait not in traits:
                hint = f" (did you mean {forms}?)" if forms else suggest(trait, traits)
                raise ConfigError(COMMAND_LINE, option, f"{section} has no option {quoted(trait)}{hint}")
            return
        inherited = {cls.__name__ for cls in type(self).__mro__}  # traitlets' HasTraits, Configurable, ...
        if self.other_classes_later and section not in inherited:
            return
        # What a user may name: the command's own class and the classes it lists (not the framework's bases).
        named = list(dict.fromkeys([type(self).__name__, *(cls.__name__ for cls in self.classes)]))
        if self.other_classes_later:
            hint = f" (expected {', '.join(named)} or a class of the config's steps)"
        elif self.other_classes_note:
            hint = f" ({self.other_classes_note}; expected {', '.join(named)})"
        else:
            hint = suggest(section, own)
        raise ConfigError(COMMAND_LINE, f"--{section}", "unknown class" + hint)

    def option_forms(self, trait: str) -> str:
        """The options of this command that set a trait named ``trait`` of another class, as a hint
        (``--progress / --no-progress or --Pipeline.progress``); "" if none does."""
        short = [f"--{alias}" for alias, target in self.aliases.items() if target.rpartition(".")[2] == trait]
        short += [f"--{flag}" for flag, (settings, _) in self.flags.items()
                  if any(trait in values for values in settings.values())]
        long = [f"--{cls.__name__}.{trait}" for cls in self.classes if trait in cls.class_traits(config=True)]
        return " or ".join(" / ".join(forms) for forms in (short, long) if forms)

    def _create_loader(self, argv: Any, aliases: Any, flags: Any, classes: Any) -> KVArgParseConfigLoader:
        loader = _Loader(argv, aliases, flags, classes=classes, log=self.log)
        loader.own_sections = frozenset(self.option_classes())
        return loader

    #: The exit status ``start()`` leaves (DESIGN.md §5).
    exit_status = 0

    def execute(self, argv: Sequence[str] | None = None) -> int:
        """Initialize from ``argv`` and run; the exit status: 2 and one line for a ConfigError (--help
        exits with SystemExit, as in traitlets)."""
        try:
            self.initialize(argv)
            self.start()
        except ConfigError as err:
            self.log.debug("configuration error", exc_info=True)
            print(f"{self.name}: error: {err}", file=sys.stderr)
            return 2
        return self.exit_status

    @classmethod
    def launch_instance(cls, argv: Sequence[str] | None = None, **kwargs: Any) -> NoReturn:
        """Run the command line ``argv`` (default: ``sys.argv``) and exit with its status."""
        sys.exit(cls.instance(**kwargs).execute(argv))


def check_log_format(formatter_class: type[logging.Formatter], settings: dict[str, Any], option: str,
                     example: str) -> None:
    """Raise a ConfigError naming ``option`` unless a ``formatter_class`` of ``settings`` (its format, its datefmt)
    formats a log line: a field that no log record has (``%(nope)s``) would fail only as each line is written."""
    record = logging.LogRecord("pipeline", logging.WARNING, __file__, 0, "a message", None, None)
    try:
        formatter_class(settings.get("format"), settings.get("datefmt")).format(record)
    except (ValueError, TypeError) as err:  # logging says a missing field as a ValueError
        reason = str(err)
    else:
        return
    raise ConfigError(COMMAND_LINE, option, f"{reason} (expected a format of a log record's fields, e.g. {example!r})")


#: The lines of a trait's help that show its value: traitlets writes the log level's as a number.
_VALUE_LINE = re.compile(r"(?P<indent>\s+)(?P<what>Default|Current): (?P<level>\d+)")


def named_levels(lines: Iterable[str]) -> Iterator[str]:
    """Help ``lines`` with the default (or current) value of the log level by its name: 'WARN', not 30.

    traitlets' help shows ``Application.log_level``'s default as the number it stores; a reader of
    ``--help`` knows the level by its name. Only the lines of the log level's own help are changed.
    """
    inside = False
    for line in lines:
        if line.startswith("--"):
            inside = line.startswith(("--log-level=", "--Application.log_level="))
        match = _VALUE_LINE.fullmatch(line) if inside else None
        if match and int(match["level"]) in LEVEL_NAMES:
            line = f"{match['indent']}{match['what']}: {LEVEL_NAMES[int(match['level'])]!r}"
        yield line


def package_version() -> str:
    """The installed version of zmq-pipeline."""
    try:
        return version("zmq-pipeline")
    except PackageNotFoundError:
        return "unknown (not installed)"
