"""Every program of programs.py, compiled, saved, loaded in a fresh process, equal to eager."""

import pytest

import programs

NAMES = list(programs.programs())


@pytest.mark.parametrize("name", NAMES)
def test_eager_backend_fresh_process(eager_packages, name):
    _, results = eager_packages
    r = results[name]
    assert r["ok"], r.get("error")
    assert r["max_err"] <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_aoti_backend_fresh_process(aoti_packages, name):
    _, results = aoti_packages
    r = results[name]
    assert r["ok"], r.get("error")
    assert r["max_err"] <= 1e-4


@pytest.mark.slow
def test_aoti_load_path_imports_no_compiler(aoti_packages):
    """The load path must not pull in inductor or dynamo (seconds of import and CPU probing)."""
    _, results = aoti_packages
    assert results["_modules"] == []
