"""What edgellm tells a person, in words: `say` words a `Reason` (edgellm.reasons), and every way out in it is named in
the `Terms` of the front end that says it: a flag on the command line (`-c 2048`), a setting of the TUI, a field of
the API. `PLAIN` names them in no front end's words; an error's message is its reason said plainly.

Pure: codes in, text out. The planner, the opener and the engine produce reasons; only front ends choose the terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from edgellm.events import Notice
from edgellm.formatting import size
from edgellm.reasons import Reason, Value


class Terms(Protocol):
    """How a front end names what a person can do about a reason."""

    def setting(self, name: str, value: Value = None) -> str:
        """The setting `name` (set to `value`, when given) as this front end's person changes it: `-c 2048`.
        Names: ctx_size, kv, flash_attn, gpu_layers, threads, force, model, offline, rpc, profile."""
        ...

    def change(self, name: str, value: Value = None) -> str:
        """The imperative of changing it: `pass -c 2048`."""
        ...

    def unset(self, name: str) -> str:
        """The imperative of leaving it to edgellm: `drop -ngl (or gpu-layers in config.toml)`."""
        ...

    def way(self, name: str) -> str:
        """A way out that is not a setting: find_models (find a model that fits), name_model (say which model), and
        model_PROBLEM for a GGUF file that cannot be used (model_missing, model_truncated, ...)."""
        ...


class PlainTerms:
    """No front end's words: what a log line or an error's own message says."""

    NOUNS = {
        "ctx_size": ("the context size", "a {}-token context"),
        "kv": ("the KV cache type", "a {} KV cache"),
        "flash_attn": ("flash attention", "flash attention {}"),
        "gpu_layers": ("the GPU layer count", "{} layers on the GPU"),
        "threads": ("the thread count", "{} threads"),
        "force": ("forcing it", "forcing it"),
        "model": ("another model", "the model {}"),
        "offline": ("offline mode", "offline mode"),
        "rpc": ("the RPC workers", "the workers {}"),
        "profile": ("the device profile", "the device profile {}"),
        "quant": ("the quant", "the quant {}"),
        "outtype": ("the output type", "the output type {}"),
        "output": ("the output", "{}"),
        "keep_checkpoint": ("keeping the checkpoint", "keeping the checkpoint"),
        "imatrix": ("an importance matrix", "the importance matrix {}"),
        "min_quality": ("the quality bound", "a quality bound of {}"),
        "reference": ("a reference model", "the reference {}"),
        "load_timeout": ("the load timeout", "a load timeout of {} s"),
    }

    def setting(self, name: str, value: Value = None) -> str:
        general, particular = self.NOUNS.get(name, (name, f"{name} {{}}"))
        return general if value is None else particular.format(value)

    def change(self, name: str, value: Value = None) -> str:
        return f"choose {self.setting(name, value)}"

    def unset(self, name: str) -> str:
        return f"leave {self.setting(name)} to edgellm"

    def way(self, name: str) -> str:
        return PLAIN_WAYS.get(name, "")


# what a GGUF file's problem asks of the person (front ends add where they name files and models)
MODEL_FILE_WAYS = {
    "model_directory": "pass the .gguf file inside it",
    "model_truncated": "the file is incomplete: download or copy it again",
    "model_incomplete": "the file is incomplete: download or copy it again",
    "model_permission": "make the file readable by this user",
    "model_shards": "keep every part of a split model together",
    "model_not-gguf": "pass a GGUF model file (convert other formats to GGUF first)",
    "model_corrupt": "pass a GGUF model file (convert other formats to GGUF first)",
}
PLAIN_WAYS = {
    **MODEL_FILE_WAYS,
    "model_missing": "check the path",
    "model_unreadable": "check the path",
    "find_models": "find one that fits and fetch it",
    "name_model": "name a model file",
    "remove_model": "remove it",
    "show_split": "the plan of the split shows where",
}
PLAIN = PlainTerms()


def say(said: Reason, terms: Terms = PLAIN) -> str:
    """The reason in words, its ways out in `terms`."""
    sentence = SENTENCES.get(said.code)
    if sentence is None:
        return said.code.replace("_", " ")
    return sentence(said, terms)


# --- the sentences, by code ---------------------------------------------------------------------------------------

Sentence = Callable[[Reason, Terms], str]
SENTENCES: dict[str, Sentence] = {}


def sentence(code: str) -> Callable[[Sentence], Sentence]:
    def register(function: Sentence) -> Sentence:
        SENTENCES[code] = function
        return function

    return register


# why the planner chose each setting


@sentence("no_gpu")
def _(r: Reason, t: Terms) -> str:
    return "no GPU on this machine"


@sentence("gpu_unusable")
def _(r: Reason, t: Terms) -> str:
    return f"{r['gpu']} is present but this llama.cpp build is {r['backend']}-only (see edgellm doctor)"


@sentence("gpu_all_asked")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('gpu_layers', 'all')}: every layer on the GPU, whatever the estimate"


@sentence("gpu_layers_asked")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('gpu_layers', r['layers'])} as asked"


@sentence("gpu_all_fit")
def _(r: Reason, t: Terms) -> str:
    return f"all {r['n_layers']} layers and the output fit in {r['gpu']}'s budget"


@sentence("gpu_some_fit")
def _(r: Reason, t: Terms) -> str:
    return f"the output and {r['layers']} of {r['n_layers']} layers fit in {r['gpu']}'s budget; the rest run on the CPU"


@sentence("gpu_none_fit")
def _(r: Reason, t: Terms) -> str:
    return f"not even the output layer fits in {r['gpu']}'s budget: all on the CPU"


@sentence("ctx_asked")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('ctx_size')} as asked (trained context {r['trained']})"


@sentence("ctx_reduced_to_fit")
def _(r: Reason, t: Terms) -> str:
    return f"reduced from {r['from']} to fit the memory budget (trained context {r['trained']})"


@sentence("ctx_default")
def _(r: Reason, t: Terms) -> str:
    return f"the default {r['default']} (trained context {r['trained']})"


@sentence("ctx_trained")
def _(r: Reason, t: Terms) -> str:
    return f"the model's trained context (below the default {r['default']})"


@sentence("threads_asked")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('threads')} as asked"


@sentence("threads_performance_cores")
def _(r: Reason, t: Terms) -> str:
    return f"the {r['cores']} physical performance cores" + (
        " (efficiency cores and SMT siblings slow llama.cpp down)" if r["siblings"] else ""
    )


@sentence("flash_attn_off_asked")
def _(r: Reason, t: Terms) -> str:
    return "off as asked"


@sentence("flash_attn_no_kernels")
def _(r: Reason, t: Terms) -> str:
    return "off: this backend has no flash-attention kernels"


@sentence("flash_attn_on")
def _(r: Reason, t: Terms) -> str:
    return "on: the backend has the kernels; it shrinks the attention buffers"


@sentence("kv_asked")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('kv', r['kv'])} as asked"


@sentence("kv_quantized_to_fit")
def _(r: Reason, t: Terms) -> str:
    return f"{r['kv']}: an f16 cache did not fit at this context; q8_0 halves it at no visible quality cost"


@sentence("kv_full")
def _(r: Reason, t: Terms) -> str:
    return "f16: full precision fits"


@sentence("prompt_and_reply_too_long")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the prompt is {r['prompt']} tokens and max_tokens asks for {r['wanted']} more: together more than the "
        f"{r['n_ctx']}-token context; ask for fewer max_tokens or shorten the prompt"
    )


@sentence("parallel_asked")
def _(r: Reason, t: Terms) -> str:
    return f"as asked: {r['parallel']} sequences decode together, each up to {r['n_ctx']} tokens, in one KV pool"


@sentence("parallel_default")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['parallel']}, llama-server's default: this device has no `edgellm bench --parallel` results yet, "
        f"which would tell how much it gains"
    )


@sentence("parallel_measured")
def _(r: Reason, t: Terms) -> str:
    counts = ", ".join(str(count) for count in r["measured"])
    if r["parallel"] == r["base"]:
        return f"{r['parallel']}: measured on this device ({counts}), more sequences did not decode faster in all"
    return (
        f"{r['parallel']}: measured on this device ({counts}), {r['parallel']} sequences decode "
        f"{r['gain']}× the aggregate of {r['base']} ({r['tokens_per_s']} tokens/s), and more gained too little"
    )


@sentence("parallel_fewer")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['parallel']}: {r['wanted']} sequences' KV cache would not fit beside the {r['n_ctx']}-token context "
        f"(wanted: {say(r['why'], t)})"
    )


@sentence("parallel_memory")
def _(r: Reason, t: Terms) -> str:
    return (
        f"1: {r['wanted']} sequences' KV cache would not fit beside the {r['n_ctx']}-token context; "
        f"a smaller context ({t.setting('ctx_size')}) leaves room for more"
    )


@sentence("ubatch_default")
def _(r: Reason, t: Terms) -> str:
    return f"{r['ubatch']}: the default micro-batch"


@sentence("ubatch_reduced_to_fit")
def _(r: Reason, t: Terms) -> str:
    return f"{r['ubatch']}: a {r['default']}-token batch's buffers did not fit (prompts are read a little slower)"


@sentence("mmap_on")
def _(r: Reason, t: Terms) -> str:
    return "on: the weights load instantly and stay in the page cache between runs"


@sentence("mlock_off")
def _(r: Reason, t: Terms) -> str:
    return "off: the budget keeps memory free, and locking needs privileges on most systems"


# what the planner changed to fit (its notices)


@sentence("ctx_reduced")
def _(r: Reason, t: Terms) -> str:
    where = " the devices" if r.get("split") else ""
    return f"context reduced to {r['n_ctx']} tokens to fit{where}; {t.change('ctx_size')} to choose it yourself"


@sentence("kv_quantized")
def _(r: Reason, t: Terms) -> str:
    return f"KV cache quantized to {r['kv']} to keep the context at {r['n_ctx']}"


@sentence("ubatch_reduced")
def _(r: Reason, t: Terms) -> str:
    return f"micro-batch reduced to {r['ubatch']} tokens to fit"


@sentence("forced")
def _(r: Reason, t: Terms) -> str:
    return f"the estimate says this does not fit: {t.setting('force')} runs it anyway and may run out of memory"


# why a plan cannot be made, and what would fit


@sentence("ctx_above_trained")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{t.setting('ctx_size', r['asked'])} is above the model's trained context of {r['trained']} tokens; "
        f"use {t.setting('ctx_size', r['trained'])} or less"
    )


@sentence("kv_needs_flash_attn")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{t.setting('kv', r['kv'])} (a quantized V cache) needs flash attention: use "
        f"{t.setting('flash_attn', 'on')} or auto, or {t.setting('kv', 'f16')}"
    )


def _asked(r: Reason, t: Terms) -> str:
    asked = [t.setting("ctx_size", r["n_ctx"]), t.setting("kv", r["kv"])]
    if r.get("gpu_layers") is not None:
        asked.append(t.setting("gpu_layers", r["gpu_layers"]))
    return " ".join(asked)


@sentence("too_big")
def _(r: Reason, t: Terms) -> str:
    head = f"the model needs {size(r['needed'])} with {_asked(r, t)} but {r['device']} has {size(r['usable'])} usable"
    fix = r["fix"]
    force = f" (or {t.setting('force')})"
    if fix == "gpu_layers":
        return (
            f"{head}; {t.setting('gpu_layers', r['fit_gpu_layers'])} fits (or {t.unset('gpu_layers')} to let "
            f"edgellm choose, or {t.setting('force')})"
        )
    if fix == "ctx":
        fits = t.setting("ctx_size", r["fit_ctx"])
        if r["fit_kv"] != "f16":
            fits += " " + t.setting("kv", r["fit_kv"])
        return f"{head}; {fits} fits" + (force if r["ctx_asked"] else "")
    if fix == "no_quant":
        return f"{head}; no quant of this model fits in what is free: use a smaller model, or free memory"
    return (
        f"{head}; the weights alone are {size(r['weights'])}: a smaller quant of about {r['bpw_fit']:.1f} bits "
        f"per weight (now {r['bpw_now']:.1f}) or a smaller model would fit"
    )


@sentence("no_such_quant_file")
def _(r: Reason, t: Terms) -> str:
    return f"no {r['quant']} file among the candidates ({r['names']})"


@sentence("no_quant_fits")
def _(r: Reason, t: Terms) -> str:
    return "no quant fits: " + "; ".join(say(item, t) for item in r["considered"])


@sentence("split_needs_worker")
def _(r: Reason, t: Terms) -> str:
    return "a split needs this machine and at least one worker"


@sentence("split_too_big")
def _(r: Reason, t: Terms) -> str:
    short = "; ".join(f"{name} needs {size(needs)} of {size(budget)}" for name, needs, budget in r["short"])
    return (
        f"the model does not fit across these devices at {t.setting('ctx_size', r['n_ctx'])}: {short}; add a "
        f"worker, give more memory (--memory on a worker), or use a smaller quant or model"
    )


# the quants of one model, one line each (`plan` and `pull` list them)


def quality_text(figure: tuple[float, bool, str, float] | None) -> str:
    """A quant's KL divergence as the picker says it: "KLD 0.031 vs Q8_0, 92% same top token, measured" or
    "KLD ~0.073 (published prior)"."""
    if figure is None:
        return ""
    kld, measured, reference, same = figure
    if not measured:
        return f"KLD ~{kld:.3g} (published prior)"
    against = f" vs {reference}" if reference else ""
    agreeing = f", {100 * same:.0f}% same top token" if same >= 0 else ""
    return f"KLD {kld:.3g}{against}{agreeing}, measured"


def kld_short(kld: float | None, measured: bool) -> str:
    """A quant's KL divergence in a table cell: "0.512" measured, "~0.073" a published prior, "—" unknown."""
    if kld is None:
        return "—"
    return f"{kld:.3f}" if measured else f"~{kld:.3f}"


