"""Every program of programs.py, compiled, saved, loaded in a fresh process, equal to eager."""

import pytest

import programs

NAMES = list(programs.programs())


# What the inductor backend refuses, by design (see backends/inductor.py): Dims and
# sizes that depend on data.
INDUCTOR_REFUSES = {"module": "static shapes only", "data_dependent": "sizes that depend on data"}


@pytest.mark.parametrize("backend,tol", [("eager", 1e-6), pytest.param("aoti", 1e-4, marks=pytest.mark.slow),
                                         pytest.param("inductor", 1e-4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", NAMES)
def test_fresh_process_equals_eager(request, backend, tol, name):
    _, results = request.getfixturevalue(f"{backend}_packages")
    r = results[name]
    if backend == "inductor" and name in INDUCTOR_REFUSES:
        assert INDUCTOR_REFUSES[name] in r["refused"]
        return
    assert r["ok"], r.get("error") or r.get("refused")
    assert r["max_err"] <= tol


@pytest.mark.slow
def test_aoti_load_path_imports_no_compiler(aoti_packages):
    """The load path must not pull in inductor or dynamo (seconds of import and CPU probing)."""
    _, results = aoti_packages
    assert results["_modules"] == []
