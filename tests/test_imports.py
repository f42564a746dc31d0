"""``import chroma`` stays light; implementations are imported when chosen.

The import checks run in fresh interpreters, since this test process has long
imported everything.
"""

from __future__ import annotations

import sys

import pytest

import chroma
from chroma import errors, registry
from chroma.registry import Implementation
from python_subprocess import run_python


@pytest.fixture(autouse=True)
def restore_configuration():
    yield
    chroma.configure(api_impl=None, db_impl=None)


def test_import_chroma_pulls_in_no_server_packages():
    output = run_python(
        "import chroma, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi','uvicorn','celery','clickhouse_connect'} or m == 'pyarrow.flight'))"
    )
    assert output == "[]"


def test_import_chroma_is_lazy_until_a_client_is_asked_for():
    output = run_python("""
        import sys
        def loaded():
            return sorted(m for m in sys.modules if m.split('.')[0] in {'duckdb', 'pyarrow'} or m == 'chroma._core')
        import chroma
        print(loaded())
        chroma.get_api()
        print('duckdb' in sys.modules)
    """)
    after_import, after_get_api = output.splitlines()
    assert after_import == "[]"
    assert after_get_api == "True"


@pytest.mark.parametrize("setting, allowed", [("db_impl", "'duckdb'"), ("api_impl", "'local'")])
def test_unknown_impl_names_the_setting_and_allowed_values(setting, allowed):
    get_part = {"db_impl": chroma.get_db, "api_impl": chroma.get_api}[setting]
    with pytest.raises(errors.ConfigurationError) as raised:
        chroma.configure(**{setting: "nope"})
        get_part()
    message = str(raised.value)
    assert setting in message
    assert "'nope'" in message
    assert allowed in message
    if setting == "db_impl":
        assert "'persistent_duckdb'" in message


def test_unknown_impl_from_environment_is_a_configuration_error():
    output = run_python("""
        import os
        os.environ['CHROMA_DB_IMPL'] = 'nope'
        import chroma
        try:
            chroma.get_db()
        except chroma.errors.ConfigurationError as exc:
            print(exc)
    """)
    assert "db_impl" in output and "'persistent_duckdb'" in output


def test_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "chroma_test_fake_backend.py").write_text(
        "import some_package_that_does_not_exist_xyz\n\n\nclass FakeDB:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.DB_IMPLS, "fake", Implementation("chroma_test_fake_backend.FakeDB", extra="server"))

    chroma.configure(db_impl="fake")
    with pytest.raises(errors.MissingDependency) as raised:
        chroma.get_db()
    message = str(raised.value)
    assert "chroma[server]" in message
    assert "some_package_that_does_not_exist_xyz" in message
    assert "db_impl" in message
    assert isinstance(raised.value, ImportError)
    assert "chroma_test_fake_backend" not in sys.modules


def test_the_default_model_loads_nothing_until_a_text_is_embedded():
    output = run_python("""
        import sys
        import chroma
        collection = chroma.get_api().create_collection("vectors")
        collection.add(ids=["a"], embeddings=[[1.0, 2.0]], documents=["a document with its vector"])
        print(sorted(m for m in sys.modules if m.split('.')[0] in {'tokenizers', 'safetensors', 'huggingface_hub'}))
    """)
    assert output == "[]"


def test_local_over_persistent_duckdb_never_imports_pandas(tmp_path):
    # pyarrow's conversions import pandas when it is installed (tens of megabytes of memory);
    # chroma.db.arrow_columns builds and reads the DB's Arrow batches without them
    output = run_python(f"""
        import sys
        import numpy as np
        import chroma
        chroma.configure(api_impl="local", db_impl="persistent_duckdb", persist_directory={str(tmp_path)!r})
        for reopened in (False, True):
            client = chroma.get_api()
            collection = client.get_or_create_collection("no-pandas")
            if not reopened:
                collection.add(ids=[str(i) for i in range(50)], embeddings=np.random.rand(50, 4),
                               metadatas=[{{"n": i, "even": i % 2 == 0, "x": i / 2, "s": str(i)}} for i in range(50)],
                               documents=[f"document {{i}}" for i in range(50)])
                collection.update(ids=["1"], embeddings=[[0.5] * 4], documents=["changed"], metadatas=[{{"n": 1}}])
                collection.delete(ids=["2"])
            collection.query(query_embeddings=np.random.rand(1, 4), n_results=3)
            collection.query(query_embeddings=np.random.rand(1, 4), n_results=3, where={{"n": {{"$gt": 3}}}})
            collection.get(ids=["1"], include=["embeddings", "metadatas", "documents"])
            collection.get(where_document={{"$contains": "document"}}, limit=5)
            collection.count()
            client.close()
        import pyarrow
        print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))
    """)
    assert output == "[]"