@sentence("quant_fits")
def _(r: Reason, t: Terms) -> str:
    where = (
        ", all layers on the GPU" if r["full_offload"] else f", {r['gpu_layers']} layers on the GPU" if r["gpu"] else ""
    )
    quality = quality_text(r["quality"])
    return f"{r['quant']}: fits, {size(r['total'])}{where}" + (f"; {quality}" if quality else "")


@sentence("quant_below_quality")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['quant']}: skipped, {quality_text(r['quality'])} is above the bound {r['bound']:g} "
        f"({t.setting('min_quality')})"
    )


@sentence("quant_gives_up")
def _(r: Reason, t: Terms) -> str:
    ratio = r["ratio"]
    cost = f", about {ratio:.1f}× the divergence" if ratio > 0 else ""
    return (
        f"{r['chosen']} instead of {r['over']}: {size(abs(r['saved']))} {'less' if r['saved'] >= 0 else 'more'}{cost}"
    )


@sentence("quant_does_not_fit")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']}: does not fit ({say(r['why'], t)})"


@sentence("quant_above_cpu_ceiling")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']}: skipped on a CPU-only device (above {r['ceiling']}: slower, no visible quality gain)"


@sentence("quant_would_run_on_cpu")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['quant']}: skipped, its layers would run on the CPU (above {r['ceiling']}: slower, no visible "
        f"quality gain)"
    )


