"""A sweep: its arms and scales and the configs generated from them (configs.py), running every
arm once per seed (launch.py), and reading the finished runs into a report (runs.py, report.py,
stats.py).

    python -m prefix_titan.sweep configs [--check]
    python -m prefix_titan.sweep launch [--scale 500M|pilot|smoke] [--seeds S ...] [--dry-run] ...
    python -m prefix_titan.report RUNS_DIR
"""
