"""The math verifier's worker process: math-verify under a memory limit, answering comparisons
over a pipe until its parent closes it (seesaw.rl.rewards.math.VerifierWorker starts it).

It is a fresh interpreter, `python -m seesaw.rl.rewards.math_worker <fd> <bytes>`, not a
multiprocessing child: a spawned child first imports its parent's main module, and the
checkpoint engine's brings torch and vLLM, whose address space alone passes the memory limit,
so every comparison failed for memory and every sample scored 0.
"""
from __future__ import annotations

import logging
import resource
import sys
from multiprocessing.connection import Connection


def verify(response: str, reference: str) -> bool:
    from math_verify import parse, verify as equivalent

    gold = parse(_as_gold(reference), parsing_timeout=None)
    answer = parse(response, parsing_timeout=None)
    return bool(gold) and bool(answer) and equivalent(gold, answer, timeout_seconds=None)


def _as_gold(reference: str) -> str:
    # math-verify reads LaTeX between $...$ (or in \boxed): a bare "\frac{3}{4}" is LaTeX too
    text = reference.strip()
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def serve(connection: Connection, memory_bytes: int) -> None:
    import math_verify  # noqa: F401  (imported before the limit: the limit is for the expressions)

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that its timeouts are off
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The first comparison loads math-verify's parsers: 0.5 s on a quiet machine, past the
    # comparison's timeout on a busy one, where every replaced worker then timed out again on
    # its first comparison. Made here, in the start's own time.
    verify("1", "1")
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the checkpoint engine that started it is gone: nothing left to verify
            return
        if request is None:
            return
        try:
            connection.send(("ok", verify(*request)))
        except BaseException as error:  # a MemoryError or a parser error must not end the worker
            connection.send(("error", f"{type(error).__name__}: {error}"))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
