"""A user backend, importable by a fresh process (its module is recorded in the package)."""

import torch


class CountingInterpreter:
    """Runs the graph with torch.fx.Interpreter, which it rebuilds from the graph's
    Python source. Records how many calls it served, so tests can see it was used."""

    name = "counting-interpreter"
    calls = 0

    def compile(self, captured, options):
        from aotpack.backends import Compiled

        code = captured.graph_module.graph.python_code(root_module="self").src
        return Compiled(files={"graph.py": code.encode(), "note.txt": b"built by a custom backend"},
                        meta={"scale": options.get("scale", 1.0)})

    def load(self, files):
        namespace = {"torch": torch}
        exec(files.read("graph.py").decode(), namespace)
        forward = namespace["forward"]
        scale = files.meta["scale"]
        assert files.read("note.txt") == b"built by a custom backend"

        def run(flat):
            CountingInterpreter.calls += 1
            outs = forward(None, *flat)
            return [o * scale for o in outs]

        return run


class ReadsStorage(CountingInterpreter):
    """Touches each input's storage before running, as compiled code reads stored values:
    a torch.func transform's tensor (vmap, grad, jvp), which has none, fails here as it
    fails in AOTInductor's code, and the guards treat the backend as compiled code (it
    does not declare ``runs_aten_ops``)."""

    name = "reads-storage"

    def load(self, files):
        run = super().load(files)

        def touch(flat):
            for t in flat:
                t.data_ptr()
            return run(flat)

        return touch