@sentence("quant_full_offload_wins")
def _(r: Reason, t: Terms) -> str:
    return f"{r['chosen']} chosen over {r['over']}: full GPU offload beats a partial one a rank higher"


@sentence("quant_header_unreadable")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']}: header unreadable ({r['error']}); sized from its file size with a wider margin"


# the opener, the engine and the session


@sentence("about")
def _(r: Reason, t: Terms) -> str:
    """A reason about one model (its file, its repo): `NAME: reason`."""
    return f"{r['subject']}: {say(r['reason'], t)}"


@sentence("smallest_file")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{say(r['reason'], t)}. The smallest file is {r['quant']} ({size(r['size'])}); a smaller model would fit "
        f"better"
    )


@sentence("no_model_fits")
def _(r: Reason, t: Terms) -> str:
    return f"no model given, and no model in {r['folder']} fits this machine: {t.way('find_models')}"


@sentence("split_needs_model")
def _(r: Reason, t: Terms) -> str:
    return f"name the model to split: {t.way('name_model')}"


@sentence("split_model_not_stored")
def _(r: Reason, t: Terms) -> str:
    return f"{r['name']} is not stored; pull it first (edgellm pull {r['name']} --dry-run shows what would be fetched)"


@sentence("split_places_layers")
def _(r: Reason, t: Terms) -> str:
    return f"a split places the layers itself ({t.way('show_split')}): {t.unset('gpu_layers')}"


