"""Prompt rows as users have them: JSONL, parquet, or a Hugging Face `datasets` directory.

`spec.prompts.source` names a file or a folder; `spec.prompts.fields` says which columns hold
the prompt and the answer, and how to read the answer out of its column (GSM8K writes its
worked solution and then `#### 12`). Every row comes out as a plain dict with the task's
own keys (`prompt`, `answer`, and for code `tests`, `solution`, ...), with where it came
from, so an error can name the file and the row.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from seesaw.spec import SpecError

FIELD = "spec.prompts.source"
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as err:
                raise SpecError(FIELD, f"{path}:{number}: not JSON ({err.msg})") from None


def _parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    for number, row in enumerate(pq.read_table(path).to_pylist(), 1):
        yield f"{path} row {number}", row


def _saved_dataset(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    """A `Dataset.save_to_disk` folder, or one split of a `DatasetDict.save_to_disk` folder."""
    from datasets import Dataset, DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise SpecError("spec.prompts.split", f"{path} holds the splits {sorted(loaded)}, not {split!r}")
        loaded = loaded[split]
    assert isinstance(loaded, Dataset)
    for number, row in enumerate(loaded, 1):
        yield f"{path} ({split}) row {number}", row


def read_rows(path: Path, split: str = "train") -> Iterator[tuple[str, Any]]:
    """(where, row) for every row of the source, by its kind."""
    if path.is_dir():
        if not any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
            raise SpecError(FIELD, f"{path} is a folder but not a saved Hugging Face dataset (Dataset.save_to_disk)")
        return _saved_dataset(path, split)
    if path.suffix == ".parquet":
        return _parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return _jsonl(path)
    raise SpecError(FIELD, f"{path}: expected a .jsonl or .parquet file or a saved Hugging Face dataset folder")


def extract_reference(text: str, rule: str, where: str) -> str:
    """The reference answer out of its column: as written, or after GSM8K's `####`."""
    if rule == "gsm8k":
        found = _GSM8K_ANSWER.search(text)
        if not found:
            raise SpecError("spec.prompts.fields.answerExtract", f"{where}: gsm8k expects '#### <answer>' in the answer, got {text[-80:]!r}")
        return found.group(1).replace(",", "")
    return text


def mapped(row: Any, fields: dict[str, Any], where: str) -> dict[str, Any]:
    """A row with its prompt and answer columns renamed to the task's keys."""
    if not isinstance(row, dict):
        raise SpecError(FIELD, f"{where}: expected an object per row, got {type(row).__name__}")
    prompt_column, answer_column, rule = fields["prompt"], fields["answer"], fields["answerExtract"]
    if prompt_column not in row:
        raise SpecError("spec.prompts.fields.prompt", f"{where}: no column {prompt_column!r} (columns: {sorted(row)})")
    out = {k: v for k, v in row.items() if k not in (prompt_column, answer_column)}
    out["prompt"] = row[prompt_column]
    if answer_column in row and row[answer_column] is not None:
        out["answer"] = extract_reference(str(row[answer_column]), rule, where)
    return out
