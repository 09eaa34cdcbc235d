"""Shell completion scripts for bash, zsh and fish, written from the argparse parsers (cli/introspect.py): the
commands, each command's flags, the choices of a flag that has them, built-in device profiles for --profile, and the
stored models' names for -m (the scripts ask `edgellm completion --models` when they complete, so a model pulled
after the script was installed is offered too). Everything else completes as a file name.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from edgellm.cli.introspect import Argument, Command, commands

SHELLS = ("bash", "zsh", "fish")
MODELS_CALL = "edgellm completion --models 2>/dev/null"


def value_kind(command: Command, argument: Argument) -> str:
    """What an argument's value completes as: 'none' (a switch), 'choices', 'model', 'profile' or 'file'."""
    if argument.flags and not argument.takes_value:
        return "none"
    if argument.choices:
        return "choices"
    if argument.dest == "model" or (command.name == "rm" and argument.dest == "name"):
        return "model"
    if argument.dest == "profile":
        return "profile"
    return "file"


def _profile_names() -> list[str]:
    from edgellm.hw.builtin import builtin_names

    return builtin_names()


def _words(items: Iterable[str]) -> str:
    return " ".join(items)


# bash ------------------------------------------------------------------------------------------------------------


def _bash_values(command: Command, indent: str) -> list[str]:
    """A `case "$prev"` over the flags that take a value: their choices, profiles or models; after any other, an
    empty reply (bash then completes a file name)."""
    lines = [f'{indent}case "$prev" in']
    others: list[str] = []
    for argument in command.arguments:
        if not argument.flags or not argument.takes_value:
            continue
        kind = value_kind(command, argument)
        pattern = "|".join(argument.flags)
        if kind == "choices":
            reply = f'COMPREPLY=($(compgen -W "{_words(argument.choices)}" -- "$cur"))'
        elif kind == "profile":
            reply = f'COMPREPLY=($(compgen -W "{_words(_profile_names())}" -- "$cur") $(compgen -f -- "$cur"))'
        elif kind == "model":
            reply = f'COMPREPLY=($(compgen -W "$({MODELS_CALL})" -- "$cur") $(compgen -f -- "$cur"))'
        else:
            others.append(pattern)
            continue
        lines.append(f"{indent}    {pattern}) {reply}; return ;;")
    if others:
        lines.append(f"{indent}    {'|'.join(others)}) return ;;")
    lines.append(f"{indent}esac")
    return lines


def _bash_positionals(command: Command) -> str:
    """The words a positional argument completes to (stored models, choices); empty: bash completes a file."""
    for argument in command.arguments:
        if argument.positional and value_kind(command, argument) == "model":
            return f'$(compgen -W "$({MODELS_CALL})" -- "$cur")'
        if argument.positional and argument.choices:
            return f'$(compgen -W "{_words(argument.choices)}" -- "$cur")'
    return ""


def _bash_reply(flags: str, positionals: str, indent: str) -> str:
    return (
        f'{indent}if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{flags}" -- "$cur")); '
        f"else COMPREPLY=({positionals}); fi ;;"
    )


def bash(parser: argparse.ArgumentParser) -> str:
    program, *subcommands = commands(parser)
    names = _words(c.name for c in subcommands)
    lines = [
        "# edgellm completion for bash. Load it in ~/.bashrc with:",
        '#   eval "$(edgellm completion bash)"',
        "_edgellm() {",
        "    # the words of the line up to the cursor, split at spaces only: bash's own COMP_WORDS are split at ':'",
        "    # too, and a stored model's name holds one (owner/repo:QUANT)",
        '    local line="${COMP_LINE:0:COMP_POINT}" cur prev command="" i words',
        '    read -ra words <<< "$line"',
        '    [[ -z "$line" || "$line" == *[[:space:]] ]] && words+=("")',
        '    cur="${words[${#words[@]}-1]}" prev="${words[${#words[@]}-2]}"',
        "    for ((i = 1; i < ${#words[@]} - 1; i++)); do",
        '        case "${words[i]}" in -*) ;; *) command="${words[i]}"; break ;; esac',
        "    done",
        '    _edgellm_reply "$cur" "$prev" "$command"',
        "    if [[ \"$cur\" == *:* ]]; then  # bash replaces only what follows the last ':'",
        '        local kept="${cur%"${cur##*:}"}"',
        '        COMPREPLY=("${COMPREPLY[@]#"$kept"}")',
        "    fi",
        "}",
        "_edgellm_reply() {",
        '    local cur="$1" prev="$2" command="$3"',
        '    case "$command" in',
        '        "")',
        _bash_reply(_words(program.flags), f'$(compgen -W "{names}" -- "$cur")', " " * 12),
    ]
    for command in subcommands:
        lines.append(f"        {command.name})")
        lines += _bash_values(command, " " * 12)
        lines.append(_bash_reply(_words(command.flags), _bash_positionals(command), " " * 12))
    lines += ["    esac", "}", "complete -o default -F _edgellm edgellm", ""]
    return "\n".join(lines)