@sentence("bad_profile")
def _(r: Reason, t: Terms) -> str:
    return f"{t.setting('profile')}: {r['problem']}"


@sentence("offline_not_stored")
def _(r: Reason, t: Terms) -> str:
    return f"{r['name']} is not in the store and offline mode is on ({t.setting('offline')} or HF_HUB_OFFLINE)" + (
        f"; pull it first, or {t.way('name_model')}" if r.get("way_out") else ""
    )


@sentence("hub_unreachable")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['repo']}: cannot reach the Hub at {r['endpoint']} ({r['error']}); check the network or use "
        f"{t.setting('offline')} with a stored model"
    )


@sentence("load_out_of_memory")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['path']}: not enough memory to load ({r['line']}); try a smaller {t.setting('ctx_size')} or a "
        f"smaller quant"
    )


@sentence("message_too_long")
def _(r: Reason, t: Terms) -> str:
    return (
        f"this message needs {r['needed']} tokens with the system prompt, more than the {r['available']} the "
        f"context leaves for it; shorten it, or raise {t.setting('ctx_size')}"
    )


@sentence("prompt_too_long")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the prompt is {r['needed']} tokens, which does not leave room in the {r['n_ctx']}-token context; raise "
        f"{t.setting('ctx_size')} or shorten the prompt"
    )


