"""Samples on the wire: arrays in one safetensors buffer, not JSON lists.

An iteration of a 7B run is ~8 M response tokens and their log-probs. As JSON that is
~220 MB that one Python process writes token by token, once per pod. As arrays it is
~64 MB copied with memcpy, and read back as views into the received buffer: the conductor
never turns a token into a Python object.

A batch is columns: every sample's token ids concatenated (int32), their log-probs
(float32), each sample's lengths and scalars; small metadata (str -> JSON) rides in the
safetensors header. `decode_samples` gives numpy views (cheap to slice, concatenate and
send on); `as_lists=True` gives the plain lists the trainers index into.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
from safetensors.numpy import save

from seesaw.interfaces import Sample

CONTENT_TYPE = "application/octet-stream"
_META = "seesaw"  # the header key of the metadata


def encode_samples(samples: Sequence[Sample], meta: dict[str, Any] | None = None,
                   groups: Sequence[int] | None = None) -> bytes:
    """Samples (lists or arrays in their fields) as one buffer; `groups`: each sample's
    prompt's position in the whole batch (a trainer's data-parallel share is chosen by it)."""
    prompt_lengths = np.fromiter((len(s.prompt_ids) for s in samples), np.int64, len(samples))
    response_lengths = np.fromiter((len(s.response_ids) for s in samples), np.int64, len(samples))
    tensors = {
        "prompt_index": np.fromiter((s.prompt_index for s in samples), np.int64, len(samples)),
        "reward": np.fromiter((s.reward for s in samples), np.float64, len(samples)),
        "finished": np.fromiter((s.finished for s in samples), np.uint8, len(samples)),
        "train_from": np.fromiter((s.train_from for s in samples), np.int64, len(samples)),
        "prompt_lengths": prompt_lengths,
        "response_lengths": response_lengths,
        "prompt_ids": _concatenate([s.prompt_ids for s in samples], np.int32),
        "response_ids": _concatenate([s.response_ids for s in samples], np.int32),
        "logprobs": _concatenate([s.logprobs for s in samples], np.float32),
        "logprob_lengths": np.fromiter((len(s.logprobs) for s in samples), np.int64, len(samples)),
    }
    if groups is not None:
        tensors["group"] = np.asarray(groups, dtype=np.int64)
    return save(tensors, metadata={_META: json.dumps(meta or {})})


def decode_samples(payload: bytes, as_lists: bool = False) -> tuple[list[Sample], dict[str, Any], list[int] | None]:
    """(samples, metadata, each sample's group or None) of an `encode_samples` buffer."""
    tensors, header_meta = _views(payload)
    meta = json.loads(header_meta.get(_META, "{}"))
    prompts = _split(tensors["prompt_ids"], tensors["prompt_lengths"], as_lists)
    responses = _split(tensors["response_ids"], tensors["response_lengths"], as_lists)
    logprobs = _split(tensors["logprobs"], tensors["logprob_lengths"], as_lists)
    scalars = zip(tensors["prompt_index"].tolist(), tensors["reward"].tolist(), tensors["finished"].tolist(),
                  tensors["train_from"].tolist())
    samples = [Sample(index, prompt, response, logprob, reward=reward, finished=bool(finished), train_from=train_from)
               for (index, reward, finished, train_from), prompt, response, logprob in zip(scalars, prompts, responses, logprobs)]
    groups = tensors["group"].tolist() if "group" in tensors else None
    return samples, meta, groups


def concatenate(payloads: Sequence[bytes], index_offsets: Sequence[int], meta: dict[str, Any] | None = None) -> bytes:
    """`encode_samples` buffers as one, each buffer's prompt indices moved on by its offset (a
    pod's engines' answers to their adjacent shares of its prompts): the columns are joined as
    arrays, no sample is decoded."""
    views = [_views(payload)[0] for payload in payloads]
    if not views:
        return encode_samples([], meta)
    names = set(views[0])
    if any(set(tensors) != names for tensors in views):
        raise ValueError(f"buffers with different columns cannot be joined: {[sorted(t) for t in views]}")
    joined = {name: np.concatenate([tensors[name] for tensors in views]) for name in names}
    joined["prompt_index"] = np.concatenate([tensors["prompt_index"] + offset for tensors, offset in zip(views, index_offsets)])
    return save(joined, metadata={_META: json.dumps(meta or {})})


def token_list(ids: Sequence[int]) -> list[int]:
    """Plain ints, from a decoded sample's array or a list (for a tokenizer, JSON, a buffer)."""
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def sample_record(sample: Sample) -> dict[str, Any]:
    """A sample as a JSON-ready dict."""
    return {**asdict(sample), "prompt_ids": token_list(sample.prompt_ids), "response_ids": token_list(sample.response_ids),
            "logprobs": token_list(sample.logprobs)}


def _concatenate(columns: list[Any], dtype: type) -> np.ndarray:
    if not columns:
        return np.zeros(0, dtype)
    return np.concatenate([np.asarray(column, dtype=dtype) for column in columns])


def _split(flat: np.ndarray, lengths: np.ndarray, as_lists: bool) -> list[Any]:
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    if as_lists:
        return [flat[a:b].tolist() for a, b in zip(starts, ends)]
    return [flat[a:b] for a, b in zip(starts, ends)]


_DTYPES = {"I32": np.int32, "I64": np.int64, "F32": np.float32, "F64": np.float64, "U8": np.uint8}


def _views(payload: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of a safetensors buffer as read-only views into it (no copy: the
    library's loader copies each tensor), and the header's metadata."""
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8: 8 + size])
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(payload)[8 + size:]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return tensors, meta
