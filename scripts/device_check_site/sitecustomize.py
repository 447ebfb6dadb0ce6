"""Start-up hooks for the processes of the device check's starter-kit run (this folder goes on PYTHONPATH).

AUTOCLINT_CHECK_HIDE_TF=1: TensorFlow is made unimportable, so that the AutoDL reader is chosen as on a
machine without it (the TensorFlow-free one) even where it is installed. AUTOCLINT_CHECK_PEAK_FILE=path:
at exit, a process that used CUDA appends "pid max_allocated_bytes max_reserved_bytes" to that file.
"""

import atexit
import os
import sys

if os.environ.get("AUTOCLINT_CHECK_HIDE_TF") == "1":
    # A None entry makes importlib.util.find_spec answer None and `import tensorflow` raise ImportError.
    sys.modules["tensorflow"] = None


def _append_peak_memory(path: str) -> None:
    """Record this process's peak CUDA memory, if it used CUDA at all."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    with open(path, "a") as handle:
        allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        handle.write(f"{os.getpid()} {allocated} {reserved}\n")


if os.environ.get("AUTOCLINT_CHECK_PEAK_FILE"):
    atexit.register(_append_peak_memory, os.environ["AUTOCLINT_CHECK_PEAK_FILE"])


def _run_the_shadowed_sitecustomize() -> None:
    """Run the sitecustomize this one hides (if the environment has one), so that it works as usual."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        candidate = os.path.join(entry or os.getcwd(), "sitecustomize.py")
        if os.path.abspath(entry or os.getcwd()) != here and os.path.isfile(candidate):
            with open(candidate) as handle:
                code = compile(handle.read(), candidate, "exec")
            exec(code, {"__name__": "sitecustomize", "__file__": candidate})
            return


_run_the_shadowed_sitecustomize()
