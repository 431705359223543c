"""`hallelujah completion bash`: a bash completion script made from the parser itself, so it
names every command, option and choice there is (`eval "$(hallelujah completion bash)"`)."""
from __future__ import annotations

import argparse
import shlex


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The script: the command after the global options, then that command's options, an
    option's choices after it, and file names otherwise."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    top = [s for a in parser._actions for s in a.option_strings]
    cases = []
    for name, sub in commands.items():
        options = [s for a in sub._actions for s in a.option_strings]
        after = " ".join(f"{'|'.join(a.option_strings)}) COMPREPLY=($(compgen -W "
                         f"{shlex.quote(' '.join(map(str, a.choices)))} -- \"$cur\")); return ;;"
                         for a in sub._actions if a.choices and a.option_strings)
        cases.append(f"    {name}) opts={shlex.quote(' '.join(options))}"
                     + (f"\n      case \"$prev\" in {after} esac" if after else "") + " ;;")
    return f"""_hallelujah() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} cmd="" opts="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in
      --at|--ca|--token) ((i++)) ;;
      -*) ;;
      *) cmd=${{COMP_WORDS[i]}}; break ;;
    esac
  done
  if [[ -z $cmd ]]; then
    [[ $prev == --at || $prev == --ca || $prev == --token ]] && return
    COMPREPLY=($(compgen -W {shlex.quote(' '.join([*commands, *top]))} -- "$cur")); return
  fi
  case "$cmd" in
{chr(10).join(cases)}
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi
}}
complete -o filenames -F _hallelujah hallelujah
"""
