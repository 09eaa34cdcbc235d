"""The command line's words for what edgellm says: each setting by its flag (`-c 2048`), each way out as a command.

The sentences are edgellm.words'; this names what the person types. The REPL, started by `chat --headless`, uses
the same: its model was opened with these flags.
"""

from __future__ import annotations

from edgellm.errors import EdgellmError
from edgellm.events import Notice
from edgellm.reasons import Reason, Value
from edgellm.session.flags import MODEL_FLAGS
from edgellm.words import MODEL_FILE_WAYS, say

FLAGS = {
    "ctx_size": "-c",
    "kv": "--kv",
    "flash_attn": "-fa",
    "gpu_layers": "-ngl",
    "threads": "-t",
    "force": "--force",
    "model": "-m",
    "offline": "--offline",
    "rpc": "--rpc",
    "profile": "--profile",
    "quant": "--quant",
    "outtype": "--outtype",
    "output": "-o",
    "keep_checkpoint": "--keep-checkpoint",
}
CONFIG_KEYS = {flag.dest for flag in MODEL_FLAGS}  # settings config.toml may hold as well
WAYS = {
    **MODEL_FILE_WAYS,
    "model_missing": "check the path (-m takes a .gguf file or a store name: `edgellm ls`)",
    "model_unreadable": "check the path (-m takes a .gguf file)",
    "find_models": (
        "`edgellm recommend` suggests some and `edgellm pull owner/repo` fetches one; or pass -m PATH/TO/MODEL.gguf"
    ),
    "name_model": "pass -m PATH/TO/MODEL.gguf, a store name, or -hf REPO",
    "remove_model": "remove it (`edgellm rm` for the store)",
    "show_split": "`edgellm plan --rpc` shows where",
    "measure_flash_attn": "`edgellm bench -fa on,off` measures it",
}


class CliTerms:
    """Settings as flags, ways out as commands."""

    def setting(self, name: str, value: Value = None) -> str:
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        return flag if value is None else f"{flag} {value}"

    def change(self, name: str, value: Value = None) -> str:
        return f"pass {self.setting(name, value)}"

    def unset(self, name: str) -> str:
        flag = self.setting(name)
        return f"drop {flag} (or {name.replace('_', '-')} in config.toml)" if name in CONFIG_KEYS else f"drop {flag}"

    def way(self, name: str) -> str:
        return WAYS.get(name, "")


CLI = CliTerms()


def explain(error: EdgellmError) -> str:
    """An error as the command line says it."""
    return error.explain(CLI)


def told(reason: Reason, kind: str = "note") -> Notice:
    """A reason as a notice the command line shows."""
    return Notice(say(reason, CLI), kind)
