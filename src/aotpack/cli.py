"""The ``aotpack`` command line: a thin layer over the public API.

    aotpack compile model.py:build --example model.py:example -o model.aot [--backend aoti] [--train]
    aotpack run model.aot                   # run on the recorded example inputs
    aotpack inspect model.aot               # manifest for a person, no code run
    aotpack verify model.aot [--key K.pub]  # integrity, signature, runs here?; no code run
    aotpack keygen release.key              # Ed25519 key pair: release.key, release.key.pub
    aotpack sign model.aot --key release.key
    aotpack rebuild model.aot               # recompile variants built for another torch/machine
    aotpack repro model.aot -o repro/       # standalone repro.py of a variant + its inputs
    aotpack minify repro/ --failure exception --backend inductor
    aotpack report trace_dir/ -o report.html   # a compile trace as one HTML page
    aotpack cache ls|explain KEY|rm KEY|export -o F|import F [--store redis://host:6379/0]
    aotpack generate lm.aot --prompt 1,2,3 --max-new-tokens 32   # a package from aotpack.llm.compile
    aotpack demo                            # compile, save, load fresh, compare

Errors print as ``error: ...`` and ``hint: ...`` with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time

import aotpack
from aotpack.errors import AotpackError
from aotpack.refs import load_object


def _backend(ref: str):
    """A built-in backend's name, or ``module:qualname`` / ``file.py:Name`` of a user
    backend (a class is instantiated); None: the default (``$AOTPACK_BACKEND``, else aoti)."""
    if ref is None:
        return None
    if ":" not in ref:
        if ref not in ("aoti", "inductor", "eager"):
            raise AotpackError(f"unknown backend {ref!r}", hint="aoti, inductor, eager, or module:Name of your backend")
        return ref
    obj = load_object(ref)
    return obj() if isinstance(obj, type) else obj


def _backends(refs) -> list:
    return [_backend(r) for r in refs or []]


def _cmd_compile(a) -> int:
    import torch

    target = load_object(a.target)
    if isinstance(target, type) or (callable(target) and not isinstance(target, torch.nn.Module) and a.factory):
        target = _call_user(f"building the program with {a.target}()", target)
    example = load_object(a.example)
    example = _call_user(f"making the example with {a.example}()", example) if callable(example) else example
    if isinstance(example, dict):
        args, kwargs = tuple(example.get("args", ())), dict(example.get("kwargs", {}))
    else:
        args, kwargs = (tuple(example) if isinstance(example, (tuple, list)) else (example,)), {}
    if isinstance(target, torch.nn.Module):
        target.train(a.train)
    pkg = aotpack.compile(target, args, kwargs, backend=_backend(a.backend), dynamic=True if a.dynamic else None,
                          train=a.train, cache=a.cache,
                          progress=lambda line: print(f"aotpack: {line}", file=sys.stderr))
    pkg.save(a.output)
    print(f"wrote {a.output} ({os.path.getsize(a.output) / 1e6:.1f} MB)")
    return 0


def _call_user(what: str, fn):
    """``fn()``: the user's code; what it raises is one error naming the step, not an
    aotpack bug report."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - any error of the user's code, reported as such
        raise AotpackError(f"{what} failed: {type(e).__name__}: {e}",
                           hint="a class is built with no arguments: point at a function that builds the model "
                                "(--factory); AOTPACK_DEBUG=1 shows the traceback") from e


def _cmd_run(a) -> int:
    import torch

    t = time.perf_counter()
    fn = aotpack.load(a.package, trusted_keys=a.key or None, backends=_backends(a.backend))
    load_s = time.perf_counter() - t
    args, kwargs = fn.example_inputs(a.variant)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    call_s = time.perf_counter() - t
    _, outs = aotpack.tree.flatten(out)
    print(f"loaded in {load_s * 1000:.1f} ms, first call {call_s * 1000:.1f} ms")
    for i, o in enumerate(outs):
        if isinstance(o, torch.Tensor):
            print(f"output {i}: {aotpack.tree.dtype_name(o.dtype)}{list(o.shape)} "
                  f"mean {o.float().mean().item():.6g}")
    return 0


def _cmd_inspect(a) -> int:
    info = aotpack.inspect(a.package)
    print(info)
    return 0 if info.verified else 1


def _cmd_verify(a) -> int:
    result = aotpack.verify(a.package, trusted_keys=a.key or None, backends=_backends(a.backend))
    print(result)
    return 0 if result.ok else 1


def _cmd_keygen(a) -> int:
    kid = aotpack.generate_key(a.key)
    print(f"wrote {a.key} (private: keep it on the build machine) and {a.key}.pub (public: give it to load); "
          f"key id {kid}")
    return 0