# zsh -------------------------------------------------------------------------------------------------------------


def _zsh_text(text: str) -> str:
    """Help text inside a single-quoted _arguments spec: no quotes, brackets or colons to end it early."""
    cleaned = text.replace("'", "").replace("[", "(").replace("]", ")").replace(":", " -").replace("\\", "")
    return " ".join(cleaned.split())[:120]


def _zsh_action(command: Command, argument: Argument) -> str:
    kind = value_kind(command, argument)
    if kind == "choices":
        return f"({_words(argument.choices)})"
    if kind == "model":
        return "_edgellm_models"
    if kind == "profile":
        return f"_alternative 'profiles:profile:({_words(_profile_names())})' 'files:file:_files'"
    return "_files"


def _zsh_specs(command: Command) -> list[str]:
    specs: list[str] = []
    for argument in command.arguments:
        help_text = _zsh_text(argument.help)
        if argument.positional:
            specs.append(f"':{argument.dest}:{_zsh_action(command, argument)}'")
            continue
        for flag in argument.flags:
            if argument.takes_value:
                action = _zsh_action(command, argument).replace("'", '"')
                specs.append(f"'{flag}[{help_text}]:{_zsh_text(argument.metavar or 'value')}:{action}'")
            else:
                specs.append(f"'{flag}[{help_text}]'")
    return specs


def zsh(parser: argparse.ArgumentParser) -> str:
    program, *subcommands = commands(parser)
    lines = [
        "#compdef edgellm",
        "# edgellm completion for zsh. Load it in ~/.zshrc (after compinit) with:",
        '#   eval "$(edgellm completion zsh)"',
        "_edgellm_models() {",
        "    local -a names",
        f'    names=(${{(f)"$({MODELS_CALL})"}})',
        "    _alternative 'models:model:compadd -a names' 'files:file:_files'",
        "}",
        "_edgellm() {",
        '    local curcontext="$curcontext" state line',
        "    local -a commands",
        "    commands=(",
    ]
    lines += [f"        '{c.name}:{_zsh_text(c.help)}'" for c in subcommands]
    lines += [
        "    )",
        "    _arguments -C " + " ".join(_zsh_specs(program)) + " '1: :->command' '*:: :->arguments'",
        '    case "$state" in',
        "        command) _describe command commands ;;",
        "        arguments)",
        '            case "$line[1]" in',
    ]
    for command in subcommands:
        lines.append(f"                {command.name}) _arguments " + " ".join(_zsh_specs(command)) + " ;;")
    lines += [
        "            esac ;;",
        "    esac",
        "}",
        'if [ "$funcstack[1]" = "_edgellm" ]; then _edgellm "$@"; else compdef _edgellm edgellm; fi',
        "",
    ]
    return "\n".join(lines)


# fish ------------------------------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + " ".join(text.split()).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_flag(flag: str) -> str:
    if flag.startswith("--"):
        return f"-l {flag[2:]}"
    return f"-s {flag[1:]}" if len(flag) == 2 else f"-o {flag[1:]}"


def _fish_lines(command: Command, condition: str) -> list[str]:
    lines: list[str] = []
    for argument in command.arguments:
        kind = value_kind(command, argument)
        if kind == "choices":
            values = f" -x -a {_fish_quote(_words(argument.choices))}"
        elif kind == "model":
            values = f" -r -F -a '({MODELS_CALL})'"
        elif kind == "profile":
            values = f" -r -F -a {_fish_quote(_words(_profile_names()))}"
        elif kind == "file":
            values = " -r -F"
        else:
            values = ""
        if argument.positional:
            lines.append(f"complete -c edgellm -n {condition}{values.replace(' -r', '')}")
            continue
        flags = " ".join(_fish_flag(flag) for flag in argument.flags)
        lines.append(f"complete -c edgellm -n {condition} {flags}{values} -d {_fish_quote(argument.help)}")
    return lines


def fish(parser: argparse.ArgumentParser) -> str:
    program, *subcommands = commands(parser)
    lines = [
        "# edgellm completion for fish. Load it with:",
        "#   edgellm completion fish > ~/.config/fish/completions/edgellm.fish",
        "complete -c edgellm -f",
    ]
    for command in subcommands:
        lines.append(f"complete -c edgellm -n __fish_use_subcommand -a {command.name} -d {_fish_quote(command.help)}")
    lines += _fish_lines(program, "__fish_use_subcommand")
    for command in subcommands:
        lines += _fish_lines(command, f"'__fish_seen_subcommand_from {command.name}'")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser)
