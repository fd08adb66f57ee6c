"""Run directories mirrored to a URI: local and a real S3-compatible server on loopback."""

import json

import pytest

from cst_ray.core import storage


def _tree(tmp_path):
    src = tmp_path / "stage"
    (src / "generations").mkdir(parents=True)
    (src / "generations" / "part-000000-a.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 40)
    (src / "checkpoints").mkdir()
    (src / "checkpoints" / "big.bin").write_bytes(b"x" * 10)
    (src / "stats.json").write_text(json.dumps({"rows_out": 3}))
    return src


@pytest.mark.parametrize("where", ["local", "s3"])
def test_copy_and_fetch_round_trip(tmp_path, where, request):
    base = request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path / "remote")
    src = _tree(tmp_path)
    uri = storage.join(base, "run1", "generate")
    assert not storage.exists(storage.join(uri, "stats.json"))
    assert storage.copy_dir(str(src), uri, skip=("checkpoints",)) == 2
    assert storage.exists(storage.join(uri, "stats.json"))
    assert storage.list_names(uri) == ["generations", "stats.json"]  # checkpoints skipped
    dst = tmp_path / "fetched"
    assert storage.fetch_dir(uri, str(dst)) == 2
    assert (dst / "generations" / "part-000000-a.parquet").read_bytes() == (src / "generations" / "part-000000-a.parquet").read_bytes()
    assert json.loads((dst / "stats.json").read_text()) == {"rows_out": 3}


def test_stage_fetched_from_run_uri(tmp_path, s3_bucket):
    """A stage complete at run_uri but absent locally is fetched, so a fresh machine resumes."""
    from cst_ray.config.load import load_config
    from cst_ray.stages.mirror import fetch_stage, upload_stage
    from cst_ray.stages.redo import is_complete

    first = load_config(None, [f"run_dir={tmp_path / 'a'}", f"run_uri={s3_bucket}/run"])

    gen = tmp_path / "a" / "generate"
    gen.mkdir(parents=True)
    (gen / "stats.json").write_text("{}")
    (gen / "note.txt").write_text("hello")
    upload_stage(first, "generate")
    second = load_config(None, [f"run_dir={tmp_path / 'b'}", f"run_uri={s3_bucket}/run"])
    assert not is_complete(second, "generate")
    assert fetch_stage(second, "generate")
    assert is_complete(second, "generate")
    assert (tmp_path / "b" / "generate" / "note.txt").read_text() == "hello"
    assert not fetch_stage(second, "pairs")  # nothing there
