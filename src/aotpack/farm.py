"""Compile a package's variants in parallel: local processes or a Ray cluster.

    >>> pkg = aotpack.farm.compile(model, (x,), variants=specs, workers="local:4")      # doctest: +SKIP
    >>> pkg = aotpack.farm.compile(model, (x,), variants=specs, workers="ray:head:6379")  # doctest: +SKIP

``workers`` names where the variants' compiles run:

- ``"local:N"`` (or ``N``): N processes forked from this one (no pickling of the model:
  a fork inherits it);
- ``"ray"`` (the cluster ``ray.init`` finds, or a new local one), ``"ray:HOST:PORT"``
  (a cluster's GCS address, this process joins as a driver; tested) or
  ``"ray://HOST:PORT"`` (Ray Client, needs ``ray[client]``; not tested here): one Ray
  task per variant, with one CPU each. Ray ships the model and
  the example inputs to the workers with cloudpickle; every node needs the same torch,
  aotpack and the model's code.

Design: the results flow through the compile cache. Each worker captures and compiles
its variant inside an ``aotpack.cache.Context`` (and through ``cache``, when given: a
fleet's Redis gets the artifacts too) and returns the context's bundle: the artifacts,
keyed by content. The caller imports every bundle into one Context and builds the
package as it would without workers: each variant is captured here again (seconds) and
its compile is a cache hit (the minutes). So the package is the same byte for byte as
a serial compile's, whatever ran where, and a worker that fails costs only time: its
variant is compiled here, where its error (a CaptureError...) is raised as usual.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

from .errors import AotpackError

__all__ = ["compile", "compile_variants"]

_JOBS: list = []  # the forked workers' view of the jobs (a fork inherits it; nothing is pickled)


def compile(target: Callable, args: tuple = (), kwargs: dict | None = None, *, workers, **options):
    """``aotpack.compile`` with every variant compiled on ``workers`` first (see above):
    ``"local:N"`` (N processes here), ``"ray"``, ``"ray:HOST:PORT"`` or
    ``"ray://HOST:PORT"``. ``options``: ``aotpack.compile``'s keyword arguments. The
    package is the same as ``aotpack.compile``'s; an active ``aotpack.cache.Context``
    records what was compiled, as without workers."""
    from .api import plan
    from .cache import Context, active_context

    built = plan(target, args, kwargs, **options)
    parse_workers(workers)  # a wrong name is an error before anything runs
    outer = active_context()
    with Context() as ctx:
        for bundle in compile_variants(built.specs, built.strict_dims, built.cache, built.training, workers,
                                       built.say):
            ctx.load_bundle(bundle)
        pkg = built.build()  # each variant's compile is now a hit
    if outer is not None:
        outer.load_bundle(ctx.bundle())
    return pkg


def parse_workers(workers) -> tuple[str, object]:
    """``("local", N)`` or ``("ray", address)`` from the ``workers`` argument (address
    None: the cluster ``ray.init`` finds by itself)."""
    if isinstance(workers, int) and not isinstance(workers, bool):
        workers = f"local:{workers}"
    if isinstance(workers, str):
        if workers.startswith("local:") and workers[6:].isdigit() and int(workers[6:]) >= 1:
            return "local", int(workers[6:])
        if workers == "ray":
            return "ray", None
        if workers.startswith("ray://"):
            return "ray", workers
        if workers.startswith("ray:") and len(workers) > 4:
            return "ray", workers[4:]
    raise AotpackError(f"workers={workers!r} names no place to compile",
                       hint='use "local:N" (N processes here), "ray", "ray:HOST:PORT" or "ray://HOST:PORT"')


def _compile_one(spec: dict, strict_dims: bool, cache, training, threads: int, config: dict | None = None) -> bytes:
    """In a worker: capture and compile one variant; its artifacts as a cache bundle.

    inductor compiles with ``threads`` threads: its default (a pool of one process per
    CPU, each importing torch) in every worker would spend the CPUs the farm divides.
    The thread count is not part of cache keys (``_torch_compat.machine_local_config_keys``).
    ``config``: the caller's inductor config (``compat.portable_inductor_config``), so a
    worker compiles the code the caller would, under the caller's cache keys (torchao's
    ``quantize_`` turns coordinate descent on in its caller's process, say).
    """
    from . import _torch_compat as compat
    from .build.variant import build_variant
    from .cache import Context

    with Context() as ctx, compat.inductor_config_applied(config or {}), compat.inductor_compile_threads(threads):
        build_variant(spec, strict_dims, lambda line: None, cache, training)
    return ctx.bundle()


def _compile_forked(i: int) -> bytes:
    return _compile_one(*_JOBS[i])


def compile_variants(specs: list[dict], strict_dims: bool, cache, training, workers,
                     say: Callable[[str], None]) -> list[bytes]:
    """Run every variant's compile on ``workers``; the bundles of those that succeeded."""
    kind, where = parse_workers(workers)
    from .cache import Store

    if isinstance(cache, Store):
        cache = cache.url  # a URL or path travels to a worker; a client does not
    # CPUs per worker: a Ray task has one; N local processes share this machine's
    threads = 1 if kind == "ray" else max(1, (os.cpu_count() or 1) // max(1, min(where, len(specs) - 1)))
    from . import _torch_compat as compat

    config = compat.portable_inductor_config()
    jobs = [(spec, strict_dims, cache, training, threads, config) for spec in specs]
    say(f"compiling {len(jobs)} variant(s) on {workers}")
    results = _run_local(jobs, where) if kind == "local" else _run_ray(jobs, where)
    bundles = []
    for spec, result in zip(specs, results):
        if isinstance(result, BaseException):
            say(f"[{spec['name']}] the worker failed ({type(result).__name__}: {str(result).splitlines()[0]}); "
                "compiling it here")
        else:
            bundles.append(result)
    return bundles


def _run_local(jobs: list, n: int) -> list:
    """The first job here, then the rest on n forked processes.

    A process's first compile pays for inductor's start (imports, its C++ prelude:
    seconds here, 80 s on a slow 16-CPU host) and later ones do not. Forked after the
    first compile, the workers start warm instead of each paying it again.
    """
    from concurrent.futures import ProcessPoolExecutor

    global _JOBS
    if os.name != "posix":
        raise AotpackError("workers='local:N' forks processes, which this platform cannot",
                           hint="compile without workers, or use a Ray cluster (workers='ray')")
    _JOBS = jobs
    try:
        first = _outcome(lambda: _compile_forked(0))
        if len(jobs) == 1:
            return [first]
        with ProcessPoolExecutor(max_workers=min(n, len(jobs) - 1),
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_compile_forked, i) for i in range(1, len(jobs))]
            return [first, *(_outcome(f.result) for f in futures)]
    finally:
        _JOBS = []


def _run_ray(jobs: list, address: str | None) -> list:
    try:
        import ray
    except ImportError:
        raise AotpackError("workers names a Ray cluster, and ray is not installed",
                           hint="pip install 'aotpack[ray]' (or: pip install ray)") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise AotpackError(f"cannot reach the Ray cluster at {address or 'the default address'}: {e}",
                               hint="start it (`ray start --head`) or check the address") from e
    task = ray.remote(num_cpus=1, max_retries=0)(_compile_one)
    refs = [task.remote(*job) for job in jobs]
    return [_outcome(lambda ref=ref: ray.get(ref)) for ref in refs]


def _outcome(get):
    try:
        return get()
    except Exception as e:  # noqa: BLE001 - a failed worker's variant is compiled by the caller
        return e