def _cmd_sign(a) -> int:
    kid = aotpack.sign(a.package, a.key)
    print(f"signed {a.package} with {kid}; check with: aotpack verify {a.package} --key {a.key}.pub")
    return 0


def _cmd_rebuild(a) -> int:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", aotpack.RebuildWarning)  # the progress lines say it
        fn = aotpack.load(a.package, on_mismatch="rebuild", rewrite=True)
    print(f"{a.package}: variants {', '.join(fn.variants)} run here")
    return 0


def _cmd_repro(a) -> int:
    from aotpack.repro import package_repro

    path = package_repro(a.package, a.output, variant=a.variant)
    print(f"wrote {path}; run: python {path} accuracy --backend inductor")
    return 0


def _cmd_minify(a) -> int:
    from aotpack.repro import minify_repro

    try:
        stats = minify_repro(a.folder, backend=a.backend, failure=a.failure, output=a.output,
                             max_trials=a.max_trials, say=lambda line: None)
    except ValueError as e:
        raise AotpackError(str(e), hint="check --failure and --backend: the full graph must fail that way") from None
    print(f"{stats['nodes_before']} nodes -> {stats['nodes_after']} nodes in {stats['trials']} trials; "
          f"wrote {stats['path']}")
    return 0


def _cmd_cache(a) -> int:
    import datetime

    from aotpack.cache import open_store

    store = open_store(a.store, on_error="raise")  # an unreachable store must not list as empty
    if a.action == "ls":
        rows = sorted(store.entries(), key=lambda h: h.get("created", 0))
        print(f"{store.url}: {len(rows)} entries, {sum(h['size'] for h in rows) / 1e6:.1f} MB")
        for h in rows:
            when = datetime.datetime.fromtimestamp(h.get("created", 0)).strftime("%Y-%m-%d %H:%M")
            parts = h["parts"]
            print(f"  {h['key'][:16]}  {h['size'] / 1e6:8.2f} MB  {when}  {h.get('kind', '?'):24} "
                  f"compile {h.get('compile_s', 0):6.1f}s  {parts.get('backend', '?')}  inputs {parts.get('inputs', '')[:60]}")
    elif a.action == "explain":
        for prefix in a.keys or [""]:
            digest = store.resolve(prefix)
            h = store.header(digest)
            print(f"{digest}  ({h.get('kind', '?')}, {h['size']} bytes, compiled in {h.get('compile_s', '?')}s)")
            for name, value in h["parts"].items():
                print(f"  {name:8} {value}")
    elif a.action == "rm":
        if not a.keys and not a.all:
            raise AotpackError("rm needs keys or --all", hint="aotpack cache rm KEY... | --all")
        digests = store.digests() if a.all else [store.resolve(k) for k in a.keys]
        for d in digests:
            store.delete(d)
        print(f"removed {len(digests)} entries from {store.url}")
    elif a.action == "export":
        if not a.output:
            raise AotpackError("export needs -o FILE")
        blob = store.export([store.resolve(k) for k in a.keys] if a.keys else None)
        from .atomic import atomic_file

        with atomic_file(a.output) as f:
            f.write(blob)
        print(f"wrote {a.output} ({len(blob) / 1e6:.1f} MB)")
    elif a.action == "import":
        if len(a.keys) != 1:
            raise AotpackError("import takes one bundle file", hint="aotpack cache import bundle.aotc")
        with open(_regular_file(a.keys[0]), "rb") as f:
            keys = store.import_bundle(f.read())
        print(f"imported {len(keys)} entries into {store.url}")
    return 0


def _cmd_report(a) -> int:
    from aotpack.tracing import read_trace, write_report

    path = write_report(a.trace, a.output)
    records = read_trace(a.trace)
    print(f"wrote {path}: {len(records)} compiles, {sum(1 for r in records if r.get('graph'))} graphs, "
          f"{sum(len(r.get('graph_breaks') or []) for r in records)} graph breaks")
    return 0


def _cmd_generate(a) -> int:
    prompts = []
    for text in a.prompt:
        try:
            prompts.append([int(x) for x in text.replace(" ", ",").split(",") if x])
        except ValueError:
            raise AotpackError(f"--prompt {text!r} is not a list of token ids",
                               hint="give token ids separated by commas, e.g. --prompt 1,15043,29892") from None
    t = time.perf_counter()
    fn = aotpack.load(a.package, trusted_keys=a.key or None)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    out = aotpack.generate(fn, prompts, a.max_new_tokens, eos_token_id=a.eos, temperature=a.temperature,
                           top_k=a.top_k, top_p=a.top_p)
    gen_s = time.perf_counter() - t
    width = max(map(len, prompts))
    for row in out.tolist():
        print(" ".join(map(str, row[width:])))
    n = (out.shape[1] - width) * len(prompts)
    print(f"loaded in {load_s * 1000:.1f} ms; {n} tokens in {gen_s:.3f} s ({n / gen_s:.1f} tokens/s)", file=sys.stderr
          if a.quiet else sys.stdout)
    return 0


