"""Options after `vlcurate curate` that are not its own go to Beam; a misspelling must not vanish there.

Beam keeps options it does not know and ignores them, so `--overwirte` used to run without
overwriting and say nothing. Here every leftover option is parsed against every PipelineOptions
class Beam defines (the runners' included); what neither vlcurate nor Beam knows is refused, with
the closest real option suggested.
"""

from __future__ import annotations

import difflib


class UnknownOptionError(ValueError):
    pass


def _beam_parser():
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    class Parser(_BeamArgumentParser):
        def error(self, message):  # argparse would print Beam's whole usage (~150 lines) and exit
            raise UnknownOptionError(f"Beam pipeline option: {message}")

    parser = Parser(allow_abbrev=False)  # abbreviations would accept typos of long names
    for cls in dict.fromkeys(subclasses(PipelineOptions)):
        cls._add_argparse_args(parser)
    return parser


def beam_option_names() -> list[str]:
    return [name for action in _beam_parser()._actions for name in action.option_strings if name.startswith("--")]


def check_beam_args(args: list[str], own_options: list[str]) -> None:
    """Raise UnknownOptionError for the first option neither vlcurate's command nor Beam knows."""
    if not args:
        return
    for name in (a.split("=", 1)[0] for a in args if a.startswith("--")):
        ours = name.replace("_", "-")
        if ours != name and ours in own_options:  # --dry_run is Dataflow's option, taking a value
            raise UnknownOptionError(f"unknown option {name}: did you mean {ours}? ({name} would go to Beam)")
    _, unknown = _beam_parser().parse_known_args(args)
    bad = [a for a in unknown if a.startswith("-")]
    if not bad:
        stray = [a for a in unknown if not a.startswith("-")]
        if stray:
            raise UnknownOptionError(f"unexpected argument {stray[0]!r} (options take --name=value)")
        return
    name = bad[0].split("=", 1)[0]
    close = difflib.get_close_matches(name, [*own_options, *beam_option_names()], n=1, cutoff=0.6)
    hint = f": did you mean {close[0]}?" if close else " (neither a vlcurate option nor a Beam pipeline option)"
    raise UnknownOptionError(f"unknown option {name}{hint}")
