"""Uniform average of MdAFuse weights fine-tuned from the same start ("model soup").

    python -m research.average_weights OUT.safetensors A.safetensors B.safetensors [...]

Every tensor is averaged in float64 and stored in its original dtype; the metadata (network
configuration) is the first file's. Used in the loss study to ask whether averaging seeds steadies
the margins; all inputs must share one configuration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import load_file

from mdafuse.model.weights import read_metadata, save_state


def average_weights(out: Path, inputs: list[Path]) -> Path:
    """Write the element-wise mean of ``inputs`` to ``out``; raises ValueError on mismatched tensors or configurations."""
    tensors = [load_file(str(p)) for p in inputs]
    metas = [read_metadata(p) for p in inputs]
    if any(m.get("config") != metas[0].get("config") for m in metas) or any(t.keys() != tensors[0].keys() for t in tensors):
        raise ValueError(f"{', '.join(map(str, inputs))}: weights of different network configurations cannot be averaged")
    mean = {k: (sum(t[k].double() for t in tensors) / len(tensors)).to(v.dtype) if v.is_floating_point() else v for k, v in tensors[0].items()}
    save_state(mean, out, {**metas[0], "version": out.stem})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("inputs", nargs="+", type=Path)
    args = ap.parse_args()
    print(average_weights(args.out, args.inputs))


if __name__ == "__main__":
    main()
