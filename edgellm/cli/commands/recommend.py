"""`edgellm recommend`: the catalog's chat models that fit this machine and run at a usable speed, best first."""

from __future__ import annotations

import argparse
import json

from edgellm.cli.arguments import add_min_quality_flag

NAME = "recommend"
HELP = "rank the catalog's chat models (and quants) that fit this machine at 5 tokens/s or more"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME|FILE", help="recommend for another machine (see edgellm plan)")
    parser.add_argument("--json", action="store_true", help="print the ranking as JSON")
    parser.add_argument(
        "--min-speed",
        type=float,
        default=5.0,
        metavar="T/S",
        help="the slowest estimated decode speed to recommend (default 5 tokens/s)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="estimate file sizes instead of asking the Hub (also HF_HUB_OFFLINE)"
    )
    add_min_quality_flag(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm.bench import results
    from edgellm.catalog.recommend import recommend
    from edgellm.formatting import gib
    from edgellm.hub import client
    from edgellm.session import opening
    from edgellm.session.flags import config_wishes
    from edgellm.words import kld_short

    profile = opening.profile_named(args.profile)
    samples = results.calibration_samples(profile)
    result = recommend(
        profile,
        args.min_speed,
        online=not (args.offline or client.offline()),
        samples=samples,
        measured=results.measured_by_repo(profile),
        wishes=config_wishes(min_quality=args.min_quality),
        qualities=results.quality_by_repo(),
    )
    if args.json:
        print(
            json.dumps(
                {
                    "profile": profile.name,
                    "min_tokens_per_s": args.min_speed,
                    "sizes": "hub" if result.online else "estimated",
                    "hub_unreachable": result.unreachable,
                    "calibration_samples": [
                        {
                            "placement": sample.placement,
                            "weights_bytes": sample.weights_bytes,
                            "ratio": round(sample.ratio, 4),
                        }
                        for sample in samples
                    ],
                    "recommended": [pick.as_dict() for pick in result.picks],
                    "left_out": result.left_out,
                },
                indent=2,
            )
        )
        return 0
    if not result.picks:
        print(f"nothing in the catalog runs at {args.min_speed:g} tokens/s or more on {profile.name}:")
    else:
        note = (
            ""
            if result.online
            else " (file sizes estimated: the Hub could not be reached)"
            if result.unreachable
            else " (file sizes estimated: offline)"
        )
        print(f"Chat models for {profile.name}, best first{note}:")
        print(
            f"  {'model':<24} {'quant':<7} {'size':>9} {'~tok/s':>7} {'measured':>8} {'KLD':>7}  {'where':<14} licence"
        )
        for pick in result.picks:
            measured = "—" if pick.measured_tokens_per_s is None else f"{pick.measured_tokens_per_s:.1f}"
            kld = kld_short(pick.kld, pick.kld_measured)
            print(
                f"  {pick.name:<24} {pick.quant:<7} {gib(pick.size):>10} {pick.tokens_per_s:>7.1f} "
                f"{measured:>8} {kld:>7}  {pick.where:<14} {pick.licence}"
            )
        print(
            "  (KLD: what the quant gives up, its KL divergence from the original; ~ a published prior, else measured)"
        )
        calibrated = sum(pick.calibrated for pick in result.picks)
        if calibrated:
            print(
                f"  (~tok/s: {calibrated} of these estimates calibrated by this device's `edgellm bench` results "
                f"for models of similar size)"
            )
        top = result.picks[0]
        print(f"\nTo get the first: edgellm pull {top.repo}:{top.quant}")
        if top.draft:
            print(f"Faster replies with a draft model (speculative decoding): {top.as_dict()['chat']}")
    for line in result.left_out:
        print(f"  left out: {line}")
    return 0
