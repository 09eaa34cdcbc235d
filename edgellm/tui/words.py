"""The TUI's words for what edgellm says: settings as the app knows them (config.toml's keys, which the app is
started with), ways out as its screens and buttons. The sentences are edgellm.words'; this names what the person
uses here."""

from __future__ import annotations

from edgellm.errors import EdgellmError
from edgellm.events import Notice
from edgellm.reasons import Reason, Value
from edgellm.words import MODEL_FILE_WAYS, say, worded

CONFIG_KEYS = {
    "ctx_size": "ctx-size",
    "kv": "kv",
    "flash_attn": "flash-attn",
    "gpu_layers": "gpu-layers",
    "threads": "threads",
    "force": "force",
    "offline": "offline",
    "load_timeout": "load-timeout",
}  # what config.toml sets for the app
SETTINGS = {
    **CONFIG_KEYS,
    "rpc": "the RPC workers",
    "model": "the model",
    "profile": "the device profile",
    "quant": "the quant",
}
WAYS = {
    **MODEL_FILE_WAYS,
    "model_missing": "pick a model on Home (F2) or Models (F3)",
    "model_unreadable": "pick a model on Home (F2) or Models (F3)",
    "find_models": "Models (F3) lists the catalog's models that fit and downloads one",
    "name_model": "pick one on Home (F2) or Models (F3)",
    "remove_model": "remove it first",
    "show_split": "`edgellm plan --rpc` shows where",
}


class TuiTerms:
    """Settings by their config.toml keys (the app plans with them), ways out as screens."""

    def setting(self, name: str, value: Value = None) -> str:
        key = SETTINGS.get(name)
        if key is None:
            return ""  # a setting of the command line alone (an output file, a checkpoint kept)
        return key if value is None else f"{key} {value}"

    def change(self, name: str, value: Value = None) -> str:
        key = CONFIG_KEYS.get(name)
        if key is not None:
            return f"set {key} in config.toml" if value is None else f"set {key} = {value} in config.toml"
        if name == "quant" and value is not None:
            return f"choose {value} as the quant"
        return "choose another"

    def unset(self, name: str) -> str:
        key = CONFIG_KEYS.get(name)
        return f"remove {key} from config.toml" if key else f"leave {SETTINGS.get(name, name)} to edgellm"

    def way(self, name: str) -> str:
        return WAYS.get(name, "")


TUI = TuiTerms()


def explain(error: BaseException) -> str:
    """An error as the app says it; one it does not expect is named as such, with where its details are."""
    if isinstance(error, EdgellmError):
        return error.explain(TUI)
    return (
        f"Something unexpected went wrong: {type(error).__name__}: {error}. The app goes on; the details are "
        f"in the log (EDGELLM_HOME/logs/tui.log)."
    )


def told(notice: Notice) -> str:
    """A notice as the app shows it."""
    return worded(notice, TUI)


def said(reason: Reason) -> str:
    """A reason as the app shows it."""
    return say(reason, TUI)
