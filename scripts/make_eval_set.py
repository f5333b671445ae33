"""Write the committed synthetic evaluation set into edge_hired/data/evalset/ (deterministic).

    python scripts/make_eval_set.py [--out DIR] [--seed N] [--per-kind N]

Four kinds of question (written number, count of circles, colour of the square, shape), drawn
with PIL primitives by `edge_hired.evaluation.synthetic`. Rerunning it rewrites identical files;
the unit tests check that the committed copy is what this script makes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_hired.evaluation.synthetic import write_eval_set

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "edge_hired" / "data" / "evalset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=6)
    args = parser.parse_args()
    path = write_eval_set(args.out, seed=args.seed, per_kind=args.per_kind)
    files = [path, *sorted((args.out / "images").glob("*.png"))]
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {path} and {len(files) - 1} images ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