def _cmd_demo(a) -> int:
    from aotpack.demo import run_demo

    run_demo(backend=a.backend, out_dir=a.out, torch_compile=not a.no_torch_compile,
             models=a.models.split(",") if a.models else None)
    return 0


def main(argv=None) -> int:
    """The ``aotpack`` command: one ``error:`` and one ``hint:`` line for any failure, never
    a traceback (AOTPACK_DEBUG=1 shows it); exit 1 for failures, 2 for usage errors."""
    a = _parser().parse_args(argv)
    try:
        return a.func(a)
    except AotpackError as e:
        if os.environ.get("AOTPACK_DEBUG"):  # the traceback, with the cause it carries
            raise
        return _fail(e.message, e.hint or f"run `aotpack {a.cmd} --help`, or see docs/reference/cli.md")
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        return _fail(what, _OS_HINTS.get(e.errno, "check the path and its permissions"))
    except Exception as e:  # noqa: BLE001 - the CLI prints one error line for any input, never a traceback
        if os.environ.get("AOTPACK_DEBUG"):
            raise
        return _fail(f"{type(e).__name__}: {e}".splitlines()[0],
                     "this looks like a bug in aotpack or in the program: rerun with AOTPACK_DEBUG=1 for the "
                     "traceback and report it")


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    """Every subcommand and its options: one function a subcommand (``_<name>_command``),
    each setting ``func``, the _cmd_* that runs it."""
    p = argparse.ArgumentParser(prog="aotpack", description="Compile PyTorch programs once; load them in milliseconds.")
    p.add_argument("--version", action="version", version=f"aotpack {aotpack.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (_compile_command, _run_command, _inspect_command, _verify_command, _keygen_command, _sign_command,
                _rebuild_command, _repro_command, _minify_command, _report_command, _cache_command,
                _generate_command, _demo_command):
        add(sub)
    return p


def _compile_command(sub) -> None:
    c = sub.add_parser("compile", help="compile a function or module into a package")
    c.add_argument("target", help="FILE.py:NAME of a function, nn.Module, or module class/factory (see --factory)")
    c.add_argument("--example", required=True, help="FILE.py:NAME of example inputs: a tuple, or a function "
                   "returning a tuple or {'args': ..., 'kwargs': ...}")
    c.add_argument("-o", "--output", required=True, help="package file to write")
    c.add_argument("--backend", default=None, help="aoti (the default; $AOTPACK_BACKEND changes it), inductor, eager, "
                   "or module:Name (file.py:Name) of your backend")
    c.add_argument("--dynamic", action="store_true", help="let every dimension vary")
    c.add_argument("--factory", action="store_true", help="TARGET is a function that returns the program")
    c.add_argument("--train", action="store_true", help="compile the backward too (a training package)")
    c.add_argument("--cache", default=None, help="compile cache: a directory or redis:// URL")
    c.set_defaults(func=_cmd_compile)


def _run_command(sub) -> None:
    r = sub.add_parser("run", help="load a package and run it on its recorded example inputs")
    r.add_argument("package")
    r.add_argument("--variant", default=None, help="whose example inputs to use (default: the first)")
    r.add_argument("--key", action="append", help="trusted public key: refuse the package unless signed by it "
                   "(repeatable; default $AOTPACK_TRUSTED_KEYS)")
    r.add_argument("--backend", action="append", help="module:Name of a user backend the package needs (repeatable)")
    r.set_defaults(func=_cmd_run)


def _inspect_command(sub) -> None:
    i = sub.add_parser("inspect", help="describe a package (no code is run)")
    i.add_argument("package")
    i.set_defaults(func=_cmd_inspect)


def _verify_command(sub) -> None:
    v = sub.add_parser("verify", help="check integrity, signature and whether the package runs here (no code is run)")
    v.add_argument("package")
    v.add_argument("--key", action="append", help="trusted public key file: the package must be signed by it "
                   "(repeatable; default $AOTPACK_TRUSTED_KEYS)")
    v.add_argument("--backend", action="append", help="module:Name of a user backend the package needs (repeatable)")
    v.set_defaults(func=_cmd_verify)


