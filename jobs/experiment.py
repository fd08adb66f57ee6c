"""Ray job entry point: `cst-ray experiment`. Runs locally or under `ray job submit -- python jobs/experiment.py --config ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working_dir root holds cst_ray/

from cst_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
