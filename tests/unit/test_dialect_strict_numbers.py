"""Directive numbers are ASCII digits: odd whitespace, Unicode digits, huge counts are errors at the line."""

from pathlib import Path

import pytest

from burst_agent.cli import main
from burst_agent.dialects import parse_script
from burst_agent.request import TranslateError

GOLDEN = Path(__file__).parents[1] / "golden" / "coretypes.json"
HUGE = "1" * 5000  # past int()'s 4300-digit limit
# Unit separators, an Arabic-Indic and a fullwidth 4, an underscore, an em space: int() takes them all.
ODD = ["\x1f4", "\x1c4", "\u0664", "\uff14", "4_0", "\u20034"]


@pytest.mark.parametrize("value", [*ODD, HUGE])
@pytest.mark.parametrize("line", [
    "#SBATCH -n {}", "#SBATCH -N {}", "#SBATCH --gpus={}", "#SBATCH --mem={}G", "#SBATCH --time={}",
    "#SBATCH --array={}", "#PBS -l select={}", "#PBS -l select=1:ncpus={}", "#PBS -l walltime={}",
    "#PBS -l mem={}gb", "#PBS -l nodes=2:ppn={}",
])
def test_a_number_that_is_not_ascii_digits_is_an_error_at_its_line(line, value):
    with pytest.raises(TranslateError) as caught:
        parse_script(f"#!/bin/bash\n{line.format(value)}\n./x\n")
    assert caught.value.line == 2 and len(caught.value.message) < 300, caught.value.message


@pytest.mark.parametrize("line", ["#SBATCH -n \x1f4", "#PBS -l select=\x1f4", f"#SBATCH -n {HUGE}"])
def test_translate_cli_names_the_line_instead_of_a_traceback(tmp_path, capsys, line):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n{line}\n./x\n")
    returncode = main(["translate", str(script), "--coretypes", str(GOLDEN)])  # a traceback raises here
    stderr = capsys.readouterr().err
    assert returncode == 2 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"{script}:2: ") and stderr.count("\n") == 1, stderr
