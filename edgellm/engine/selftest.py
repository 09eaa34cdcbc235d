"""One-token self-test of the installed llama.cpp, run by `edgellm doctor` in a child process.

`python -m edgellm.engine.selftest MODEL` prints llama.cpp's system info first (so the parent learns the
build's CPU features even if the next step crashes), then loads MODEL, decodes a prompt and samples
one token, printing one JSON line per step. A crash (the AMX segfault) kills only this child.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_silence = None


def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str]) -> int:
    import ctypes

    import llama_cpp

    from edgellm.engine import backends
    from edgellm.engine.compat import templates_left_to_edgellm

    global _silence  # llama.cpp keeps the pointer: the callback must outlive every call
    _silence = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_silence, ctypes.c_void_p(0))
    backends.load_backends()  # a portable build's CPU variant, before the system info names its features
    emit(
        step="system_info",
        system_info=llama_cpp.llama_print_system_info().decode(errors="replace"),
        gpu_offload=backends.gpu_offload_possible(),
        cpu_library=backends.loaded_cpu_library(),
        devices=[f"{device.name} ({device.kind})" for device in backends.devices()],
    )
    started = time.perf_counter()
    with templates_left_to_edgellm():  # the model may be anyone's: its template is never compiled here
        llm = llama_cpp.Llama(
            argv[0],
            n_ctx=128,
            n_batch=64,
            n_threads=1,
            n_gpu_layers=int(argv[1]) if len(argv) > 1 else 0,
            verbose=False,
        )
    emit(step="loaded", load_ms=round((time.perf_counter() - started) * 1000, 1))
    tokens = llm.tokenize(b"The quick brown fox", add_bos=True)
    started = time.perf_counter()
    token = next(llm.generate(tokens, temp=0.0))
    emit(step="token", token=int(token), ms=round((time.perf_counter() - started) * 1000, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
