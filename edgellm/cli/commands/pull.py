"""`edgellm pull owner/repo[:QUANT]`: the quant that fits this machine best, downloaded into the store."""

from __future__ import annotations

import argparse
import json

from edgellm.cli.arguments import add_min_quality_flag, argument_type
from edgellm.cli.progress import ProgressLine
from edgellm.session.flags import non_negative_int

NAME = "pull"
HELP = "download the GGUF quant of a Hugging Face repo that fits this machine best (resumable, verified)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="owner/repo[:QUANT]", help="a GGUF repo on the Hub; :QUANT forces a quant")
    parser.add_argument("--profile", metavar="NAME|FILE", help="choose for another machine (see edgellm plan)")
    parser.add_argument("--dry-run", action="store_true", help="show the choice and why; download nothing")
    parser.add_argument("--json", action="store_true", help="print the choice (quant, files, plan) as JSON")
    parser.add_argument(
        "-c",
        "--ctx-size",
        type=argument_type(non_negative_int),
        default=None,
        metavar="N",
        help="plan for this context",
    )
    parser.add_argument("--offline", action="store_true", help="refuse to use the network (also HF_HUB_OFFLINE)")
    add_min_quality_flag(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm.cli.words import CLI
    from edgellm.errors import OfflineMode
    from edgellm.formatting import gib
    from edgellm.hub import client
    from edgellm.hub.refs import parse_ref
    from edgellm.plan import report
    from edgellm.session import opening
    from edgellm.session.flags import config_wishes
    from edgellm.session.remote import choose_remote, plan_forced_quant, pull
    from edgellm.storage import store
    from edgellm.storage.specs import read_spec
    from edgellm.words import notice, say

    ref = parse_ref(args.ref)
    profile = opening.profile_named(args.profile)
    if args.offline or client.offline():
        stored = store.find(ref.name)
        if stored is None:
            raise OfflineMode(f"{ref.name} is not in the store and offline mode is on; pull it without --offline")
        print(stored.path(store.store_dir()))
        return 0
    wishes = config_wishes(ctx=args.ctx_size, min_quality=args.min_quality)  # config.toml's, and -c, --min-quality
    show = ProgressLine(show_progress=not args.json)  # --json: notices only, no progress line
    choice = choose_remote(ref, profile, wishes, plan_forced=args.dry_run)
    model = None
    if not args.dry_run:
        model = pull(choice, show)
        if choice.plan is None:  # a forced quant: planned from the file now on disk
            choice = plan_forced_quant(choice, read_spec(model.path(store.store_dir())), profile, wishes)
    assert choice.plan is not None and choice.spec is not None  # planned: by choose_remote or from the file
    if choice.warning:
        show(notice(choice.warning, "warning"))
    if args.json:
        data = {
            "name": choice.name,
            "repo": ref.repo,
            "quant": choice.group.quant,
            "commit": choice.commit,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in choice.group.files],
            "size": choice.group.size,
            "considered": [say(line, CLI) for line in choice.considered],
            "plan": report.to_dict(choice.plan, choice.spec, profile, terms=CLI),
        }
        if model is not None:
            data["path"] = str(model.path(store.store_dir()))
        print(json.dumps(data, indent=2))
        return 0
    print(f"{choice.name}: {gib(choice.group.size)} in {len(choice.group.files)} file(s), for {profile.name}")
    for line in choice.considered:
        print(f"  {say(line, CLI)}")
    print(
        f"  plan: n_gpu_layers {choice.plan.n_gpu_layers}, context {choice.plan.n_ctx}, kv {choice.plan.kv}, "
        f"{gib(choice.plan.needed)}"
    )
    if model is not None:
        print(model.path(store.store_dir()))  # the local path last, as `hf download` prints it
    return 0
