"""Python started in the repository root must still import the standard library's `operator`."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_site_interpreter_in_the_repository_root_imports_functools():
    # -S: no site initialisation, so nothing imported the standard `operator` before the root could shadow it
    done = subprocess.run([sys.executable, "-S", "-c", "import functools, collections, operator; print(operator.eq(1, 1))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_a_script_read_from_stdin_in_the_repository_root_imports_functools():
    done = subprocess.run([sys.executable, "-I", "-"], input="import sys; sys.path.insert(0, '')\nimport functools, operator\n"
                          "print(operator.__file__)\n", cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent != ROOT / "operator"


def test_the_operator_package_still_imports_as_seesaw_operator():
    done = subprocess.run([sys.executable, "-c", "import seesaw.operator.build as b; print(b.__name__)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
