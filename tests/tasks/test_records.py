"""Prompt sources as users have them: JSONL, parquet and saved Hugging Face datasets, with their
own column names and GSM8K's '#### answer' references."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from pod_helpers import tiny_manifest
from seesaw.spec import SpecError, validate_manifest
from seesaw.tasks import load_task

GSM8K_ROWS = [{"question": f"Tom has {i} apples and buys {i + 1} more. How many now?",
               "answer": f"He has {i} + {i + 1} = {2 * i + 1} apples.\n#### {2 * i + 1:,}"} for i in range(6)]
GSM8K_FIELDS = {"prompt": "question", "answer": "answer", "answerExtract": "gsm8k"}


def task_of(source, **prompts):
    manifest = tiny_manifest()
    manifest["spec"]["prompts"] = {"source": str(source), **prompts}
    manifest["spec"]["rl"]["evaluation"]["prompts"] = 2
    return load_task(validate_manifest(manifest)["spec"])


def references(task):
    return sorted((p.prompt, p.answer) for p in task.train + task.eval)


EXPECTED = sorted((row["question"], str(int(row["answer"].split("#### ")[1].replace(",", "")))) for row in GSM8K_ROWS)


def test_jsonl_with_its_own_columns_and_gsm8k_answers(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in GSM8K_ROWS))
    task = task_of(path, fields=GSM8K_FIELDS)
    assert references(task) == EXPECTED  # '#### 1,001' reads 1001
    assert len(task.eval) == 2


def test_parquet(tmp_path):
    path = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), path)
    assert references(task_of(path, fields=GSM8K_FIELDS)) == EXPECTED


def test_a_saved_dataset_and_a_split_of_a_saved_dataset_dict(tmp_path):
    Dataset.from_list(GSM8K_ROWS).save_to_disk(str(tmp_path / "one"))
    assert references(task_of(tmp_path / "one", fields=GSM8K_FIELDS)) == EXPECTED
    DatasetDict({"train": Dataset.from_list(GSM8K_ROWS[:3] * 2), "test": Dataset.from_list(GSM8K_ROWS)}).save_to_disk(
        str(tmp_path / "both"))
    assert references(task_of(tmp_path / "both", fields=GSM8K_FIELDS, split="test")) == EXPECTED
    with pytest.raises(SpecError, match=r"spec.prompts.split.*holds the splits \['test', 'train'\], not 'validation'"):
        task_of(tmp_path / "both", fields=GSM8K_FIELDS, split="validation")


def test_bad_sources_name_the_field_the_row_and_what_was_expected(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in GSM8K_ROWS))
    with pytest.raises(SpecError, match=r"spec.prompts.fields.prompt: .*rows.jsonl:1: no column 'prompt' "
                                        r"\(columns: \['answer', 'question'\]\)"):
        task_of(path)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"question": "1+1?", "answer": "2"}))
    with pytest.raises(SpecError, match=r"spec.prompts.fields.answerExtract: .*plain.jsonl:1: gsm8k expects '#### <answer>'"):
        task_of(plain, fields=GSM8K_FIELDS)
    (tmp_path / "folder").mkdir()
    with pytest.raises(SpecError, match="is a folder but not a saved Hugging Face dataset"):
        task_of(tmp_path / "folder")
    (tmp_path / "rows.csv").write_text("prompt,answer\n1+1,2\n")
    with pytest.raises(SpecError, match=r"rows.csv: expected a .jsonl or .parquet file"):
        task_of(tmp_path / "rows.csv")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "x", "answer": "1"}\n{"prompt": \n')
    with pytest.raises(SpecError, match=r"broken.jsonl:2: not JSON"):
        task_of(broken)