@sentence("input_too_long")
def _(r: Reason, t: Terms) -> str:
    return (
        f"input {r['index'] + 1} is {r['tokens']} tokens, more than the {r['context']}-token embedding context; "
        f"shorten it, let it be truncated, or raise {t.setting('ctx_size')}"
    )


@sentence("worker_refused")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the RPC worker at {r['endpoint']} cannot be used ({r['problem']}); start it there with `edgellm worker "
        f"--port {r['port']}`, or leave it out of {t.setting('rpc')}"
    )


@sentence("bench_beyond_trained")
def _(r: Reason, t: Terms) -> str:
    return f"{_bench_needs(r)}, more than the model's trained context of {r['trained']}: lower --depth, --pp or --tg"


@sentence("bench_beyond_ctx")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{_bench_needs(r)}, more than {t.setting('ctx_size', r['ctx'])}: raise {t.setting('ctx_size')} to "
        f"{r['raise_to']} or lower --depth, --pp or --tg"
    )


@sentence("bench_does_not_fit")
def _(r: Reason, t: Terms) -> str:
    return f"{_bench_needs(r)}: {say(r['reason'], t)}"


def _bench_needs(r: Reason) -> str:
    """What a benchmark asks of the context (bench's own request: its --pp, --tg and --depth)."""
    return f"--pp {r['pp']}, --tg {r['tg']} and --depth {r['depth']} need a {r['needed']}-token context"


# converting and quantizing


@sentence("best_quant_chosen")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']} is the best quant of this model that fits {r['device']} ({t.setting('quant')} names another)"


@sentence("conversion_written")
def _(r: Reason, t: Terms) -> str:
    return f"wrote {r['target']} as {r['quant']}"


@sentence("outtype_cannot_become")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{t.setting('outtype', r['outtype'])} cannot become {r['quant']}; {t.unset('outtype')}, or "
        f"{t.change('quant', r['outtype'].upper())}"
    )


@sentence("outtype_not_a_source")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']} is made from f16, bf16 or f32 weights, not q8_0; {t.unset('outtype')}"


@sentence("target_exists")
def _(r: Reason, t: Terms) -> str:
    return f"{r['target']} exists already; {t.way('remove_model')} or {t.change('output', 'OTHER.gguf')}"


@sentence("target_unwritable")
def _(r: Reason, t: Terms) -> str:
    return f"cannot write {r['target']}: {r['why']}; free some space or {t.change('output', 'a writable folder')}"


