"""The planner counts a vision projector on the device that runs it: its weights and one image's encoding buffer on
the GPU when any layer is offloaded, else in RAM; its image tokens live in the context already counted."""

from __future__ import annotations

from dataclasses import replace

from edgellm.gguf.projector import ProjectorSpec
from edgellm.hw.builtin import resolve_profile
from edgellm.plan import report
from edgellm.plan.estimate import estimate
from edgellm.plan.planner import Wishes, image_ubatches, plan, plan_inputs
from tests.support.specs import LLAMA_1B_Q4, LLAMA_3B_Q4

MIB, GIB = 2**20, 2**30

# Gemma 3 4B's projector (mmproj-…-f16.gguf): a SigLIP tower of 27 layers, 1152 wide, 256 tokens per image
GEMMA3_4B = ProjectorSpec(
    path="/models/mmproj-gemma-3-4b-it-f16.gguf",
    projector_type="gemma3",
    known=True,
    has_vision=True,
    weights_bytes=851 * MIB,
    file_bytes=852 * MIB,
    file_type="F16",
    image_size=896,
    patch_size=14,
    merge=4,
    n_embd=1152,
    n_ff=4304,
    n_head=16,
    n_layers=27,
    text_n_embd=2560,
    image_tokens=256,
    patches=4096,
)
PI5 = resolve_profile("raspberry-pi-5-8gb")
LAPTOP = resolve_profile("laptop-rtx4060-8gb")


def test_on_a_cpu_the_projector_is_counted_in_ram() -> None:
    text = plan(PI5, LLAMA_1B_Q4)
    seeing = plan(PI5, LLAMA_1B_Q4, projector=GEMMA3_4B)
    cpu, cpu_text = seeing.estimate.device(False), text.estimate.device(False)
    working = GEMMA3_4B.encode_bytes() + GEMMA3_4B.working_bytes()  # its encode buffer, its context, the image
    added = GEMMA3_4B.weights_bytes + working
    assert cpu.total - cpu_text.total == added
    assert seeing.needed - text.needed == added  # read into memory and written by an encoding: all resident
    assert cpu.committed - cpu_text.committed == added  # private memory, not the mapped file
    assert (cpu.projector_weights, cpu.projector_compute) == (GEMMA3_4B.weights_bytes, working)
    assert "the vision projector (851 MiB)" in cpu.notes["weights"]
    assert "encoding one image: 109 MiB (4096 patches); libmtmd and the image's pixels: 29 MiB" in cpu.notes["compute"]
    assert seeing.n_ctx == text.n_ctx  # its image tokens take room in the context, counted in n_ctx already


def test_on_a_gpu_the_projector_runs_where_the_layers_are() -> None:
    seeing = plan(LAPTOP, LLAMA_3B_Q4, projector=GEMMA3_4B)
    assert seeing.n_gpu_layers > 0
    gpu, cpu = seeing.estimate.device(True), seeing.estimate.device(False)
    assert gpu.projector_weights == GEMMA3_4B.weights_bytes and cpu.projector_weights == 0
    text = plan(LAPTOP, LLAMA_3B_Q4, Wishes(gpu_layers=seeing.n_gpu_layers))
    added = GEMMA3_4B.weights_bytes + GEMMA3_4B.encode_bytes() + GEMMA3_4B.working_bytes()
    assert gpu.total - text.estimate.device(True).total == added
    # no layer offloaded: libmtmd keeps it on the CPU too
    on_cpu = plan(LAPTOP, LLAMA_3B_Q4, Wishes(gpu_layers=0), projector=GEMMA3_4B)
    assert on_cpu.estimate.device(False).projector_weights == GEMMA3_4B.weights_bytes
    assert on_cpu.estimate.device(True) is None


def test_a_projector_too_big_for_the_gpu_takes_layers_off_it() -> None:
    huge = replace(GEMMA3_4B, weights_bytes=5 * GIB)
    assert plan(LAPTOP, LLAMA_3B_Q4, projector=huge).n_gpu_layers < plan(LAPTOP, LLAMA_3B_Q4).n_gpu_layers


def test_an_image_is_decoded_in_one_micro_batch_when_its_tokens_attend_to_each_other() -> None:
    assert image_ubatches(None) == [512, 256, 128]
    assert image_ubatches(GEMMA3_4B) == [512, 256]  # 256 tokens: never 128
    assert image_ubatches(replace(GEMMA3_4B, image_tokens=600)) == [768]
    assert image_ubatches(replace(GEMMA3_4B, projector_type="mlp", image_tokens=576)) == [512, 256, 128]  # causal
    starved = replace(PI5, memory=replace(PI5.memory, available_bytes=2 * GIB))
    assert plan(starved, LLAMA_1B_Q4, projector=GEMMA3_4B, wishes=Wishes(force=True)).n_ubatch >= 256


def test_the_plan_keeps_its_projector_for_a_second_estimate() -> None:
    seeing = plan(LAPTOP, LLAMA_3B_Q4, projector=GEMMA3_4B)
    assert seeing.projector is GEMMA3_4B
    again = estimate(LLAMA_3B_Q4, plan_inputs(LAPTOP, seeing), LAPTOP.gpus[0].name)
    assert again.total == seeing.estimate.total


def test_the_report_says_what_an_image_takes() -> None:
    seeing = plan(PI5, LLAMA_1B_Q4, projector=GEMMA3_4B)
    text = report.render(seeing, LLAMA_1B_Q4, PI5)
    assert (
        "Vision   mmproj-gemma-3-4b-it-f16.gguf: gemma3, 851.0 MiB on the CPU; an image takes 256 tokens of the "
        "context (4096)" in text
    )
    data = report.to_dict(seeing, LLAMA_1B_Q4, PI5)["projector"]
    assert data["image_tokens"] == 256 and data["device"] == "CPU" and not data["on_gpu"]
    assert data["weights_bytes"] == GEMMA3_4B.weights_bytes and data["encode_bytes"] == GEMMA3_4B.encode_bytes()
    unknown = report.render(plan(PI5, LLAMA_1B_Q4, projector=replace(GEMMA3_4B, known=False)), LLAMA_1B_Q4, PI5)
    assert "gemma3 (tokens estimated)" in unknown


def test_a_text_model_plans_as_before() -> None:
    text = plan(PI5, LLAMA_1B_Q4)
    assert text.projector is None and all(d.projector_weights == 0 for d in text.estimate.devices)
    assert "Vision" not in report.render(text, LLAMA_1B_Q4, PI5)
    assert report.to_dict(text, LLAMA_1B_Q4, PI5)["projector"] is None
