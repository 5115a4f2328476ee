"""The README and docs/ as a newcomer reads them: every link leads somewhere, every documented
`python -m prefix_titan...` command and `python scripts/...` script exists, the README stays a
short path (the measured numbers in the pages are checked by the tests of what they measure:
test_configs, test_llama3, test_bench)."""

import collections
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _name(page):
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_links_lead_to_files_and_sections(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{_name(page)} links to {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{_name(page)} links to {target}: no such section"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_path_leads_outside_the_repository(page):
    text = page.read_text()
    outside = re.findall(r"\.\./[\w./-]+", text)
    assert not [p for p in outside if not (page.parent / p).resolve().is_relative_to(ROOT)], outside


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_documented_commands_exist(page):
    text = page.read_text()
    for module in set(re.findall(r"python -m (prefix_titan(?:\.[a-z_]+)*)(?!\w|\.\w)", text)):
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{_name(page)}: python -m {module}: no such module"
        if spec.submodule_search_locations:  # a package runs its __main__
            spec = importlib.util.find_spec(f"{module}.__main__")
            assert spec is not None, (
                f"{_name(page)}: python -m {module}: a package without __main__"
            )
        source = open(spec.origin).read()
        assert '__name__ == "__main__"' in source, (
            f"{_name(page)}: {module} does not run as a command"
        )
    for script in set(re.findall(r"python (scripts/[\w./]+\.py)", text)):
        assert (ROOT / script).is_file(), f"{_name(page)}: {script} does not exist"


def test_the_readme_is_a_short_path():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines"
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("Set up and test", "Train the embedded default", "The experiment"):
        assert any(wanted in h for h in headings), wanted
    assert '-m "not slow"' in "\n".join(lines)  # the fast tier is printed beside the full command


def _pytest(*args, env=None):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
def test_the_readmes_runs_in_processes_deal_whole_files_the_longest_first():
    """README's `pytest -n auto` (tests/conftest.py): each file's tests all in one process (xdist's
    default, test by test, deals the first file's to both), and every process collects
    LONGEST_FIRST's files first, the others in their order."""
    from conftest import LONGEST_FIRST

    picked = [
        "tests/test_docs.py::test_documented_commands_exist",
        "tests/test_docs.py::test_no_path_leads_outside_the_repository",
        "tests/test_friction.py::test_an_lm_eval_laid_out_otherwise_builds_its_whole_index_itself",
    ]

    lines = _pytest("-n", "2", "-v", *picked).splitlines()
    ran = collections.defaultdict(set)
    for worker, test in re.findall(r"^\[(gw\d+)\].* PASSED (\S+)", "\n".join(lines), re.M):
        ran[test.split("::")[0]].add(worker)
    assert sum(len(line.split(" PASSED ")) - 1 for line in lines) > 2 * len(PAGES), lines[-5:]
    assert len(ran) == 2 and all(len(workers) == 1 for workers in ran.values()), ran
    listed = _pytest("--collect-only", "-q", env={"PYTEST_XDIST_WORKER": "gw0"}).splitlines()
    files = list(
        dict.fromkeys(line.split("::")[0].split("/")[-1] for line in listed if "::" in line)
    )
    assert files[: len(LONGEST_FIRST)] == list(LONGEST_FIRST)
    rest = files[len(LONGEST_FIRST) :]
    assert rest == sorted(rest) and len(rest) > 20


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [3, 5])
def test_the_readme_shows_the_power_command_as_it_prints(seeds, capsys, in_project):
    """README, "Run the pilot": the tables are the power command's output for 3 and 5 seeds (in
    the project as the package ships it: its arms)."""
    from prefix_titan.power import main

    main(["--scale", "pilot", "--seeds", str(seeds)])
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Run the pilot")[1].split(f"With {seeds} seeds")[1]
    shown = [line for line in section.split("\n\n")[1].splitlines() if line.startswith("|")]
    assert shown == printed


def test_the_docs_name_the_built_in_arms_as_the_code_makes_them():
    """docs/objectives.md says which arms are built in (sweep_arms.toml holds only new ones):
    its list, expanded over its taus, is the sweep's (configs.arm_specs)."""
    from prefix_titan.sweep.configs import arm_specs

    text = " ".join((ROOT / "docs" / "objectives.md").read_text().split())
    m = re.search(
        r"the built-in arms are `(\w+)`, `(\w+)`, and `prefix_tau\{τ\}` and "
        r"`prefix_norm_tau\{τ\}` for τ in ([\d., ]+?) \(",
        text,
    )
    assert m, "docs/objectives.md no longer lists the built-in arms"
    taus = [t.strip() for t in m.group(3).split(",")]
    named = [m.group(1), m.group(2)]
    named += [f"{kind}{tau}" for tau in taus for kind in ("prefix_tau", "prefix_norm_tau")]
    assert named == [spec.arm_name() for spec in arm_specs()]


def test_the_docs_name_every_built_in_family_and_its_settings():
    """The `name` row of docs/objectives.md's settings table and the README's objectives table
    list the built-in families (objectives.FAMILIES), and each shared setting's row names the
    families that read it (ObjectiveSpec's own record of them)."""
    import dataclasses

    from prefix_titan.objectives import FAMILIES, ObjectiveSpec

    rows = {
        line.split("|")[1].strip(" `"): line
        for line in (ROOT / "docs" / "objectives.md").read_text().splitlines()
        if line.startswith("| `")
    }
    named = re.findall(r"`(\w+)`", rows["name"].split("|")[2].split(", or")[0])
    assert named == list(FAMILIES), rows["name"]
    readme = (ROOT / "README.md").read_text()
    listed = list(dict.fromkeys(re.findall(r"^\| `(\w+)`", readme, re.M)))
    assert listed == list(FAMILIES), listed
    fields = {f.name: f for f in dataclasses.fields(ObjectiveSpec)}
    for name in ObjectiveSpec.shared():
        readers = [r.replace("_", " ") for r in fields[name].metadata["families"]]
        assert f"({', '.join(readers)}; " in rows[name], rows[name]