@sentence("no_room_to_quantize")
def _(r: Reason, t: Terms) -> str:
    return (
        f"not enough disk to quantize into {r['folder']}: {size(r['free'])} free, up to {size(r['needed'])} "
        f"needed; free some space or {t.change('output', 'elsewhere')}"
    )


@sentence("no_quality_reference")
def _(r: Reason, t: Terms) -> str:
    return (
        f"no reference for {r['model']}: neither the store nor the Hub repo it came from has a {r['arch']} model of "
        f"its shape at a higher precision than {r['quant']}; pull or convert it in F16, BF16 or Q8_0 (`edgellm pull "
        f"REPO:Q8_0`, `edgellm convert`), or {t.change('reference', 'FILE')}"
    )


def notice(said: Reason, kind: str = "note") -> Notice:
    """A reason as an event's notice: said plainly, the reason kept for a front end to say in its terms."""
    return Notice(say(said), kind, said)


def worded(event_notice: Notice, terms: Terms) -> str:
    """A notice's text in `terms` (its own text when it carries no reason)."""
    return say(event_notice.reason, terms) if event_notice.reason is not None else event_notice.text


@sentence("worker_silent")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the RPC worker at {r['endpoint']} did not answer within {r['timeout']:g} s: busy with another client (a "
        f"worker serves one at a time) or not running; start it there with `edgellm worker --port {r['port']}`, "
        f"or leave it out of {t.setting('rpc')}"
    )


@sentence("forced_quant_does_not_fit")
def _(r: Reason, t: Terms) -> str:
    return f"{r['quant']} does not fit {r['device']}: {say(r['reason'], t)}"


@sentence("text")
def _(r: Reason, t: Terms) -> str:
    """Something said in plain text already (an error without a reason, inside one with)."""
    return str(r["text"])


@sentence("checkpoint_removed")
def _(r: Reason, t: Terms) -> str:
    keep = t.setting("keep_checkpoint")
    return f"removed the downloaded checkpoint {r['source']}" + (f" ({keep} keeps it)" if keep else "")


# importance matrices (convert.imatrix)


@sentence("quant_needs_imatrix")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['quant']} needs an importance matrix (llama.cpp refuses to make it without one): "
        f"{t.change('imatrix')} to collect one on a calibration text, or {t.change('quant', 'Q2_K')} or another "
        f"quant that needs none"
    )


@sentence("requantize_costs")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['source']} is already quantized ({r['from_quant']}): {r['quant']} made from it carries two roundings, "
        f"so it is worse than {r['quant']} made from the F16 or BF16 model"
    )


@sentence("imatrix_unused")
def _(r: Reason, t: Terms) -> str:
    return f"no importance matrix: {r['quant']} is written by the converter itself, which takes none"


@sentence("not_an_imatrix")
def _(r: Reason, t: Terms) -> str:
    return f"{r['path']} is not an importance matrix llama.cpp can read ({r['why']})"


@sentence("imatrix_mismatch")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the importance matrix does not match {r['model']}: {r['tensor']}: {r['why']}; it was made for another "
        f"model: collect one on this model ({t.setting('imatrix')} TEXT)"
    )


@sentence("imatrix_text_missing")
def _(r: Reason, t: Terms) -> str:
    return f"{r['text']}: no such file (a text to collect an importance matrix on, or a matrix file)"


@sentence("imatrix_text_too_short")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['text']} is {r['tokens']} tokens: an importance matrix is collected in chunks of {r['needed']}; "
        f"give a longer text (a few thousand tokens)"
    )


# how replies are drafted (plan.speculation)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


@sentence("spec_off")
def _(r: Reason, t: Terms) -> str:
    return "off, as asked: every token decoded on its own"


@sentence("spec_batched")
def _(r: Reason, t: Terms) -> str:
    return (
        "n-gram lookup while a request decodes alone; none while requests share a batch (they share each decode "
        "already), and no draft model on the batched engine"
    )


@sentence("spec_ngram_asked")
def _(r: Reason, t: Terms) -> str:
    return (
        "n-gram lookup, as asked: drafts what followed the reply's last few tokens earlier in the prompt or reply; "
        "stops for a reply once drafting no longer pays"
    )


