"""`edgellm serve`: an HTTP server with the OpenAI and Ollama APIs for the stored models, each fitted to this machine
(`-m` loads one at once)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from edgellm.cli.arguments import add_model_flags, add_parallel_flag, add_rpc_flag, argument_type
from edgellm.session.flags import non_negative_int, positive_int

if TYPE_CHECKING:
    from edgellm.hw.profile import DeviceProfile
    from edgellm.session.flags import Flags
    from edgellm.session.served import Entry, ServedModels

NAME = "serve"
HELP = (
    "serve models over HTTP with the OpenAI and Ollama APIs, loaded by name and unloaded when idle, with /health "
    "and /metrics"
)


def port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise ValueError("must be from 1 to 65535 (0: any free port)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; any other needs an API key)",
    )
    group.add_argument(
        "--port", type=argument_type(port), default=8080, help="port to listen on (default 8080; 0: any free port)"
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` (default: $EDGELLM_API_KEY; keep it out of the "
        "command line on shared machines)",
    )
    add_parallel_flag(
        group,
        "auto",
        "requests decoding together (continuous batching), each with the full context, in one KV pool; auto: the "
        "most this machine gains from (`edgellm bench --parallel`) that fits the memory (default auto)",
    )
    group.add_argument(
        "--queue",
        type=argument_type(non_negative_int),
        default=32,
        metavar="N",
        help="requests that may wait while every slot is generating; past it, 503 with Retry-After (default 32)",
    )
    group.add_argument(
        "--cors",
        action="append",
        metavar="ORIGIN",
        help="let web pages from ORIGIN call the API (repeatable; default: none)",
    )
    group.add_argument(
        "--alias", metavar="NAME", help="the -m model's name in /v1/models and /api/tags (default: the file's name)"
    )
    group.add_argument(
        "--keep-alive",
        type=argument_type(keep_alive_flag),
        default=DEFAULT_KEEP_ALIVE,
        metavar="DURATION",
        help="how long a model loaded by a request stays loaded once idle: seconds or 30s, 5m, 1h; -1: forever, "
        "0: unload after each reply; a request's keep_alive overrides it; the -m model stays until a request "
        "says otherwise (default 5m)",
    )
    group.add_argument(
        "--models-max",
        type=argument_type(positive_int),
        default=3,
        metavar="N",
        help="models loaded at once at most; fewer when the planner says they do not fit together (default 3)",
    )
    group.add_argument(
        "--models-memory",
        type=argument_type(positive_int),
        metavar="MIB",
        help="RAM the loaded models may take together, beside --ram-margin (default: what this machine has free)",
    )
    group.add_argument(
        "--max-body-mb",
        type=argument_type(positive_int),
        default=4,
        metavar="MB",
        help="largest request body accepted, in MiB (default 4)",
    )
    add_rpc_flag(
        parser,
        "split the model across this machine and these workers (`edgellm worker`), as `edgellm "
        "plan --rpc` shows; a worker lost mid-reply ends that reply with an error event",
    )
    add_model_flags(parser)


SERVER_PACKAGES = ("fastapi", "uvicorn")  # the `server` extra
DEFAULT_KEEP_ALIVE = 300.0


def keep_alive_flag(text: str) -> float:
    """--keep-alive: what a request's keep_alive takes (seconds, a duration such as 5m, -1 for forever)."""
    from edgellm.api.ollama import OllamaError, keep_alive

    try:
        value = keep_alive(text)
    except OllamaError:
        raise ValueError("must be seconds or a duration such as 30s, 5m or 1h (-1: forever)") from None
    assert value is not None
    return value


def check_server_installed() -> None:
    """The base install leaves the web server out: say what to install rather than fail on an import."""
    import importlib.util

    from edgellm.errors import EdgellmError

    missing = [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgellmError(
            f"edgellm serve needs {' and '.join(missing)}, which this install leaves out: "
            "pip install 'edgellm[server]' (the user install, scripts/install.py --user, includes them)"
        )


def served_models(
    args: argparse.Namespace, flags: Flags, profile: DeviceProfile, default: Entry | None = None
) -> ServedModels:
    """The models the server loads by name, as its flags say; each load's bar on stderr."""
    from edgellm.cli.progress import ProgressLine
    from edgellm.server.launch import say
    from edgellm.session.served import ServedModels

    return ServedModels(
        flags,
        profile,
        keep_alive=args.keep_alive,
        models_max=args.models_max,
        queue=args.queue,
        memory_cap=args.models_memory * 2**20 if args.models_memory else None,
        default=default,
        log=say,
        report=ProgressLine(),
    )


def main(args: argparse.Namespace) -> int:
    import os
    import sys

    check_server_installed()
    from edgellm.cli.host import open_host
    from edgellm.cli.words import CLI
    from edgellm.server.config import ServerConfig
    from edgellm.server.launch import STOPPED_WHILE_LOADING, Listen, api_key_from, check_exposure, say, serve
    from edgellm.session.flags import flags_of
    from edgellm.session.served import Entry
    from edgellm.words import say as words_say

    flags = flags_of(args)
    api_key = api_key_from(args.api_key)
    check_exposure(args.host, api_key)  # before a download or a load
    if flags.system_prompt:
        print("edgellm: note: serve takes the system prompt from each request; -sys is used by chat", file=sys.stderr)
    config = ServerConfig(
        defaults=flags.generation_options(),
        api_key=api_key,
        max_body_bytes=args.max_body_mb * 2**20,
        cors_origins=tuple(args.cors or ()),
    )
    listen = Listen(args.host, args.port, args.queue)
    if not (flags.model or flags.hf_repo):
        from edgellm.hw.detect import detect_this_machine

        say("no -m: serving the stored models (`edgellm ls`), each loaded when a request names it")
        return serve(config, listen, served_models(args, flags, detect_this_machine()))
    _, planned = open_host(flags)
    path, params = planned.choice.path, planned.params
    default = Entry(
        args.alias or path.name.removesuffix(".gguf"), path, planned.choice.spec.file_bytes, path.stat().st_mtime
    )
    models = served_models(args, flags, planned.profile, default)
    layers = {-1: "all layers"}.get(params.n_gpu_layers, f"{params.n_gpu_layers} layers")
    where = "on the GPU"
    if planned.split is not None:
        layers = f"{planned.split.layers_on_workers} of {planned.choice.spec.n_layers} layers"
        where = f"on {planned.split.workers} RPC worker{'s' if planned.split.workers > 1 else ''}"
    if flags.rpc and args.parallel not in (None, "auto", 1):
        print(
            "edgellm: note: a model split across workers serves one request at a time; --parallel is left aside",
            file=sys.stderr,
        )
    slots = f"{params.parallel} slots of " if params.parallel else ""
    say(
        f"loading {path.name}: {slots}{params.n_ctx}-token context, {layers} {where}, "
        f"{params.n_threads} threads, KV cache {params.kv}"
    )
    why = planned.choice.plan.reasons.get("parallel") if planned.choice.plan else None
    if why is not None:
        say(f"{params.parallel} slots: {words_say(why, CLI)}")
    code = serve(config, listen, models, default, planned)
    if code == STOPPED_WHILE_LOADING:
        sys.stderr.flush()
        os._exit(0)  # the model is still loading on its thread: a clean stop all the same
    return code
