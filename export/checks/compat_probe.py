"""Run a .pte in *this* interpreter's ExecuTorch runtime (an older one, in a side venv): load it,
run each input, save each output 0. Run as a script by `export compat`; it imports only numpy, torch
and executorch (the side venv's: the torch that runtime was built against), never this package.

usage: python compat_probe.py PROGRAM.pte INPUTS.npz OUT.npz
Prints one JSON line: {"loads": bool, "error": str|None, "executorch": version}.
"""

import json
import sys


def main() -> int:
    pte, inputs, out = sys.argv[1:4]
    import numpy as np
    import torch
    from executorch.extension.pybindings import portable_lib

    try:
        from importlib.metadata import version

        et = version("executorch")
    except Exception:  # the version is informative only
        et = "unknown"
    try:
        module = portable_lib._load_for_executorch(pte)
    except Exception as e:  # the runtime's own words (its log lines went to stderr already)
        print(json.dumps({"loads": False, "error": f"{type(e).__name__}: {e}", "executorch": et}))
        return 0
    data = np.load(inputs)
    outputs = {}
    try:
        for key in sorted(data.files):
            result = module.forward([torch.from_numpy(data[key])])
            outputs[key] = result[0].numpy().copy()
    except Exception as e:
        print(json.dumps({"loads": True, "error": f"forward failed: {type(e).__name__}: {e}", "executorch": et}))
        return 0
    np.savez(out, **outputs)
    print(json.dumps({"loads": True, "error": None, "executorch": et}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
