"""Write tests/reference/data/student_t_contaminated.csv: sleepstudy with outliers.

Run from the repository root (once; the CSV is the data of record, which
make_student_t_contaminated.R fits and tests/test_student_t_contaminated.py reads):

    .venv/bin/python tests/reference/make_student_t_contaminated_data.py

Dataset ``k`` (k = 0..15) is ``lme4::sleepstudy`` (180 rows, ``admbjax.datasets.load``)
with ``round(frac * 180)`` reaction times, chosen without replacement by
``numpy.random.default_rng(20250611 + k)``, shifted by ``sign * uniform(150, 300)`` ms:
``frac`` cycles through 3, 5, 7 and 10 % (5, 9, 13, 18 outliers) and the direction through
"both" (sign +-1 at random per outlier), "up" (+1) and "down" (-1). Shifted values are
rounded to 4 decimals, as sleepstudy's are, so the CSV holds them exactly. Columns:
``dataset, Reaction, Days, Subject, outlier`` (``outlier``: the shift in ms, 0 if none).
"""

from pathlib import Path

import numpy as np
import pandas as pd

import admbjax

SEED = 20250611
FRACTIONS = (0.03, 0.05, 0.07, 0.10)
DIRECTIONS = ("both", "up", "down")
N_DATASETS = 16
OUT = Path(__file__).parent / "data" / "student_t_contaminated.csv"


def contaminated(k: int) -> pd.DataFrame:
    """Dataset ``k`` (see the module docstring)."""
    df = admbjax.datasets.load("sleepstudy")[["Reaction", "Days", "Subject"]].copy()
    frac, direction = FRACTIONS[k % 4], DIRECTIONS[k % 3]
    rng = np.random.default_rng(SEED + k)
    n = int(round(frac * len(df)))
    rows = rng.choice(len(df), n, replace=False)
    size = rng.uniform(150.0, 300.0, n)
    sign = {"both": rng.choice([-1.0, 1.0], n), "up": np.ones(n), "down": -np.ones(n)}[direction]
    shift = np.zeros(len(df))
    shift[rows] = sign * size
    df["Reaction"] = np.round(df["Reaction"].to_numpy() + shift, 4)
    df["outlier"] = np.round(shift, 4)
    df.insert(0, "dataset", k)
    return df


def main() -> None:
    table = pd.concat([contaminated(k) for k in range(N_DATASETS)], ignore_index=True)
    table["Subject"] = table["Subject"].astype(str)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False)
    print(f"wrote {OUT} ({len(table)} rows, {N_DATASETS} datasets)")


if __name__ == "__main__":
    main()