def _keygen_command(sub) -> None:
    kg = sub.add_parser("keygen", help="create an Ed25519 signing key pair (KEY and KEY.pub)")
    kg.add_argument("key", help="private key file to write; the public key goes to KEY.pub")
    kg.set_defaults(func=_cmd_keygen)


def _sign_command(sub) -> None:
    sg = sub.add_parser("sign", help="sign a package in place with a private key")
    sg.add_argument("package")
    sg.add_argument("--key", required=True, help="private key file (from `aotpack keygen`, or an OpenSSH ed25519 key)")
    sg.set_defaults(func=_cmd_sign)


def _rebuild_command(sub) -> None:
    b = sub.add_parser("rebuild", help="recompile variants built for another torch/machine, in place")
    b.add_argument("package")
    b.set_defaults(func=_cmd_rebuild)


def _repro_command(sub) -> None:
    rp = sub.add_parser("repro", help="write a standalone reproducer of a package variant")
    rp.add_argument("package")
    rp.add_argument("-o", "--output", required=True, help="folder for repro.py and storages/")
    rp.add_argument("--variant", default=None)
    rp.set_defaults(func=_cmd_repro)


def _minify_command(sub) -> None:
    mn = sub.add_parser("minify", help="shrink a reproducer's failing graph (delta debugging)")
    mn.add_argument("folder", help="a folder written by save_repro / aotpack repro")
    mn.add_argument("--failure", default="exception", help="exception, accuracy, or a regex of the error")
    mn.add_argument("--backend", default="inductor", help="eager, aot_eager, inductor, or module:function")
    mn.add_argument("-o", "--output", default=None, help="where to write (default FOLDER/minified)")
    mn.add_argument("--max-trials", type=_positive_int, default=200)
    mn.set_defaults(func=_cmd_minify)


def _report_command(sub) -> None:
    rep = sub.add_parser("report", help="render a compile trace (aotpack.trace / AOTPACK_TRACE) as one HTML page")
    rep.add_argument("trace", help="the trace folder (holds trace.jsonl)")
    rep.add_argument("-o", "--output", default=None, help="HTML file (default TRACE/report.html)")
    rep.set_defaults(func=_cmd_report)


def _cache_command(sub) -> None:
    ca = sub.add_parser("cache", help="list, explain, remove, export or import compile-cache entries")
    ca.add_argument("action", choices=["ls", "explain", "rm", "export", "import"])
    ca.add_argument("keys", nargs="*", help="keys or key prefixes (import: the bundle file)")
    ca.add_argument("--store", default=None, help="directory or redis:// URL (default: $AOTPACK_CACHE or "
                    "~/.cache/aotpack)")
    ca.add_argument("--all", action="store_true", help="rm: every entry")
    ca.add_argument("-o", "--output", default=None, help="export: bundle file to write")
    ca.set_defaults(func=_cmd_cache)


def _generate_command(sub) -> None:
    g = sub.add_parser("generate", help="generate tokens with a package from aotpack.llm.compile")
    g.add_argument("package")
    g.add_argument("--prompt", action="append", required=True, help="token ids, comma-separated (repeat for a batch)")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--eos", type=int, default=None, help="end-of-sequence token id")
    g.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--key", action="append", help="trusted public key (as for run)")
    g.add_argument("--quiet", action="store_true", help="timing line on stderr")
    g.set_defaults(func=_cmd_generate)


def _demo_command(sub) -> None:
    d = sub.add_parser("demo", help="compile an MLP and a transformer block, load them fresh, compare")
    d.add_argument("--backend", default="aoti", choices=["aoti", "inductor", "eager"])
    d.add_argument("--out", default=None, help="folder for the packages (default: a temporary one)")
    d.add_argument("--models", default=None, help="comma-separated subset of: mlp,transformer_block")
    d.add_argument("--no-torch-compile", action="store_true", help="skip the torch.compile comparison")
    d.set_defaults(func=_cmd_demo)


_OS_HINTS = {
    errno.ENOENT: "check the path: it does not exist",
    errno.EACCES: "check the file's permissions",
    errno.EPERM: "check the file's permissions",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EROFS: "write to a writable folder",
    errno.ENOSPC: "free disk space and run it again (files already saved are unchanged: saves are atomic)",
    errno.EEXIST: "choose another output path, or remove the existing one",
}


def _regular_file(path: str) -> str:
    """``path`` if it is a regular file; AotpackError at once for a fifo, a device or a
    folder (opening a fifo would wait forever for a writer)."""
    import stat

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise AotpackError(f"{path} is not a regular file", hint="pass a file written by `aotpack cache export`")
    return path


def _fail(message: str, hint: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(f"hint: {hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