@sentence("spec_no_draft")
def _(r: Reason, t: Terms) -> str:
    return "n-gram lookup: a draft model was asked for, but none was named that fits beside the model"


@sentence("spec_draft_asked")
def _(r: Reason, t: Terms) -> str:
    return (
        f"draft model {r['name']} ({_mib(r['memory'])} beside the model), expected {r['gain']}× decode at the "
        f"usual acceptance; stops for a reply once drafting no longer pays"
    )


@sentence("spec_draft_auto")
def _(r: Reason, t: Terms) -> str:
    return (
        f"draft model {r['name']}, found in the store ({_mib(r['memory'])} beside the model): expected {r['gain']}× "
        f"decode at the usual acceptance; stops for a reply once drafting no longer pays"
    )


@sentence("spec_ngram_auto")
def _(r: Reason, t: Terms) -> str:
    draft = f"the stored draft {r['draft']} {r['draft_why']}" if r["draft"] else "no stored model can draft for it"
    return (
        f"n-gram lookup ({draft}): drafts only where the reply repeats the prompt or itself (editing code, "
        f"rewriting a text), and stops once it no longer pays"
    )


@sentence("spec_draft_does_not_fit")
def _(r: Reason, t: Terms) -> str:
    return (
        f"the draft model {r['draft']} does not fit in the memory the model leaves; use a smaller draft, "
        f"{t.change('ctx_size')}, or --spec ngram"
    )


@sentence("draft_incompatible")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['draft']} cannot draft for {r['model']}: {r['why']}; pass a draft model of the same family "
        f"(the same tokenizer), or --spec ngram"
    )


# a model's load: what stops it before llama.cpp is called, or while it loads


def _gib(size: int) -> str:
    gib = size / 2**30
    return f"{gib:.2f} GiB" if gib < 10 else f"{gib:.1f} GiB"


@sentence("load_needs_memory")
def _(r: Reason, t: Terms) -> str:
    return (
        f"{r['model']} needs {_gib(r['needed'])} of {r['device']}, has {_gib(r['free'])} free; free some memory, "
        f"or try a smaller {t.setting('ctx_size')} or a smaller quant"
    )


@sentence("load_timed_out")
def _(r: Reason, t: Terms) -> str:
    longer = f"{r['seconds'] * 2:g}"
    return (
        f"loading {r['path']} onto {r['device']} stopped: no progress for {r['seconds']:g} s; check the disk it is "
        f"read from, or {t.change('load_timeout', longer)}"
    )


# --- the memory estimate's confidence and flash attention measured on a CPU (issue 31) -----------------------------


@sentence("flash_attn_measured")
def _(r: Reason, t: Terms) -> str:
    on, off = r["on_tokens_per_s"], r["off_tokens_per_s"]
    return (
        f"{'on' if r['on'] else 'off'}: measured faster on this CPU by bench ({r['model']}: {on:g} tokens/s with it "
        f"on, {off:g} off)"
    )


PLAIN_WAYS["measure_flash_attn"] = "`edgellm bench` with flash attention on and off measures it"


@sentence("flash_attn_cpu_guess")
def _(r: Reason, t: Terms) -> str:
    way = t.way("measure_flash_attn") or PLAIN_WAYS["measure_flash_attn"]
    return f"on: a guess (on a CPU it can cost or gain 10-15 % of decode, which way differs by machine); {way}"


@sentence("memory_measured")
def _(r: Reason, t: Terms) -> str:
    factors = [
        f"{name} × {value:.2f}"
        for name, value in (("resident", r["resident_factor"]), ("allocated", r["allocated_factor"]))
        if value
    ]
    applied = f"; {', '.join(factors)} applied" if factors else ""
    models = f"{r['models']} model{'s' if r['models'] != 1 else ''}"
    return f"± {r['percent']} %: measured on this device by bench ({models}){applied}"


@sentence("memory_not_measured")
def _(r: Reason, t: Terms) -> str:
    runtime = f"; the GPU runtime's {_mib(r['runtime_bytes'])} is {r['runtime_source']}" if r["runtime"] else ""
    return f"not yet measured here (`edgellm bench` measures it){runtime}"
